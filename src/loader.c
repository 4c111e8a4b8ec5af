/* Streaming safetensors loader: a push parser fed with chunks of any size.
 *
 * config.json sizes the weights before any byte arrives; the first safetensors header tells the checkpoint
 * layout (transformers, original remote-code, or mid), and the weight arena is allocated for it right
 * there, before any tensor data. Each safetensors file goes through three states: the 8-byte header
 * length, the JSON header (checked against the tensors the config and layout imply), then the data section, whose bytes are converted (F32/BF16/F16 -> fp32) straight into
 * each tensor's final place. Only a partial element (at most 3 bytes) is carried between chunks, so the
 * result does not depend on how the bytes were chunked. With int8 weights a matrix row is gathered in fp32 and
 * quantized as soon as its last element arrives, so the fp32 matrix never exists in memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "model.h"

#define MAX_HEADER_BYTES (100u << 20) /* the limit the safetensors reference implementation uses */
#define MAX_NAME 128
#define ALIGN_FLOATS 16               /* every tensor starts on a 64-byte boundary for SIMD loads */

typedef enum { DT_F32, DT_BF16, DT_F16 } DType;

typedef struct {
    char name[MAX_NAME];
    int ndim;
    int64_t shape[2];
    float **dst;       /* where the model keeps the pointer to this tensor */
    Mat *mat;          /* the matrix, when the tensor may be stored as int8 */
    int required;
    int loaded;        /* 1 once announced in a header (its bytes are then on their way) */
    char file[MAX_NAME];
} Slot;

/* A tensor of the current file, in data-offset order. */
typedef struct {
    Slot *slot;
    DType dtype;
    uint64_t begin, end; /* byte range in the data section */
} Entry;

typedef enum { ST_IDLE, ST_HEADER_LEN, ST_HEADER, ST_DATA } State;

struct DogeLoader {
    DogeModel *model;
    Slot *slots;
    int n_slots;
    /* per-file state */
    State state;
    char file[MAX_NAME];
    uint8_t len_bytes[8];
    uint64_t header_len, got;  /* got: bytes of the current state received so far */
    char *header;
    Entry *entries;
    int n_entries, cur;
    uint64_t data_end;         /* end of the last tensor */
    uint8_t carry[4];
    int carry_n;
    int failed;                /* a failed loader refuses further input */
    int weights;               /* a DogeWeights */
    float *row;                /* [widest int8 matrix] one fp32 row on its way to int8 */
    char bad_value[512];       /* first non-finite value met in an int8 matrix (reported by finish) */
    char bad_value_file[MAX_NAME]; /* the file it was met in */
};

