/**
 * The engine worker: owns the wasm instance, the model, its KV cache and the tokenizer. Weights stream
 * from their source straight into wasm memory here, so they never cross threads.
 * @module worker
 */
import { serveRpc } from './protocol.js';
import { DogeError } from './errors.js';
import { Engine, LOGITS } from './wasm-engine.js';
import { openSource, parseJson, readJson } from './sources.js';
import { streamWeights } from './weights.js';
import { loadTokenizer } from './tokenizer.js';
import { resolveOptions, runGeneration } from './generation.js';
import { threadCap, watchFreeCores } from './free-cores.js';

let state = null; // {engine, model, session, tokenizer, config, generationConfig, freeCores}
let queue = Promise.resolve(); // one session: requests that use it run one after another

function serialized(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
}

function requireState() {
  if (!state) throw new DogeError('NOT_LOADED', 'no model is loaded');
  return state;
}

/** Caps the session's threads at the cores other processes leave free, where the OS tells (Node). */
function adaptThreads({ engine, session, freeCores }) {
  const free = engine.info.threads > 1 ? freeCores?.read() : null;
  if (free != null) session.setThreadCap(threadCap(free, engine.info.threads));
}

function requireTokenizer() {
  const { tokenizer } = requireState();
  if (!tokenizer) throw new DogeError('NO_TOKENIZER', 'this model has no tokenizer.json; pass token ids instead of text');
  return tokenizer;
}

// Argument types are checked once, by the public API (index.js); the worker checks values.
function checkText(text) {
  if (!text.isWellFormed()) throw new DogeError('BAD_INPUT', 'the text contains a lone UTF-16 surrogate (not valid Unicode)');
  return text;
}

function promptIds(input) {
  const s = requireState();
  if (typeof input === 'string') return requireTokenizer().encode(checkText(input));
  if (Array.isArray(input) && input.length > 0 && typeof input[0] === 'object') {
    for (const m of input) checkText(String(m?.content ?? ''));
    return requireTokenizer().encode(requireTokenizer().applyChatTemplate(input), { addSpecialTokens: false });
  }
  return checkIds(input, s.model.vocabSize);
}

/** Token ids (an array, index.js idList), each an integer in [0, vocabSize) (BAD_INPUT otherwise). */
function checkIds(ids, vocabSize) {
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new DogeError('BAD_INPUT', `token id ${id} at index ${i} is outside the vocabulary [0, ${vocabSize})`);
    }
  });
  return ids;
}

