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
 * Aborting (options.signal, already aborted or at any point before the promise settles) rejects with
 * ABORTED and leaves no worker behind. An onProgress callback that throws stops the load the same way, and
 * loadModel rejects with the callback's error.
 * @param {string|Iterable<File|{name: string, blob: Blob}>} source a local directory (Node), a URL prefix, a hub repo id, or Files
 * @param {import('./index.js').LoadOptions} [options]
 * @returns {Promise<DogeModel>}
 */
export async function loadModel(source, options) {
  const { onProgress, signal, ...rest } = checkOptions(options, 'loadModel()', LOAD_OPTIONS);
  if (onProgress != null && typeof onProgress !== 'function') throw new DogeError('BAD_ARGUMENT', 'loadModel(): onProgress must be a function');
  const aborted = () => new DogeError('ABORTED', `${sourceLabel(source)}: loading aborted`, { cause: signal.reason });
  if (signal?.aborted) throw aborted();
  const stop = new AbortController(); // the caller's signal, or onProgress throwing
  const progress = guardedCallback(onProgress, stop);
  // why the load failed or must be undone: onProgress's error first, then the caller's abort
  const stopped = (e) => (progress.failed ? progress.error : signal?.aborted && e?.code !== 'ABORTED' ? aborted() : e);
  const rpc = new RpcClient(await spawnWorker());
  const unfollow = onAbort(signal, () => stop.abort());
  let model;
  try {
    const info = await rpc.request('load', { source: cloneableSource(source), options: rest }, {
      signal: stop.signal,
      onEvent: (event, data) => event === 'progress' && progress.call(data),
    });
    model = new DogeModel(rpc, info);
  } catch (e) {
    await rpc.terminate();
    throw stopped(e);
  } finally {
    unfollow();
  }
  if (progress.failed || signal?.aborted) { // too late for the worker to notice (its answer was on the way): undo the load
    await model.dispose();
    throw stopped(null);
  }
  return model;
}

/** A user callback that must not throw into the worker's message handler: its first error is kept (failed,
 * error), aborts controller, and no further call reaches the callback. */
function guardedCallback(fn, controller) {
  const guard = {
    failed: false,
    error: undefined,
    call: (data) => {
      if (!fn || guard.failed || controller.signal.aborted) return;
      try {
        fn(data);
      } catch (e) {
        Object.assign(guard, { failed: true, error: e });
        controller.abort();
      }
    },
  };
  return guard;
}

const sourceLabel = (source) => (typeof source === 'string' ? source : 'source');

/** Calls fn once when signal aborts (at once if it already has); returns the function that stops listening. */
function onAbort(signal, fn) {
  if (!signal) return () => {};
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}

/** The options of loadModel and generate (index.d.ts LoadOptions, GenerateOptions). */
const LOAD_OPTIONS = ['threads', 'build', 'contextLength', 'boundedCache', 'batchSize', 'hubHost', 'revision', 'moeRouting', 'weights',
  'download', 'onProgress', 'signal'];
const GENERATE_OPTIONS = ['maxNewTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed', 'stop', 'eosTokenId', 'signal'];

/** undefined -> {}; anything but an options object (null, a string, ...), a key not in `known` or a signal that
 * is not an AbortSignal is BAD_ARGUMENT. */
function checkOptions(options, what, known) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DogeError('BAD_ARGUMENT', `${what}: options must be an object, not ${options === null ? 'null' : typeof options}`);
  }
  const unknown = Object.keys(options).find((k) => !known.includes(k)); // a misspelt option is not silently ignored
  if (unknown !== undefined) throw new DogeError('BAD_ARGUMENT', `${what}: unknown option '${unknown}' (options: ${known.join(', ')})`);
  const { signal } = options;
  if (signal != null && (typeof signal.addEventListener !== 'function' || typeof signal.aborted !== 'boolean')) {
    throw new DogeError('BAD_ARGUMENT', `${what}: options.signal must be an AbortSignal`);
  }
  return options;
}

/** Token ids as an array; anything that is not a list (null, a number, a string, ...) is BAD_ARGUMENT. */
function idList(ids, what) {
  if (ids == null || typeof ids === 'string' || (typeof ids[Symbol.iterator] !== 'function' && typeof ids.length !== 'number')) {
    throw new DogeError('BAD_ARGUMENT', `${what} takes a list of token ids`);
  }
  return Array.from(ids);
}

/** A prompt: text, token ids, or chat messages (an array of objects); anything else is BAD_ARGUMENT. */
function checkInput(input, what) {
  if (typeof input === 'string') return input;
  if (Array.isArray(input) && input.length > 0 && typeof input[0] === 'object') return checkMessages(input, what);
  if (input == null || typeof input !== 'object') {
    throw new DogeError('BAD_ARGUMENT', `${what} takes text, a list of token ids or a list of {role, content} messages`);
  }
  return idList(input, what);
}

