/* config.json -> DogeConfig, with HF DogeConfig (4.57) defaults for missing fields. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "model.h"

#define CFG "config.json"
/* Sizes above this are refused before anything is allocated (a 2^24 hidden size is already absurd). */
#define MAX_DIM (1 << 24)

void doge_set_error(DogeError *err, int code, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

const char *doge_status_name(int code) {
    switch (code) {
    case DOGE_OK: return "OK";
    case DOGE_ERR_CONFIG: return "BAD_CONFIG";
    case DOGE_ERR_FORMAT: return "BAD_SAFETENSORS";
    case DOGE_ERR_TENSOR: return "BAD_TENSOR";
    case DOGE_ERR_UNSUPPORTED: return "UNSUPPORTED_MODEL";
    case DOGE_ERR_NOMEM: return "OUT_OF_MEMORY";
    case DOGE_ERR_INPUT: return "BAD_INPUT";
    case DOGE_ERR_NUMERIC: return "NON_FINITE_LOGITS";
    default: return "UNKNOWN";
    }
}

/* Reads an integer field; absent or null -> def. Range [lo, hi]. */
static int get_int(const JsonNode *obj, const char *key, long def, long lo, long hi, int *out, DogeError *err) {
    const JsonNode *n = json_get(obj, key);
    double v = (double)def;
    if (n && n->type != JSON_NULL) {
        if (n->type != JSON_NUMBER || n->number != floor(n->number)) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": '%s' must be an integer", key);
            return -1;
        }
        v = n->number;
    }
    if (v < (double)lo || v > (double)hi) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": '%s' = %.17g is out of range [%ld, %ld]", key, v, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int get_num(const JsonNode *obj, const char *key, double def, double lo, double hi, double *out,
                   DogeError *err, const char *where) {
    const JsonNode *n = json_get(obj, key);
    double v = def;
    if (n && n->type != JSON_NULL) {
        if (n->type != JSON_NUMBER) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": '%s%s' must be a number", where, key);
            return -1;
        }
        v = n->number;
    }
    if (!(v >= lo && v <= hi)) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": '%s%s' = %.17g is out of range [%g, %g]", where, key, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_bool(const JsonNode *obj, const char *key, int def, int *out, DogeError *err) {
    const JsonNode *n = json_get(obj, key);
    *out = def;
    if (!n || n->type == JSON_NULL) return 0;
    if (n->type != JSON_BOOL) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": '%s' must be true or false", key);
        return -1;
    }
    *out = n->boolean;
    return 0;
}

/* A list of hd/2 floats (longrope factors). */
static int get_factor_list(const JsonNode *rs, const char *key, int n, float **out, DogeError *err) {
    const JsonNode *arr = json_get(rs, key);
    if (!arr || arr->type != JSON_ARRAY || (int)arr->count != n) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling.%s must be a list of head_dim/2 = %d numbers", key, n);
        return -1;
    }
    *out = malloc(sizeof(float) * (size_t)n);
    if (!*out) {
        doge_set_error(err, DOGE_ERR_NOMEM, CFG ": out of memory");
        return -1;
    }
    int i = 0;
    for (const JsonNode *c = arr->child; c; c = c->next, i++) {
        if (c->type != JSON_NUMBER || !(c->number > 0) || !isfinite(c->number)) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling.%s[%d] must be a positive number", key, i);
            return -1;
        }
        (*out)[i] = (float)c->number;
    }
    return 0;
}

