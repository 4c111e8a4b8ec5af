/**
 * The wasm core, one instance per engine: loads the SIMD build with pthreads or without, and wraps the C
 * API (doge.h) in small classes. Memory views are re-read on every access because the heap can grow.
 * @module wasm-engine
 */
import { checkInteger, coreError, DogeError } from './errors.js';

const DIST = new URL('../dist/', import.meta.url);
const ERROR_BYTES = 4 + 512; // DogeError {int code; char msg[512];}
const STAGING_BYTES = 1 << 20; // bytes copied into wasm memory per loader call

/** Whether this runtime can run the pthreads build (SharedArrayBuffer usable). */
export function threadsSupported() {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  return typeof globalThis.crossOriginIsolated === 'boolean' ? globalThis.crossOriginIsolated : true;
}

async function instantiate(buildName, poolSize) {
  const isNode = typeof process === 'object' && process.versions?.node;
  if (isNode) {
    const { createRequire } = await import('node:module');
    const { readFile } = await import('node:fs/promises');
    const require = createRequire(import.meta.url);
    const factory = require(new URL(`${buildName}.js`, DIST).pathname);
    const wasmBinary = await readFile(new URL(`${buildName}.wasm`, DIST));
    return factory({ wasmBinary, dogePoolSize: poolSize });
  }
  const factory = await loadBrowserFactory(buildName);
  const wasmBinary = await (await fetch(new URL(`${buildName}.wasm`, DIST))).arrayBuffer();
  return factory({
    wasmBinary,
    dogePoolSize: poolSize,
    mainScriptUrlOrBlob: new URL(`${buildName}.js`, DIST).href,
    locateFile: (path) => new URL(path, DIST).href,
  });
}

/** In a browser the Emscripten glue is a classic script; evaluate it (also inside module workers, which have
 * no importScripts) and take its factory. */
async function loadBrowserFactory(buildName) {
  const url = new URL(`${buildName}.js`, DIST).href;
  const res = await fetch(url);
  if (!res.ok) throw new DogeError('NOT_FOUND', `${url}: HTTP ${res.status}`);
  const text = await res.text();
  return new Function(`${text}\nreturn createDogeModule;`)();
}

export class Engine {
  /**
   * @param {{threads?: number, build?: 'auto'|'threads'|'single'}} [opts]
   * @returns {Promise<Engine>}
   */
  static async create({ threads = 1, build = 'auto' } = {}) {
    checkInteger('threads', threads, 1, 256);
    if (!BUILDS.includes(build)) throw new DogeError('BAD_ARGUMENT', `build must be one of ${BUILDS.join(', ')}, got '${build}'`);
    if (build === 'single' && threads > 1) throw new DogeError('BAD_ARGUMENT', `threads: ${threads} needs the threads build; build 'single' runs one thread`);
    let useThreads;
    let reason;
    if (build === 'single') {
      useThreads = false;
      reason = 'single-thread build requested';
    } else if (!threadsSupported()) {
      if (build === 'threads') throw new DogeError('UNSUPPORTED_RUNTIME', 'the pthreads build needs SharedArrayBuffer (a cross-origin isolated page)');
      if (threads > 1) throw new DogeError('UNSUPPORTED_RUNTIME', `${threads} threads need SharedArrayBuffer (a cross-origin isolated page)`);
      useThreads = false;
      reason = 'SharedArrayBuffer is not available (the page is not cross-origin isolated)';
    } else {
      useThreads = true;
      reason = 'SharedArrayBuffer is available';
    }
    const buildName = useThreads ? 'doge-mt' : 'doge-st';
    // Emscripten 3.1.6 never finishes instantiating with a pool of 0 workers, so keep at least one.
    const mod = await instantiate(buildName, useThreads ? Math.max(threads - 1, 1) : 0);
    return new Engine(mod, { build: useThreads ? 'threads' : 'single', threads: useThreads ? threads : 1, reason });
  }

  constructor(mod, info) {
    this.mod = mod;
    /** @type {{build: 'threads'|'single', threads: number, reason: string}} */
    this.info = info;
    this.errPtr = mod._malloc(ERROR_BYTES);
  }

  /** Throws the C error left in the shared error struct. */
  raise(status) {
    const msg = this.mod.UTF8ToString(this.errPtr + 4, 512);
    throw coreError(status, msg);
  }

  status() {
    return this.mod.HEAP32[this.errPtr >> 2];
  }

  /** Copies a JS string into wasm memory; the caller frees it. */
  allocString(text) {
    const n = this.mod.lengthBytesUTF8(text) + 1;
    const ptr = this.mod._malloc(n);
    this.mod.stringToUTF8(text, ptr, n);
    return { ptr, len: n - 1 };
  }

