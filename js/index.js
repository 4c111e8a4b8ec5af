/**
 * doge-wasm: run Doge (SmallDoge) language models in WebAssembly, in Node.js and in browsers.
 *
 *   import { loadModel } from 'doge-wasm';
 *   const model = await loadModel('SmallDoge/Doge-20M-Instruct', { onProgress: (p) => console.log(p) });
 *   for await (const { text } of model.chat([{ role: 'user', content: 'Hi!' }])) process.stdout.write(text);
 *   await model.dispose();
 *
 * The engine runs in a worker (worker_threads in Node, a Web Worker in browsers); this module is the
 * small main-thread API around it.
 * @module doge-wasm
 */
import { RpcClient, spawnWorker } from './protocol.js';
import { DogeError } from './errors.js';
import { openSource } from './sources.js';
import { loadTokenizer } from './tokenizer.js';

export { DogeError } from './errors.js';
export { threadsSupported } from './wasm-engine.js';

/**
 * Loads a model into a new engine worker.
 * @param {string|Iterable<File|Blob>} source a local directory (Node), a URL prefix, a hub repo id, or Files
 * @param {import('./index.js').LoadOptions} [options]
 * @returns {Promise<DogeModel>}
 */
export async function loadModel(source, options = {}) {
  const { onProgress, signal, ...rest } = options;
  const rpc = new RpcClient(await spawnWorker());
  try {
    const info = await rpc.request('load', { source: cloneableSource(source), options: rest }, {
      signal,
      onEvent: (event, data) => event === 'progress' && onProgress?.(data),
    });
    return new DogeModel(rpc, info);
  } catch (e) {
    rpc.terminate();
    throw e;
  }
}

/** Files lose their name when Node clones them to a worker, so they travel as {name, blob}. */
function cloneableSource(source) {
  if (typeof source === 'string' || !source || typeof source[Symbol.iterator] !== 'function') return source;
  return [...source].map((f) => ({ name: f.name, blob: f.blob ?? f }));
}

/**
 * Loads only the tokenizer of a model (tokenizer.json + tokenizer_config.json), in this thread.
 * @param {string|Iterable<File|Blob>} source
 */
export async function loadModelTokenizer(source, options = {}) {
  const tokenizer = await loadTokenizer(await openSource(source, options));
  if (!tokenizer) throw new DogeError('NOT_FOUND', `${typeof source === 'string' ? source : 'source'}: no tokenizer.json`, { file: 'tokenizer.json' });
  return tokenizer;
}

export class DogeModel {
  /** @param {RpcClient} rpc @param {object} info */
  constructor(rpc, info) {
    this.rpc = rpc;
    /** What was loaded and how it runs: task, vocabSize, contextLength, build ('threads'|'single'), threads, threadsReason, ... */
    this.info = info;
  }

  /**
   * Streams generated text token by token.
   * @param {string|number[]|{role: string, content: string}[]} input a prompt, token ids, or chat messages
   * @param {import('./index.js').GenerateOptions} [options]
   * @returns {GenerationStream}
   */
  generate(input, options = {}) {
    return new GenerationStream(this.rpc, input, options);
  }

  /** Applies the chat template to messages and streams the reply. */
  chat(messages, options = {}) {
    if (!Array.isArray(messages) || messages.some((m) => typeof m?.role !== 'string' || typeof m?.content !== 'string')) {
      throw new DogeError('BAD_ARGUMENT', 'chat() takes a list of {role, content} messages');
    }
    return this.generate(messages, options);
  }

  /** @returns {Promise<number[]>} */
  tokenize(text, { addSpecialTokens = true } = {}) {
    return this.rpc.request('tokenize', { text, addSpecialTokens });
  }

  /** @returns {Promise<string>} */
  detokenize(ids, { skipSpecialTokens = false } = {}) {
    return this.rpc.request('detokenize', { ids: Array.from(ids), skipSpecialTokens });
  }

  /** @returns {Promise<string>} the prompt text the chat template makes of messages */
  applyChatTemplate(messages, { addGenerationPrompt = true } = {}) {
    return this.rpc.request('applyChatTemplate', { messages, addGenerationPrompt });
  }

  /**
   * One prefill of token ids: logits [S, V] row-major (causal LM) or [numLabels] (sequence classifier).
   * @returns {Promise<Float32Array>}
   */
  logits(ids) {
    return this.rpc.request('logits', { ids: Array.from(ids) });
  }

  /** Frees the worker and all its memory. A running generation is aborted first (its stream ends with
   * stopReason 'abort'). */
  async dispose() {
    if (this.rpc.dead) return;
    this.rpc.abortAll();
    try {
      // a clean shutdown first (the engine ends its pthreads); terminating a worker in the middle of that can
      // crash Node, so the timeout is only for a worker that no longer answers
      await Promise.race([this.rpc.request('dispose', {}), new Promise((r) => setTimeout(r, 10000).unref?.())]);
    } finally {
      await this.rpc.terminate(); // resolves once the worker (and the memory it held) is gone
    }
  }
}

/**
 * An async iterable of {text, tokenId} pieces; `result` resolves to {text, ids, stats} at the end.
 * Aborting (options.signal) ends the stream at once: no further piece is yielded, the worker stops at its
 * next token, and `result` holds what was yielded, with stats.stopReason 'abort'.
 */
export class GenerationStream {
  constructor(rpc, input, options) {
    const { signal, ...opts } = options;
    this.queue = [];
    this.wake = null;
    this.finished = false;
    this.aborted = false;
    this.delivered = { text: '', ids: [] };
    const done = rpc.request('generate', { input, options: opts }, {
      signal,
      onEvent: (event, data) => {
        if (event === 'tokens') for (const piece of data) this.push(piece);
      },
    });
    signal?.addEventListener('abort', () => {
      this.aborted = true;
      this.push(null);
    }, { once: true });
    this.result = done
      .then((r) => (this.aborted ? { ...this.delivered, stats: { ...r.stats, generatedTokens: this.delivered.ids.length, stopReason: 'abort' } } : r))
      .finally(() => {
        this.finished = true;
        this.push(null);
      });
    this.result.catch(() => {}); // observed through iteration or by the caller
  }

  push(item) {
    if (item) this.queue.push(item);
    this.wake?.();
    this.wake = null;
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.aborted) break;
      if (this.queue.length) {
        const piece = this.queue.shift();
        this.delivered.text += piece.text;
        if (piece.tokenId !== null) this.delivered.ids.push(piece.tokenId);
        yield piece;
        continue;
      }
      if (this.finished) break;
      await new Promise((r) => {
        this.wake = r;
      });
    }
    await this.result; // rethrows a generation error
  }
}
