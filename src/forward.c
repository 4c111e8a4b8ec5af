/* The Doge forward pass (HF transformers models/doge 4.57, eager attention, fp32) and its session state:
 * KV cache, dynamic-mask bias cache, rotary state, workspace and thread pool.
 *
 * Notation: S tokens in this call, P = tokens already cached, T = P + S, D hidden, H query heads,
 * KV key/value heads, hd head_dim, R = H / KV, I intermediate, V vocab, W keep_window_size,
 * E experts, K = sqrt(E) product keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "model.h"
#include "pool.h"

#define DOGE_PI 3.14159265358979323846 /* Python math.pi */

/* Decoding on all threads loses when another process holds a core: a worker descheduled while it holds a
 * claimed chunk stalls the whole step. So the session times DECODE_PROBE_STEPS generation steps of one token on
 * one thread and as many on all of them, then uses the faster (by the median step) until the next probe.
 * Probes come every 64 steps, and twice as far apart (up to 1024) each time the choice stays the same. Steps on
 * all threads clearly slower than the fastest step on one thread (by DECODE_PROBE_LOST) end a probe after two
 * of them (one if one thread won the last probe too), and start a probe at once when three of the last four
 * are so while all threads are in use: a core taken away costs a few steps, not a period, while one slow step
 * (the host's other threads) does not decide. A step on all threads that passes DECODE_PROBE_LOST x that fastest
 * step finishes its layers on one thread (finish_late_step_alone), so a lost step costs about one stall.
 * Results do not depend on the thread count. */
#define DECODE_PROBE_STEPS 4
#define DECODE_PROBE_MIN_PERIOD 64
#define DECODE_PROBE_MAX_PERIOD 1024
#define DECODE_PROBE_LOST 1.25
typedef struct {
    long step;     /* one-token steps so far */
    long start;    /* the step the current period began with (a probe first) */
    long period;   /* its length in steps (0 before the first) */
    double ms[2][DECODE_PROBE_STEPS]; /* this probe's steps on one thread, on all */
    int probe_len; /* steps of the current probe: 2 * DECODE_PROBE_STEPS, fewer when all threads lost early */
    int use_all;   /* the last probe's choice */
    double one_ms; /* the last probe's fastest step on one thread (0 before the first) */
    int lost;      /* steps on all threads slower than DECODE_PROBE_LOST x one_ms in this probe */
    unsigned recent; /* since the probe, one bit a step on all threads (lowest: the last), set when lost */
    int reprobe;   /* the next step starts a probe */
} DecodeProbe;

/* Where the next step falls in its period: 0 starts a new one. */
static long decode_probe_offset(const DecodeProbe *p) {
    const long k = p->step - p->start;
    return p->period == 0 || k >= p->period || p->reprobe ? 0 : k;
}