  /**
   * @param {string} configText the text of config.json
   * @param {'f32'|'int8'} [weights] the weight format in memory
   */
  createLoader(configText, weights = 'f32') {
    const format = weightsFormat(weights);
    const { ptr, len } = this.allocString(configText);
    const handle = this.mod._doge_loader_new(ptr, len, this.errPtr);
    this.mod._free(ptr);
    if (!handle) this.raise(this.status());
    if (this.mod._doge_loader_set_weights(handle, format, this.errPtr) !== 0) {
      const status = this.status();
      this.mod._doge_loader_free(handle);
      this.raise(status);
    }
    return new WasmLoader(this, handle);
  }

  /**
   * Runs a tiny model made in the core through the forward pass (doge.h doge_warm_up), so that the wasm
   * engine's optimizing compiles of the hot functions start now and run while the real weights stream in.
   * @param {'f32'|'int8'} [weights]
   */
  warmUp(weights = 'f32') {
    if (this.mod._doge_warm_up(weightsFormat(weights), this.errPtr) !== 0) this.raise(this.status());
  }

  /** Bytes of wasm memory (it only grows, so this is also its peak). */
  get memoryBytes() {
    return this.mod.HEAPU8.length;
  }

  /** Ends the pthread workers so that Node can exit. */
  dispose() {
    if (!this.mod) return;
    this.mod._free(this.errPtr);
    this.mod.PThread?.terminateAllThreads();
    this.mod = null;
  }
}

/** A C object owned by JS: `free()` releases it once through its C free function (doge_<kind>_free). */
class CObject {
  /** @param {Engine} engine @param {number} handle @param {string} kind loader, sampler, model or session */
  constructor(engine, handle, kind) {
    this.engine = engine;
    this.handle = handle;
    this.kind = kind;
  }

  free() {
    if (!this.handle) return;
    this.engine.mod[`_doge_${this.kind}_free`](this.handle);
    this.handle = 0;
  }
}

export class WasmLoader extends CObject {
  constructor(engine, handle) {
    super(engine, handle, 'loader');
    this.staging = engine.mod._malloc(STAGING_BYTES);
  }

  /** Bytes of weight memory the config implies, before any weight arrives. */
  get weightBytes() {
    return Number(this.engine.mod._doge_loader_weight_bytes(this.handle));
  }

  check(status) {
    if (status !== 0) this.engine.raise(status);
  }

  beginFile(name) {
    const { ptr } = this.engine.allocString(name);
    const status = this.engine.mod._doge_loader_begin_file(this.handle, ptr, this.engine.errPtr);
    this.engine.mod._free(ptr);
    this.check(status);
  }

  /** Pushes a chunk of any size (copied through a fixed staging buffer, never held twice). */
  feed(bytes) {
    const mod = this.engine.mod;
    for (let off = 0; off < bytes.length; off += STAGING_BYTES) {
      const piece = bytes.subarray(off, Math.min(off + STAGING_BYTES, bytes.length));
      mod.HEAPU8.set(piece, this.staging);
      this.check(mod._doge_loader_feed(this.handle, this.staging, piece.length, this.engine.errPtr));
    }
  }

  /** Forgets what arrived of the current file; it is fed again from byte 0. */
  restartFile() {
    this.check(this.engine.mod._doge_loader_restart_file(this.handle, this.engine.errPtr));
  }

  endFile() {
    this.check(this.engine.mod._doge_loader_end_file(this.handle, this.engine.errPtr));
  }

  /** @returns {WasmModel} */
  finish() {
    const m = this.engine.mod._doge_loader_finish(this.handle, this.engine.errPtr);
    if (!m) this.engine.raise(this.engine.status());
    return new WasmModel(this.engine, m);
  }

  free() {
    if (this.handle) this.engine.mod._free(this.staging);
    super.free();
  }
}

export const LOGITS = { NONE: 0, LAST: 1, ALL: 2 };
export const MOE_ROUTING = ['hf', 'legacy_2025_03']; // DogeMoeRouting, by number
export const WEIGHTS = ['f32', 'int8']; // DogeWeights, by number

/** The DogeWeights number of a weight format name. */
function weightsFormat(weights) {
  const format = WEIGHTS.indexOf(weights);
  if (format < 0) throw new DogeError('BAD_ARGUMENT', `weights must be one of ${WEIGHTS.join(', ')}, got '${weights}'`);
  return format;
}
const BUILDS = ['auto', 'threads', 'single'];
/** The most tokens a context or a batch may hold (the CLI's bound too). */
const MAX_TOKENS = 1 << 24;

