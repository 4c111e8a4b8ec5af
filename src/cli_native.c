/* doge-native: the native build's command line, used by the tests and as the native speed ceiling.
 *
 *   doge-native logits --model DIR --ids 5,17,42 [--threads N] [--chunk BYTES] [--decode-split P] [--hash]
 *                      [--moe-routing hf|legacy_2025_03] [--verbose]
 *
 * Prints {"shape": [S, V], "logits": [...]} (or [num_labels] for a sequence classifier). With
 * --decode-split P the first P ids go in one call and the rest one token per call (KV-cache decoding).
 * --hash adds "weights_hash", the checksum of the loaded weights. Exit code 2 and one line on stderr on
 * bad input. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doge.h"

static int usage(void) {
    fprintf(stderr, "usage: doge-native logits --model DIR --ids 1,2,3 [--threads N] [--chunk BYTES] "
                    "[--decode-split P] [--hash] [--moe-routing hf|legacy_2025_03] [--verbose]\n");
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

static void print_floats(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? ",%.9g" : "%.9g", v[i]);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "logits") != 0) return usage();
    const char *model_dir = NULL, *ids_text = NULL, *routing = "hf";
    long threads = 1, chunk = 1 << 16, split = -1;
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
        else return usage();
        i++;
    }
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
    DogeModel *m = doge_load_dir(model_dir, (size_t)chunk, &err);
    if (!m) {
        free(ids);
        fprintf(stderr, "doge-native: %s: %s\n", doge_status_name(err.code), err.msg);
        return 2;
    }
    doge_model_set_moe_routing(m, routing_mode, &err);
    if (verbose) fprintf(stderr, "doge-native: %s layout, MoE routing %s\n", doge_model_layout(m), routing);
    const int ctx = n > doge_model_max_position_embeddings(m) ? n : 0;
    DogeSession *s = doge_session_new(m, ctx, (int)threads, &err);
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
