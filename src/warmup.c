/* Warming up the wasm engine. V8 first runs new code from its baseline compiler and compiles a function with
 * its optimizing compiler only after that function has done a certain amount of work, in the background; code
 * compiled meanwhile is taken up by calls that start later. Run nowhere before the first prompt, the forward
 * pass's hot functions spend that prompt partly on baseline code (2-3x slower). doge_warm_up runs a tiny model,
 * made in memory, through the same loader, forward pass and sampler as any model: called before the real
 * weights stream in, the optimizing compiles run while they do. */
#include "doge.h"
#include "model.h" /* doge_set_error */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tiny model: transformers layout, q/k norms, 2 layers, a keep window shorter than the prompt so that the
 * dynamic mask's top-k selection runs too. */
enum { WARM_V = 256, WARM_D = 128, WARM_I = 256, WARM_L = 2, WARM_H = 2, WARM_KV = 1, WARM_HD = WARM_D / WARM_H };
enum { WARM_PROMPT = 32, WARM_PROMPTS = 3, WARM_STEPS = 24, WARM_CTX = WARM_PROMPT + WARM_STEPS, WARM_WINDOW = 24, WARM_MAX_POS = 64 };

/* Its config.json; returns the text's length. */
static int warm_config(char *out, size_t size) {
    return snprintf(out, size,
                    "{\"architectures\": [\"DogeForCausalLM\"], \"model_type\": \"doge\", \"vocab_size\": %d, \"hidden_size\": %d, "
                    "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
                    "\"max_position_embeddings\": %d, \"keep_window_size\": %d, \"tie_word_embeddings\": true}",
                    WARM_V, WARM_D, WARM_I, WARM_L, WARM_H, WARM_KV, WARM_MAX_POS, WARM_WINDOW);
}

typedef struct {
    char name[64];
    int rows, cols; /* cols 0: a vector of rows values */
} WarmTensor;

/* The tensors of the tiny model (at most 2 + 15 per layer). */
static int warm_tensors(WarmTensor *t) {
    int n = 0;
#define T(r, c, ...) (snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__), t[n].rows = (r), t[n].cols = (c), n++)
    T(WARM_V, WARM_D, "model.embed_tokens.weight");
    T(WARM_D, 0, "model.norm.weight");
    for (int l = 0; l < WARM_L; l++) {
        T(WARM_D, 0, "model.layers.%d.input_layernorm.weight", l);
        T(WARM_D, 0, "model.layers.%d.input_residual", l);
        T(WARM_H * WARM_HD, WARM_D, "model.layers.%d.self_attn.q_proj.weight", l);
        T(WARM_KV * WARM_HD, WARM_D, "model.layers.%d.self_attn.k_proj.weight", l);
        T(WARM_KV * WARM_HD, WARM_D, "model.layers.%d.self_attn.v_proj.weight", l);
        T(WARM_KV, 0, "model.layers.%d.self_attn.A", l);
        T(WARM_KV, WARM_KV * WARM_HD, "model.layers.%d.self_attn.dt_proj.weight", l);
        T(WARM_D, WARM_H * WARM_HD, "model.layers.%d.self_attn.o_proj.weight", l);
        T(WARM_HD, 0, "model.layers.%d.self_attn.q_norm.weight", l);
        T(WARM_HD, 0, "model.layers.%d.self_attn.k_norm.weight", l);
        T(WARM_D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        T(WARM_D, 0, "model.layers.%d.post_attention_residual", l);
        T(WARM_I, WARM_D, "model.layers.%d.mlp.gate_proj.weight", l);
        T(WARM_I, WARM_D, "model.layers.%d.mlp.up_proj.weight", l);
        T(WARM_D, WARM_I, "model.layers.%d.mlp.down_proj.weight", l);
    }
#undef T
    return n;
}

static size_t warm_count(const WarmTensor *t) { return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1); }

/* The safetensors file of the tiny model: weights of a fixed pseudo-random pattern around 0, norms and
 * residuals near 1. Returns its size, 0 when out of memory. */
static size_t warm_safetensors(uint8_t **out) {
    WarmTensor t[2 + 15 * WARM_L];
    const int n = warm_tensors(t);
    char header[8192];
    size_t len = 0, offset = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < n; i++) {
        const size_t bytes = 4 * warm_count(&t[i]);
        char shape[32];
        if (t[i].cols) snprintf(shape, sizeof shape, "%d,%d", t[i].rows, t[i].cols);
        else snprintf(shape, sizeof shape, "%d", t[i].rows);
        len += (size_t)snprintf(header + len, sizeof header - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", t[i].name, shape, offset, offset + bytes);
        offset += bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    uint8_t *file = malloc(8 + len + offset);
    if (!file) return 0;
    for (int b = 0; b < 8; b++) file[b] = (uint8_t)((uint64_t)len >> (8 * b));
    memcpy(file + 8, header, len);
    float *v = (float *)(file + 8 + len); /* unaligned in general: written through memcpy */
    uint32_t state = 12345;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < warm_count(&t[i]); j++) {
            state = state * 1664525u + 1013904223u;
            const float noise = ((float)(state >> 8) / 16777216.0f - 0.5f) * 0.2f;
            const float x = t[i].cols ? noise : 1.0f + noise;
            memcpy(v++, &x, sizeof x);
        }
    *out = file;
    return 8 + len + offset;
}

int doge_warm_up(int weights, DogeError *err) {
    uint8_t *file = NULL;
    const size_t size = warm_safetensors(&file);
    if (!size) {
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory warming up the engine");
        return err->code;
    }
    DogeModel *m = NULL;
    DogeSession *s = NULL;
    DogeSampler *sp = NULL;
    char config[512];
    DogeLoader *ld = doge_loader_new(config, (size_t)warm_config(config, sizeof config), err);
    int rc = ld ? DOGE_OK : err->code;
    if (rc == DOGE_OK) rc = doge_loader_set_weights(ld, weights, err);
    if (rc == DOGE_OK) rc = doge_loader_begin_file(ld, "model.safetensors", err);
    if (rc == DOGE_OK) rc = doge_loader_feed(ld, file, size, err);
    if (rc == DOGE_OK) rc = doge_loader_end_file(ld, err);
    if (rc == DOGE_OK) rc = (m = doge_loader_finish(ld, err)) ? DOGE_OK : err->code;
    if (rc == DOGE_OK) rc = (s = doge_session_new(m, WARM_CTX, 1, err)) ? DOGE_OK : err->code;
    const DogeSamplingParams greedy = {0.0f, 0, 1.0f, 0.0f, 1.0f, 0};
    if (rc == DOGE_OK) rc = (sp = doge_sampler_new(WARM_V, &greedy, err)) ? DOGE_OK : err->code;
    int32_t ids[WARM_PROMPT], token = 0;
    for (int i = 0; i < WARM_PROMPT; i++) ids[i] = (i * 37 + 5) % WARM_V;
    for (int p = 0; p < WARM_PROMPTS && rc == DOGE_OK; p++) {
        doge_session_reset(s);
        rc = doge_session_next(s, sp, ids, WARM_PROMPT, &token, err);
    }
    for (int i = 0; i < WARM_STEPS && rc == DOGE_OK; i++) rc = doge_session_next(s, sp, &token, 1, &token, err);
    doge_sampler_free(sp);
    doge_session_free(s);
    doge_model_free(m);
    doge_loader_free(ld);
    free(file);
    return rc;
}
