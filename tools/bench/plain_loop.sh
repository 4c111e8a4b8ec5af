#!/bin/sh
# Builds the plain C loop peer (tools/bench/plain_loop.c) two ways:
#   build/bench/plain_loop            native: gcc -O3 -march=native -ffast-math
#   build/bench/plain-wasm/plain_loop.js  Emscripten -O3 -ffast-math -msimd128, single thread,
#                                     NODERAWFS (reads the model directory straight from the disk),
#                                     SINGLE_FILE (the 3.1.6 loader would fetch() a path in Node 20)
# Run:  build/bench/plain_loop --model build/bench/models/doge-20m
#       node build/bench/plain-wasm/plain_loop.js --model build/bench/models/doge-20m
# The repository's package.json says "type": "module", so the CommonJS Emscripten output gets its own
# directory with a {"type":"commonjs"} package.json.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p build/bench/plain-wasm
gcc -O3 -march=native -ffast-math -std=c11 -Wall -o build/bench/plain_loop \
  tools/bench/plain_loop.c -lm
printf '{"type":"commonjs"}\n' > build/bench/plain-wasm/package.json
NODE_PATH=/usr/share/nodejs emcc -O3 -ffast-math -msimd128 -std=c11 -Wall \
  -sNODERAWFS=1 -sENVIRONMENT=node -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=64MB -sMAXIMUM_MEMORY=4GB \
  -sEXIT_RUNTIME=1 -sSINGLE_FILE=1 -o build/bench/plain-wasm/plain_loop.js tools/bench/plain_loop.c
echo "built build/bench/plain_loop and build/bench/plain-wasm/plain_loop.js" >&2