static void add_slot(DogeLoader *ld, const char *name, int ndim, int64_t d0, int64_t d1, float **dst, int required) {
    Slot *s = &ld->slots[ld->n_slots++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->dst = dst;
    s->required = required;
}

static void add_mat(DogeLoader *ld, const char *name, int64_t rows, int64_t cols, Mat *mat, int required) {
    add_slot(ld, name, 2, rows, cols, &mat->f, required);
    ld->slots[ld->n_slots - 1].mat = mat;
}

/* Sizes are counted in 64 bits: a config's dimensions (each < 2^24) can multiply past a 32-bit size_t. */
static uint64_t slot_floats(const Slot *s) { return (uint64_t)s->shape[0] * (uint64_t)(s->ndim == 2 ? s->shape[1] : 1); }

/* Stored as int8: a matrix whose rows split into whole groups, when int8 weights were asked for. */
static int slot_int8(const DogeLoader *ld, const Slot *s) {
    return ld->weights == DOGE_WEIGHTS_INT8 && s->mat && s->shape[1] % Q8_GROUP == 0;
}

static uint64_t align64(uint64_t n) { return (n + 63) / 64 * 64; }

/* Scales of an int8 matrix: rows padded to a multiple of Q8_BAND (kernels.h k_q8_scale_index). */
static uint64_t int8_scales(const Slot *s) {
    return ((uint64_t)s->shape[0] + Q8_BAND - 1) / Q8_BAND * Q8_BAND * ((uint64_t)s->shape[1] / Q8_GROUP);
}

/* Values of an int8 matrix: a group of Q8_GROUP per scale (the padding rows included). */
static uint64_t int8_values(const Slot *s) { return int8_scales(s) * Q8_GROUP; }

/* Bytes of an int8 matrix: the values, then the scales. */
static uint64_t int8_bytes(const Slot *s) { return align64(int8_values(s)) + align64(int8_scales(s) * sizeof(float)); }

static void point_int8(Mat *mat, uint8_t *block, const Slot *s) {
    mat->f = NULL;
    mat->q = (int8_t *)block;
    mat->d = (float *)(block + align64(int8_values(s)));
}

static int is_lm_head(const DogeLoader *ld, const Slot *s) { return s->mat == &ld->model->lm_head; }

/* Tensor names that differ between the transformers layout and the original remote-code one. */
typedef struct {
    const char *embed, *norm, *in_norm, *in_res, *post_norm, *post_res, *mlp;
} LayoutNames;
static const LayoutNames HF_NAMES = {"model.embed_tokens.weight", "model.norm.weight", "input_layernorm.weight",
                                     "input_residual", "post_attention_layernorm.weight", "post_attention_residual", "mlp"};
static const LayoutNames OLD_NAMES = {"model.word_embed.weight", "model.final_layernorm.weight", "pre_layernorm.weight",
                                      "pre_residual.weight", "post_layernorm.weight", "post_residual.weight", "feed_forward"};

/* Lists every tensor the config and the layout imply, with its shape and destination. */
static void plan_slots(DogeLoader *ld) {
    DogeModel *m = ld->model;
    const DogeConfig *c = &m->cfg;
    const LayoutNames *nm = m->layout == LAYOUT_OLD ? &OLD_NAMES : &HF_NAMES;
    const int attn_bias = m->layout == LAYOUT_OLD ? c->hidden_bias : c->attention_bias;
    const int mlp_bias = m->layout == LAYOUT_OLD ? c->hidden_bias : c->mlp_bias;
    const int64_t D = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
    const int64_t Hq = (int64_t)c->num_attention_heads * hd, Hkv = (int64_t)c->num_key_value_heads * hd;
    const int64_t NB = m->bias_rows;
    char n[MAX_NAME];
    ld->n_slots = 0;
    add_mat(ld, nm->embed, V, D, &m->embed, 1);
    add_slot(ld, nm->norm, 1, D, 0, &m->norm, 1);
    if (c->task == DOGE_TASK_SEQ_CLS) add_slot(ld, "score.weight", 2, c->num_labels, D, &m->score, 1);
    else add_mat(ld, "lm_head.weight", V, D, &m->lm_head, 0);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        DogeLayer *y = &m->layers[l];
#define SLOT(nd, a, b, ptr, req, ...) \
    (snprintf(n, sizeof n, __VA_ARGS__), add_slot(ld, n, nd, a, b, ptr, req))
#define ATTN(suffix, nd, a, b, ptr) SLOT(nd, a, b, ptr, 1, "model.layers.%d.self_attn.%s", l, suffix)
#define MLP(suffix, nd, a, b, ptr, req) SLOT(nd, a, b, ptr, req, "model.layers.%d.%s.%s", l, nm->mlp, suffix)
#define ATTN_MAT(suffix, a, b, mat) (snprintf(n, sizeof n, "model.layers.%d.self_attn.%s", l, suffix), add_mat(ld, n, a, b, mat, 1))
#define MLP_MAT(suffix, a, b, mat) (snprintf(n, sizeof n, "model.layers.%d.%s.%s", l, nm->mlp, suffix), add_mat(ld, n, a, b, mat, 1))
        SLOT(1, D, 0, &y->input_layernorm, 1, "model.layers.%d.%s", l, nm->in_norm);
        SLOT(1, D, 0, &y->input_residual, 1, "model.layers.%d.%s", l, nm->in_res);
        ATTN_MAT("q_proj.weight", Hq, D, &y->wq);
        ATTN_MAT("k_proj.weight", Hkv, D, &y->wk);
        ATTN_MAT("v_proj.weight", Hkv, D, &y->wv);
        ATTN("A", 1, NB, 0, &y->A);
        ATTN("dt_proj.weight", 2, NB, Hkv, &y->wdt);
        ATTN_MAT("o_proj.weight", D, Hq, &y->wo);
        if (m->qk_norm) {
            ATTN("q_norm.weight", 1, hd, 0, &y->q_norm);
            ATTN("k_norm.weight", 1, hd, 0, &y->k_norm);
        }
        if (attn_bias) {
            ATTN("q_proj.bias", 1, Hq, 0, &y->bq);
            ATTN("k_proj.bias", 1, Hkv, 0, &y->bk);
            ATTN("v_proj.bias", 1, Hkv, 0, &y->bv);
            ATTN("dt_proj.bias", 1, NB, 0, &y->bdt);
            ATTN("o_proj.bias", 1, D, 0, &y->bo);
        }
        SLOT(1, D, 0, &y->post_attention_layernorm, 1, "model.layers.%d.%s", l, nm->post_norm);
        SLOT(1, D, 0, &y->post_attention_residual, 1, "model.layers.%d.%s", l, nm->post_res);
        MLP_MAT("gate_proj.weight", I, D, &y->w_gate);
        MLP_MAT("up_proj.weight", I, D, &y->w_up);
        MLP_MAT("down_proj.weight", D, I, &y->w_down);
        if (mlp_bias) {
            MLP("gate_proj.bias", 1, I, 0, &y->b_gate, 1);
            MLP("up_proj.bias", 1, I, 0, &y->b_up, 1);
            MLP("down_proj.bias", 1, D, 0, &y->b_down, 1);
        }
        if (c->is_moe) {
            MLP("router_gate.weight", 2, 2 * (int64_t)c->num_keys, D, &y->w_router, 1);
            /* some original checkpoints (2025-03-17..20) have a router bias; transformers never does */
            if (m->layout == LAYOUT_OLD) MLP("router_gate.bias", 1, 2 * (int64_t)c->num_keys, 0, &y->b_router, 0);
            MLP("down_embed.weight", 2, c->num_experts, D, &y->down_embed, 1);
            MLP("up_embed.weight", 2, c->num_experts, D, &y->up_embed, 1);
        }
#undef MLP_MAT
#undef ATTN_MAT
#undef MLP
#undef ATTN
#undef SLOT
    }
}