/* The median of the DECODE_PROBE_STEPS times t (reordered). */
static double median_ms(double *t) {
    for (int i = 1; i < DECODE_PROBE_STEPS; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            const double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return (t[(DECODE_PROBE_STEPS - 1) / 2] + t[DECODE_PROBE_STEPS / 2]) / 2;
}

/* The number of threads (1 or all) for the next one-token step. */
static int decode_probe_threads(const DecodeProbe *p, int all) {
    const long k = decode_probe_offset(p);
    if (k < DECODE_PROBE_STEPS) return 1;
    if (k < p->probe_len) return all;
    return p->use_all ? all : 1;
}

/* The probe's choice; the next one comes twice as late if it is the same as the last. */
static void decode_probe_decide(DecodeProbe *p, int use_all) {
    const int same = p->start > 0 && use_all == p->use_all;
    p->period = same ? (p->period * 2 < DECODE_PROBE_MAX_PERIOD ? p->period * 2 : DECODE_PROBE_MAX_PERIOD) : DECODE_PROBE_MIN_PERIOD;
    p->use_all = use_all;
    p->recent = 0;
}

/* Records how long that step took. */
static void decode_probe_record(DecodeProbe *p, double ms) {
    const long k = decode_probe_offset(p);
    if (k == 0) {
        p->start = p->step;
        p->reprobe = 0;
        p->lost = 0;
        p->probe_len = 2 * DECODE_PROBE_STEPS;
        if (p->period == 0) p->period = DECODE_PROBE_MIN_PERIOD;
    }
    if (k < DECODE_PROBE_STEPS) {
        p->ms[0][k] = ms;
        if (k == DECODE_PROBE_STEPS - 1) { /* known before the first step on all threads: it sets their deadline */
            p->one_ms = p->ms[0][0];
            for (int i = 1; i < DECODE_PROBE_STEPS; i++) p->one_ms = p->ms[0][i] < p->one_ms ? p->ms[0][i] : p->one_ms;
        }
    } else if (k < p->probe_len) {
        p->ms[1][k - DECODE_PROBE_STEPS] = ms;
        /* one lost step is enough when one thread won the last probe too (the core is still taken) */
        const int enough = p->start > 0 && !p->use_all ? 1 : 2;
        if ((p->lost += ms > DECODE_PROBE_LOST * p->one_ms) == enough) {
            p->probe_len = (int)k + 1;
            decode_probe_decide(p, 0);
        } else if (k == 2 * DECODE_PROBE_STEPS - 1) {
            /* the median step of each side: one odd step (a cold cache) does not decide */
            decode_probe_decide(p, median_ms(p->ms[1]) <= median_ms(p->ms[0]));
        }
    } else if (p->use_all) {
        p->recent = (p->recent << 1 | (ms > DECODE_PROBE_LOST * p->one_ms)) & 0xf;
        p->reprobe = __builtin_popcount(p->recent) >= 3;
    }
    p->step++;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

#define DEFAULT_BATCH 256 /* doge_session_set_batch */

struct DogeSession {
    const DogeModel *m;
    Pool *pool;
    int n_ctx;            /* capacity of the KV cache in tokens */
    int pos;              /* P: tokens seen (the next token's position) */
    int used;             /* U: cache slots in use; = pos unless the bounded cache has evicted keys */
    int bounded;          /* 1: when full, the cache keeps only the keys the dynamic mask can still pick */
    int batch;            /* tokens per piece of a long call (doge_session_set_batch) */
    /* Slot u of every cache below holds, in position order, a key of a token seen; without eviction slot
     * u is position u. */
    float *k_cache;       /* [L][KV][n_ctx][hd]  keys after k_norm and RoPE */
    float *v_cache;       /* [L][KV][n_ctx][hd]  raw values */
    float *bias_cache;    /* [L][bias_rows][n_ctx] exp(A * softplus(dt_proj(v))) per key (a function of v alone);
                             bias_rows = KV, or H for the original layout's per-query-head A */
    /* rotary state (HF keeps dynamic-RoPE state across calls; here it is per session) */
    float *inv_freq;      /* [hd/2] in use */
    float *inv_freq_orig; /* [hd/2] at init */
    float attn_scaling, attn_scaling_orig;
    long rope_cached_len; /* max_seq_len_cached of HF's dynamic update */
    /* workspace for a call of up to cap tokens (grown outside the per-token loop) */
    int cap;
    float *x;             /* [S, D]     residual stream */
    float *xn;            /* [S, D]     normed input of a sub-block */
    float *q;             /* [S, H*hd] */
    float *k;             /* [S, KV*hd] */
    float *v;             /* [S, KV*hd] */
    float *att;           /* [S, H*hd]  attention output before o_proj */
    float *proj;          /* [S, D]     o_proj / MLP output */
    float *gate, *up;     /* [S, I] */
    float *router;        /* [S, 2K]    MoE router logits */
    float *cos, *sin;     /* [S, hd/2] */
    float *logits;        /* [V] last-position logits of doge_session_next */
    int16_t *xq;          /* [S, max(D, H*hd, I)]  quantized activations of an int8 matmul (int16 lanes) */
    float *xd;            /* [S, max(D, H*hd, I) / Q8_GROUP] their scales */
    /* per-thread scratch */
    size_t scratch_words;
    float *scratch;       /* [threads][scratch_words] */
    DecodeProbe probe;    /* thread count of generation steps (doge_session_next) */
    double deadline_ms;   /* a generation step on all threads still running then finishes on one (0: none) */
    int thread_cap;       /* threads calls may use (doge_session_set_thread_cap), 1..pool threads */
    long steps, thread_steps; /* one-token generation steps since the reset, and the threads they ran on, summed */
};

/* ---------------------------------------------------------------------------------------------------- */
/* rotary embedding tables (spec 4.2-4.4), computed in fp32 the way PyTorch does                         */

static void inv_freq_default(const DogeConfig *c, float base, float *inv) {
    const int dim = c->head_dim;
    for (int i = 0; i < dim / 2; i++) inv[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
}

static double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

/* Fills inv[hd/2] for a call whose largest position is seq_len - 1 (seq_len 0 = at init); returns the
 * attention scaling that multiplies cos and sin. */
static float rope_init(const DogeConfig *c, long seq_len, float *inv) {
    const int dim = c->head_dim, half = dim / 2;
    const double theta = c->rope_theta;
    const long max_pos = c->max_position_embeddings;
    switch (c->rope_type) {
    case ROPE_DEFAULT: inv_freq_default(c, (float)theta, inv); return 1.0f;
    case ROPE_LINEAR:
        inv_freq_default(c, (float)theta, inv);
        for (int i = 0; i < half; i++) inv[i] /= (float)c->rope_factor;
        return 1.0f;
    case ROPE_DYNAMIC: {
        if (seq_len <= 0) { /* at init the bracket is exactly 1 (Python float math) */
            inv_freq_default(c, (float)theta, inv);
            return 1.0f;
        }
        long sl = seq_len > max_pos ? seq_len : max_pos;
        /* base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2)), as fp32 tensor ops */
        float t = (float)c->rope_factor * (float)sl;
        t = t / (float)max_pos;
        t = t - (float)(c->rope_factor - 1.0);
        t = powf(t, (float)((double)dim / (double)(dim - 2)));
        inv_freq_default(c, (float)theta * t, inv);
        return 1.0f;
    }
    case ROPE_YARN: {
        double factor = c->rope_factor;
        long orig = c->rope_original_max ? c->rope_original_max : max_pos;
        if (c->rope_original_max) factor = (double)max_pos / (double)orig;
        double af = c->yarn_attention_factor;
        if (af < 0) {
            if (c->yarn_mscale != 0 && c->yarn_mscale_all_dim != 0)
                af = yarn_mscale(factor, c->yarn_mscale) / yarn_mscale(factor, c->yarn_mscale_all_dim);
            else af = yarn_mscale(factor, 1.0);
        }
        const double two_pi = 2 * DOGE_PI;
        double low = (dim * log((double)orig / (c->yarn_beta_fast * two_pi))) / (2 * log(theta));
        double high = (dim * log((double)orig / (c->yarn_beta_slow * two_pi))) / (2 * log(theta));
        if (c->yarn_truncate) {
            low = floor(low);
            high = ceil(high);
        }
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            float pos_freq = powf((float)theta, (float)(2 * i) / (float)dim);
            float extra = 1.0f / pos_freq, inter = 1.0f / ((float)factor * pos_freq);
            float ramp = ((float)i - (float)low) / (float)(high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float extra_factor = 1.0f - ramp;
            inv[i] = inter * (1.0f - extra_factor) + extra * extra_factor;
        }
        return (float)af;
    }
    case ROPE_LONGROPE: {
        long orig = c->config_original_max ? c->config_original_max : max_pos;
        double factor = c->config_original_max ? (double)max_pos / (double)orig : c->rope_factor;
        double af = c->longrope_attention_factor;
        if (af < 0) af = factor <= 1.0 ? 1.0 : sqrt(1 + log(factor) / log((double)orig));
        const float *ext = seq_len > orig ? c->longrope_long : c->longrope_short;
        for (int i = 0; i < half; i++)
            inv[i] = 1.0f / (ext[i] * powf((float)theta, (float)(2 * i) / (float)dim));
        return (float)af;
    }
    case ROPE_LLAMA3: {
        inv_freq_default(c, (float)theta, inv);
        const float factor = (float)c->rope_factor, lo = (float)c->llama3_low_freq_factor,
                    hi = (float)c->llama3_high_freq_factor, old_ctx = (float)c->rope_original_max;
        const float low_wl = (float)(c->rope_original_max / c->llama3_low_freq_factor);
        const float high_wl = (float)(c->rope_original_max / c->llama3_high_freq_factor);
        for (int i = 0; i < half; i++) {
            float wl = (float)(2 * DOGE_PI) / inv[i];
            float f = wl > low_wl ? inv[i] / factor : inv[i];
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float smooth = (old_ctx / wl - lo) / (hi - lo);
                f = (1.0f - smooth) * f / factor + smooth * f;
            }
            inv[i] = f;
        }
        return 1.0f;
    }
    }
    return 1.0f;
}

/* HF's @dynamic_rope_update for one call whose largest position is seq_len - 1. */
static void rope_update(DogeSession *s, long seq_len) {
    const DogeConfig *c = &s->m->cfg;
    const int half = c->head_dim / 2;
    if (c->rope_type == ROPE_DYNAMIC) {
        const long orig = c->max_position_embeddings;
        if (seq_len > s->rope_cached_len) { /* growth */
            s->attn_scaling = rope_init(c, seq_len, s->inv_freq);
            s->rope_cached_len = seq_len;
        }
        if (seq_len < orig && s->rope_cached_len > orig) { /* reset */
            memcpy(s->inv_freq, s->inv_freq_orig, sizeof(float) * (size_t)half);
            s->attn_scaling = s->attn_scaling_orig;
            s->rope_cached_len = orig;
        }
    } else if (c->rope_type == ROPE_LONGROPE) {
        const long orig = c->config_original_max ? c->config_original_max : c->max_position_embeddings;
        s->attn_scaling = rope_init(c, seq_len > orig ? orig + 1 : 0, s->inv_freq);
    }
}

/* cos/sin [S][hd/2] for positions P..P+S-1 (the second half of HF's cat(freqs, freqs) is the same). */
static void rope_tables(DogeSession *s, int S) {
    const int half = s->m->cfg.head_dim / 2;
    for (int t = 0; t < S; t++) {
        const float p = (float)(s->pos + t);
        for (int i = 0; i < half; i++) {
            const float f = p * s->inv_freq[i];
            s->cos[t * half + i] = cosf(f) * s->attn_scaling;
            s->sin[t * half + i] = sinf(f) * s->attn_scaling;
        }
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* parallel pieces                                                                                       */

/* One output of a matmul job: y[S, out] = x W^T (+ b). */
typedef struct {
    float *y;
    const Mat *w;
    const float *b;
    int out;
} MatmulOut;

/* Up to three matrices that read the same x (q/k/v, gate/up) run as one job: one hand-off to the threads. */
typedef struct {
    DogeSession *s;
    const float *x;       /* [S, in] */
    const int16_t *xq;    /* [S, in] x quantized for int8 weights, else NULL */
    const float *xd;      /* [in / Q8_GROUP, S] its scales */
    int S, in, n_outs;
    MatmulOut outs[3];
    int bands[4];         /* outs[i] covers work items bands[i] .. bands[i + 1] - 1 */
} MatmulJob;

/* Work items are bands of Q8_BAND rows of W (the int8 layout's unit), numbered across the job's matrices. */
static void matmul_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    const MatmulJob *j = ctx;
    for (int i = 0; i < j->n_outs; i++) {
        const int b0 = begin > j->bands[i] ? begin : j->bands[i], b1 = end < j->bands[i + 1] ? end : j->bands[i + 1];
        if (b0 >= b1) continue;
        const MatmulOut *o = &j->outs[i];
        const int o0 = (b0 - j->bands[i]) * Q8_BAND, o1 = (b1 - j->bands[i]) * Q8_BAND < o->out ? (b1 - j->bands[i]) * Q8_BAND : o->out;
        if (o->w->q) k_matmul_q8_rows(o->y, j->xq, j->xd, o->w->q, o->w->d, o->b, j->S, j->in, o->out, o0, o1);
        else k_matmul_rows(o->y, j->x, o->w->f, o->b, j->S, j->in, o->out, o0, o1);
    }
}

/* One work item = token t: its activations quantized for an int8 matmul (xq[t], xd[g][t]). */
static void quantize_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    const MatmulJob *j = ctx;
    for (int t = begin; t < end; t++) k_quantize_q8_wide(j->s->xq + (size_t)t * j->in, j->s->xd + t, j->S, j->x + (size_t)t * j->in, j->in);
}

/* Below this many multiply-adds a matmul runs on the calling thread: waking the others costs more. */
#define PARALLEL_MIN_MACS (1L << 16)

/* y_i[S, out_i] = x[S, in] W_i[out_i, in]^T (+ b_i) for the n given outputs, rows of W split across threads.
 * An int8 W meets x quantized the same way (per group of Q8_GROUP). */
static void matmuls(DogeSession *s, const float *x, int S, int in, int n, const MatmulOut *outs) {
    MatmulJob j = {s, x, NULL, NULL, S, in, n, {{0}}, {0}};
    double macs = 0; /* in a double: counts past 2^31 (long is 32 bits in wasm) */
    int int8 = 0;
    for (int i = 0; i < n; i++) {
        j.outs[i] = outs[i];
        j.bands[i + 1] = j.bands[i] + (outs[i].out + Q8_BAND - 1) / Q8_BAND;
        macs += (double)S * in * outs[i].out;
        int8 |= outs[i].w->q != NULL;
    }
    if (int8) {
        j.xq = s->xq;
        j.xd = s->xd;
        pool_run(s->pool, quantize_task, &j, S);
    }
    if (macs < PARALLEL_MIN_MACS) matmul_task(&j, 0, j.bands[n], 0);
    else pool_run(s->pool, matmul_task, &j, j.bands[n]);
}

static void matmul_w(DogeSession *s, float *y, const float *x, const Mat *w, const float *b, int S, int in, int out) {
    const MatmulOut o = {y, w, b, out};
    matmuls(s, x, S, in, 1, &o);
}

/* The same for a plain fp32 weight (router, classifier head). */
static void matmul(DogeSession *s, float *y, const float *x, const float *w, const float *b, int S, int in, int out) {
    const Mat m = {(float *)w, NULL, NULL};
    matmul_w(s, y, x, &m, b, S, in, out);
}

/* The n-th largest value (0-based) of a[0..len), found by quickselect (a is reordered). */
static float nth_largest(float *a, int len, int n) {
    int lo = 0, hi = len - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (n <= j) hi = j;
        else if (n >= i) lo = i;
        else break;
    }
    return a[n];
}

/* Picks the keep largest of v[0..len) with ties going to the lower index; writes their indices in
 * increasing order to idx and returns how many (= keep). tmp: len floats of scratch. */
static int select_top(const float *v, int len, int keep, float *tmp, int *idx) {
    memcpy(tmp, v, sizeof(float) * (size_t)len);
    float theta = nth_largest(tmp, len, keep - 1);
    int above = 0;
    for (int j = 0; j < len; j++) above += v[j] > theta;
    int ties = keep - above, n = 0;
    for (int j = 0; j < len; j++) {
        if (v[j] > theta) idx[n++] = j;
        else if (v[j] == theta && ties > 0) {
            idx[n++] = j;
            ties--;
        }
    }
    return n;
}

/* Query heads that share one dynamic-mask bias row: the R heads of a kv head, or 1 when A is per query head. */
static int heads_per_bias_row(const DogeModel *m) {
    const DogeConfig *c = &m->cfg;
    return m->bias_rows == c->num_key_value_heads ? c->num_attention_heads / c->num_key_value_heads : 1;
}

typedef struct {
    DogeSession *s;
    int layer;
    int U, S; /* cache slots used before this call, tokens in this call */
    int heads_per_item; /* attention: query heads per work item (all heads of a bias row, or 1 to split them) */
    const float *residual, *norm; /* residual_norm_task: residual weights [D] and RMSNorm weights [D], or NULL */
} LayerJob;

/* One work item = token t: x[t] = residual * x[t] + proj[t] (the learnable residual), then xn[t] = rmsnorm(x[t]);
 * either step is skipped when its weights are NULL. */
static void residual_norm_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    const LayerJob *job = ctx;
    DogeSession *s = job->s;
    const DogeConfig *c = &s->m->cfg;
    const size_t D = (size_t)c->hidden_size;
    for (int t = begin; t < end; t++) {
        if (job->residual) k_residual(s->x + t * D, job->residual, s->proj + t * D, (int)D);
        if (job->norm) k_rmsnorm(s->xn + t * D, s->x + t * D, job->norm, (int)D, c->rms_norm_eps);
    }
}