static int parse_rope_scaling(DogeConfig *c, const JsonNode *root, DogeError *err) {
    const JsonNode *rs = json_get(root, "rope_scaling");
    c->rope_type = ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (get_int(root, "original_max_position_embeddings", 0, 0, MAX_DIM, &c->config_original_max, err)) return -1;
    if (!rs || rs->type == JSON_NULL) return 0;
    if (rs->type != JSON_OBJECT) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": 'rope_scaling' must be an object or null");
        return -1;
    }
    /* HF copies the legacy "type" key into "rope_type". */
    const JsonNode *t = json_get(rs, "rope_type");
    if (!t) t = json_get(rs, "type");
    if (!t || t->type != JSON_STRING) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling needs a string 'rope_type'");
        return -1;
    }
    static const struct { const char *name; RopeType type; } types[] = {
        {"default", ROPE_DEFAULT}, {"linear", ROPE_LINEAR}, {"dynamic", ROPE_DYNAMIC},
        {"yarn", ROPE_YARN}, {"longrope", ROPE_LONGROPE}, {"llama3", ROPE_LLAMA3},
    };
    int found = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(t->str, types[i].name) == 0) { c->rope_type = types[i].type; found = 1; }
    if (!found) {
        doge_set_error(err, DOGE_ERR_CONFIG,
                       CFG ": unknown rope_scaling type '%.64s' (known: default, linear, dynamic, yarn, longrope, llama3)",
                       t->str);
        return -1;
    }
    const char *w = "rope_scaling.";
    int needs_factor = c->rope_type == ROPE_LINEAR || c->rope_type == ROPE_DYNAMIC || c->rope_type == ROPE_YARN ||
                       c->rope_type == ROPE_LLAMA3;
    if (needs_factor && !json_get(rs, "factor")) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling type '%s' needs 'factor'", t->str);
        return -1;
    }
    if (get_num(rs, "factor", 1.0, 1e-6, 1e6, &c->rope_factor, err, w)) return -1;
    if (get_int(rs, "original_max_position_embeddings", 0, 0, MAX_DIM, &c->rope_original_max, err)) return -1;
    switch (c->rope_type) {
    case ROPE_YARN:
        if (get_num(rs, "attention_factor", -1.0, -1.0, 1e6, &c->yarn_attention_factor, err, w) ||
            get_num(rs, "beta_fast", 32.0, 1e-6, 1e6, &c->yarn_beta_fast, err, w) ||
            get_num(rs, "beta_slow", 1.0, 1e-6, 1e6, &c->yarn_beta_slow, err, w) ||
            get_num(rs, "mscale", 0.0, 0.0, 1e6, &c->yarn_mscale, err, w) ||
            get_num(rs, "mscale_all_dim", 0.0, 0.0, 1e6, &c->yarn_mscale_all_dim, err, w) ||
            get_bool(rs, "truncate", 1, &c->yarn_truncate, err))
            return -1;
        break;
    case ROPE_LONGROPE:
        if (get_num(rs, "attention_factor", -1.0, -1.0, 1e6, &c->longrope_attention_factor, err, w) ||
            get_factor_list(rs, "long_factor", c->head_dim / 2, &c->longrope_long, err) ||
            get_factor_list(rs, "short_factor", c->head_dim / 2, &c->longrope_short, err))
            return -1;
        break;
    case ROPE_LLAMA3:
        if (!c->rope_original_max || !json_get(rs, "low_freq_factor") || !json_get(rs, "high_freq_factor")) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling type 'llama3' needs low_freq_factor, "
                                                 "high_freq_factor and original_max_position_embeddings");
            return -1;
        }
        if (get_num(rs, "low_freq_factor", 1.0, 1e-6, 1e6, &c->llama3_low_freq_factor, err, w) ||
            get_num(rs, "high_freq_factor", 4.0, 1e-6, 1e6, &c->llama3_high_freq_factor, err, w))
            return -1;
        if (c->llama3_high_freq_factor == c->llama3_low_freq_factor) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": rope_scaling high_freq_factor must differ from low_freq_factor");
            return -1;
        }
        break;
    default: break;
    }
    return 0;
}