static int max_slots(const DogeConfig *c) { return 4 + c->num_hidden_layers * 32; }

/* Total floats of the fp32 arena for the current plan (each tensor aligned); lm_head is separate. */
static uint64_t arena_floats_of_plan(const DogeLoader *ld) {
    uint64_t total = 0;
    for (int i = 0; i < ld->n_slots; i++) {
        const Slot *s = &ld->slots[i];
        if (is_lm_head(ld, s) || slot_int8(ld, s)) continue;
        total += (slot_floats(s) + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    }
    return total;
}

/* Total bytes of the int8 arena for the current plan; lm_head is separate. */
static uint64_t qarena_bytes_of_plan(const DogeLoader *ld) {
    uint64_t total = 0;
    for (int i = 0; i < ld->n_slots; i++)
        if (!is_lm_head(ld, &ld->slots[i]) && slot_int8(ld, &ld->slots[i])) total += int8_bytes(&ld->slots[i]);
    return total;
}

/* Allocates the arena for the current plan and points every tensor into it. */
static int allocate_arena(DogeLoader *ld, DogeError *err) {
    DogeModel *m = ld->model;
    const uint64_t total = arena_floats_of_plan(ld), qbytes = qarena_bytes_of_plan(ld);
    if (doge_loader_weight_bytes(ld) > (uint64_t)SIZE_MAX / 2) {
        doge_set_error(err, DOGE_ERR_NOMEM, "config.json: the model needs %.1f GB of weights, more than this build can address",
                       (double)doge_loader_weight_bytes(ld) / 1e9);
        return err->code;
    }
    m->arena_floats = (size_t)total;
    m->arena = aligned_alloc(64, m->arena_floats * sizeof(float));
    if (!m->arena) {
        doge_set_error(err, DOGE_ERR_NOMEM, "config.json: cannot allocate %.1f MB for the weights", (double)total * 4 / 1e6);
        return err->code;
    }
    memset(m->arena, 0, m->arena_floats * sizeof(float)); /* alignment padding stays zero for the hash */
    size_t widest = 0;
    if (qbytes) {
        m->qarena_bytes = (size_t)qbytes;
        m->qarena = aligned_alloc(64, m->qarena_bytes);
        for (int i = 0; i < ld->n_slots; i++)
            if (slot_int8(ld, &ld->slots[i]) && (size_t)ld->slots[i].shape[1] > widest) widest = (size_t)ld->slots[i].shape[1];
        ld->row = malloc(sizeof(float) * widest);
        if (!m->qarena || !ld->row) {
            doge_set_error(err, DOGE_ERR_NOMEM, "config.json: cannot allocate %.1f MB for the int8 weights", (double)qbytes / 1e6);
            return err->code;
        }
        memset(m->qarena, 0, m->qarena_bytes);
    }
    size_t off = 0, qoff = 0;
    for (int i = 0; i < ld->n_slots; i++) {
        Slot *s = &ld->slots[i];
        if (is_lm_head(ld, s)) continue;
        if (slot_int8(ld, s)) {
            point_int8(s->mat, m->qarena + qoff, s);
            qoff += int8_bytes(s);
            continue;
        }
        *s->dst = m->arena + off;
        off += (slot_floats(s) + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    }
    m->weights = ld->weights;
    return DOGE_OK;
}

DogeLoader *doge_loader_new(const char *config_json, size_t len, DogeError *err) {
    DogeLoader *ld = calloc(1, sizeof *ld);
    DogeModel *m = calloc(1, sizeof *m);
    if (!ld || !m) {
        free(ld);
        free(m);
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory creating the loader");
        return NULL;
    }
    ld->model = m;
    if (doge_config_parse(&m->cfg, config_json, len, err) != DOGE_OK) goto fail;
    m->layers = calloc((size_t)m->cfg.num_hidden_layers, sizeof *m->layers);
    ld->slots = calloc((size_t)max_slots(&m->cfg), sizeof *ld->slots);
    if (!m->layers || !ld->slots) {
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory creating the loader");
        goto fail;
    }
    /* The layout is read from the first safetensors header; until then plan the transformers one, which
     * sizes the weights within a few kilobytes of every other layout. */
    m->layout = LAYOUT_HF;
    m->qk_norm = 1;
    m->bias_rows = m->cfg.num_key_value_heads;
    m->topk_mask = 1;
    plan_slots(ld);
    ld->state = ST_IDLE;
    return ld;
fail:
    doge_loader_free(ld);
    return NULL;
}

uint64_t doge_loader_weight_bytes(const DogeLoader *ld) {
    uint64_t b = arena_floats_of_plan(ld) * sizeof(float) + qarena_bytes_of_plan(ld);
    if (ld->model->cfg.task == DOGE_TASK_CAUSAL_LM && !ld->model->cfg.tie_word_embeddings)
        for (int i = 0; i < ld->n_slots; i++)
            if (is_lm_head(ld, &ld->slots[i]))
                b += slot_int8(ld, &ld->slots[i]) ? int8_bytes(&ld->slots[i]) : slot_floats(&ld->slots[i]) * sizeof(float);
    return b;
}

int doge_loader_set_weights(DogeLoader *ld, int weights, DogeError *err) {
    if (weights != DOGE_WEIGHTS_F32 && weights != DOGE_WEIGHTS_INT8) {
        doge_set_error(err, DOGE_ERR_INPUT, "unknown weight format %d", weights);
        return err->code;
    }
    if (ld->model && ld->model->arena) {
        doge_set_error(err, DOGE_ERR_INPUT, "the weight format must be chosen before the first file");
        return err->code;
    }
    ld->weights = weights;
    return DOGE_OK;
}

static void reset_file_state(DogeLoader *ld) {
    free(ld->header);
    free(ld->entries);
    ld->header = NULL;
    ld->entries = NULL;
    ld->n_entries = ld->cur = 0;
    ld->got = ld->header_len = ld->data_end = 0;
    ld->carry_n = 0;
    ld->state = ST_IDLE;
}

/* Records an error; the loader refuses further input afterwards. */
static int loader_fail(DogeLoader *ld, DogeError *err) {
    ld->failed = 1;
    return err->code;
}

int doge_loader_begin_file(DogeLoader *ld, const char *file_name, DogeError *err) {
    if (ld->failed) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: the loader already failed", file_name);
        return err->code;
    }
    if (ld->state != ST_IDLE) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: the previous file %s was not ended", file_name, ld->file);
        return loader_fail(ld, err);
    }
    reset_file_state(ld);
    snprintf(ld->file, sizeof ld->file, "%s", file_name);
    ld->state = ST_HEADER_LEN;
    return DOGE_OK;
}