/** A C sampler (doge.h DogeSamplingParams): repetition penalty, temperature, top-k, top-p, min-p. */
export class WasmSampler extends CObject {
  /**
   * @param {Engine} engine
   * @param {number} vocabSize
   * @param {{temperature: number, topK: number, topP: number, minP: number, repetitionPenalty: number, seed: number}} p
   */
  constructor(engine, vocabSize, p) {
    super(engine, 0, 'sampler');
    const mod = engine.mod;
    this.vocabSize = vocabSize;
    const ptr = mod._malloc(32);
    const view = new DataView(mod.HEAPU8.buffer);
    view.setFloat32(ptr, p.temperature, true);
    view.setInt32(ptr + 4, p.topK, true);
    view.setFloat32(ptr + 8, p.topP, true);
    view.setFloat32(ptr + 12, p.minP, true);
    view.setFloat32(ptr + 16, p.repetitionPenalty, true);
    view.setBigUint64(ptr + 24, BigInt.asUintN(64, BigInt(p.seed)), true);
    this.handle = mod._doge_sampler_new(vocabSize, ptr, engine.errPtr);
    mod._free(ptr);
    if (!this.handle) engine.raise(engine.status());
  }

  /** Adds context tokens for the repetition penalty. */
  accept(ids) {
    for (const id of ids) {
      const status = this.engine.mod._doge_sampler_accept(this.handle, id, this.engine.errPtr);
      if (status !== 0) this.engine.raise(status);
    }
  }

  /**
   * Applies the sampler to given logits (for tests and tools): returns the chosen token and the final
   * distribution it drew from.
   * @param {Float32Array} logits
   */
  sampleFrom(logits) {
    const mod = this.engine.mod;
    const V = this.vocabSize;
    if (logits.length !== V) throw new DogeError('BAD_ARGUMENT', `sampleFrom: ${logits.length} logits for a vocabulary of ${V}`);
    const lp = mod._malloc(4 * V);
    const pp = mod._malloc(4 * V);
    try {
      mod.HEAPF32.set(logits, lp >> 2);
      const token = mod._doge_sampler_sample(this.handle, lp, pp);
      if (token < 0) throw new DogeError('NON_FINITE_LOGITS', 'sampleFrom: the logits hold NaN (or +inf when sampling)');
      return { token, probs: mod.HEAPF32.slice(pp >> 2, (pp >> 2) + V) };
    } finally {
      mod._free(lp);
      mod._free(pp);
    }
  }

}

export class WasmModel extends CObject {
  constructor(engine, handle) {
    super(engine, handle, 'model');
    const mod = engine.mod;
    this.task = mod._doge_model_task(handle) === 1 ? 'sequence-classification' : 'causal-lm';
    this.vocabSize = mod._doge_model_vocab_size(handle);
    this.numLabels = mod._doge_model_num_labels(handle);
    this.maxPositionEmbeddings = mod._doge_model_max_position_embeddings(handle);
    this.tiedHead = mod._doge_model_tied_head(handle) === 1;
    /** 'transformers' (HF 4.57), 'original' (the remote-code layout most SmallDoge repos hold) or 'mid' */
    this.layout = mod.UTF8ToString(mod._doge_model_layout(handle));
    this.moeRouting = 'hf';
    /** 'f32' or 'int8' */
    this.weights = WEIGHTS[mod._doge_model_weights(handle)];
    this.weightBytes = mod._doge_model_weight_bytes(handle);
  }

  /** CDMoE routing: 'hf' or 'legacy_2025_03' (the original code of 2025-03-13..04-14). */
  setMoeRouting(mode) {
    const code = MOE_ROUTING.indexOf(mode);
    if (code < 0) throw new DogeError('BAD_ARGUMENT', `moeRouting must be one of ${MOE_ROUTING.join(', ')}, got '${mode}'`);
    const status = this.engine.mod._doge_model_set_moe_routing(this.handle, code, this.engine.errPtr);
    if (status !== 0) this.engine.raise(status);
    this.moeRouting = mode;
  }

  /** FNV-1a checksum of the loaded weights, as 16 hex digits. */
  weightsHash() {
    return BigInt.asUintN(64, BigInt(this.engine.mod._doge_model_weights_hash(this.handle))).toString(16).padStart(16, '0');
  }

