/* Strict RFC 8259 JSON reader. Nodes and decoded strings live in two growable pools; links are kept as
 * indices while parsing (the pools move when they grow) and turned into pointers once at the end. */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

struct JsonDoc {
    JsonNode *nodes;
    size_t n_nodes, cap_nodes;
    char *chars;
    size_t n_chars, cap_chars;
};

/* While parsing, pointer fields hold (index + 1) cast to uintptr_t; 0 means none. */
#define IDX(p) ((size_t)(uintptr_t)(p))
#define AS_PTR(i) ((const void *)(uintptr_t)(i))

typedef struct {
    const char *s;
    size_t len, pos;
    JsonDoc *doc;
    char *err;
    size_t err_size;
} Parser;

static int fail(Parser *p, const char *what) {
    if (p->err && p->err_size) snprintf(p->err, p->err_size, "%s at byte %zu", what, p->pos);
    return -1;
}

static void skip_ws(Parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Returns the new node's index + 1, or 0 when out of memory. */
static size_t new_node(Parser *p, JsonType type) {
    JsonDoc *d = p->doc;
    if (d->n_nodes == d->cap_nodes) {
        size_t cap = d->cap_nodes ? d->cap_nodes * 2 : 64;
        JsonNode *nodes = realloc(d->nodes, cap * sizeof *nodes);
        if (!nodes) return 0;
        d->nodes = nodes;
        d->cap_nodes = cap;
    }
    JsonNode *n = &d->nodes[d->n_nodes++];
    memset(n, 0, sizeof *n);
    n->type = type;
    return d->n_nodes;
}

static int push_char(Parser *p, char c) {
    JsonDoc *d = p->doc;
    if (d->n_chars == d->cap_chars) {
        size_t cap = d->cap_chars ? d->cap_chars * 2 : 256;
        char *chars = realloc(d->chars, cap);
        if (!chars) return -1;
        d->chars = chars;
        d->cap_chars = cap;
    }
    d->chars[d->n_chars++] = c;
    return 0;
}

static int push_utf8(Parser *p, uint32_t cp) {
    char b[4];
    int n;
    if (cp < 0x80) { b[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    for (int i = 0; i < n; i++)
        if (push_char(p, b[i])) return -1;
    return 0;
}

static int hex4(Parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return fail(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

/* Parses a string at p->pos (which is at the opening quote); stores the decoded text in the char pool and
 * returns its offset + 1 via *off and its length via *n. */
static int parse_string(Parser *p, size_t *off, size_t *n) {
    p->pos++; /* opening quote */
    size_t start = p->doc->n_chars;
    for (;;) {
        if (p->pos >= p->len) return fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c == '"') break;
        if (c < 0x20) return fail(p, "control character in string");
        if (c != '\\') {
            if (push_char(p, (char)c)) return fail(p, "out of memory");
            continue;
        }
        if (p->pos >= p->len) return fail(p, "unterminated escape");
        char e = p->s[p->pos++];
        char out;
        switch (e) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp)) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->len - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                    p->pos += 2;
                    if (hex4(p, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "unpaired surrogate in \\u escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    return fail(p, "unpaired surrogate in \\u escape");
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail(p, "unpaired surrogate in \\u escape");
            }
            if (push_utf8(p, cp)) return fail(p, "out of memory");
            continue;
        }
        default: return fail(p, "bad escape in string");
        }
        if (push_char(p, out)) return fail(p, "out of memory");
    }
    if (push_char(p, '\0')) return fail(p, "out of memory");
    *off = start + 1;
    *n = p->doc->n_chars - start - 1;
    return 0;
}

static int parse_number(Parser *p, double *out) {
    size_t start = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len) return fail(p, "truncated number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    } else {
        return fail(p, "bad number");
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        size_t digits = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == digits) return fail(p, "bad number fraction");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        size_t digits = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == digits) return fail(p, "bad number exponent");
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n >= sizeof buf) return fail(p, "number too long");
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

static int match_word(Parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0) return fail(p, "unexpected token");
    p->pos += n;
    return 0;
}