static Slot *find_slot(DogeLoader *ld, const char *name) {
    for (int i = 0; i < ld->n_slots; i++)
        if (strcmp(ld->slots[i].name, name) == 0) return &ld->slots[i];
    return NULL;
}

static int dtype_size(DType t) { return t == DT_F32 ? 4 : 2; }

static int cmp_entry(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* A name of the original remote-code layout (doge-legacy.md section 2). */
static int is_old_layout_name(const char *name) {
    return strstr(name, "word_embed") || strstr(name, ".pre_layernorm.") || strstr(name, ".pre_residual.") ||
           strstr(name, ".post_layernorm.") || strstr(name, ".post_residual.") || strstr(name, ".feed_forward.") ||
           strstr(name, "final_layernorm");
}

/* First dimension(s) of a header entry's shape; -1 when absent. */
static void entry_dims(const JsonNode *t, int64_t *d0, int64_t *d1, int *nd) {
    const JsonNode *shape = json_get(t, "shape");
    *d0 = *d1 = -1;
    *nd = 0;
    if (!shape || shape->type != JSON_ARRAY) return;
    *nd = (int)shape->count;
    const JsonNode *a = json_at(shape, 0), *b = json_at(shape, 1);
    /* beyond 2^53 the cast would be undefined; such a dimension matches no slot either way */
    if (a && a->type == JSON_NUMBER && a->number >= 0 && a->number < 0x1p53) *d0 = (int64_t)a->number;
    if (b && b->type == JSON_NUMBER && b->number >= 0 && b->number < 0x1p53) *d1 = (int64_t)b->number;
}

/* Reads the checkpoint layout from the first header's tensor names and shapes (doge-legacy.md), then lays
 * out and allocates the weights for it. */
static int detect_layout(DogeLoader *ld, const JsonNode *root, DogeError *err) {
    DogeModel *m = ld->model;
    const DogeConfig *c = &m->cfg;
    const int64_t H = c->num_attention_heads, KV = c->num_key_value_heads, Hkv = KV * c->head_dim;
    int old = 0, qk_norm = 0;
    int64_t a_rows = -1;
    for (const JsonNode *t = root->child; t; t = t->next) {
        const char *name = t->key;
        int64_t d0, d1;
        int nd;
        entry_dims(t, &d0, &d1, &nd);
        old |= is_old_layout_name(name) != 0;
        qk_norm |= strstr(name, "self_attn.q_norm.weight") || strstr(name, "self_attn.k_norm.weight");
        if (strstr(name, ".queries") || strstr(name, "feed_forward.keys") || strstr(name, "mlp.keys")) {
            doge_set_error(err, DOGE_ERR_UNSUPPORTED,
                           "%s: '%.80s' belongs to the pre-router CDMoE of early 2025, which no supported release uses", ld->file, name);
            return err->code;
        }
        if (strstr(name, "self_attn.A") && nd == 1) a_rows = d0;
        if (strstr(name, "self_attn.dt_proj.weight") && nd == 2 && d1 != Hkv) {
            doge_set_error(err, DOGE_ERR_UNSUPPORTED,
                           "%s: '%.80s' takes %lld inputs, not num_key_value_heads x head_dim = %lld: the Dec-2024 dt_proj [H, D] "
                           "variant is not supported", ld->file, name, (long long)d1, (long long)Hkv);
            return err->code;
        }
    }
    m->layout = old ? LAYOUT_OLD : (!qk_norm && a_rows == H) ? LAYOUT_MID : LAYOUT_HF;
    m->qk_norm = qk_norm;
    m->bias_rows = (int)(a_rows == H || a_rows == KV ? a_rows : old ? H : KV);
    m->topk_mask = !old; /* the original code attends to every allowed key at any length */
    plan_slots(ld);
    return allocate_arena(ld, err);
}

/* Checks one header entry against its slot and records it. */
static int add_entry(DogeLoader *ld, const JsonNode *t, DogeError *err) {
    const char *name = t->key;
    if (t->type != JSON_OBJECT) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: header entry '%.80s' is not an object", ld->file, name);
        return err->code;
    }
    if (strcmp(name, "model.rotary_emb.inv_freq") == 0) name = NULL; /* a buffer some exporters keep; skipped */
    Slot *slot = name ? find_slot(ld, name) : NULL;
    if (name && !slot) {
        doge_set_error(err, DOGE_ERR_TENSOR, "%s: unexpected tensor '%.80s' for this config.json (%s layout)", ld->file, name,
                       doge_model_layout(ld->model));
        return err->code;
    }
    if (slot && slot->loaded) {
        doge_set_error(err, DOGE_ERR_TENSOR, "%s: tensor '%.80s' appears twice (also in %s)", ld->file, name, slot->file);
        return err->code;
    }
    const char *shown = t->key;
    const JsonNode *dt = json_get(t, "dtype"), *shape = json_get(t, "shape"), *off = json_get(t, "data_offsets");
    if (!dt || dt->type != JSON_STRING || !shape || shape->type != JSON_ARRAY || !off || off->type != JSON_ARRAY ||
        off->count != 2) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: header entry '%.80s' needs dtype, shape and data_offsets [begin, end]",
                       ld->file, shown);
        return err->code;
    }
    DType dtype;
    if (strcmp(dt->str, "F32") == 0) dtype = DT_F32;
    else if (strcmp(dt->str, "BF16") == 0) dtype = DT_BF16;
    else if (strcmp(dt->str, "F16") == 0) dtype = DT_F16;
    else {
        doge_set_error(err, DOGE_ERR_TENSOR, "%s: tensor '%.80s' has dtype '%.16s'; only F32, BF16 and F16 are supported",
                       ld->file, shown, dt->str);
        return err->code;
    }
    /* Shape: every dim a non-negative integer; the element count bounded so it cannot overflow. */
    uint64_t numel = 1;
    int64_t dims[8];
    int nd = 0;
    for (const JsonNode *d = shape->child; d; d = d->next) {
        if (d->type != JSON_NUMBER || d->number < 0 || d->number != floor(d->number) || d->number > 1e12 || nd == 8) {
            doge_set_error(err, DOGE_ERR_FORMAT, "%s: tensor '%.80s' has an invalid shape", ld->file, shown);
            return err->code;
        }
        dims[nd++] = (int64_t)d->number;
        numel *= (uint64_t)d->number;
        if (numel > (1ull << 40)) {
            doge_set_error(err, DOGE_ERR_FORMAT, "%s: tensor '%.80s' has an absurd shape", ld->file, shown);
            return err->code;
        }
    }
    const JsonNode *b = off->child, *e = off->child->next;
    if (b->type != JSON_NUMBER || e->type != JSON_NUMBER || b->number < 0 || b->number != floor(b->number) ||
        e->number != floor(e->number) || e->number < b->number || e->number > 1.8e19) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: tensor '%.80s' has invalid data_offsets", ld->file, shown);
        return err->code;
    }
    uint64_t begin = (uint64_t)b->number, end = (uint64_t)e->number;
    if (end - begin != numel * (uint64_t)dtype_size(dtype)) {
        doge_set_error(err, DOGE_ERR_FORMAT,
                       "%s: tensor '%.80s' has data_offsets [%llu, %llu] (%llu bytes) but shape x dtype needs %llu bytes",
                       ld->file, shown, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)(end - begin), (unsigned long long)(numel * (uint64_t)dtype_size(dtype)));
        return err->code;
    }
    if (slot) {
        int ok = nd == slot->ndim && dims[0] == slot->shape[0] && (nd == 1 || dims[1] == slot->shape[1]);
        if (!ok) {
            char got[96] = "[", want[64];
            for (int i = 0; i < nd; i++) {
                size_t l = strlen(got);
                snprintf(got + l, sizeof got - l, i ? ", %lld" : "%lld", (long long)dims[i]);
            }
            strncat(got, "]", sizeof got - strlen(got) - 1);
            if (slot->ndim == 1) snprintf(want, sizeof want, "[%lld]", (long long)slot->shape[0]);
            else snprintf(want, sizeof want, "[%lld, %lld]", (long long)slot->shape[0], (long long)slot->shape[1]);
            doge_set_error(err, DOGE_ERR_TENSOR, "%s: tensor '%.80s' has shape %s but config.json implies %s", ld->file,
                           shown, got, want);
            return err->code;
        }
        DogeModel *m = ld->model;
        if (is_lm_head(ld, slot) && !m->lm_head_block) {
            const int q = slot_int8(ld, slot);
            /* below SIZE_MAX / 2: allocate_arena checked every weight, lm_head included */
            m->lm_head_bytes = (size_t)(q ? int8_bytes(slot) : align64(slot_floats(slot) * sizeof(float)));
            m->lm_head_block = aligned_alloc(64, m->lm_head_bytes);
            if (!m->lm_head_block) {
                doge_set_error(err, DOGE_ERR_NOMEM, "%s: cannot allocate %.1f MB for lm_head.weight", ld->file,
                               (double)m->lm_head_bytes / 1e6);
                return err->code;
            }
            memset(m->lm_head_block, 0, m->lm_head_bytes);
            if (q) point_int8(&m->lm_head, m->lm_head_block, slot);
            else m->lm_head.f = m->lm_head_block;
        }
        slot->loaded = 1;
        snprintf(slot->file, sizeof slot->file, "%s", ld->file);
    }
    Entry *en = &ld->entries[ld->n_entries++];
    en->slot = slot;
    en->dtype = dtype;
    en->begin = begin;
    en->end = end;
    return DOGE_OK;
}

