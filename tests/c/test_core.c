/* Unit tests of the C core's pure pieces: the JSON reader, fp16/bf16 conversion (exhaustive), the dynamic-mask
 * top-k selection with ties, the exponential, the kernels' summation orders and edge cases (run natively and in
 * a wasm SIMD128 build), and the decode thread probe. The core's sources are included so
 * static helpers are testable. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/forward.c"
#include "../../src/loader.c"

static int failures, checks;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        checks++;                                         \
        if (!(cond)) {                                    \
            failures++;                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fputc('\n', stderr);                          \
        }                                                 \
    } while (0)

static void test_json_valid(void) {
    const char *text = "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude00\", \"a\": 7}";
    char err[160];
    JsonDoc *d = json_parse(text, strlen(text), err, sizeof err);
    CHECK(d != NULL, "valid document rejected: %s", err);
    if (!d) return;
    const JsonNode *root = json_root(d);
    CHECK(root->count == 3, "member count %zu", root->count);
    CHECK(json_get(root, "a")->type == JSON_NUMBER && json_get(root, "a")->number == 7, "last duplicate key wins");
    const JsonNode *arr = root->child;
    CHECK(arr->count == 5 && json_at(arr, 1)->number == -2500.0, "array contents");
    CHECK(json_at(arr, 2)->boolean == 1 && json_at(arr, 4)->type == JSON_NULL, "literals");
    const JsonNode *s = json_get(root, "s");
    CHECK(s->str_len == 1 + 1 + 2 + 4 && memcmp(s->str, "x\n\xc3\xa9\xf0\x9f\x98\x80", 8) == 0, "escapes decode to UTF-8");
    json_free(d);
}

static void test_json_invalid(void) {
    const char *bad[] = {
        "", "{", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "\"abc", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "01", "-", "1.",
        "1e", "{\"a\":1} x", "tru", "\"a\x01\"", "{\"a\\u0000b\":1}", "[1 2]", "{1:2}",
    };
    char err[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        JsonDoc *d = json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        CHECK(d == NULL && err[0], "invalid JSON accepted: '%s'", bad[i]);
        json_free(d);
    }
    /* Nesting beyond the limit fails cleanly instead of exhausting the stack. */
    size_t n = 100000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    JsonDoc *d = json_parse(deep, n, err, sizeof err);
    CHECK(d == NULL && strstr(err, "nesting too deep"), "deep nesting: %s", err);
    free(deep);
}

/* Reference decoders written from the format definitions, independent of the loader's bit tricks. */
static float ref_f16(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man + 1024), exp - 25);
    return sign ? -v : v;
}

static void test_half_conversions(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = f16_to_f32((uint16_t)h), want = ref_f16((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (got != want || signbit(got) != signbit(want))) bad16++;
        float b = bf16_to_f32((uint16_t)h);
        uint32_t bits;
        memcpy(&bits, &b, 4);
        if (bits != h << 16) badbf++;
    }
    CHECK(bad16 == 0, "%d fp16 values decode wrongly", bad16);
    CHECK(badbf == 0, "%d bf16 values decode wrongly", badbf);
}

/* select_top must keep the `keep` largest values, ties to the lower index, in increasing index order. */
static void test_select_top(void) {
    srand(1);
    float v[64], tmp[64];
    int idx[64];
    for (int trial = 0; trial < 5000; trial++) {
        int len = 1 + rand() % 64, keep = 1 + rand() % len;
        for (int j = 0; j < len; j++) v[j] = (float)(rand() % 7); /* many ties */
        int n = select_top(v, len, keep, tmp, idx);
        int ok = n == keep;
        for (int t = 1; ok && t < n; t++) ok = idx[t] > idx[t - 1];
        /* brute force: j is kept iff fewer than keep values rank before it */
        for (int j = 0, t = 0; ok && j < len; j++) {
            int before = 0;
            for (int i = 0; i < len; i++) before += v[i] > v[j] || (v[i] == v[j] && i < j);
            int kept = t < n && idx[t] == j;
            if (kept) t++;
            ok = kept == (before < keep);
        }
        CHECK(ok, "select_top wrong for len %d keep %d (trial %d)", len, keep, trial);
        if (!ok) break;
    }
}

