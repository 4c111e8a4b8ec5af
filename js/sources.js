/**
 * Where model files come from: a local directory (Node), a URL prefix, a Hugging Face repo id, or a set of
 * File/Blob objects (browser). Every source answers the same three questions: read a small text file,
 * open a file as a byte stream with its size, and say what it is called in messages.
 * @module sources
 */
import { DogeError } from './errors.js';
import { download, RESTART } from './download.js';

export const DEFAULT_HUB = 'https://huggingface.co';
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/**
 * @typedef {object} ModelSource
 * @property {string} label how the source is named in messages
 * @property {(file: string, opts?: {signal?: AbortSignal}) => Promise<string|null>} readText a small file's text, null
 *   when it does not exist
 * @property {(file: string, opts?: {signal?: AbortSignal}) => Promise<{size: number|null, chunks: AsyncIterable<Uint8Array|symbol>}>} open
 *   chunks may yield download.RESTART: the file starts over from byte 0
 */

/**
 * @param {string|Iterable<File|{name: string, blob: Blob}>|ModelSource} source
 * @param {{hubHost?: string, revision?: string, fetch?: typeof fetch, download?: object, signal?: AbortSignal}} [opts]
 *   download: retries, backoffMs, stallMs of resumed downloads (js/download.js), for every file of a URL source,
 *   small ones included; signal: aborts every request of the source (the load's), unless a call passes its own
 * @returns {Promise<ModelSource>}
 */
export async function openSource(source, opts = {}) {
  if (source && typeof source === 'object' && typeof source.open === 'function') return source;
  if (typeof source === 'string') {
    if (/^https?:\/\//.test(source)) return urlSource(source.replace(/\/+$/, ''), opts);
    const isNode = typeof process === 'object' && process.versions?.node;
    if (isNode) {
      const { stat } = await import('node:fs/promises');
      const info = await stat(source).catch(() => null);
      if (info?.isDirectory()) return dirSource(source);
      if (!REPO_ID.test(source)) throw new DogeError('NOT_FOUND', `${source}: no such model directory`);
    }
    if (REPO_ID.test(source)) {
      const host = (opts.hubHost ?? DEFAULT_HUB).replace(/\/+$/, '');
      if (!URL.canParse(host) || !/^https?:$/.test(new URL(host).protocol)) {
        throw new DogeError('BAD_ARGUMENT', `hubHost must be an http(s) URL, got '${opts.hubHost}'`);
      }
      const prefix = `${host}/${source}/resolve/${encodeURIComponent(opts.revision ?? 'main')}`;
      return { ...urlSource(prefix, opts), label: source };
    }
    throw new DogeError('BAD_ARGUMENT', `${source}: not a directory, URL or Hugging Face repo id`);
  }
  if (source && typeof source[Symbol.iterator] === 'function') return blobSource([...source]);
  throw new DogeError('BAD_ARGUMENT', 'model source must be a directory, URL, repo id or a list of Files');
}

function dirSource(dir) {
  return {
    label: dir,
    async readText(file) {
      const { readFile } = await import('node:fs/promises');
      try {
        return await readFile(`${dir}/${file}`, 'utf8');
      } catch (e) {
        if (e.code === 'ENOENT') return null;
        throw new DogeError('IO_ERROR', `${dir}/${file}: ${e.message}`, { file, cause: e });
      }
    },
    async open(file) {
      const { stat } = await import('node:fs/promises');
      const { createReadStream } = await import('node:fs');
      const path = `${dir}/${file}`;
      const info = await stat(path).catch(() => null);
      if (!info) throw new DogeError('NOT_FOUND', `${path}: no such file`, { file });
      return { size: info.size, chunks: createReadStream(path, { highWaterMark: 1 << 20 }) };
    },
  };
}

function urlSource(prefix, { fetch: fetchImpl = globalThis.fetch, download: downloadOpts, signal: sourceSignal } = {}) {
  /** The weights' download (stall timeout, Range resume, retries) for any file of the source. */
  const fetchFile = (file, signal = sourceSignal) => {
    const url = `${prefix}/${file}`;
    // an already aborted signal never fires its 'abort' event: refuse before asking
    if (signal?.aborted) return Promise.reject(new DogeError('ABORTED', `${url}: aborted`, { file, cause: signal.reason }));
    return download(fetchImpl, url, file, { ...downloadOpts, signal });
  };
  return {
    label: prefix,
    async readText(file, { signal } = {}) {
      let chunks;
      try {
        ({ chunks } = await fetchFile(file, signal));
      } catch (e) {
        if (e instanceof DogeError && e.code === 'NOT_FOUND') return null; // HTTP 404
        throw e;
      }
      let parts = [];
      for await (const chunk of chunks) {
        if (chunk === RESTART) parts = []; // the server could not resume: the file comes again from byte 0
        else parts.push(chunk);
      }
      const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        bytes.set(p, at);
        at += p.length;
      }
      return new TextDecoder().decode(bytes);
    },
    open(file, { signal } = {}) {
      return fetchFile(file, signal);
    },
  };
}

/** @param {Array<File|{name: string, blob: Blob}>} files */
function blobSource(files) {
  const byName = new Map();
  for (const f of files) {
    if (typeof f?.name !== 'string') throw new DogeError('BAD_ARGUMENT', 'each model file must be a File (or {name, blob})');
    byName.set(f.name.split('/').pop(), f.blob ?? f);
  }
  return {
    label: 'selected files',
    async readText(file) {
      const f = byName.get(file);
      return f ? f.text() : null;
    },
    async open(file) {
      const f = byName.get(file);
      if (!f) throw new DogeError('NOT_FOUND', `${file}: not among the selected files`, { file });
      return { size: f.size, chunks: f.stream() };
    },
  };
}

/**
 * Reads and parses a JSON file of a source; null when it does not exist and `optional` is set.
 * @param {ModelSource} source
 * @param {string} file
 * @param {{code: string, optional?: boolean}} opts error code for malformed JSON
 */
export async function readJson(source, file, { code, optional = false }) {
  const text = await source.readText(file);
  if (text === null) {
    if (optional) return null;
    throw new DogeError('NOT_FOUND', `${source.label}: no ${file}`, { file });
  }
  return parseJson(text, file, code);
}

/** JSON.parse with a DogeError naming the file. */
export function parseJson(text, file, code) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DogeError(code, `${file}: not valid JSON (${e.message})`, { file });
  }
}