static int parse_header(DogeLoader *ld, DogeError *err) {
    char why[160];
    JsonDoc *doc = json_parse(ld->header, (size_t)ld->header_len, why, sizeof why);
    if (!doc) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: the safetensors header is not valid JSON (%s)", ld->file, why);
        return err->code;
    }
    const JsonNode *root = json_root(doc);
    int rc = DOGE_OK;
    if (root->type != JSON_OBJECT) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: the safetensors header is not a JSON object", ld->file);
        rc = err->code;
        goto done;
    }
    ld->entries = calloc(root->count ? root->count : 1, sizeof *ld->entries);
    if (!ld->entries) {
        doge_set_error(err, DOGE_ERR_NOMEM, "%s: out of memory reading the header", ld->file);
        rc = err->code;
        goto done;
    }
    if (!ld->model->arena && (rc = detect_layout(ld, root, err)) != DOGE_OK) goto done;
    for (const JsonNode *t = root->child; t; t = t->next) {
        if (strcmp(t->key, "__metadata__") == 0) continue;
        if ((rc = add_entry(ld, t, err)) != DOGE_OK) goto done;
    }
    qsort(ld->entries, (size_t)ld->n_entries, sizeof *ld->entries, cmp_entry);
    for (int i = 0; i < ld->n_entries; i++) {
        const Entry *en = &ld->entries[i];
        if (i > 0 && en->begin < ld->entries[i - 1].end) {
            doge_set_error(err, DOGE_ERR_FORMAT, "%s: tensors '%.60s' and '%.60s' overlap in the data section", ld->file,
                           en->slot ? en->slot->name : "?", ld->entries[i - 1].slot ? ld->entries[i - 1].slot->name : "?");
            rc = err->code;
            goto done;
        }
        if (en->end > ld->data_end) ld->data_end = en->end;
    }