/* k_exp against the double-precision exponential: within 2 ulp where the result is normal, and expf's
 * behaviour at the edges (overflow to inf, underflow to subnormals and 0, NaN stays NaN). */
static void test_exp(void) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (float x = -87.0f; x < 88.7f; x += 0.000731f) {
        const double want = exp((double)x), got = k_exp(x);
        const double ulp = ldexp(1.0, ilogb(want) - 23), err = fabs(got - want) / ulp;
        if (err > worst) {
            worst = err;
            worst_x = x;
        }
    }
    CHECK(worst <= 2.0, "k_exp is %.2f ulp off at %g", worst, worst_x);
    CHECK(k_exp(0.0f) == 1.0f, "k_exp(0) = %g", k_exp(0.0f));
    CHECK(isinf(k_exp(88.8f)) && isinf(k_exp(INFINITY)), "no overflow to inf");
    CHECK(k_exp(88.7f) > 3.0e38f && !isinf(k_exp(88.7f)), "k_exp(88.7) = %g", k_exp(88.7f));
    CHECK(k_exp(-100.0f) > 0.0f && fabs(k_exp(-100.0f) - expf(-100.0f)) <= 1e-45f, "k_exp(-100) = %g", k_exp(-100.0f));
    CHECK(k_exp(-104.0f) == 0.0f && k_exp(-INFINITY) == 0.0f, "no underflow to 0");
    CHECK(isnan(k_exp(NAN)), "NaN lost");
    float x[7] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 0.25f, -INFINITY}, sum = 0.0f;
    k_softmax(x, 7);
    for (int i = 0; i < 7; i++) sum += x[i];
    CHECK(fabsf(sum - 1.0f) < 1e-6f && x[6] == 0.0f && x[2] > x[1], "softmax: sum %g", sum);
}

/* The kernels' SIMD paths must give the portable path's bits: these checks run in the native build and again in
 * a wasm SIMD128 build of this file (make test-c), against references written here from the documented orders. */
static float frand_signed(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }

/* Bitwise equal, any NaN matching any NaN (wasm does not fix a NaN's sign). */
static int same_bits(const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++)
        if (isnan(a[i]) ? !isnan(b[i]) : memcmp(&a[i], &b[i], sizeof(float)) != 0) return 0;
    return 1;
}

static void test_quantize_edges(void) {
    int16_t q[Q8_GROUP];
    float x[Q8_GROUP], d;
    /* scale 1: ties go to even, signs kept, NaN to 0 and left out of the maximum, wherever it sits */
    for (int nan_at = 0; nan_at < Q8_GROUP; nan_at += 7) { /* 0, 7, 14, 21, 28: every lane of a vector */
        for (int i = 0; i < Q8_GROUP; i++) x[i] = (float)(i % 9) - 4.5f; /* -4.5 .. 3.5 */
        x[5] = 127.0f;
        x[nan_at == 5 ? 6 : nan_at] = NAN;
        k_quantize_q8_wide(q, &d, 1, x, Q8_GROUP);
        int ok = d == 1.0f;
        for (int i = 0; i < Q8_GROUP; i++) ok &= q[i] == (x[i] != x[i] ? 0 : (int16_t)nearbyintf(x[i]));
        CHECK(ok && q[1] == -4 && q[2] == -2 && q[3] == -2 && q[4] == 0 && q[8] == 4, "ties or NaN (at %d) quantized wrongly", nan_at);
    }
    /* random groups against the definition d = absmax / 127, q = nearest(x / d) */
    srand(3);
    int bad = 0;
    for (int trial = 0; trial < 200; trial++) {
        const float scale = ldexpf(1.0f, trial % 40 - 20);
        for (int i = 0; i < Q8_GROUP; i++) x[i] = frand_signed() * scale;
        k_quantize_q8_wide(q, &d, 1, x, Q8_GROUP);
        float amax = 0.0f;
        for (int i = 0; i < Q8_GROUP; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        bad += d != amax / 127.0f;
        for (int i = 0; i < Q8_GROUP; i++) bad += q[i] != (int16_t)nearbyintf(x[i] * (1.0f / d)) || q[i] > 127 || q[i] < -127;
    }
    CHECK(bad == 0, "%d random quantized values differ from the definition", bad);
    /* all zero, an infinity, a scale below the normal floats: the group is 0 */
    const float special[3] = {0.0f, INFINITY, 1e-37f};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < Q8_GROUP; i++) x[i] = k ? special[k] * (i % 3 - 1) * 0.5f : 0.0f;
        x[7] = special[k];
        k_quantize_q8_wide(q, &d, 1, x, Q8_GROUP);
        int zero = 1;
        for (int i = 0; i < Q8_GROUP; i++) zero &= q[i] == 0;
        CHECK(zero && (k == 1 ? isinf(d) : d == special[k] / 127.0f), "group of %g: d %g, not all 0", special[k], d);
    }
}

