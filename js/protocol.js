/**
 * The worker protocol, in one place. The main side sends requests {id, type, payload}; the worker answers
 * with any number of events {id, event, data} (progress, tokens) and then one {id, result} or {id, error}.
 * {type: 'abort', target} asks the worker to stop request `target`; a request sent with `aborted: true` (its
 * signal was aborted already) starts stopped. Same code for Node worker_threads and
 * browser Web Workers.
 * @module protocol
 */
import { DogeError } from './errors.js';

const isNode = typeof process === 'object' && !!process.versions?.node;

/** Starts the engine worker and returns a small uniform handle. */
export async function spawnWorker() {
  const url = new URL('./worker.js', import.meta.url);
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    // The worker inherits the process's Node flags, except --input-type (valid only for --eval).
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const w = new Worker(url, { execArgv });
    return {
      post: (msg, transfer) => w.postMessage(msg, transfer),
      onMessage: (fn) => w.on('message', fn),
      onFailure: (fn) => {
        w.on('error', (e) => fn(e));
        w.on('exit', (code) => fn(new Error(`the engine worker exited (code ${code})`)));
      },
      terminate: () => w.terminate(),
      // An idle engine does not keep the process alive; a request in flight does.
      busy: (yes) => (yes ? w.ref() : w.unref()),
    };
  }
  const w = new Worker(url, { type: 'module' });
  return {
    post: (msg, transfer) => w.postMessage(msg, transfer ?? []),
    onMessage: (fn) => w.addEventListener('message', (e) => fn(e.data)),
    onFailure: (fn) => w.addEventListener('error', (e) => fn(new Error(e.message || 'the engine worker failed'))),
    terminate: () => w.terminate(),
    busy: () => {},
  };
}

/** Main side: requests with streamed events, aborts, and failure of the whole worker. */
export class RpcClient {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.dead = null;
    worker.onMessage((msg) => this.receive(msg));
    worker.onFailure((e) => this.fail(new DogeError('WORKER_CRASHED', `the engine worker stopped: ${e.message}`, { cause: e })));
  }

  receive(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if ('event' in msg) {
      p.onEvent?.(msg.event, msg.data);
      return;
    }
    const error = msg.error && new DogeError(msg.error.code, msg.error.message, { file: msg.error.file });
    this.settle(msg.id, error ? { error } : { result: msg.result });
  }

  /** Ends request `id` (once) with {result} or {error}; later messages about it are ignored. */
  settle(id, { result, error }) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.busy(false);
    if (error) p.reject(error);
    else p.resolve(result);
  }

  fail(error) {
    if (this.dead) return;
    this.dead = error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    this.worker.busy(false);
  }

  /**
   * @param {string} type
   * @param {object} payload
   * @param {{onEvent?: (event: string, data: any) => void, signal?: AbortSignal, transfer?: Transferable[]}} [opts]
   */
  request(type, payload, { onEvent, signal, transfer } = {}) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const abort = () => this.worker.post({ type: 'abort', target: id });
      const detached = (fn) => (value) => {
        signal?.removeEventListener('abort', abort); // a signal reused for many requests keeps no listener
        fn(value);
      };
      if (this.pending.size === 0) this.worker.busy(true);
      this.pending.set(id, { resolve: detached(resolve), reject: detached(reject), onEvent });
      try {
        // a signal aborted already travels with the request: an abort message is for a request the worker has seen
        this.worker.post({ id, type, payload, aborted: signal?.aborted === true }, transfer);
      } catch (e) {
        this.settle(id, { error: unsendable(type, e) });
        return;
      }
      if (signal && !signal.aborted) signal.addEventListener('abort', abort, { once: true });
    });
  }

  /** Asks the worker to stop every request in flight. */
  abortAll() {
    for (const id of this.pending.keys()) this.worker.post({ type: 'abort', target: id });
  }

  /** @returns {Promise<void>|void} settles when the worker has exited (Node) */
  terminate() {
    this.fail(new DogeError('DISPOSED', 'the model was disposed'));
    return this.worker.terminate();
  }
}

/** A payload that cannot be cloned to the worker (a function, a Symbol, ...) is the caller's mistake. */
function unsendable(type, e) {
  return new DogeError('BAD_ARGUMENT', `${type}: the arguments cannot be sent to the engine worker (${e.message})`, { cause: e });
}

/**
 * Worker side: dispatches requests to handlers(payload, ctx) where ctx = {emit(event, data), signal (an
 * AbortSignal), aborted(): boolean}. A handler's return value (and optional ctx.transfer list) is the result.
 */
export async function serveRpc(handlers) {
  let port;
  if (isNode) {
    const { parentPort } = await import('node:worker_threads');
    port = { post: (m, t) => parentPort.postMessage(m, t), on: (fn) => parentPort.on('message', fn) };
  } else {
    port = { post: (m, t) => self.postMessage(m, t ?? []), on: (fn) => self.addEventListener('message', (e) => fn(e.data)) };
  }
  const running = new Map(); // request id -> AbortController
  port.on(async (msg) => {
    if (msg.type === 'abort') {
      running.get(msg.target)?.abort();
      return;
    }
    const controller = new AbortController();
    if (msg.aborted) controller.abort();
    running.set(msg.id, controller);
    const ctx = {
      emit: (event, data) => port.post({ id: msg.id, event, data }),
      signal: controller.signal,
      aborted: () => controller.signal.aborted,
      transfer: undefined,
    };
    try {
      const handler = handlers[msg.type];
      if (!handler) throw new DogeError('BAD_REQUEST', `unknown request '${msg.type}'`);
      const result = await handler(msg.payload, ctx);
      port.post({ id: msg.id, result }, ctx.transfer);
    } catch (e) {
      const error = e instanceof DogeError ? { code: e.code, message: e.message, file: e.file } : { code: 'INTERNAL', message: String(e?.stack ?? e) };
      port.post({ id: msg.id, error });
    } finally {
      running.delete(msg.id);
    }
  });
}

/** Lets queued messages (an abort) in between two tokens without the 4 ms clamp of nested timers. */
export function yieldToEvents() {
  if (isNode) return new Promise((r) => setImmediate(r));
  return new Promise((r) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => r();
    ch.port2.postMessage(0);
  });
}