done:
    json_free(doc);
    return rc;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float convert_one(DType t, const uint8_t *p) {
    if (t == DT_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    return t == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

static void convert_to(float *dst, DType t, const uint8_t *p, size_t count) {
    if (t == DT_F32) {
        memcpy(dst, p, count * 4); /* wasm and every supported host are little-endian */
        return;
    }
    for (size_t i = 0; i < count; i++) dst[i] = convert_one(t, p + 2 * i);
}

/* Quantizes row r of an int8 matrix from ld->row, noting the first non-finite value. */
static void quantize_row(DogeLoader *ld, const Slot *sl, uint64_t r) {
    const size_t cols = (size_t)sl->shape[1];
    for (size_t k = 0; k < cols && !ld->bad_value[0]; k++)
        if (!isfinite(ld->row[k])) {
            snprintf(ld->bad_value, sizeof ld->bad_value, "%s: tensor '%s' has a non-finite value (NaN or infinity) at element %llu",
                     sl->file, sl->name, (unsigned long long)(r * cols + k));
            snprintf(ld->bad_value_file, sizeof ld->bad_value_file, "%s", ld->file);
        }
    k_quantize_q8_row(sl->mat->q, sl->mat->d, r, ld->row, (int)cols);
}

/* Converts count whole elements from p into the entry's tensor, starting at element index first. */
static void convert_run(DogeLoader *ld, const Entry *en, uint64_t first, const uint8_t *p, size_t count) {
    const Slot *sl = en->slot;
    if (!slot_int8(ld, sl)) {
        convert_to(*sl->dst + first, en->dtype, p, count);
        return;
    }
    const uint64_t cols = (uint64_t)sl->shape[1];
    const size_t es = (size_t)dtype_size(en->dtype);
    while (count > 0) { /* row by row: gather in fp32, quantize when the row is complete */
        const uint64_t col = first % cols;
        const size_t n = cols - col < count ? (size_t)(cols - col) : count;
        convert_to(ld->row + col, en->dtype, p, n);
        if (col + n == cols) quantize_row(ld, sl, first / cols);
        first += n;
        p += n * es;
        count -= n;
    }
}

/* Consumes data-section bytes. pos = bytes of the data section consumed so far (ld->got). */
static void feed_data(DogeLoader *ld, const uint8_t *p, size_t n) {
    while (n > 0 && ld->cur < ld->n_entries) {
        const Entry *en = &ld->entries[ld->cur];
        if (ld->got < en->begin) { /* padding or a gap before the next tensor */
            uint64_t skip = en->begin - ld->got;
            size_t k = skip < n ? (size_t)skip : n;
            ld->got += k;
            p += k;
            n -= k;
            continue;
        }
        uint64_t left = en->end - ld->got;
        size_t take = left < n ? (size_t)left : n;
        if (!en->slot) { /* skipped tensor */
            ld->got += take;
        } else {
            const int es = dtype_size(en->dtype);
            size_t i = 0;
            if (ld->carry_n) { /* finish the element split across chunks */
                while (ld->carry_n < es && i < take) ld->carry[ld->carry_n++] = p[i++];
                if (ld->carry_n == es) {
                    uint64_t idx = (ld->got + i - en->begin) / (uint64_t)es - 1;
                    convert_run(ld, en, idx, ld->carry, 1);
                    ld->carry_n = 0;
                }
            }
            size_t whole = (take - i) / (size_t)es;
            if (whole) convert_run(ld, en, (ld->got + i - en->begin) / (uint64_t)es, p + i, whole);
            i += whole * (size_t)es;
            while (i < take) ld->carry[ld->carry_n++] = p[i++];
            ld->got += take;
        }
        p += take;
        n -= take;
        if (ld->got == en->end) ld->cur++;
    }
    ld->got += n; /* bytes past the last tensor: reported as an error by end_file */
}

int doge_loader_feed(DogeLoader *ld, const uint8_t *bytes, size_t n, DogeError *err) {
    if (ld->failed) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: the loader already failed", ld->file);
        return err->code;
    }
    while (n > 0) {
        switch (ld->state) {
        case ST_IDLE:
            doge_set_error(err, DOGE_ERR_INPUT, "bytes fed before doge_loader_begin_file");
            return loader_fail(ld, err);
        case ST_HEADER_LEN: {
            size_t k = 8 - (size_t)ld->got < n ? 8 - (size_t)ld->got : n;
            memcpy(ld->len_bytes + ld->got, bytes, k);
            ld->got += k;
            bytes += k;
            n -= k;
            if (ld->got == 8) {
                uint64_t h = 0;
                for (int i = 7; i >= 0; i--) h = (h << 8) | ld->len_bytes[i];
                if (h < 2 || h > MAX_HEADER_BYTES) {
                    doge_set_error(err, DOGE_ERR_FORMAT,
                                   "%s: safetensors header length %llu is %s (not a safetensors file, or corrupt)", ld->file,
                                   (unsigned long long)h, h < 2 ? "too small" : "larger than 100 MB");
                    return loader_fail(ld, err);
                }
                ld->header_len = h;
                ld->header = malloc((size_t)h);
                if (!ld->header) {
                    doge_set_error(err, DOGE_ERR_NOMEM, "%s: cannot allocate the %llu-byte header", ld->file,
                                   (unsigned long long)h);
                    return loader_fail(ld, err);
                }
                ld->got = 0;
                ld->state = ST_HEADER;
            }
            break;
        }
        case ST_HEADER: {
            uint64_t left = ld->header_len - ld->got;
            size_t k = left < n ? (size_t)left : n;
            memcpy(ld->header + ld->got, bytes, k);
            ld->got += k;
            bytes += k;
            n -= k;
            if (ld->got == ld->header_len) {
                if (parse_header(ld, err) != DOGE_OK) return loader_fail(ld, err);
                free(ld->header);
                ld->header = NULL;
                ld->got = 0;
                ld->state = ST_DATA;
            }
            break;
        }
        case ST_DATA:
            feed_data(ld, bytes, n);
            n = 0;
            break;
        }
    }
    return DOGE_OK;
}

int doge_loader_restart_file(DogeLoader *ld, DogeError *err) {
    if (ld->failed || ld->state == ST_IDLE) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: no file to restart", ld->file);
        return err->code;
    }
    for (int i = 0; i < ld->n_entries; i++) /* this file's tensors arrive again from the start */
        if (ld->entries[i].slot) ld->entries[i].slot->loaded = 0;
    if (strcmp(ld->bad_value_file, ld->file) == 0) ld->bad_value[0] = 0; /* met in bytes that arrive again */
    char file[MAX_NAME];
    snprintf(file, sizeof file, "%s", ld->file);
    reset_file_state(ld);
    snprintf(ld->file, sizeof ld->file, "%s", file);
    ld->state = ST_HEADER_LEN;
    return DOGE_OK;
}