  /**
   * @param {number} [nCtx] tokens the KV cache holds (default: max_position_embeddings)
   * @returns {WasmSession}
   */
  createSession(nCtx) {
    if (nCtx !== undefined) checkInteger('contextLength', nCtx, 1, MAX_TOKENS);
    const s = this.engine.mod._doge_session_new(this.handle, nCtx ?? 0, this.engine.info.threads, this.engine.errPtr);
    if (!s) this.engine.raise(this.engine.status());
    return new WasmSession(this, s);
  }

}

export class WasmSession extends CObject {
  constructor(model, handle) {
    super(model.engine, handle, 'session');
    this.model = model;
    this.nCtx = this.engine.mod._doge_session_n_ctx(handle);
    this.threads = this.engine.mod._doge_session_threads(handle);
    this.cacheBytes = this.engine.mod._doge_session_cache_bytes(handle);
    this.bounded = false;
  }

  /** Tokens per piece of a long call (setBatch). */
  get batch() {
    return this.engine.mod._doge_session_batch(this.handle);
  }

  /** Tokens seen since the last reset (the next token's position). */
  get pos() {
    return this.engine.mod._doge_session_pos(this.handle);
  }

  /** Switches the bounded cache (doge.h doge_session_set_bounded) on an empty session. */
  setBounded(on) {
    const status = this.engine.mod._doge_session_set_bounded(this.handle, on ? 1 : 0, this.engine.errPtr);
    if (status !== 0) this.engine.raise(status);
    this.bounded = !!on;
  }

  reset() {
    this.engine.mod._doge_session_reset(this.handle);
  }

  /** Runs calls longer than `tokens` in pieces of that many (doge.h doge_session_set_batch). */
  setBatch(tokens) {
    checkInteger('batchSize', tokens, 1, MAX_TOKENS);
    this.engine.mod._doge_session_set_batch(this.handle, tokens);
  }

  /** Lets calls use at most `threads` threads (doge.h doge_session_set_thread_cap). */
  setThreadCap(threads) {
    if (this.engine.mod._doge_session_set_thread_cap(this.handle, threads, this.engine.errPtr) !== 0) this.engine.raise(this.engine.status());
  }

  /** The mean number of threads the one-token steps since the last reset started on (0 before any). */
  get meanThreads() {
    return this.engine.mod._doge_session_mean_threads(this.handle);
  }

  /** Allocates now the activations of a call of `tokens` tokens (doge.h doge_session_reserve). */
  reserve(tokens) {
    if (this.engine.mod._doge_session_reserve(this.handle, tokens, this.engine.errPtr) !== 0) this.engine.raise(this.engine.status());
  }

  /**
   * One forward call over new tokens, appended to the KV cache.
   * @param {ArrayLike<number>} ids
   * @param {number} mode LOGITS.NONE | LAST | ALL
   * @returns {Float32Array|null} a copy of the logits
   */
  forward(ids, mode) {
    const mod = this.engine.mod;
    const n = ids.length;
    const rows = this.model.task === 'causal-lm' ? (mode === LOGITS.ALL ? n : 1) : 1;
    const width = this.model.task === 'causal-lm' ? this.model.vocabSize : this.model.numLabels;
    const idsPtr = mod._malloc(4 * Math.max(n, 1));
    const outPtr = mode === LOGITS.NONE ? 0 : mod._malloc(4 * rows * width);
    try {
      mod.HEAP32.set(Int32Array.from(ids), idsPtr >> 2);
      const status = mod._doge_forward(this.handle, idsPtr, n, outPtr, mode, this.engine.errPtr);
      if (status !== 0) this.engine.raise(status);
      return outPtr ? mod.HEAPF32.slice(outPtr >> 2, (outPtr >> 2) + rows * width) : null;
    } finally {
      mod._free(idsPtr);
      if (outPtr) mod._free(outPtr);
    }
  }

  /**
   * One generation step: runs ids through the model and samples the next token in C.
   * @param {ArrayLike<number>} ids
   * @param {WasmSampler} sampler
   * @returns {number} the next token id
   */
  next(ids, sampler) {
    const mod = this.engine.mod;
    const idsPtr = mod._malloc(4 * Math.max(ids.length, 1) + 4);
    try {
      mod.HEAP32.set(Int32Array.from(ids), idsPtr >> 2);
      const outPtr = idsPtr + 4 * Math.max(ids.length, 1);
      const status = mod._doge_session_next(this.handle, sampler.handle, idsPtr, ids.length, outPtr, this.engine.errPtr);
      if (status !== 0) this.engine.raise(status);
      return mod.HEAP32[outPtr >> 2];
    } finally {
      mod._free(idsPtr);
    }
  }
}
