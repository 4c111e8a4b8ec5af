/* doge-native: the native build's command line, used by the tests and as the native speed ceiling.
 *
 *   doge-native logits --model DIR --ids 5,17,42 [--threads N] [--chunk BYTES] [--decode-split P] [--batch B]
 *                      [--hash] [--moe-routing hf|legacy_2025_03] [--weights f32|int8] [--verbose]
 *   doge-native bench --model DIR [--threads N] [--prompt-tokens P] [--new-tokens N] [--weights f32|int8]
 *
 * bench prints the same JSON object as `doge-wasm bench --json` (greedy decoding of a fixed prompt).
 *
 * Prints {"shape": [S, V], "logits": [...]} (or [num_labels] for a sequence classifier). With
 * --decode-split P the first P ids go in one call and the rest one token per call (KV-cache decoding).
 * --batch B runs calls in pieces of B tokens (doge_session_set_batch; the results must not change).
 * --hash adds "weights_hash", the checksum of the loaded weights. Exit code 2 and one line on stderr on
 * bad input. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "doge.h"

static int usage(void) {
    fprintf(stderr, "usage: doge-native logits --model DIR --ids 1,2,3 [--threads N] [--chunk BYTES] "
                    "[--decode-split P] [--batch B] [--hash] [--moe-routing hf|legacy_2025_03] [--weights f32|int8] [--verbose]\n"
                    "       doge-native bench --model DIR [--threads N] [--prompt-tokens P] [--new-tokens N] [--weights f32|int8]\n");
    return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16;
    *ids = malloc(sizeof **ids * (size_t)cap);
    *n = 0;
    const char *p = s;
    while (*ids && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) return -1;
        if (*n == cap) {
            cap *= 2;
            int32_t *bigger = realloc(*ids, sizeof **ids * (size_t)cap);
            if (!bigger) return -1;
            *ids = bigger;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    return *ids && *n > 0 ? 0 : -1;
}

/* JSON numbers; NaN and infinities, which JSON lacks, as null. */
static void print_floats(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i) putchar(',');
        if (isfinite(v[i])) printf("%.9g", v[i]);
        else fputs("null", stdout);
    }
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static long file_size(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Load, prefill P ids (the prompt of js/cli.js bench), then decode N tokens greedily one at a time. */
static int bench(const char *model_dir, int threads, int P, int N, int weights) {
    DogeError err = {0};
    double t0 = now_ms();
    DogeModel *m = doge_load_dir(model_dir, 1 << 20, weights, &err);
    double load_ms = now_ms() - t0;
    DogeSession *s = m ? doge_session_new(m, P + N, threads, &err) : NULL;
    const int V = m ? doge_model_vocab_size(m) : 0;
    float *logits = malloc(sizeof(float) * (size_t)(V ? V : 1));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)P);
    DogeSamplingParams greedy = {0};
    greedy.top_p = 1.0f;
    greedy.repetition_penalty = 1.0f;
    DogeSampler *sp = m ? doge_sampler_new(V, &greedy, &err) : NULL;
    int rc = m && s && sp && logits && ids ? DOGE_OK : err.code ? err.code : DOGE_ERR_NOMEM;
    int32_t first = -1;
    double prefill_ms = 0, ttft_ms = 0, decode_ms = 0;
    if (rc == DOGE_OK) {
        for (int i = 0; i < P; i++) ids[i] = (1000 + 37 * i) % V;
        double t1 = now_ms();
        rc = doge_session_next(s, sp, ids, P, &first, &err);
        prefill_ms = ttft_ms = now_ms() - t1;
        int32_t tok = first;
        double t2 = now_ms();
        for (int k = 1; rc == DOGE_OK && k < N; k++) rc = doge_session_next(s, sp, &tok, 1, &tok, &err);
        decode_ms = now_ms() - t2;
    }
    if (rc != DOGE_OK) {
        fprintf(stderr, "doge-native: %s: %s\n", doge_status_name(rc), err.msg[0] ? err.msg : "out of memory");
    } else {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double mb = (double)(file_size(model_dir, "model.safetensors")) / 1e6;
        printf("{\"model\": \"%s\", \"prefill_tok_s\": %.1f, \"decode_tok_s\": %.1f, \"ttft_ms\": %.2f, \"load_ms\": %.1f, "
               "\"load_mb_s\": %.1f, \"peak_rss_mb\": %.1f, \"threads\": %d, \"weights\": \"%s\", \"build\": \"native\", "
               "\"prompt_tokens\": %d, \"new_tokens\": %d, \"first_token\": %d}\n",
               model_dir, P / (prefill_ms / 1e3), (N - 1) / (decode_ms / 1e3), ttft_ms, load_ms, mb / (load_ms / 1e3),
               ru.ru_maxrss / 1024.0, doge_session_threads(s), weights == DOGE_WEIGHTS_INT8 ? "int8" : "f32", P, N, first);
    }
    doge_sampler_free(sp);
    free(ids);
    free(logits);
    doge_session_free(s);
    doge_model_free(m);
    return rc == DOGE_OK ? 0 : 2;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "logits") != 0 && strcmp(argv[1], "bench") != 0)) return usage();
    const int is_bench = strcmp(argv[1], "bench") == 0;
    const char *model_dir = NULL, *ids_text = NULL, *routing = "hf";
    long threads = 1, chunk = 1 << 16, split = -1, prompt_tokens = 256, new_tokens = 128, batch = 0;
    int weights = DOGE_WEIGHTS_F32;
    int want_hash = 0, verbose = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--hash") == 0) { want_hash = 1; continue; }
        if (strcmp(a, "--verbose") == 0) { verbose = 1; continue; }
        if (!v) return usage();
        if (strcmp(a, "--model") == 0) model_dir = v;
        else if (strcmp(a, "--ids") == 0) ids_text = v;
        else if (strcmp(a, "--moe-routing") == 0) routing = v;
        else if (strcmp(a, "--threads") == 0) { if (parse_long(v, 1, 256, &threads)) return usage(); }
        else if (strcmp(a, "--chunk") == 0) { if (parse_long(v, 1, 1L << 30, &chunk)) return usage(); }
        else if (strcmp(a, "--decode-split") == 0) { if (parse_long(v, 1, INT_MAX, &split)) return usage(); }
        else if (strcmp(a, "--batch") == 0) { if (parse_long(v, 1, INT_MAX, &batch)) return usage(); }
        else if (strcmp(a, "--prompt-tokens") == 0) { if (parse_long(v, 1, 1 << 20, &prompt_tokens)) return usage(); }
        else if (strcmp(a, "--new-tokens") == 0) { if (parse_long(v, 2, 1 << 24, &new_tokens)) return usage(); }
        else if (strcmp(a, "--weights") == 0) {
            if (strcmp(v, "f32") == 0) weights = DOGE_WEIGHTS_F32;
            else if (strcmp(v, "int8") == 0) weights = DOGE_WEIGHTS_INT8;
            else return usage();
        }
        else return usage();
        i++;
    }
    if (is_bench && model_dir) return bench(model_dir, (int)threads, (int)prompt_tokens, (int)new_tokens, weights);
    if (!model_dir || !ids_text) return usage();
    int routing_mode = strcmp(routing, "hf") == 0 ? DOGE_MOE_ROUTING_HF
                       : strcmp(routing, "legacy_2025_03") == 0 ? DOGE_MOE_ROUTING_LEGACY_2025_03 : -1;
    if (routing_mode < 0) return usage();
    int32_t *ids;
    int n;
    if (parse_ids(ids_text, &ids, &n)) {
        free(ids);
        fprintf(stderr, "doge-native: --ids must be a comma-separated list of integers\n");
        return 2;
    }
    DogeError err = {0};
    DogeModel *m = doge_load_dir(model_dir, (size_t)chunk, weights, &err);
    if (!m) {
        free(ids);
        fprintf(stderr, "doge-native: %s: %s\n", doge_status_name(err.code), err.msg);
        return 2;
    }
    doge_model_set_moe_routing(m, routing_mode, &err);
    if (verbose) fprintf(stderr, "doge-native: %s layout, MoE routing %s\n", doge_model_layout(m), routing);
    const int ctx = n > doge_model_max_position_embeddings(m) ? n : 0;
    DogeSession *s = doge_session_new(m, ctx, (int)threads, &err);
    if (s && batch) doge_session_set_batch(s, (int)batch);
    const int cls = doge_model_task(m) == DOGE_TASK_SEQ_CLS, V = doge_model_vocab_size(m);
    const size_t out_n = cls ? (size_t)doge_model_num_labels(m) : (size_t)n * V;
    float *out = malloc(sizeof(float) * out_n);
    int rc = s && out ? DOGE_OK : err.code ? err.code : DOGE_ERR_NOMEM;
    if (rc == DOGE_OK) {
        if (cls || split < 0 || split >= n) {
            rc = doge_forward(s, ids, n, out, cls ? DOGE_LOGITS_LAST : DOGE_LOGITS_ALL, &err);
        } else {
            rc = doge_forward(s, ids, (int)split, out, DOGE_LOGITS_ALL, &err);
            for (int t = (int)split; rc == DOGE_OK && t < n; t++)
                rc = doge_forward(s, ids + t, 1, out + (size_t)t * V, DOGE_LOGITS_LAST, &err);
        }
    }
    if (rc != DOGE_OK) {
        fprintf(stderr, "doge-native: %s: %s\n", doge_status_name(rc), err.msg[0] ? err.msg : "out of memory");
    } else {
        if (cls) printf("{\"shape\": [%zu], \"logits\": [", out_n);
        else printf("{\"shape\": [%d, %d], \"logits\": [", n, V);
        print_floats(out, out_n);
        printf("]");
        if (want_hash) printf(", \"weights_hash\": \"%016llx\"", (unsigned long long)doge_model_weights_hash(m));
        printf("}\n");
    }
    free(out);
    free(ids);
    doge_session_free(s);
    doge_model_free(m);
    return rc == DOGE_OK ? 0 : 2;
}
