/* libFuzzer target: config.json parsing and weight planning (doge_loader_new) on arbitrary bytes. The sizes
 * may be huge: allocation failures must come back as errors. */
#include <stddef.h>
#include <stdint.h>

#include "../../src/doge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    DogeError err;
    DogeLoader *ld = doge_loader_new((const char *)data, size, &err);
    if (ld) {
        (void)doge_loader_weight_bytes(ld);
        doge_loader_free(ld);
    }
    return 0;
}
