/**
 * A model file download that survives a flaky network: a first request that fails to connect, gets no answer
 * or an HTTP 5xx / 429 is tried again, and when the connection drops, stalls or ends early,
 * it asks again with an HTTP Range request from the byte it has, with bounded retries and backoff. A server
 * that ignores Range (answers 200) makes the file start over; the consumer is told with RESTART.
 * @module download
 */
import { DogeError } from './errors.js';

/** Yielded instead of bytes when the file starts over from byte 0. */
export const RESTART = Symbol('restart');

export const DOWNLOAD_DEFAULTS = { retries: 5, backoffMs: 250, stallMs: 30000 };

/** An error's message and its cause's: fetch's "fetch failed" says little, its cause says why (ENOTFOUND ...). */
const why = (e) => (e?.cause?.message ? `${e.message}: ${e.cause.message}` : e.message);

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    }, { once: true });
  });
}

/**
 * @param {typeof fetch} fetchImpl
 * @param {string} url
 * @param {string} file name for messages
 * @param {{signal?: AbortSignal, retries?: number, backoffMs?: number, stallMs?: number}} opts
 * @returns {Promise<{size: number|null, chunks: AsyncIterable<Uint8Array|typeof RESTART>}>}
 */
export async function download(fetchImpl, url, file, opts = {}) {
  const { signal, retries, backoffMs, stallMs } = { ...DOWNLOAD_DEFAULTS, ...opts };
  const fail = (code, msg, cause) => new DogeError(code, `${url}: ${msg}`, { file, cause });

  /** One request; its own AbortController lets a stall end it without aborting the whole load. */
  async function request(offset) {
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let silent = false;
    const timer = setTimeout(() => {
      silent = true;
      ctl.abort();
    }, stallMs);
    try {
      const res = await fetchImpl(url, { signal: ctl.signal, headers: offset > 0 ? { range: `bytes=${offset}-` } : {} });
      return { res, ctl, release: () => signal?.removeEventListener('abort', onAbort) };
    } catch (e) {
      signal?.removeEventListener('abort', onAbort);
      throw silent ? new Error(`no response within ${stallMs} ms`) : e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first response, with the same retries and backoff as a resume: a failed connection, a silent server
   * and HTTP 5xx / 429 are tried again; any other answer is returned. */
  async function firstResponse() {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await request(0);
        const { status } = r.res;
        if ((status < 500 && status !== 429) || attempt >= retries) return r;
        r.release();
        r.res.body?.cancel().catch(() => {});
      } catch (e) {
        if (signal?.aborted) throw fail('ABORTED', 'aborted', e);
        if (attempt >= retries) throw fail('NETWORK', `${why(e)}${retries ? ` (tried ${retries + 1} times)` : ''}`, e);
      }
      await sleep(backoffMs * 2 ** attempt, signal).catch((e) => {
        throw fail('ABORTED', 'aborted', e);
      });
    }
  }

  const first = await firstResponse();
  if (first.res.status === 404 || !first.res.ok || !first.res.body) {
    first.release();
    first.res.body?.cancel().catch(() => {});
    throw first.res.status === 404 ? fail('NOT_FOUND', 'HTTP 404') : fail('NETWORK', `HTTP ${first.res.status}`);
  }
  // A compressed response (a server gzipping JSON) arrives decoded while Content-Length and Range count the
  // encoded bytes: its size is unknown here, and a resume starts the file over.
  const encoded = (first.res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const length = Number(first.res.headers.get('content-length'));
  const size = !encoded && Number.isFinite(length) && length > 0 ? length : null;

  async function* chunks() {
    let current = first;
    let offset = 0;
    let attempt = 0;
    let best = 0; // retries reset only when a download gets further than any before (no endless loops)
    for (;;) {
      let problem;
      try {
        const reader = current.res.body.getReader();
        try {
          for (;;) {
            let timer;
            const stalled = new Promise((_, reject) => {
              timer = setTimeout(() => {
                current.ctl.abort();
                reject(new Error(`no data for ${stallMs} ms`));
              }, stallMs);
            });
            const { done, value } = await Promise.race([reader.read(), stalled]).finally(() => clearTimeout(timer));
            if (done) break;
            offset += value.length;
            if (size !== null && offset > size) throw fail('NETWORK', `the server sent more than its Content-Length of ${size} bytes`);
            if (offset > best) {
              best = offset;
              attempt = 0;
            }
            yield value;
          }
        } finally {
          reader.releaseLock?.();
          current.release();
        }
        if (size === null || offset === size) return;
        problem = new Error(`the connection closed after ${offset} of ${size} bytes`);
      } catch (e) {
        if (e instanceof DogeError) throw e;
        problem = e;
      }
      if (signal?.aborted) throw fail('ABORTED', 'aborted', problem);
      // resume: bounded retries with exponential backoff
      for (;;) {
        if (++attempt > retries) throw fail('NETWORK', `gave up after ${retries} retries at byte ${offset}: ${problem.message}`, problem);
        try {
          await sleep(backoffMs * 2 ** (attempt - 1), signal);
          current = await request(encoded ? 0 : offset);
        } catch (e) {
          if (signal?.aborted) throw fail('ABORTED', 'aborted', e);
          problem = e;
          continue;
        }
        const { status, headers } = current.res;
        if (status === 206 && (headers.get('content-range') ?? '').startsWith(`bytes ${offset}-`)) break;
        if (status === 200) { // no Range support: the whole file again
          offset = 0;
          yield RESTART;
          break;
        }
        current.release();
        problem = new Error(`HTTP ${status} when resuming`);
      }
    }
  }
  return { size, chunks: chunks() };
}
