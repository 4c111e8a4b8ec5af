/**
 * The benchmark behind `doge-wasm bench` (and its browser twin in tools/bench): load a model, prefill a fixed
 * prompt, decode greedily, prefill the prompt once more, report speeds and memory as one flat object with
 * snake_case keys.
 * @module bench
 */
import { loadModel } from './index.js';
import { DogeError } from './errors.js';

/** The benchmark prompt: fixed ids spread over the vocabulary (the same in the peer benchmarks, tools/bench). */
export function benchPrompt(length, vocabSize) {
  return Array.from({ length }, (_, i) => (1000 + 37 * i) % vocabSize);
}

/**
 * @param {string|Iterable<File|{name: string, blob: Blob}>} source
 * @param {{promptTokens?: number, newTokens?: number} & import('./index.js').LoadOptions} [options]
 */
export async function benchModel(source, { promptTokens = 256, newTokens = 128, onProgress, ...loadOptions } = {}) {
  const loaded = {};
  const t0 = performance.now();
  const model = await loadModel(source, {
    contextLength: promptTokens + newTokens,
    ...loadOptions,
    onProgress: (p) => {
      loaded[p.file] = p.loaded;
      onProgress?.(p);
    },
  });
  const loadMs = performance.now() - t0;
  try {
    if (model.info.task !== 'causal-lm') throw new DogeError('BAD_ARGUMENT', `${source}: bench needs a causal LM`);
    const t1 = performance.now();
    let ttftMs = null;
    const stream = model.generate(benchPrompt(promptTokens, model.info.vocabSize), { maxNewTokens: newTokens, temperature: 0, eosTokenId: [] });
    for await (const piece of stream) if (ttftMs === null && piece.tokenId !== null) ttftMs = performance.now() - t1;
    const { ids, stats } = await stream.result;
    // The same prompt again: the first one after loading also pays for one-time work (the engine's optimizing
    // compiler still catching up, the prompt workspace's first touch).
    const again = model.generate(benchPrompt(promptTokens, model.info.vocabSize), { maxNewTokens: 1, temperature: 0, eosTokenId: [] });
    for await (const _ of again);
    const warm = (await again.result).stats;
    const loadedBytes = Object.values(loaded).reduce((a, b) => a + b, 0);
    const mb = (bytes) => +(bytes / 1e6).toFixed(1);
    return {
      prefill_tok_s: +stats.prefillTokensPerSecond.toFixed(1),
      prefill_again_tok_s: +warm.prefillTokensPerSecond.toFixed(1),
      decode_tok_s: +stats.tokensPerSecond.toFixed(1),
      ttft_ms: +ttftMs.toFixed(2),
      load_ms: +loadMs.toFixed(1),
      load_mb_s: +(loadedBytes / 1e6 / (loadMs / 1000)).toFixed(1),
      threads: stats.threads,
      decode_threads: +stats.decodeThreads.toFixed(2),
      weights: model.info.weights,
      build: stats.build,
      prompt_tokens: promptTokens,
      new_tokens: stats.generatedTokens,
      weight_mb: mb(model.info.weightBytes),
      kv_cache_mb: mb(model.info.kvCacheBytes),
      wasm_memory_mb: mb(stats.memoryBytes),
      bounded_cache: model.info.boundedCache,
      first_token: ids[0],
    };
  } finally {
    await model.dispose();
  }
}
