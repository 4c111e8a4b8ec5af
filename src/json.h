/* A small strict JSON reader for config.json and safetensors headers.
 * The whole document is parsed into a tree of nodes owned by one JsonDoc; strings are decoded to UTF-8.
 * Depth and size are bounded so hostile input cannot exhaust the stack. */
#ifndef DOGE_JSON_H
#define DOGE_JSON_H

#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonNode {
    JsonType type;
    int boolean;
    double number;
    const char *str;          /* JSON_STRING: decoded, NUL-terminated (may contain NUL, see str_len) */
    size_t str_len;
    const char *key;          /* set when this node is a member of an object */
    size_t count;             /* JSON_ARRAY / JSON_OBJECT: number of children */
    const struct JsonNode *child; /* first child */
    const struct JsonNode *next;  /* next sibling */
} JsonNode;

typedef struct JsonDoc JsonDoc;

/* Parses text[0..len). On failure returns NULL and writes a one-line reason (with byte offset) to err. */
JsonDoc *json_parse(const char *text, size_t len, char *err, size_t err_size);
const JsonNode *json_root(const JsonDoc *doc);
void json_free(JsonDoc *doc);

/* Member of an object by key, or NULL (also when obj is NULL or not an object). */
const JsonNode *json_get(const JsonNode *obj, const char *key);
/* i-th element of an array, or NULL. */
const JsonNode *json_at(const JsonNode *arr, size_t i);

#endif