int doge_loader_end_file(DogeLoader *ld, DogeError *err) {
    if (ld->failed) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: the loader already failed", ld->file);
        return err->code;
    }
    if (ld->state != ST_DATA || ld->got < ld->data_end) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: the file is truncated (%s)", ld->file,
                       ld->state == ST_HEADER_LEN ? "it ends inside the 8-byte header length"
                       : ld->state == ST_HEADER   ? "it ends inside the JSON header"
                                                  : "it ends before the last tensor's data");
        return loader_fail(ld, err);
    }
    if (ld->got > ld->data_end) {
        doge_set_error(err, DOGE_ERR_FORMAT, "%s: %llu unexpected bytes after the last tensor", ld->file,
                       (unsigned long long)(ld->got - ld->data_end));
        return loader_fail(ld, err);
    }
    reset_file_state(ld);
    return DOGE_OK;
}

DogeModel *doge_loader_finish(DogeLoader *ld, DogeError *err) {
    if (ld->failed || ld->state != ST_IDLE) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s", ld->failed ? "the loader already failed" : "the last file was not ended");
        ld->failed = 1;
        return NULL;
    }
    int missing = 0;
    const char *first = NULL;
    for (int i = 0; i < ld->n_slots; i++)
        if (ld->slots[i].required && !ld->slots[i].loaded) {
            if (!first) first = ld->slots[i].name;
            missing++;
        }
    if (first && (strstr(first, "q_norm") || strstr(first, "k_norm"))) {
        doge_set_error(err, DOGE_ERR_TENSOR, "the checkpoint has q_norm/k_norm in some layers but not '%s': they must be in every "
                                             "layer or in none", first);
        ld->failed = 1;
        return NULL;
    }
    if (missing) {
        doge_set_error(err, DOGE_ERR_TENSOR, "the checkpoint is missing tensor '%s'%s", first,
                       missing > 1 ? " and others" : "");
        ld->failed = 1;
        return NULL;
    }
    DogeModel *m = ld->model;
    if (!m->arena) {
        doge_set_error(err, DOGE_ERR_INPUT, "no safetensors file was fed");
        ld->failed = 1;
        return NULL;
    }
    /* Weights must be finite: a NaN or infinity would silently poison every logit. */
    if (ld->bad_value[0]) {
        doge_set_error(err, DOGE_ERR_TENSOR, "%s", ld->bad_value);
        ld->failed = 1;
        return NULL;
    }
    for (int i = 0; i < ld->n_slots; i++) {
        const Slot *sl = &ld->slots[i];
        if (!sl->loaded || !*sl->dst) continue; /* int8 matrices were checked row by row */
        const uint32_t *bits = (const uint32_t *)*sl->dst;
        for (size_t k = 0, n = slot_floats(sl); k < n; k++)
            if ((bits[k] & 0x7F800000u) == 0x7F800000u) {
                doge_set_error(err, DOGE_ERR_TENSOR, "%s: tensor '%s' has a non-finite value (NaN or infinity) at element %zu",
                               sl->file, sl->name, k);
                ld->failed = 1;
                return NULL;
            }
    }
    for (int i = 0; i < ld->n_slots; i++) /* optional tensors the checkpoint lacks */
        if (!ld->slots[i].required && !ld->slots[i].loaded && !is_lm_head(ld, &ld->slots[i])) *ld->slots[i].dst = NULL;
    /* Missing lm_head.weight means a tied head, whatever tie_word_embeddings says (HF drops tied copies). */
    if (!m->lm_head_block) m->lm_head = m->embed;
    ld->model = NULL;
    return m;
}