/* Parses one value; returns its node index + 1 in *out. */
static int parse_value(Parser *p, int depth, size_t *out) {
    if (depth > JSON_MAX_DEPTH) return fail(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of input");
    char c = p->s[p->pos];
    size_t id;
    if (c == '{' || c == '[') {
        int is_obj = c == '{';
        id = new_node(p, is_obj ? JSON_OBJECT : JSON_ARRAY);
        if (!id) return fail(p, "out of memory");
        p->pos++;
        skip_ws(p);
        size_t last = 0, count = 0;
        char close = is_obj ? '}' : ']';
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
        } else {
            for (;;) {
                size_t key_off = 0, key_len = 0, child;
                if (is_obj) {
                    skip_ws(p);
                    if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected object key");
                    if (parse_string(p, &key_off, &key_len)) return -1;
                    if (strlen(p->doc->chars + key_off - 1) != key_len) return fail(p, "NUL character in object key");
                    skip_ws(p);
                    if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "expected ':'");
                    p->pos++;
                }
                if (parse_value(p, depth + 1, &child)) return -1;
                JsonNode *nodes = p->doc->nodes;
                nodes[child - 1].key = AS_PTR(key_off);
                if (last) nodes[last - 1].next = AS_PTR(child);
                else nodes[id - 1].child = AS_PTR(child);
                last = child;
                count++;
                skip_ws(p);
                if (p->pos >= p->len) return fail(p, "unexpected end of input");
                if (p->s[p->pos] == ',') { p->pos++; continue; }
                if (p->s[p->pos] == close) { p->pos++; break; }
                return fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
            }
        }
        p->doc->nodes[id - 1].count = count;
    } else if (c == '"') {
        size_t off, n;
        id = new_node(p, JSON_STRING);
        if (!id) return fail(p, "out of memory");
        if (parse_string(p, &off, &n)) return -1;
        p->doc->nodes[id - 1].str = AS_PTR(off);
        p->doc->nodes[id - 1].str_len = n;
    } else if (c == 't' || c == 'f') {
        id = new_node(p, JSON_BOOL);
        if (!id) return fail(p, "out of memory");
        if (match_word(p, c == 't' ? "true" : "false")) return -1;
        p->doc->nodes[id - 1].boolean = c == 't';
    } else if (c == 'n') {
        id = new_node(p, JSON_NULL);
        if (!id) return fail(p, "out of memory");
        if (match_word(p, "null")) return -1;
    } else {
        double v = 0;
        id = new_node(p, JSON_NUMBER);
        if (!id) return fail(p, "out of memory");
        if (parse_number(p, &v)) return -1;
        p->doc->nodes[id - 1].number = v;
    }
    *out = id;
    return 0;
}

JsonDoc *json_parse(const char *text, size_t len, char *err, size_t err_size) {
    JsonDoc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        if (err && err_size) snprintf(err, err_size, "out of memory");
        return NULL;
    }
    Parser p = {text, len, 0, doc, err, err_size};
    size_t root;
    if (parse_value(&p, 0, &root)) goto bad;
    skip_ws(&p);
    if (p.pos != len) {
        fail(&p, "trailing characters after JSON value");
        goto bad;
    }
    /* Links and strings become pointers now that the pools no longer move. */
    for (size_t i = 0; i < doc->n_nodes; i++) {
        JsonNode *n = &doc->nodes[i];
        n->child = IDX(n->child) ? &doc->nodes[IDX(n->child) - 1] : NULL;
        n->next = IDX(n->next) ? &doc->nodes[IDX(n->next) - 1] : NULL;
        n->key = IDX(n->key) ? doc->chars + IDX(n->key) - 1 : NULL;
        if (n->type == JSON_STRING) n->str = doc->chars + IDX(n->str) - 1;
    }
    return doc;
bad:
    json_free(doc);
    return NULL;
}

const JsonNode *json_root(const JsonDoc *doc) { return doc && doc->n_nodes ? &doc->nodes[0] : NULL; }

void json_free(JsonDoc *doc) {
    if (!doc) return;
    free(doc->nodes);
    free(doc->chars);
    free(doc);
}

const JsonNode *json_get(const JsonNode *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    const JsonNode *found = NULL;
    for (const JsonNode *c = obj->child; c; c = c->next)
        if (strcmp(c->key, key) == 0) found = c; /* the last duplicate wins, like Python's json */
    return found;
}

const JsonNode *json_at(const JsonNode *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY) return NULL;
    const JsonNode *c = arr->child;
    while (c && i--) c = c->next;
    return c;
}