function checkMessages(messages, what) {
  if (!Array.isArray(messages) || messages.some((m) => typeof m?.role !== 'string' || typeof m?.content !== 'string')) {
    throw new DogeError('BAD_ARGUMENT', `${what} takes a list of {role, content} messages`);
  }
  return messages;
}

/** Files lose their name when Node clones them to a worker, so they travel as {name, blob}. */
function cloneableSource(source) {
  if (typeof source === 'string' || !source || typeof source[Symbol.iterator] !== 'function') return source;
  return [...source].map((f) => ({ name: f.name, blob: f.blob ?? f }));
}

/**
 * Loads only the tokenizer of a model (tokenizer.json + tokenizer_config.json), in this thread.
 * @param {string|Iterable<File|{name: string, blob: Blob}>} source
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
  generate(input, options) {
    return new GenerationStream(this.rpc, checkInput(input, 'generate()'), checkOptions(options, 'generate()', GENERATE_OPTIONS));
  }

  /** Applies the chat template to messages and streams the reply. */
  chat(messages, options) {
    return this.generate(checkMessages(messages, 'chat()'), options);
  }

  /** @returns {Promise<number[]>} */
  async tokenize(text, options) {
    const { addSpecialTokens = true } = checkOptions(options, 'tokenize()', ['addSpecialTokens']);
    if (typeof text !== 'string') throw new DogeError('BAD_ARGUMENT', 'tokenize() takes a string');
    return this.rpc.request('tokenize', { text, addSpecialTokens });
  }

  /** @returns {Promise<string>} */
  async detokenize(ids, options) {
    const { skipSpecialTokens = false } = checkOptions(options, 'detokenize()', ['skipSpecialTokens']);
    return this.rpc.request('detokenize', { ids: idList(ids, 'detokenize()'), skipSpecialTokens });
  }

  /** @returns {Promise<string>} the prompt text the chat template makes of messages */
  async applyChatTemplate(messages, options) {
    const { addGenerationPrompt = true } = checkOptions(options, 'applyChatTemplate()', ['addGenerationPrompt']);
    return this.rpc.request('applyChatTemplate', { messages: checkMessages(messages, 'applyChatTemplate()'), addGenerationPrompt });
  }

  /**
   * One prefill of token ids: logits [S, V] row-major (causal LM) or [numLabels] (sequence classifier).
   * @returns {Promise<Float32Array>}
   */
  async logits(ids) {
    return this.rpc.request('logits', { ids: idList(ids, 'logits()') });
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
 * Aborting (options.signal, already aborted or later) ends the stream at once: no further piece is yielded,
 * the worker stops at its next token, and `result` holds what was yielded, with stats.stopReason 'abort'.
 * Leaving a `for await` loop early (break, return, throw: the iterator's return()) aborts the same way.
 */
export class GenerationStream {
  constructor(rpc, input, options) {
    const { signal, ...opts } = options;
    this.queue = [];
    this.wake = null;
    this.finished = false;
    this.delivered = { text: '', ids: [] };
    this.controller = new AbortController(); // the caller's signal or an early exit from the loop
    const unfollow = onAbort(signal, () => this.stop()); // first: a signal aborted already goes with the request
    const done = rpc.request('generate', { input, options: opts }, {
      signal: this.controller.signal,
      onEvent: (event, data) => {
        if (event === 'tokens') for (const piece of data) this.push(piece);
      },
    });
    this.result = done
      .then((r) => (this.aborted ? { ...this.delivered, stats: { ...r.stats, generatedTokens: this.delivered.ids.length, stopReason: 'abort' } } : r))
      .finally(() => {
        unfollow(); // a signal reused for many generations keeps no listener, and aborting it later changes nothing
        this.finished = true;
        this.push(null);
      });
    this.result.catch(() => {}); // observed through iteration or by the caller
  }

  get aborted() {
    return this.controller.signal.aborted;
  }

  /** Ends a generation still running: no further piece is yielded and `result` says 'abort'. */
  stop() {
    if (this.finished || this.aborted) return;
    this.controller.abort();
    this.push(null);
  }

  push(item) {
    if (item) this.queue.push(item);
    this.wake?.();
    this.wake = null;
  }

  [Symbol.asyncIterator]() {
    const pieces = this.pieces();
    return {
      next: () => pieces.next(),
      // called when a for-await loop is left early; stopping first also wakes a next() that is waiting
      return: (value) => {
        this.stop();
        return pieces.return(value);
      },
      throw: (error) => {
        this.stop();
        return pieces.throw(error);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  async *pieces() {
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
