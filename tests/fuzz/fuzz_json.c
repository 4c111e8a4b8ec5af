/* libFuzzer target: the JSON reader on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "../../src/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[160];
    JsonDoc *doc = json_parse((const char *)data, size, err, sizeof err);
    if (doc) {
        const JsonNode *root = json_root(doc);
        (void)json_get(root, "hidden_size");
        (void)json_at(root, 0);
    }
    json_free(doc);
    return 0;
}