/* softmax, SwiGLU and RMSNorm against the scalar definitions, summed in the orders kernels.c documents */
static void test_elementwise_orders(void) {
    srand(4);
    for (int n = 1; n <= 41; n++) { /* every tail length */
        float x[41], want[41], up[41], norm_w[41];
        for (int i = 0; i < n; i++) x[i] = frand_signed() * 20.0f, up[i] = frand_signed(), norm_w[i] = frand_signed();
        if (n > 9) x[9] = -INFINITY;
        if (n % 5 == 0) x[n - 2] = NAN; /* NaN anywhere: every output NaN, in both paths */
        /* softmax: the maximum, e^(x - max) by k_exp, the sum in 4 interleaved lanes then the tail */
        float mx = x[0], lane[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        int i = 0;
        for (; i + 4 <= n; i += 4)
            for (int l = 0; l < 4; l++) lane[l] += want[i + l] = k_exp(x[i + l] - mx);
        float sum = (lane[0] + lane[1]) + (lane[2] + lane[3]);
        for (; i < n; i++) sum += want[i] = k_exp(x[i] - mx);
        for (i = 0; i < n; i++) want[i] /= sum;
        float got[41];
        memcpy(got, x, sizeof got);
        k_softmax(got, n);
        CHECK(same_bits(got, want, n), "softmax over %d values", n);
        /* SwiGLU: silu(g) * up */
        for (i = 0; i < n; i++) want[i] = k_silu(x[i] / 4.0f) * up[i], got[i] = x[i] / 4.0f;
        k_swiglu(got, up, (size_t)n);
        CHECK(same_bits(got, want, n), "swiglu over %d values", n);
        /* RMSNorm: squares in double, 4 lanes added as (l0 + l2) + (l1 + l3), then the tail */
        for (i = 0; i < n; i++) x[i] = x[i] == -INFINITY || isnan(x[i]) ? 3.0f : x[i];
        double dl[4] = {0.0, 0.0, 0.0, 0.0};
        for (i = 0; i + 4 <= n; i += 4)
            for (int l = 0; l < 4; l++) dl[l] += (double)x[i + l] * x[i + l];
        double ss = (dl[0] + dl[2]) + (dl[1] + dl[3]);
        for (; i < n; i++) ss += (double)x[i] * x[i];
        const float r = 1.0f / sqrtf((float)(ss / n) + 1e-6f);
        for (i = 0; i < n; i++) want[i] = norm_w[i] * (x[i] * r);
        k_rmsnorm(got, x, norm_w, n, 1e-6f);
        CHECK(same_bits(got, want, n), "rmsnorm over %d values", n);
    }
}

/* Attention over keys taken in any increasing order: two heads at once give each head's bits alone, and the
 * result matches a double-precision softmax(q.k * scale + bias) v within float rounding. */
static void test_attend(void) {
    srand(5);
    enum { T = 23, HD = 12 };
    float K[T * HD], V[T * HD], bias[T], q[2 * HD], o2[2 * HD], o1[2 * HD], scores[2 * T];
    for (int i = 0; i < T * HD; i++) K[i] = frand_signed(), V[i] = frand_signed();
    for (int t = 0; t < T; t++) bias[t] = frand_signed();
    for (int i = 0; i < 2 * HD; i++) q[i] = frand_signed() * 2.0f;
    int keys[T], n = 0;
    for (int t = 0; t < T; t++)
        if (t % 4 != 1) keys[n++] = t; /* gaps, as the dynamic mask's top-k leaves them */
    for (int contiguous = 0; contiguous < 2; contiguous++) {
        if (contiguous)
            for (n = 0; n < T; n++) keys[n] = n;
        k_attend(o2, q, 2, K, V, bias, keys, n, HD, 0.3f, scores);
        for (int r = 0; r < 2; r++) k_attend(o1 + r * HD, q + r * HD, 1, K, V, bias, keys, n, HD, 0.3f, scores);
        CHECK(same_bits(o1, o2, 2 * HD), "attention: two heads at once differ from one by one (%s keys)", contiguous ? "contiguous" : "gapped");
        double worst = 0.0;
        for (int r = 0; r < 2; r++) {
            double p[T], mx = -1e300, sum = 0.0;
            for (int t = 0; t < n; t++) {
                double dot = 0.0;
                for (int i = 0; i < HD; i++) dot += (double)q[r * HD + i] * K[keys[t] * HD + i];
                p[t] = dot * 0.3 + bias[keys[t]];
                mx = p[t] > mx ? p[t] : mx;
            }
            for (int t = 0; t < n; t++) sum += p[t] = exp(p[t] - mx);
            for (int i = 0; i < HD; i++) {
                double v = 0.0;
                for (int t = 0; t < n; t++) v += p[t] / sum * V[keys[t] * HD + i];
                worst = fmax(worst, fabs(v - o2[r * HD + i]));
            }
        }
        CHECK(worst < 1e-5, "attention is %g off the double-precision reference", worst);
    }
}

/* A thread cap limits every call's threads, at most to the pool's; raising it times the threads again at once. */
static void test_thread_cap(void) {
    DogeSession s = {0};
    DogeError err = {0};
    s.pool = pool_new(2);
    if (!s.pool) return;
    s.thread_cap = 2;
    s.probe.period = DECODE_PROBE_MIN_PERIOD;
    s.probe.step = s.probe.start + 10;
    CHECK(doge_session_set_thread_cap(&s, 1, &err) == DOGE_OK && s.thread_cap == 1 && pool_active(s.pool) == 1, "cap 1");
    CHECK(decode_probe_offset(&s.probe) == 10 && !s.probe.reprobe, "lowering the cap does not start a probe");
    CHECK(doge_session_set_thread_cap(&s, 5, &err) == DOGE_OK && s.thread_cap == 2 && pool_active(s.pool) == 2, "cap above the pool: all");
    CHECK(s.probe.reprobe && decode_probe_offset(&s.probe) == 0, "raising the cap starts a probe");
    CHECK(doge_session_set_thread_cap(&s, 0, &err) == DOGE_ERR_INPUT && s.thread_cap == 2, "cap 0 refused: %s", err.msg);
    pool_free(s.pool);
}

/* Records the highest thread index that ran an item. */
static void note_thread(void *ctx, int begin, int end, int thread) {
    atomic_int *highest = ctx;
    for (volatile int i = begin * 2000; i < end * 2000; i++) {
    }
    for (int h = atomic_load(highest); thread > h && !atomic_compare_exchange_weak(highest, &h, thread);) {
    }
}

/* pool_set_active(n) leaves workers n.. out of the jobs. */
static void test_pool_active(void) {
    Pool *p = pool_new(4);
    if (!p || pool_threads(p) < 3) { /* a build without threads, or no room for them */
        pool_free(p);
        return;
    }
    atomic_int highest = 0;
    pool_set_active(p, 2);
    for (int job = 0; job < 200; job++) pool_run(p, note_thread, &highest, 64);
    CHECK(atomic_load(&highest) <= 1, "thread %d ran an item with 2 threads active", atomic_load(&highest));
    pool_free(p);
}

/* The engine warm-up's tiny model loads and runs in both weight formats. */
static void test_warm_up(void) {
    for (int weights = DOGE_WEIGHTS_F32; weights <= DOGE_WEIGHTS_INT8; weights++) {
        DogeError err = {0};
        CHECK(doge_warm_up(weights, &err) == DOGE_OK, "warm-up (weights %d): %s", weights, err.msg);
    }
}

/* The decode thread probe: it times steps on one thread and on all, keeps the faster, probes again after a
 * period that doubles while the choice holds and shrinks back when it changes; all threads losing by far end a
 * probe early, and all threads turning slow between probes start one at once. */
static void test_decode_probe(void) {
    DecodeProbe p = {0};
    const int all = 4;
    long probes = 0, busy_probes = 0, wrong_all = 0, wrong_one = 0, busy_probe_all = 0, busy_from = 600, quiet_from = 2000;
    for (long step = 0; step < 4000; step++) {
        const int n = decode_probe_threads(&p, all);
        const long k = decode_probe_offset(&p);
        const int busy = step >= busy_from && step < quiet_from;
        if (k == 0) {
            probes++;
            busy_probes += busy;
        }
        if (k < DECODE_PROBE_STEPS) CHECK(n == 1, "step %ld should probe one thread", step);
        else if (k < p.probe_len) CHECK(n == all, "step %ld should probe all threads", step);
        /* all threads are faster (2 ms vs 3 ms) except while a core is taken (5 ms vs 3 ms); one odd step in
         * each probe (a slow first step on one thread, a lucky fast one on all) must not decide */
        if (k >= p.probe_len) {
            wrong_all += busy && n == all;
            wrong_one += !busy && n == 1;
        } else if (k >= DECODE_PROBE_STEPS) {
            busy_probe_all += busy;
        }
        /* a probe at most DECODE_PROBE_MAX_PERIOD steps after a change gets it right, and keeps it */
        const int settled = (step >= busy_from + 500 && step < quiet_from) || step >= quiet_from + DECODE_PROBE_MAX_PERIOD + 2 * DECODE_PROBE_STEPS;
        if (settled && k >= p.probe_len) CHECK(n == (busy ? 1 : all), "step %ld: %d threads", step, n);
        const double odd = k == 0 ? 20.0 : k == DECODE_PROBE_STEPS ? 0.5 : 0.0;
        decode_probe_record(&p, odd > 0.0 ? odd : n == 1 ? 3.0 : busy ? 5.0 : 2.0);
    }
    /* a core taken away costs three slow steps before a probe; a core given back lasts until the next probe */
    CHECK(wrong_all == 3, "%ld steps on all threads while a core was busy", wrong_all);
    CHECK(wrong_one > 0 && wrong_one <= DECODE_PROBE_MAX_PERIOD, "%ld steps on one thread while all were free", wrong_one);
    /* with a core busy a probe stops at the second slow step on all threads (after the lucky one), or at the
     * first once one thread has won a probe */
    CHECK(busy_probes > 1 && busy_probe_all == 3 + 2 * (busy_probes - 1), "%ld probe steps on all threads in %ld probes while busy", busy_probe_all, busy_probes);
    CHECK(probes >= 4 && probes <= 4000 / DECODE_PROBE_MIN_PERIOD / 2, "%ld probes in 4000 steps", probes);
    CHECK(p.period == DECODE_PROBE_MAX_PERIOD && p.use_all, "period %ld, use_all %d at the end", p.period, p.use_all);
}

/* A generation step on all threads past its deadline finishes on the calling thread; before it, nothing changes. */
static void test_late_step(void) {
    DogeSession s = {0};
    s.pool = pool_new(2);
    CHECK(s.pool && pool_threads(s.pool) == 2, "a pool of 2 threads");
    if (!s.pool) return;
    s.deadline_ms = now_ms() + 1e6;
    finish_late_step_alone(&s);
    CHECK(pool_active(s.pool) == 2 && s.deadline_ms > 0.0, "a step before its deadline keeps every thread");
    s.deadline_ms = now_ms() - 1.0;
    finish_late_step_alone(&s);
    CHECK(pool_active(s.pool) == 1 && s.deadline_ms == 0.0, "a late step goes on alone, once");
    pool_set_active(s.pool, 2);
    finish_late_step_alone(&s);
    CHECK(pool_active(s.pool) == 2, "no deadline: nothing changes");
    pool_free(s.pool);
}

int main(void) {
    test_json_valid();
    test_json_invalid();
    test_half_conversions();
    test_select_top();
    test_exp();
    test_quantize_edges();
    test_elementwise_orders();
    test_attend();
    test_warm_up();
    test_decode_probe();
    test_late_step();
    test_thread_cap();
    test_pool_active();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