static int parse_root(DogeConfig *c, const JsonNode *root, DogeError *err) {
    if (!root || root->type != JSON_OBJECT) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": the top level must be a JSON object");
        return -1;
    }
    const JsonNode *mt = json_get(root, "model_type");
    if (mt && (mt->type != JSON_STRING || strcmp(mt->str, "doge") != 0)) {
        doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": model_type is '%.64s', not 'doge'",
                       mt->type == JSON_STRING ? mt->str : "(not a string)");
        return -1;
    }
    /* Configs of the Nov-Dec 2024 ("V0") Doge carry fields no later code knows (doge-legacy.md, section 1). */
    static const char *const v0_fields[] = {"inner_values_retrieval_size", "num_inner_values", "cross_domain_intermediate_size"};
    for (size_t i = 0; i < sizeof v0_fields / sizeof v0_fields[0]; i++)
        if (json_get(root, v0_fields[i])) {
            doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": '%s' is a field of the V0-era Doge (Nov-Dec 2024), which is not supported",
                           v0_fields[i]);
            return -1;
        }
    double mask_ratio;
    if (get_num(root, "dynamic_mask_ratio", 0.0, 0.0, 1.0, &mask_ratio, err, "")) return -1;
    if (mask_ratio > 0) {
        doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": dynamic_mask_ratio %g is not supported (every release uses 0)", mask_ratio);
        return -1;
    }
    const JsonNode *act = json_get(root, "hidden_act");
    if (act && act->type != JSON_NULL && (act->type != JSON_STRING || strcmp(act->str, "silu") != 0)) {
        doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": hidden_act '%.64s' is not supported (only 'silu')",
                       act->type == JSON_STRING ? act->str : "(not a string)");
        return -1;
    }
    if (get_int(root, "vocab_size", 32768, 1, MAX_DIM, &c->vocab_size, err) ||
        get_int(root, "hidden_size", 1024, 1, MAX_DIM, &c->hidden_size, err) ||
        get_int(root, "intermediate_size", 2048, 1, MAX_DIM, &c->intermediate_size, err) ||
        get_int(root, "num_hidden_layers", 32, 1, 4096, &c->num_hidden_layers, err) ||
        get_int(root, "num_attention_heads", 8, 1, 4096, &c->num_attention_heads, err) ||
        get_int(root, "num_key_value_heads", c->num_attention_heads, 1, 4096, &c->num_key_value_heads, err) ||
        get_int(root, "max_position_embeddings", 2048, 1, MAX_DIM, &c->max_position_embeddings, err) ||
        get_int(root, "keep_window_size", 2048, 1, MAX_DIM, &c->keep_window_size, err) ||
        get_int(root, "sliding_window", 0, 0, MAX_DIM, &c->sliding_window, err) ||
        get_bool(root, "attention_bias", 0, &c->attention_bias, err) ||
        get_bool(root, "mlp_bias", 0, &c->mlp_bias, err) ||
        get_bool(root, "hidden_bias", 0, &c->hidden_bias, err) ||
        get_bool(root, "tie_word_embeddings", 0, &c->tie_word_embeddings, err) ||
        get_bool(root, "is_moe", 0, &c->is_moe, err) ||
        get_int(root, "num_experts", 16384, 1, MAX_DIM, &c->num_experts, err) ||
        get_int(root, "num_experts_per_tok", 64, 1, MAX_DIM, &c->num_experts_per_tok, err) ||
        get_bool(root, "norm_topk_prob", 0, &c->norm_topk_prob, err) ||
        get_int(root, "pad_token_id", -1, -1, MAX_DIM, &c->pad_token_id, err))
        return -1;
    double eps, theta, prf;
    if (get_num(root, "rms_norm_eps", 1e-6, 0.0, 1.0, &eps, err, "") ||
        get_num(root, "rope_theta", 10000.0, 1.0, 1e12, &theta, err, "") ||
        get_num(root, "partial_rotary_factor", 1.0, 0.0, 1.0, &prf, err, ""))
        return -1;
    c->rms_norm_eps = (float)eps;
    c->rope_theta = theta;
    if (prf != 1.0) {
        doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": partial_rotary_factor %g is not supported (Doge rotates all of head_dim)", prf);
        return -1;
    }
    int H = c->num_attention_heads, KV = c->num_key_value_heads;
    if (H % KV != 0) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": num_attention_heads %d is not a multiple of num_key_value_heads %d", H, KV);
        return -1;
    }
    if (c->hidden_size % H != 0 && !json_get(root, "head_dim")) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": hidden_size %d is not divisible by num_attention_heads %d and no head_dim is given",
                       c->hidden_size, H);
        return -1;
    }
    if (get_int(root, "head_dim", c->hidden_size / H, 2, 65536, &c->head_dim, err)) return -1;
    if (c->head_dim % 2) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": head_dim %d must be even for rotary embeddings", c->head_dim);
        return -1;
    }
    if (c->is_moe) {
        int k = (int)floor(sqrt((double)c->num_experts));
        if (k * k != c->num_experts) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": num_experts %d is not a perfect square (product-key routing needs K*K experts)",
                           c->num_experts);
            return -1;
        }
        c->num_keys = k;
        if (c->num_experts_per_tok > c->num_experts) {
            doge_set_error(err, DOGE_ERR_CONFIG, CFG ": num_experts_per_tok %d exceeds num_experts %d", c->num_experts_per_tok,
                           c->num_experts);
            return -1;
        }
    }
    if (c->pad_token_id >= c->vocab_size) c->pad_token_id = -1; /* never matches a valid id */

    /* Task from "architectures"; a sequence classifier's label count from id2label or num_labels. */
    c->task = DOGE_TASK_CAUSAL_LM;
    const JsonNode *arch = json_get(root, "architectures");
    if (arch && arch->type == JSON_ARRAY && arch->child && arch->child->type == JSON_STRING) {
        const char *a = arch->child->str;
        if (strcmp(a, "DogeForSequenceClassification") == 0) c->task = DOGE_TASK_SEQ_CLS;
        else if (strcmp(a, "DogeForCausalLM") != 0 && strcmp(a, "DogeModel") != 0) {
            doge_set_error(err, DOGE_ERR_UNSUPPORTED, CFG ": architecture '%.64s' is not supported "
                                                      "(DogeForCausalLM or DogeForSequenceClassification)", a);
            return -1;
        }
    }
    const JsonNode *id2label = json_get(root, "id2label");
    int labels_default = id2label && id2label->type == JSON_OBJECT ? (int)id2label->count : 2;
    if (get_int(root, "num_labels", labels_default, 1, MAX_DIM, &c->num_labels, err)) return -1;
    return parse_rope_scaling(c, root, err);
}

int doge_config_parse(DogeConfig *cfg, const char *json, size_t len, DogeError *err) {
    memset(cfg, 0, sizeof *cfg);
    char why[160];
    JsonDoc *doc = json_parse(json, len, why, sizeof why);
    if (!doc) {
        doge_set_error(err, DOGE_ERR_CONFIG, CFG ": not valid JSON: %s", why);
        return err->code;
    }
    int rc = parse_root(cfg, json_root(doc), err);
    json_free(doc);
    if (rc) {
        doge_config_free(cfg);
        return err->code;
    }
    return DOGE_OK;
}

void doge_config_free(DogeConfig *cfg) {
    free(cfg->longrope_long);
    free(cfg->longrope_short);
    cfg->longrope_long = cfg->longrope_short = NULL;
}
