/* doge-wasm: public C API of the Doge inference core.
 *
 * Life cycle (no hidden global state; every object is an explicit struct):
 *
 *   DogeLoader *ld = doge_loader_new(config_json, len, &err);   // config.json text
 *   doge_loader_begin_file(ld, "model.safetensors", &err);       // once per safetensors file
 *   doge_loader_feed(ld, bytes, n, &err);                        // any chunk size, any number of calls
 *   doge_loader_end_file(ld, &err);
 *   DogeModel *m = doge_loader_finish(ld, &err);                  // checks every tensor arrived
 *   doge_loader_free(ld);
 *   DogeSession *s = doge_session_new(m, n_ctx, n_threads, &err); // KV cache + activations + thread pool
 *   doge_forward(s, ids, n, logits, DOGE_LOGITS_ALL, &err);      // prefill or decode, appends to the cache
 *   doge_session_free(s); doge_model_free(m);
 *
 * Every function that can fail returns a DogeStatus and fills a DogeError with a message that names the
 * file and what is wrong. Nothing aborts on user input.
 */
#ifndef DOGE_H
#define DOGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DOGE_OK = 0,
    DOGE_ERR_CONFIG = 1,      /* config.json missing fields, bad values, unsupported options */
    DOGE_ERR_FORMAT = 2,      /* safetensors container is malformed (header, offsets, truncation) */
    DOGE_ERR_TENSOR = 3,      /* a tensor is missing, unexpected, of the wrong shape or dtype */
    DOGE_ERR_UNSUPPORTED = 4, /* a recognised but unsupported checkpoint (e.g. the old remote-code layout) */
    DOGE_ERR_NOMEM = 5,       /* an allocation failed */
    DOGE_ERR_INPUT = 6,       /* bad arguments at run time (token ids, context overflow, call order) */
    DOGE_ERR_NUMERIC = 7,     /* the logits to sample from hold NaN (or +inf when sampling): values overflow fp32 */
} DogeStatus;

typedef struct {
    int code;       /* a DogeStatus */
    char msg[512];  /* one line, names the file and the problem */
} DogeError;

typedef struct DogeModel DogeModel;
typedef struct DogeLoader DogeLoader;
typedef struct DogeSession DogeSession;

/* ---- loading ------------------------------------------------------------------------------------------ */
DogeLoader *doge_loader_new(const char *config_json, size_t len, DogeError *err);
/* Weight format in memory: fp32 (exact), or int8 with one scale per 32 values (llama.cpp's Q8_0 scheme) for
 * the embedding, the head and every projection matrix, quantized while the bytes stream in. */
typedef enum { DOGE_WEIGHTS_F32 = 0, DOGE_WEIGHTS_INT8 = 1 } DogeWeights;
/* Before the first file. */
int doge_loader_set_weights(DogeLoader *ld, int weights, DogeError *err);
int doge_loader_begin_file(DogeLoader *ld, const char *file_name, DogeError *err);
int doge_loader_feed(DogeLoader *ld, const uint8_t *bytes, size_t n, DogeError *err);
int doge_loader_end_file(DogeLoader *ld, DogeError *err);
/* Forgets what arrived of the current file so that it can be fed again from byte 0 (a download that has to
 * start over, e.g. from a server without HTTP Range support). */
int doge_loader_restart_file(DogeLoader *ld, DogeError *err);
/* Returns the model (ownership moves to the caller) once every required tensor has arrived. */
DogeModel *doge_loader_finish(DogeLoader *ld, DogeError *err);
void doge_loader_free(DogeLoader *ld);
/* Bytes of weight memory the config implies (in the chosen format), known before any weight arrives (for the
 * transformers layout until the first header is read; other layouts differ by a few kilobytes). */
uint64_t doge_loader_weight_bytes(const DogeLoader *ld);

void doge_model_free(DogeModel *m);

/* Native convenience: loads a HF model directory (config.json + model.safetensors or a sharded
 * model.safetensors.index.json) by feeding the files in chunks of chunk_bytes through the loader above. */
DogeModel *doge_load_dir(const char *dir, size_t chunk_bytes, int weights, DogeError *err);

/* ---- model facts ------------------------------------------------------------------------------------- */
typedef enum { DOGE_TASK_CAUSAL_LM = 0, DOGE_TASK_SEQ_CLS = 1 } DogeTask;
int doge_model_task(const DogeModel *m);
int doge_model_vocab_size(const DogeModel *m);
int doge_model_num_labels(const DogeModel *m);          /* sequence classification only, else 0 */
int doge_model_max_position_embeddings(const DogeModel *m);
int doge_model_tied_head(const DogeModel *m);           /* 1 when lm_head reuses the embedding */
int doge_model_weights(const DogeModel *m);             /* a DogeWeights */
double doge_model_weight_bytes(const DogeModel *m);     /* bytes of weight memory held */
/* The checkpoint layout: "transformers" (HF 4.57), "original" (remote-code V1) or "mid" (small-doge converter). */
const char *doge_model_layout(const DogeModel *m);
/* CDMoE routing: DOGE_MOE_ROUTING_HF (transformers 4.57 and small-doge from 2025-04-15) or the early-2025
 * original code's (2025-03-13..04-14), which some original MoE checkpoints were trained with. */
typedef enum { DOGE_MOE_ROUTING_HF = 0, DOGE_MOE_ROUTING_LEGACY_2025_03 = 1 } DogeMoeRouting;
int doge_model_set_moe_routing(DogeModel *m, int routing, DogeError *err);
/* Checksum of all weights (FNV-1a over the float bits), to prove chunk-size invariance of loading. */
uint64_t doge_model_weights_hash(const DogeModel *m);