static void residual_norm(LayerJob *job, const float *residual, const float *norm) {
    job->residual = residual;
    job->norm = norm;
    pool_run(job->s->pool, residual_norm_task, job, job->S);
}

/* One work item = token t of this call: q/k RMSNorm and RoPE, the new key and value into the cache, and the
 * key's dynamic-mask bias exp(A[b] * softplus(dt_proj(v_t)[b])) (v_t flattened [KV*hd]). */
static void new_keys_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    const LayerJob *job = ctx;
    DogeSession *s = job->s;
    const DogeModel *m = s->m;
    const DogeConfig *c = &m->cfg;
    const DogeLayer *ly = &m->layers[job->layer];
    const int H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim, half = hd / 2, l = job->layer;
    const size_t Hq = (size_t)H * hd, Hkv = (size_t)KV * hd;
    for (int t = begin; t < end; t++) {
        const float *cs = s->cos + (size_t)t * half, *sn = s->sin + (size_t)t * half;
        for (int h = 0; h < H; h++) { /* q_norm over head_dim, then RoPE */
            float *q = s->q + (size_t)t * Hq + (size_t)h * hd;
            if (ly->q_norm) k_rmsnorm(q, q, ly->q_norm, hd, c->rms_norm_eps);
            k_rope(q, cs, sn, hd);
        }
        for (int g = 0; g < KV; g++) {
            float *k = s->k + (size_t)t * Hkv + (size_t)g * hd;
            if (ly->k_norm) k_rmsnorm(k, k, ly->k_norm, hd, c->rms_norm_eps);
            k_rope(k, cs, sn, hd);
            const size_t slot = ((size_t)l * KV + g) * s->n_ctx + (size_t)(job->U + t);
            memcpy(s->k_cache + slot * hd, k, sizeof(float) * hd);
            memcpy(s->v_cache + slot * hd, s->v + (size_t)t * Hkv + (size_t)g * hd, sizeof(float) * hd);
        }
        for (int b = 0; b < m->bias_rows; b++) {
            float z = k_dot(ly->wdt + (size_t)b * Hkv, s->v + (size_t)t * Hkv, (int)Hkv);
            if (ly->bdt) z = z + ly->bdt[b];
            s->bias_cache[((size_t)l * m->bias_rows + b) * s->n_ctx + (size_t)(job->U + t)] = expf(ly->A[b] * k_softplus(z));
        }
    }
}

