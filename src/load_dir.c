/* The native file loop over the push loader: reads a HF model directory from disk in fixed-size chunks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doge.h"
#include "json.h"
#include "model.h"

#define MAX_SHARDS 4096

/* Reads a whole small text file (config.json, the index); NULL with err set on failure. */
static char *read_text(const char *path, size_t *len, DogeError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!buf) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: too large or out of memory", path);
        return NULL;
    }
    *len = n;
    return buf;
}

static int feed_file(DogeLoader *ld, const char *dir, const char *name, uint8_t *chunk, size_t chunk_bytes,
                     DogeError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        doge_set_error(err, DOGE_ERR_INPUT, "%s: cannot open", path);
        return err->code;
    }
    int rc = doge_loader_begin_file(ld, name, err);
    size_t n;
    while (rc == DOGE_OK && (n = fread(chunk, 1, chunk_bytes, f)) > 0) rc = doge_loader_feed(ld, chunk, n, err);
    fclose(f);
    if (rc == DOGE_OK) rc = doge_loader_end_file(ld, err);
    return rc;
}

/* The shard names of model.safetensors.index.json, each once, in order of first appearance. */
static int shard_names(const char *dir, char ***names, int *count, DogeError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    size_t len;
    char *text = read_text(path, &len, err);
    if (!text) return err->code;
    char why[160];
    JsonDoc *doc = json_parse(text, len, why, sizeof why);
    free(text);
    if (!doc) {
        doge_set_error(err, DOGE_ERR_FORMAT, "model.safetensors.index.json: not valid JSON: %s", why);
        return err->code;
    }
    const JsonNode *map = json_get(json_root(doc), "weight_map");
    if (!map || map->type != JSON_OBJECT) {
        json_free(doc);
        doge_set_error(err, DOGE_ERR_FORMAT, "model.safetensors.index.json: no 'weight_map' object");
        return err->code;
    }
    *names = calloc(MAX_SHARDS, sizeof **names);
    *count = 0;
    for (const JsonNode *e = map->child; e && *names; e = e->next) {
        if (e->type != JSON_STRING || strchr(e->str, '/') || strcmp(e->str, "..") == 0) {
            doge_set_error(err, DOGE_ERR_FORMAT, "model.safetensors.index.json: '%.80s' does not name a file in the directory", e->key);
            json_free(doc);
            return err->code;
        }
        int seen = 0;
        for (int i = 0; i < *count; i++) seen |= strcmp((*names)[i], e->str) == 0;
        if (!seen && *count < MAX_SHARDS) (*names)[(*count)++] = strdup(e->str);
    }
    /* The core reads the checkpoint layout off the first file's tensors (q/k norms present, the rows of A), so
     * the shard holding one of these goes first (as js/weights.js does). */
    static const char *const layout_tensors[] = {"model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.A"};
    for (int k = 0; k < 2 && *names; k++) {
        const JsonNode *f = json_get(map, layout_tensors[k]);
        if (!f || f->type != JSON_STRING) continue;
        for (int i = 1; i < *count; i++)
            if (strcmp((*names)[i], f->str) == 0) {
                char *first = (*names)[i];
                memmove(*names + 1, *names, sizeof **names * (size_t)i);
                (*names)[0] = first;
            }
        break;
    }
    json_free(doc);
    return DOGE_OK;
}

DogeModel *doge_load_dir(const char *dir, size_t chunk_bytes, int weights, DogeError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *config = read_text(path, &len, err);
    if (!config) return NULL;
    DogeLoader *ld = doge_loader_new(config, len, err);
    free(config);
    if (!ld) return NULL;
    if (doge_loader_set_weights(ld, weights, err) != DOGE_OK) {
        doge_loader_free(ld);
        return NULL;
    }
    uint8_t *chunk = malloc(chunk_bytes ? chunk_bytes : 1);
    char **names = NULL;
    int count = 0, rc = DOGE_OK;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        rc = shard_names(dir, &names, &count, err);
        for (int i = 0; rc == DOGE_OK && i < count; i++) rc = feed_file(ld, dir, names[i], chunk, chunk_bytes, err);
    } else {
        rc = feed_file(ld, dir, "model.safetensors", chunk, chunk_bytes, err);
    }
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
    free(chunk);
    DogeModel *m = rc == DOGE_OK ? doge_loader_finish(ld, err) : NULL;
    doge_loader_free(ld);
    return m;
}