serveRpc({
  async load({ source, options = {} }, ctx) {
    if (state) throw new DogeError('ALREADY_LOADED', 'this worker already holds a model');
    const src = await openSource(source, { ...options, signal: ctx.signal });
    const configText = await src.readText('config.json');
    if (configText === null) throw new DogeError('NOT_FOUND', `${src.label}: no config.json`, { file: 'config.json' });
    const config = parseJson(configText, 'config.json', 'BAD_CONFIG');
    const generationConfig = (await readJson(src, 'generation_config.json', { code: 'BAD_CONFIG', optional: true })) ?? {};
    const tokenizer = await loadTokenizer(src);
    const freeCores = await watchFreeCores(); // from here: loading shows which cores other processes keep busy
    const engine = await Engine.create({ threads: options.threads ?? 1, build: options.build ?? 'auto' });
    let model;
    try {
      engine.warmUp(options.weights);
      model = await streamWeights(engine, src, configText, {
        weights: options.weights,
        onProgress: (p) => ctx.emit('progress', p),
        signal: ctx.signal,
      });
      if (tokenizer && tokenizer.vocabSize > model.vocabSize) {
        throw new DogeError('BAD_TOKENIZER', `tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocabulary (config.json vocab_size) is ${model.vocabSize}`, { file: 'tokenizer.json' });
      }
      if (options.moeRouting !== undefined) model.setMoeRouting(options.moeRouting);
      const session = model.createSession(options.contextLength);
      try {
        if (options.batchSize !== undefined) session.setBatch(options.batchSize);
        session.reserve(Math.min(session.batch, session.nCtx)); // the memory of a prompt of a full batch, taken now
        if (options.boundedCache) session.setBounded(true);
      } catch (e) {
        session.free();
        throw e;
      }
      adaptThreads({ engine, session, freeCores });
      state = { engine, model, session, tokenizer, config, generationConfig, freeCores };
    } catch (e) {
      model?.free();
      engine.dispose();
      throw e;
    }
    return info();
  },

  generate({ input, options }, ctx) {
    return serialized(async () => {
      const s = requireState();
      const opts = resolveOptions(options, s.generationConfig, s.config);
      const batch = pieceBatcher((pieces) => ctx.emit('tokens', pieces));
      try {
        return await runGeneration({
          engine: s.engine,
          session: s.session,
          vocabSize: s.model.vocabSize,
          tokenizer: s.tokenizer,
          promptIds: promptIds(input),
          opts,
          emit: batch.push,
          aborted: ctx.aborted,
          adaptThreads: () => adaptThreads(s),
        });
      } finally {
        batch.flush();
      }
    });
  },

  tokenize({ text, addSpecialTokens }) {
    return requireTokenizer().encode(checkText(text), { addSpecialTokens });
  },

  detokenize({ ids, skipSpecialTokens }) {
    return requireTokenizer().decode(checkIds(ids, requireState().model.vocabSize), { skipSpecialTokens });
  },

  applyChatTemplate({ messages, addGenerationPrompt }) {
    return requireTokenizer().applyChatTemplate(messages, { addGenerationPrompt });
  },

  logits({ ids }, ctx) {
    return serialized(() => {
      const s = requireState();
      const input = promptIds(ids);
      if (input.length === 0) throw new DogeError('BAD_INPUT', 'logits needs at least one token id');
      if (input.length > s.session.nCtx && !s.session.bounded) {
        throw new DogeError('CONTEXT_OVERFLOW', `${input.length} tokens do not fit the context of ${s.session.nCtx} (raise contextLength)`);
      }
      s.session.reset();
      const out = s.session.forward(input, s.model.task === 'causal-lm' ? LOGITS.ALL : LOGITS.LAST);
      s.session.reset();
      ctx.transfer = [out.buffer];
      return out;
    });
  },

  dispose() {
    // after any generation in flight (aborted by the caller) has left the session
    return serialized(() => {
      if (!state) return null;
      state.session.free();
      state.model.free();
      state.engine.dispose();
      state = null;
      return null;
    });
  },
});

/** Pieces go to the page (or Node's main thread) in batches: the first at once, then at most one message per
 * BATCH_MS. Waking the main thread for every token would take CPU from the engine threads on small machines. */
const BATCH_MS = 10;
function pieceBatcher(send) {
  let pending = [];
  let last = -Infinity;
  const flush = () => {
    if (pending.length) send(pending);
    pending = [];
    last = performance.now();
  };
  return {
    push: (piece) => {
      pending.push(piece);
      if (performance.now() - last >= BATCH_MS) flush();
    },
    flush,
  };
}

function info() {
  const { engine, model, session, tokenizer, config, generationConfig } = state;
  return {
    task: model.task,
    vocabSize: model.vocabSize,
    numLabels: model.numLabels,
    maxPositionEmbeddings: model.maxPositionEmbeddings,
    contextLength: session.nCtx,
    boundedCache: session.bounded,
    batchSize: session.batch,
    tiedHead: model.tiedHead,
    layout: model.layout,
    moeRouting: model.moeRouting,
    weights: model.weights,
    weightBytes: model.weightBytes,
    kvCacheBytes: session.cacheBytes,
    isMoe: config.is_moe === true,
    build: engine.info.build,
    threads: engine.info.threads,
    threadsReason: engine.info.reason,
    hasTokenizer: !!tokenizer,
    hasChatTemplate: !!tokenizer?.chatTemplate,
    bosTokenId: generationConfig.bos_token_id ?? config.bos_token_id ?? null,
    eosTokenId: generationConfig.eos_token_id ?? config.eos_token_id ?? null,
    generationConfig,
  };
}