/* One work item = token t: gate[t] = silu(gate[t]) * up[t]. */
static void swiglu_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    const LayerJob *job = ctx;
    DogeSession *s = job->s;
    const size_t I = (size_t)s->m->cfg.intermediate_size;
    k_swiglu(s->gate + (size_t)begin * I, s->up + (size_t)begin * I, (size_t)(end - begin) * I);
}

/* One work item = (query row i, bias row b): pick the keys the dynamic mask keeps, then attend with the
 * query heads that share that bias row (spec 5.3-5.4): the R heads of kv head b, or (original layout, A per
 * query head) the one head b. Masked keys get exactly zero probability (exp underflows), so they are
 * skipped rather than added as finfo.min. */
static void attention_task(void *ctx, int begin, int end, int thread) {
    const LayerJob *job = ctx;
    DogeSession *s = job->s;
    const DogeModel *m = s->m;
    const DogeConfig *c = &m->cfg;
    const int H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim, R = H / KV;
    const int NB = m->bias_rows, heads_per_row = heads_per_bias_row(m);
    const int W = c->keep_window_size;
    const float scale = (float)pow((double)hd, -0.5);
    float *tmp = s->scratch + s->scratch_words * (size_t)thread;     /* [n_ctx] */
    int *keys = (int *)(tmp + s->n_ctx);                              /* [n_ctx] */
    float *scores = (float *)(keys + s->n_ctx);                       /* [heads_per_row][n_ctx] */
    const int parts = heads_per_row / job->heads_per_item; /* items per (query row, bias row) */
    for (int item = begin; item < end; item++) {
        /* rows in the order 0, S-1, 1, S-2, ...: causal rows grow in cost, so each thread's contiguous share
         * of items gets cheap and dear rows alike */
        const int k = item / (NB * parts), b = item / parts % NB, part = item % parts, i = k % 2 ? job->S - 1 - k / 2 : k / 2;
        const int h0 = b * heads_per_row + part * job->heads_per_item, g = h0 / R; /* first query head, its kv head */
        const int p = job->U + i; /* the query's own slot: every slot before it holds an earlier token */
        /* slots are positions here: the bounded cache is refused with a sliding window */
        const int lo = c->sliding_window && p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0;
        const int allowed = p - lo + 1;                            /* causal (+ sliding window) keys lo..p */
        const float *bias = s->bias_cache + ((size_t)job->layer * NB + b) * s->n_ctx;       /* [T] */
        const float *K = s->k_cache + ((size_t)job->layer * KV + g) * s->n_ctx * hd;        /* [T][hd] */
        const float *V = s->v_cache + ((size_t)job->layer * KV + g) * s->n_ctx * hd;        /* [T][hd] */
        int n;
        if (m->topk_mask && allowed > W) { /* top-W by bias value among the allowed keys, per bias row */
            n = select_top(bias + lo, allowed, W, tmp, keys);
            for (int t = 0; t < n; t++) keys[t] += lo;
        } else {
            n = allowed;
            for (int t = 0; t < n; t++) keys[t] = lo + t;
        }
        k_attend(s->att + ((size_t)i * H + h0) * hd, s->q + ((size_t)i * H + h0) * hd, job->heads_per_item, K, V, bias, keys, n,
                 hd, scale, scores);
    }
}

