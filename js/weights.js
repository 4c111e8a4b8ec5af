/**
 * Streams a model's safetensors files into the wasm core: config.json first (so the core sizes the weights),
 * then each file chunk by chunk, with progress events as bytes arrive.
 * @module weights
 */
import { DogeError } from './errors.js';
import { RESTART } from './download.js';

/** Weights that still leave room for the KV cache, activations and the runtime in 4 GiB of wasm memory. */
const MAX_WEIGHT_BYTES = 2 ** 32 - 2 ** 28;

/** The core reads the checkpoint layout off the first file's tensors (q/k norms present, the rows of A:
 * doge-legacy.md), so the shard holding one of these goes first: by key order the index would put lm_head's shard,
 * which holds neither, first. */
const LAYOUT_TENSORS = ['model.layers.0.self_attn.q_norm.weight', 'model.layers.0.self_attn.A'];

/**
 * The safetensors files of a model: the shards named by model.safetensors.index.json (the one telling the
 * layout first, then in order of first appearance), or model.safetensors.
 * @param {import('./sources.js').ModelSource} source
 * @returns {Promise<string[]>}
 */
export async function weightFiles(source) {
  const indexText = await source.readText('model.safetensors.index.json');
  if (indexText === null) return ['model.safetensors'];
  let index;
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    throw new DogeError('BAD_SAFETENSORS', `model.safetensors.index.json: not valid JSON (${e.message})`, { file: 'model.safetensors.index.json' });
  }
  const map = index?.weight_map;
  if (!map || typeof map !== 'object') {
    throw new DogeError('BAD_SAFETENSORS', "model.safetensors.index.json: no 'weight_map' object", { file: 'model.safetensors.index.json' });
  }
  const files = [...new Set(Object.values(map))];
  for (const f of files) {
    if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f === '..') {
      throw new DogeError('BAD_SAFETENSORS', `model.safetensors.index.json: '${f}' does not name a file of the model`, { file: 'model.safetensors.index.json' });
    }
  }
  const first = LAYOUT_TENSORS.map((name) => map[name]).find((f) => f !== undefined);
  return first === undefined ? files : [first, ...files.filter((f) => f !== first)];
}

/**
 * @param {import('./wasm-engine.js').Engine} engine
 * @param {import('./sources.js').ModelSource} source
 * @param {string} configText
 * @param {{weights?: 'f32'|'int8', onProgress?: (p: {file: string, loaded: number, total: number|null}) => void, signal?: AbortSignal}} [opts]
 * @returns {Promise<import('./wasm-engine.js').WasmModel>}
 */
export async function streamWeights(engine, source, configText, { weights, onProgress, signal } = {}) {
  const loader = engine.createLoader(configText, weights);
  try {
    // refuse before downloading what cannot fit: wasm32 memory ends at 4 GiB
    if (loader.weightBytes > MAX_WEIGHT_BYTES) {
      throw new DogeError('OUT_OF_MEMORY', `config.json: the model needs ${(loader.weightBytes / 2 ** 30).toFixed(2)} GiB of ${weights ?? 'f32'} weights; ` +
        `wasm memory holds at most 4 GiB`, { file: 'config.json' });
    }
    for (const file of await weightFiles(source)) {
      if (signal?.aborted) throw new DogeError('ABORTED', `${file}: loading aborted`, { file });
      const { size, chunks } = await source.open(file, { signal });
      loader.beginFile(file);
      let loaded = 0;
      onProgress?.({ file, loaded, total: size });
      try {
        for await (const chunk of chunks) {
          if (signal?.aborted) break;
          if (chunk === RESTART) { // the server could not resume: the file comes again from byte 0
            loader.restartFile();
            loaded = 0;
            onProgress?.({ file, loaded, total: size });
            continue;
          }
          const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
          loader.feed(bytes);
          loaded += bytes.length;
          onProgress?.({ file, loaded, total: size });
        }
      } catch (e) {
        if (e instanceof DogeError) throw e;
        if (!signal?.aborted) throw new DogeError('NETWORK', `${file}: reading failed after ${loaded} bytes: ${e.message}`, { file, cause: e });
      }
      if (signal?.aborted) throw new DogeError('ABORTED', `${file}: loading aborted`, { file });
      loader.endFile();
    }
    return loader.finish();
  } finally {
    loader.free();
  }
}