void doge_loader_free(DogeLoader *ld) {
    if (!ld) return;
    reset_file_state(ld);
    doge_model_free(ld->model);
    free(ld->slots);
    free(ld->row);
    free(ld);
}

void doge_model_free(DogeModel *m) {
    if (!m) return;
    free(m->arena);
    free(m->qarena);
    free(m->lm_head_block);
    free(m->layers);
    doge_config_free(&m->cfg);
    free(m);
}

int doge_model_task(const DogeModel *m) { return m->cfg.task; }
int doge_model_vocab_size(const DogeModel *m) { return m->cfg.vocab_size; }
int doge_model_num_labels(const DogeModel *m) { return m->cfg.task == DOGE_TASK_SEQ_CLS ? m->cfg.num_labels : 0; }
int doge_model_max_position_embeddings(const DogeModel *m) { return m->cfg.max_position_embeddings; }
int doge_model_tied_head(const DogeModel *m) { return m->lm_head_block == NULL; }
int doge_model_weights(const DogeModel *m) { return m->weights; }
double doge_model_weight_bytes(const DogeModel *m) {
    return (double)m->arena_floats * sizeof(float) + (double)m->qarena_bytes + (double)(m->lm_head_block ? m->lm_head_bytes : 0);
}

const char *doge_model_layout(const DogeModel *m) {
    return m->layout == LAYOUT_OLD ? "original" : m->layout == LAYOUT_MID ? "mid" : "transformers";
}

int doge_model_set_moe_routing(DogeModel *m, int routing, DogeError *err) {
    if (routing != DOGE_MOE_ROUTING_HF && routing != DOGE_MOE_ROUTING_LEGACY_2025_03) {
        doge_set_error(err, DOGE_ERR_INPUT, "unknown MoE routing mode %d", routing);
        return err->code;
    }
    m->moe_routing = routing;
    return DOGE_OK;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t doge_model_weights_hash(const DogeModel *m) {
    uint64_t h = fnv1a(1469598103934665603ull, m->arena, m->arena_floats * sizeof(float));
    if (m->qarena) h = fnv1a(h, m->qarena, m->qarena_bytes);
    if (m->lm_head_block) h = fnv1a(h, m->lm_head_block, m->lm_head_bytes);
    return h;
}