typedef struct {
    float v;
    int i;
} Scored;

/* Descending by value, ties to the lower index. */
static int cmp_scored_desc(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}

/* One work item = one token n of this call: CDMoE product-key routing (spec 6.2) with HF's raw
 * view(2, N, K) of the [N, 2K] router logits, then the experts added to proj[n]. */
static void moe_task(void *ctx, int begin, int end, int thread) {
    const LayerJob *job = ctx;
    DogeSession *s = job->s;
    const DogeConfig *c = &s->m->cfg;
    const DogeLayer *ly = &s->m->layers[job->layer];
    const int N = job->S, K = c->num_keys, D = c->hidden_size, top_k = c->num_experts_per_tok;
    float *scratch = s->scratch + s->scratch_words * (size_t)thread;
    Scored *sx = (Scored *)scratch;     /* [K] */
    Scored *sy = sx + K;                /* [K] */
    Scored *grid = sy + K;              /* [K*K] */
    float *w = (float *)(grid + K * K); /* [top_k] routing weights */
    float *moe = w + top_k;             /* [D] */
    for (int n = begin; n < end; n++) {
        const float *rx = s->router + (size_t)n * K;           /* row n of the first half of the view */
        const float *ry = s->router + (size_t)(N + n) * K;     /* row n of the second half */
        for (int j = 0; j < K; j++) {
            sx[j] = (Scored){rx[j], j};
            sy[j] = (Scored){ry[j], j};
        }
        qsort(sx, (size_t)K, sizeof *sx, cmp_scored_desc);
        qsort(sy, (size_t)K, sizeof *sy, cmp_scored_desc);
        if (s->m->moe_routing == DOGE_MOE_ROUTING_LEGACY_2025_03) {
            /* The original code of 2025-03-13..04-14 unpacked [topk(Rx), topk(Ry)] as (scores_x, scores_y),
             * (indices_x, indices_y): Rx's sorted values meet Rx's sorted indices, and the grid position itself
             * is the expert id (doge-legacy.md 3.8). */
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++) grid[a * K + b] = (Scored){sx[a].v + (float)sx[b].i, a * K + b};
        } else {
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++) grid[a * K + b] = (Scored){sx[a].v + sy[b].v, sx[a].i * K + sy[b].i};
        }
        qsort(grid, (size_t)K * K, sizeof *grid, cmp_scored_desc);
        for (int e = 0; e < top_k; e++) w[e] = grid[e].v;
        k_softmax(w, top_k);
        if (c->norm_topk_prob) {
            float sum = 0.0f;
            for (int e = 0; e < top_k; e++) sum += w[e];
            for (int e = 0; e < top_k; e++) w[e] /= sum;
        }
        const float *xn = s->xn + (size_t)n * D;
        memset(moe, 0, sizeof(float) * (size_t)D);
        for (int e = 0; e < top_k; e++) {
            const size_t id = (size_t)grid[e].i;
            float a = k_silu(k_dot(ly->down_embed + id * D, xn, D)) * w[e];
            k_axpy(moe, a, ly->up_embed + id * D, D);
        }
        float *out = s->proj + (size_t)n * D;
        for (int d = 0; d < D; d++) out[d] = out[d] + moe[d];
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* session                                                                                               */

/* The longest input row of any projection matrix: D, H*hd or I. */
static int widest_input(const DogeConfig *c) {
    const int D = c->hidden_size, Hq = c->num_attention_heads * c->head_dim, I = c->intermediate_size;
    return D > Hq ? (D > I ? D : I) : (Hq > I ? Hq : I);
}

static void free_workspace(DogeSession *s) {
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->proj, &s->gate, &s->up, &s->router, &s->cos, &s->sin, &s->xd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    free(s->xq);
    s->xq = NULL;
    s->cap = 0;
}

/* Makes room for a call of S tokens. */
static int ensure_workspace(DogeSession *s, int S, DogeError *err) {
    if (S <= s->cap) return DOGE_OK;
    const DogeConfig *c = &s->m->cfg;
    const uint64_t D = c->hidden_size, Hq = (uint64_t)c->num_attention_heads * c->head_dim,
                   Hkv = (uint64_t)c->num_key_value_heads * c->head_dim, I = c->intermediate_size;
    free_workspace(s);
    const uint64_t n = (uint64_t)S, f = sizeof(float);
    s->x = alloc_array(f, n, D, 1);
    s->xn = alloc_array(f, n, D, 1);
    s->q = alloc_array(f, n, Hq, 1);
    s->k = alloc_array(f, n, Hkv, 1);
    s->v = alloc_array(f, n, Hkv, 1);
    s->att = alloc_array(f, n, Hq, 1);
    s->proj = alloc_array(f, n, D, 1);
    s->gate = alloc_array(f, n, I, 1);
    s->up = alloc_array(f, n, I, 1);
    s->router = alloc_array(f, n, 2, c->is_moe ? (uint64_t)c->num_keys : 1);
    s->cos = alloc_array(f, n, (uint64_t)(c->head_dim / 2), 1);
    s->sin = alloc_array(f, n, (uint64_t)(c->head_dim / 2), 1);
    const uint64_t widest = (uint64_t)widest_input(c);
    const int int8 = s->m->weights == DOGE_WEIGHTS_INT8;
    s->xq = int8 ? alloc_array(sizeof(int16_t), n, widest, 1) : NULL;
    s->xd = int8 ? alloc_array(f, n, widest / Q8_GROUP + 1, 1) : NULL;
    if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->proj || !s->gate || !s->up || !s->router ||
        !s->cos || !s->sin || (int8 && (!s->xq || !s->xd))) {
        free_workspace(s);
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory for the activations of a %d-token call", S);
        return err->code;
    }
    s->cap = S;
    return DOGE_OK;
}