/* ---- running ----------------------------------------------------------------------------------------- */
/* n_ctx: the most tokens the KV cache holds (0 = max_position_embeddings); n_threads >= 1. */
DogeSession *doge_session_new(const DogeModel *m, int n_ctx, int n_threads, DogeError *err);
void doge_session_free(DogeSession *s);
void doge_session_reset(DogeSession *s);                /* empties the KV cache and the dynamic-RoPE state */
int doge_session_pos(const DogeSession *s);             /* tokens seen since the last reset */
int doge_session_cached(const DogeSession *s);          /* keys held in the KV cache (= pos unless bounded) */
/* Bounded cache (causal LMs in the transformers layout, empty session, n_ctx > keep_window_size): when the
 * cache is full it keeps only the keep_window_size keys with the largest dynamic-mask bias per layer and kv
 * head, which are the only ones any later token can attend to. Results stay exactly those of an unbounded
 * cache, memory stays at n_ctx tokens, and generation has no length limit; a call longer than
 * n_ctx - keep_window_size runs in pieces, except for MoE models and dynamic or longrope scaling (their results
 * depend on the call as a whole): such a call that does not fit is refused. */
int doge_session_set_bounded(DogeSession *s, int on, DogeError *err);
/* A call with more than `tokens` tokens runs through the model in pieces of that many (default 256, like
 * llama.cpp's micro-batch): the activations' memory is sized by the piece, not the prompt. Results do not
 * depend on it. MoE models and sequence classifiers run every call whole (their results depend on it). */
void doge_session_set_batch(DogeSession *s, int tokens);
int doge_session_batch(const DogeSession *s);
/* Allocates now the activations of a call of `tokens` tokens (one piece of it where calls run in pieces), which
 * the first call that needs them would allocate otherwise: the memory is taken when the model loads, and the
 * first long prompt does not wait for fresh pages. */
int doge_session_reserve(DogeSession *s, int tokens, DogeError *err);
int doge_session_threads(const DogeSession *s);
/* Lets calls use at most `threads` of the session's threads from now on (more than it has: all of them), for a
 * caller that knows other processes keep the remaining cores busy (e.g. from the OS's CPU accounting): a step on
 * a core another process holds loses to one thread. Generation steps time 1 thread against all the cap allows;
 * raising the cap times them again at once. */
int doge_session_set_thread_cap(DogeSession *s, int threads, DogeError *err);
/* The mean number of threads one-token generation steps started on since the last reset (0 before any). */
double doge_session_mean_threads(const DogeSession *s);
int doge_session_n_ctx(const DogeSession *s);
double doge_session_cache_bytes(const DogeSession *s); /* bytes of the KV and bias caches */

typedef enum {
    DOGE_LOGITS_NONE = 0,  /* only fill the cache */
    DOGE_LOGITS_LAST = 1,  /* out: [V] (or [num_labels] for sequence classification) */
    DOGE_LOGITS_ALL = 2,   /* out: [n, V] row-major (causal LM only) */
} DogeLogitsMode;

/* Runs one forward call over n new tokens, appending them to the session's KV cache. For a sequence-
 * classification model the pooled logits [num_labels] are written (mode must not be NONE), pooling the
 * right-most non-pad token of this call. */
int doge_forward(DogeSession *s, const int32_t *ids, int n, float *out, int mode, DogeError *err);

/* ---- sampling (next to the logits: no vocabulary-sized copy leaves wasm per token) -------------------- */
/* HF generate() semantics: the repetition penalty first, then (when sampling) temperature, top-k, top-p and
 * min-p, each removing tokens by setting them to -inf; temperature 0 means greedy (argmax). */
typedef struct {
    float temperature;        /* 0 = greedy; else > 0 */
    int32_t top_k;            /* 0 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repetition_penalty; /* > 0; 1 = off */
    uint64_t seed;
} DogeSamplingParams;

typedef struct DogeSampler DogeSampler;
DogeSampler *doge_sampler_new(int vocab_size, const DogeSamplingParams *params, DogeError *err);
void doge_sampler_free(DogeSampler *sp);
/* Records a context token (prompt or generated) for the repetition penalty. */
int doge_sampler_accept(DogeSampler *sp, int32_t token, DogeError *err);
/* Filters logits[V] in place and returns the chosen token; probs (optional, [V]) receives the final
 * distribution it sampled from (one-hot for greedy). Returns -1 when there is no distribution to draw from:
 * a NaN logit, or when sampling +inf (PyTorch's multinomial refuses both). */
int32_t doge_sampler_sample(DogeSampler *sp, float *logits, float *probs);
/* One generation step: runs ids[n] through the session and samples the next token from the last position.
 * The sampler is not told about the returned token; the caller accepts it if it keeps it. */
int doge_session_next(DogeSession *s, DogeSampler *sp, const int32_t *ids, int n, int32_t *token, DogeError *err);

/* Runs a tiny model made in memory (in the given DogeWeights format) through the loader, a few prompts and
 * decoding steps, then frees it. In wasm, calling this before streaming the real weights starts the engine's
 * optimizing compiles of the forward pass at once, so that they finish while the weights arrive and the first
 * prompt runs on optimized code (see warmup.c). */
int doge_warm_up(int weights, DogeError *err);

const char *doge_status_name(int code);

#ifdef __cplusplus
}
#endif
#endif
