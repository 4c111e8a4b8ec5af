/* libFuzzer target: the streaming safetensors loader state machine. The first input byte picks a chunk
 * size; the rest is fed as one safetensors file for a small fixed config. Any model that loads is run once. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/doge.h"

static const char CONFIG[] =
    "{\"model_type\": \"doge\", \"vocab_size\": 16, \"hidden_size\": 8, \"intermediate_size\": 16, "
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"keep_window_size\": 2, "
    "\"max_position_embeddings\": 8, \"tie_word_embeddings\": true}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const size_t chunk = 1 + data[0] % 64;
    data++;
    size--;
    DogeError err;
    DogeLoader *ld = doge_loader_new(CONFIG, strlen(CONFIG), &err);
    if (!ld) return 0;
    int rc = doge_loader_begin_file(ld, "model.safetensors", &err);
    for (size_t off = 0; rc == DOGE_OK && off < size; off += chunk)
        rc = doge_loader_feed(ld, data + off, size - off < chunk ? size - off : chunk, &err);
    if (rc == DOGE_OK) rc = doge_loader_end_file(ld, &err);
    DogeModel *m = rc == DOGE_OK ? doge_loader_finish(ld, &err) : NULL;
    doge_loader_free(ld);
    if (m) {
        DogeSession *s = doge_session_new(m, 8, 1, &err);
        if (s) {
            const int32_t ids[4] = {0, 5, 15, 3};
            float out[16];
            (void)doge_forward(s, ids, 4, NULL, 0, &err);
            (void)doge_forward(s, ids, 1, out, 1, &err);
            doge_session_free(s);
        }
        doge_model_free(m);
    }
    return 0;
}