/* Tokens in the pieces of an S-token call (S if it runs whole). Every token is computed the same way in a piece
 * as in the whole call (the rotary state is set once, for the whole call), so pieces bound the workspace without
 * changing results. MoE routing depends on the whole call (HF's view(2, N, K) of the router logits) and a
 * sequence classifier pools over it: those calls run whole. */
static int call_piece(const DogeSession *s, int S) {
    const DogeConfig *c = &s->m->cfg;
    return c->is_moe || c->task == DOGE_TASK_SEQ_CLS || S < s->batch ? S : s->batch;
}

DogeSession *doge_session_new(const DogeModel *m, int n_ctx, int n_threads, DogeError *err) {
    const DogeConfig *c = &m->cfg;
    if (n_ctx <= 0) n_ctx = c->max_position_embeddings;
    if (n_threads < 1 || n_threads > 256) {
        doge_set_error(err, DOGE_ERR_INPUT, "threads must be between 1 and 256, got %d", n_threads);
        return NULL;
    }
    DogeSession *s = calloc(1, sizeof *s);
    if (!s) {
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory creating a session");
        return NULL;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    s->batch = DEFAULT_BATCH;
    const uint64_t L = c->num_hidden_layers, KV = c->num_key_value_heads, hd = c->head_dim, T = (uint64_t)n_ctx, f = sizeof(float);
    s->k_cache = alloc_array(f, L * KV, T, hd);
    s->v_cache = alloc_array(f, L * KV, T, hd);
    s->bias_cache = alloc_array(f, L * (uint64_t)m->bias_rows, T, 1);
    s->inv_freq = malloc(sizeof(float) * (size_t)(hd / 2));
    s->inv_freq_orig = malloc(sizeof(float) * (size_t)(hd / 2));
    s->logits = malloc(sizeof(float) * (size_t)(c->task == DOGE_TASK_SEQ_CLS ? c->num_labels : c->vocab_size));
    s->pool = pool_new(n_threads);
    s->thread_cap = s->pool ? pool_threads(s->pool) : 1;
    /* attention needs (2 + heads per bias row) x n_ctx words; MoE routing 2K + K*K (value, index) pairs, top_k
     * weights and D */
    uint64_t words = (2 + (uint64_t)heads_per_bias_row(m)) * T;
    if (c->is_moe) {
        const uint64_t moe = 2 * (2 * (uint64_t)c->num_keys + (uint64_t)c->num_experts) + (uint64_t)c->num_experts_per_tok + c->hidden_size;
        if (moe > words) words = moe;
    }
    if (s->pool) s->scratch = alloc_array(f, words, (uint64_t)pool_threads(s->pool), 1);
    s->scratch_words = (size_t)words; /* fits once the scratch exists */
    if (!s->k_cache || !s->v_cache || !s->bias_cache || !s->inv_freq || !s->inv_freq_orig || !s->logits || !s->pool ||
        !s->scratch) {
        doge_session_free(s);
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory for a %d-token KV cache (%.1f MB)", n_ctx,
                       (double)f * (double)(L * KV) * (double)T * (double)(2 * hd + 1) / 1e6);
        return NULL;
    }
    s->attn_scaling_orig = rope_init(c, 0, s->inv_freq_orig);
    doge_session_reset(s);
    return s;
}

void doge_session_reset(DogeSession *s) {
    const DogeConfig *c = &s->m->cfg;
    s->pos = 0;
    s->used = 0;
    s->steps = s->thread_steps = 0;
    memcpy(s->inv_freq, s->inv_freq_orig, sizeof(float) * (size_t)(c->head_dim / 2));
    s->attn_scaling = s->attn_scaling_orig;
    s->rope_cached_len = c->max_position_embeddings;
}

void doge_session_free(DogeSession *s) {
    if (!s) return;
    free_workspace(s);
    free(s->k_cache);
    free(s->v_cache);
    free(s->bias_cache);
    free(s->inv_freq);
    free(s->inv_freq_orig);
    free(s->scratch);
    free(s->logits);
    pool_free(s->pool);
    free(s);
}

int doge_session_pos(const DogeSession *s) { return s->pos; }
int doge_session_cached(const DogeSession *s) { return s->used; }

int doge_session_set_bounded(DogeSession *s, int on, DogeError *err) {
    const DogeModel *m = s->m;
    const DogeConfig *c = &m->cfg;
    if (s->pos != 0) {
        doge_set_error(err, DOGE_ERR_INPUT, "the bounded cache is switched on an empty session (reset it first)");
        return err->code;
    }
    if (on) {
        const char *why = c->task != DOGE_TASK_CAUSAL_LM ? "it serves causal LMs only"
                          : !m->topk_mask ? "this checkpoint layout attends to every key, so no key can be evicted"
                          : m->bias_rows != c->num_key_value_heads ? "this layout keeps a separate key set per query head"
                          : c->sliding_window ? "the config sets a sliding window"
                          : s->n_ctx <= c->keep_window_size ? "the cache must hold more than keep_window_size tokens"
                          : NULL;
        if (why) {
            doge_set_error(err, DOGE_ERR_INPUT, "the bounded cache cannot be used: %s (context %d, keep_window_size %d)", why,
                           s->n_ctx, c->keep_window_size);
            return err->code;
        }
    }
    s->bounded = on != 0;
    return DOGE_OK;
}

