/* Internal: the parsed config and the weights of a Doge model. Shapes follow HF: Linear weights are
 * [out, in] row-major, y = x W^T (+ b). Weights are fp32 (the compute type) after loading; with int8 weights
 * the large matrices (a Mat) are int8 with per-group scales instead. */
#ifndef DOGE_MODEL_H
#define DOGE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "doge.h"
#include "kernels.h"

typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_YARN, ROPE_LONGROPE, ROPE_LLAMA3 } RopeType;

typedef struct {
    /* sizes */
    int vocab_size;              /* V */
    int hidden_size;             /* D */
    int intermediate_size;       /* I */
    int num_hidden_layers;       /* L */
    int num_attention_heads;     /* H */
    int num_key_value_heads;     /* KV */
    int head_dim;                /* hd */
    int max_position_embeddings;
    int keep_window_size;        /* W: top-k width of the dynamic mask */
    int sliding_window;          /* 0 = none */
    float rms_norm_eps;
    int attention_bias, mlp_bias;
    int hidden_bias;             /* original remote-code layout: a bias on every Linear */
    int tie_word_embeddings;
    /* CDMoE */
    int is_moe;
    int num_experts;             /* E = num_keys^2 */
    int num_keys;                /* K */
    int num_experts_per_tok;     /* top_k */
    int norm_topk_prob;
    /* task */
    DogeTask task;
    int num_labels;
    int pad_token_id;            /* -1 = none */
    /* rotary embedding (HF rope_scaling) */
    double rope_theta;
    RopeType rope_type;
    double rope_factor;
    int rope_original_max;       /* rope_scaling.original_max_position_embeddings, 0 = absent */
    int config_original_max;     /* top-level original_max_position_embeddings (longrope), 0 = absent */
    double yarn_attention_factor;/* < 0 = derive */
    double yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    int yarn_truncate;
    double longrope_attention_factor; /* < 0 = derive */
    float *longrope_long, *longrope_short; /* [hd/2] each, owned */
    double llama3_low_freq_factor, llama3_high_freq_factor;
} DogeConfig;

/* malloc of a x b x c elements of `size` bytes; NULL when that does not fit this build's address space, so that
 * an absurd size fails as out of memory instead of wrapping around to a small block (size_t is 32 bits in wasm). */
static inline void *alloc_array(uint64_t size, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t n;
    if (__builtin_mul_overflow(size, a, &n) || __builtin_mul_overflow(n, b, &n) || __builtin_mul_overflow(n, c, &n) ||
        n > (uint64_t)PTRDIFF_MAX)
        return NULL;
    return malloc((size_t)n);
}

/* The vocabulary size a sampler was made for. */
int doge_sampler_vocab_size(const DogeSampler *sp);

/* Parses config.json text; fills defaults the way HF's DogeConfig does. */
int doge_config_parse(DogeConfig *cfg, const char *json, size_t len, DogeError *err);
void doge_config_free(DogeConfig *cfg);

/* A matrix [rows, cols] that is either fp32 (f) or, with int8 weights, q and d (f is then NULL). */
typedef struct {
    float *f;   /* [rows, cols] */
    int8_t *q;  /* [rows padded to Q8_BAND, cols] in the band layout of kernels.h (k_q8_index) */
    float *d;   /* [rows padded to Q8_BAND, cols / Q8_GROUP] one scale per group of a row (k_q8_scale_index) */
} Mat;

typedef struct {
    float *input_layernorm;          /* [D] */
    float *input_residual;           /* [D] */
    Mat wq; float *bq;               /* [H*hd, D], [H*hd] */
    Mat wk; float *bk;               /* [KV*hd, D], [KV*hd] */
    Mat wv; float *bv;               /* [KV*hd, D], [KV*hd] */
    float *A;                        /* [bias_rows] (KV, or H in the OLD/MID layouts) */
    float *wdt, *bdt;                /* [bias_rows, KV*hd], [bias_rows] */
    Mat wo; float *bo;               /* [D, H*hd], [D] */
    float *q_norm, *k_norm;          /* [hd] (NULL without q/k norm) */
    float *post_attention_layernorm; /* [D] */
    float *post_attention_residual;  /* [D] */
    Mat w_gate; float *b_gate;       /* [I, D], [I] */
    Mat w_up; float *b_up;           /* [I, D], [I] */
    Mat w_down; float *b_down;       /* [D, I], [D] */
    float *w_router, *b_router;      /* [2K, D], [2K] (MoE; the bias only in some original checkpoints) */
    float *down_embed, *up_embed;    /* [E, D]   (MoE) */
} DogeLayer;

/* The checkpoint layouts the loader recognises from tensor names and shapes (see doge-legacy.md). */
typedef enum {
    LAYOUT_HF = 0,   /* transformers 4.57: q/k norm, A and dt_proj per kv head, top-k dynamic mask */
    LAYOUT_OLD = 1,  /* original remote code: other names, no q/k norm, A per query head, no top-k */
    LAYOUT_MID = 2,  /* small-doge's converter output: HF names, no q/k norm, A per query head, top-k */
} DogeLayout;

struct DogeModel {
    DogeConfig cfg;
    DogeLayout layout;
    int qk_norm;          /* 1 when q_norm/k_norm exist (then in every layer) */
    int bias_rows;        /* rows of A and dt_proj: H (per query head) or KV */
    int topk_mask;        /* 1: keep only the top keep_window_size keys by bias (HF, MID); 0: OLD */
    int moe_routing;      /* a DogeMoeRouting */
    int weights;          /* a DogeWeights */
    float *arena;         /* one block that holds every fp32 weight below (except lm_head) */
    size_t arena_floats;
    uint8_t *qarena;      /* one block that holds every int8 Mat (int8 weights) */
    size_t qarena_bytes;
    Mat embed;            /* [V, D] */
    float *norm;          /* [D] */
    Mat lm_head;          /* [V, D]; the embedding when tied */
    void *lm_head_block;  /* separate block when the checkpoint has lm_head.weight */
    size_t lm_head_bytes;
    float *score;         /* [num_labels, D] (sequence classification) */
    DogeLayer *layers;    /* [L] */
};

void doge_set_error(DogeError *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