/* Evicts from every (layer, kv head) all keys but the W with the largest dynamic-mask bias (ties: the
 * earlier key stays), keeping slot order = position order. Exact for every later query: its allowed keys
 * are all cached keys plus later ones, and it attends to the top W of them by the same bias order, which
 * never includes a key that is outside the top W of a subset. */
static void compact_cache(DogeSession *s) {
    const DogeConfig *c = &s->m->cfg;
    const int W = c->keep_window_size, KV = c->num_key_value_heads, hd = c->head_dim, U = s->used;
    if (U <= W) return;
    float *tmp = s->scratch;                   /* [n_ctx] */
    int *keep = (int *)(s->scratch + s->n_ctx); /* [n_ctx] */
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int g = 0; g < KV; g++) {
            const size_t row = (size_t)l * KV + g; /* bias row g = kv head g (checked when switched on) */
            float *bias = s->bias_cache + row * s->n_ctx;
            float *K = s->k_cache + row * s->n_ctx * hd, *V = s->v_cache + row * s->n_ctx * hd;
            const int n = select_top(bias, U, W, tmp, keep);
            for (int t = 0; t < n; t++) { /* keep[t] >= t: moving down in order never overwrites a kept key */
                if (keep[t] == t) continue;
                bias[t] = bias[keep[t]];
                memcpy(K + (size_t)t * hd, K + (size_t)keep[t] * hd, sizeof(float) * (size_t)hd);
                memcpy(V + (size_t)t * hd, V + (size_t)keep[t] * hd, sizeof(float) * (size_t)hd);
            }
        }
    s->used = W;
}
void doge_session_set_batch(DogeSession *s, int tokens) { s->batch = tokens < 1 ? 1 : tokens; }
int doge_session_batch(const DogeSession *s) { return s->batch; }

int doge_session_reserve(DogeSession *s, int tokens, DogeError *err) {
    if (tokens <= 0) {
        doge_set_error(err, DOGE_ERR_INPUT, "cannot reserve activations for %d tokens", tokens);
        return err->code;
    }
    return ensure_workspace(s, call_piece(s, tokens), err);
}
int doge_session_threads(const DogeSession *s) { return pool_threads(s->pool); }

int doge_session_set_thread_cap(DogeSession *s, int threads, DogeError *err) {
    if (threads < 1) {
        doge_set_error(err, DOGE_ERR_INPUT, "a thread cap must be at least 1, got %d", threads);
        return err->code;
    }
    const int cap = threads < pool_threads(s->pool) ? threads : pool_threads(s->pool);
    if (cap > s->thread_cap) s->probe.reprobe = 1; /* cores came back: time them again at once */
    s->thread_cap = cap;
    pool_set_active(s->pool, cap);
    return DOGE_OK;
}

double doge_session_mean_threads(const DogeSession *s) { return s->steps ? (double)s->thread_steps / (double)s->steps : 0.0; }
int doge_session_n_ctx(const DogeSession *s) { return s->n_ctx; }
double doge_session_cache_bytes(const DogeSession *s) {
    const DogeConfig *c = &s->m->cfg;
    const double L = c->num_hidden_layers, T = s->n_ctx;
    return sizeof(float) * L * T * (2.0 * c->num_key_value_heads * c->head_dim + s->m->bias_rows);
}

/* ---------------------------------------------------------------------------------------------------- */
/* the forward pass                                                                                      */

/* A generation step on all threads that has already taken longer than one thread would (a core taken away:
 * workers stall the step) runs its remaining layers on the calling thread alone. */
static void finish_late_step_alone(DogeSession *s) {
    if (s->deadline_ms > 0.0 && now_ms() > s->deadline_ms) {
        pool_set_active(s->pool, 1);
        s->deadline_ms = 0.0;
    }
}

/* One piece of a forward call: S tokens through every layer into the cache, then the logits `mode` asks for.
 * The caller has checked the input, sized the workspace and set the rotary state for the whole call. */
static void forward_piece(DogeSession *s, const int32_t *ids, int S, float *out, int mode) {
    const DogeModel *m = s->m;
    const DogeConfig *c = &m->cfg;
    const int D = c->hidden_size, H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim;
    const int I = c->intermediate_size, V = c->vocab_size;
    const size_t Hq = (size_t)H * hd, Hkv = (size_t)KV * hd;
    const int P = s->pos, U = s->used;
    rope_tables(s, S);

    /* embedding: x[t] = embed_tokens[ids[t]] (an int8 row times its group scales) */
    for (int t = 0; t < S; t++) {
        float *xt = s->x + (size_t)t * D;
        if (m->embed.f) memcpy(xt, m->embed.f + (size_t)ids[t] * D, sizeof(float) * D);
        else k_dequantize_q8_row(xt, m->embed.q, m->embed.d, (size_t)ids[t], D);
    }

    /* A few query rows (decoding) would leave threads idle: then each query head is its own work item (the
     * bias row's key selection is repeated per head; the sums are the same). */
    const int heads_per_row = heads_per_bias_row(m);
    const int threads = pool_active(s->pool);
    LayerJob job = {s, 0, U, S, threads > 1 && S * m->bias_rows < 2 * threads ? 1 : heads_per_row, NULL, NULL};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const DogeLayer *ly = &m->layers[l];
        job.layer = l;
        finish_late_step_alone(s);

        /* ---- sequence transformation: x = input_residual * x + attn(rmsnorm(x)) ---- */
        residual_norm(&job, NULL, ly->input_layernorm);
        const MatmulOut qkv[3] = {{s->q, &ly->wq, ly->bq, (int)Hq}, {s->k, &ly->wk, ly->bk, (int)Hkv}, {s->v, &ly->wv, ly->bv, (int)Hkv}};
        matmuls(s, s->xn, S, D, 3, qkv);
        pool_run(s->pool, new_keys_task, &job, S);
        pool_run(s->pool, attention_task, &job, S * m->bias_rows * (heads_per_row / job.heads_per_item));
        matmul_w(s, s->proj, s->att, &ly->wo, ly->bo, S, (int)Hq, D);

        /* ---- state transformation: x = post_attention_residual * x + mlp(rmsnorm(x)) ---- */
        residual_norm(&job, ly->input_residual, ly->post_attention_layernorm);
        const MatmulOut gate_up[2] = {{s->gate, &ly->w_gate, ly->b_gate, I}, {s->up, &ly->w_up, ly->b_up, I}};
        matmuls(s, s->xn, S, D, 2, gate_up);
        pool_run(s->pool, swiglu_task, &job, S);
        matmul_w(s, s->proj, s->gate, &ly->w_down, ly->b_down, S, I, D);
        if (c->is_moe) {
            matmul(s, s->router, s->xn, ly->w_router, ly->b_router, S, D, 2 * c->num_keys);
            pool_run(s->pool, moe_task, &job, S);
        }
        residual_norm(&job, ly->post_attention_residual, NULL);
    }
    s->pos = P + S;
    s->used = U + S;

    /* final norm and head */
    if (mode == DOGE_LOGITS_NONE) return;
    if (c->task == DOGE_TASK_SEQ_CLS) {
        /* pool the right-most non-pad token (HF: argmax(arange * non_pad), 0 when all are pad) */
        int last = S - 1;
        if (c->pad_token_id >= 0) {
            last = 0;
            for (int t = 0; t < S; t++)
                if (ids[t] != c->pad_token_id) last = t;
        }
        k_rmsnorm(s->xn, s->x + (size_t)last * D, m->norm, D, c->rms_norm_eps);
        matmul(s, out, s->xn, m->score, NULL, 1, D, c->num_labels);
        return;
    }
    finish_late_step_alone(s);
    const int first = mode == DOGE_LOGITS_ALL ? 0 : S - 1, rows = S - first;
    for (int t = 0; t < rows; t++)
        k_rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)(first + t) * D, m->norm, D, c->rms_norm_eps);
    matmul_w(s, out, s->xn, &m->lm_head, NULL, rows, D, V);
}

int doge_forward(DogeSession *s, const int32_t *ids, int S, float *out, int mode, DogeError *err) {
    const DogeConfig *c = &s->m->cfg;
    const int V = c->vocab_size;

    if (S <= 0) {
        doge_set_error(err, DOGE_ERR_INPUT, "a forward call needs at least one token");
        return err->code;
    }
    for (int t = 0; t < S; t++)
        if (ids[t] < 0 || ids[t] >= V) {
            doge_set_error(err, DOGE_ERR_INPUT, "token id %d at index %d is outside the vocabulary [0, %d)", ids[t], t, V);
            return err->code;
        }
    if (c->task == DOGE_TASK_SEQ_CLS ? mode == DOGE_LOGITS_NONE || mode == DOGE_LOGITS_ALL : mode < 0 || mode > 2) {
        doge_set_error(err, DOGE_ERR_INPUT, "logits mode %d is not valid for this model", mode);
        return err->code;
    }
    if (S > s->n_ctx - s->used && s->bounded) {
        compact_cache(s);
        const int room = s->n_ctx - s->used;
        /* A call in pieces that fit, evicting between them, gives the same results only where nothing depends on
         * the call as a whole: MoE routing does (HF's view(2, N, K)), and so does the rotary state of dynamic and
         * longrope scaling (set from the call's last position). */
        const int splittable = !c->is_moe && c->rope_type != ROPE_DYNAMIC && c->rope_type != ROPE_LONGROPE;
        if (S > room && splittable) {
            int rc = doge_forward(s, ids, room, out, mode == DOGE_LOGITS_ALL ? mode : DOGE_LOGITS_NONE, err);
            if (rc != DOGE_OK) return rc;
            return doge_forward(s, ids + room, S - room, mode == DOGE_LOGITS_ALL ? out + (size_t)room * V : out, mode, err);
        }
    }
    if (S > s->n_ctx - s->used) {
        doge_set_error(err, DOGE_ERR_INPUT, "context full: %d cached + %d new tokens exceed the session's %d%s", s->used, S,
                       s->n_ctx, s->bounded ? " (the bounded cache takes a longer call of this model only in one piece)" : "");
        return err->code;
    }
    /* HF sets the rotary state once per call, from its last position */
    rope_update(s, (long)s->pos + S);
    const int piece = call_piece(s, S);
    if (ensure_workspace(s, piece, err) != DOGE_OK) return err->code;
    for (int t0 = 0; t0 < S; t0 += piece) {
        const int n = S - t0 < piece ? S - t0 : piece;
        if (mode == DOGE_LOGITS_ALL) forward_piece(s, ids + t0, n, out + (size_t)t0 * V, mode);
        else forward_piece(s, ids + t0, n, out, t0 + n == S ? mode : DOGE_LOGITS_NONE);
    }
    return DOGE_OK;
}

int doge_session_next(DogeSession *s, DogeSampler *sp, const int32_t *ids, int n, int32_t *token, DogeError *err) {
    if (s->m->cfg.task != DOGE_TASK_CAUSAL_LM) {
        doge_set_error(err, DOGE_ERR_INPUT, "generation needs a causal LM, this is a sequence classifier");
        return err->code;
    }
    if (doge_sampler_vocab_size(sp) != s->m->cfg.vocab_size) {
        doge_set_error(err, DOGE_ERR_INPUT, "the sampler was made for a vocabulary of %d tokens, the model has %d",
                       doge_sampler_vocab_size(sp), s->m->cfg.vocab_size);
        return err->code;
    }
    const int all = s->thread_cap, probing = n == 1 && all > 1;
    if (probing) pool_set_active(s->pool, decode_probe_threads(&s->probe, all));
    if (n == 1) {
        s->steps++;
        s->thread_steps += pool_active(s->pool);
    }
    const double t0 = probing ? now_ms() : 0.0;
    if (probing && pool_active(s->pool) > 1 && s->probe.one_ms > 0.0) s->deadline_ms = t0 + DECODE_PROBE_LOST * s->probe.one_ms;
    int rc = doge_forward(s, ids, n, s->logits, DOGE_LOGITS_LAST, err);
    if (probing) {
        s->deadline_ms = 0.0;
        decode_probe_record(&s->probe, now_ms() - t0);
        pool_set_active(s->pool, all); /* prompts and other calls use every thread they may */
    }
    if (rc != DOGE_OK) return rc;
    *token = doge_sampler_sample(sp, s->logits, NULL);
    if (*token < 0) {
        doge_set_error(err, DOGE_ERR_NUMERIC, "the logits at position %d hold NaN or infinity: the model's values (or logits "
                       "divided by a temperature near 0) overflow float32", s->pos - 1);
        return err->code;
    }
    return DOGE_OK;
}
