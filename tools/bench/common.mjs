// Shared by the peer benchmark runners: arguments, the prompt, a small GGUF metadata reader, and for the
// browser peers (peer_ort.mjs --where chromium, peer_wllama.mjs) the loopback page server and the headless
// Chromium they open it in.
import { createServer } from 'node:http';
import { closeSync, createReadStream, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';

/** The benchmark prompt of `doge-wasm bench`, so that every runtime sees the same ids. */
export { benchPrompt } from '../../js/bench.js';

/** Token id -> its text in the GGUFs written by gguf.py (token_word there): ' ' + 4 letters, base 26. */
export function tokenWord(id) {
  let s = '';
  for (let k = 0; k < 4; k++, id = Math.floor(id / 26)) s = String.fromCharCode(97 + (id % 26)) + s;
  return ' ' + s;
}

export function parseBenchArgs(usage) {
  const { values } = parseArgs({
    options: {
      gguf: { type: 'string' },
      threads: { type: 'string', default: '1' },
      'prompt-tokens': { type: 'string', default: '256' },
      'new-tokens': { type: 'string', default: '128' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.gguf) {
    process.stderr.write(usage + '\n');
    process.exit(values.help ? 0 : 2);
  }
  const int = (name, min) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < min) {
      process.stderr.write(`--${name} must be an integer >= ${min}\n`);
      process.exit(2);
    }
    return v;
  };
  return {
    gguf: values.gguf, threads: int('threads', 1), promptTokens: int('prompt-tokens', 1), newTokens: int('new-tokens', 1),
    verbose: !!values.verbose,
  };
}

const FILE_TYPES = { 0: 'f32', 1: 'f16', 2: 'q4_0', 3: 'q4_1', 7: 'q8_0', 8: 'q5_0', 9: 'q5_1' };

/**
 * Reads the scalar key/values of a GGUF file's header (arrays are skipped). Returns
 * { meta, name, weights, vocabSize }: `name` is general.name, `weights` the general.file_type as text.
 */
export function readGgufMeta(path) {
  const fd = openSync(path, 'r');
  let buf = Buffer.alloc(0);
  let fileOffset = 0;
  let pos = 0;
  const need = (n) => {
    while (pos + n > buf.length) {
      const chunk = Buffer.alloc(Math.max(1 << 20, n));
      const got = readSync(fd, chunk, 0, chunk.length, fileOffset);
      if (got === 0) throw new Error(`${path}: truncated GGUF header`);
      fileOffset += got;
      buf = Buffer.concat([buf.subarray(pos), chunk.subarray(0, got)]);
      pos = 0;
    }
  };
  const u32 = () => { need(4); const v = buf.readUInt32LE(pos); pos += 4; return v; };
  const u64 = () => { need(8); const v = buf.readBigUInt64LE(pos); pos += 8; return Number(v); };
  const str = () => { const n = u64(); need(n); const s = buf.toString('utf8', pos, pos + n); pos += n; return s; };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const scalar = (t) => {
    if (t === 8) return str();
    const n = SIZES[t];
    if (!n) throw new Error(`${path}: bad GGUF value type ${t}`);
    need(n);
    let v;
    switch (t) {
      case 0: v = buf.readUInt8(pos); break;
      case 1: v = buf.readInt8(pos); break;
      case 2: v = buf.readUInt16LE(pos); break;
      case 3: v = buf.readInt16LE(pos); break;
      case 4: v = buf.readUInt32LE(pos); break;
      case 5: v = buf.readInt32LE(pos); break;
      case 6: v = buf.readFloatLE(pos); break;
      case 7: v = buf.readUInt8(pos) !== 0; break;
      case 10: v = Number(buf.readBigUInt64LE(pos)); break;
      case 11: v = Number(buf.readBigInt64LE(pos)); break;
      case 12: v = buf.readDoubleLE(pos); break;
    }
    pos += n;
    return v;
  };
  try {
    need(4);
    if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
    pos = 4;
    const version = u32();
    if (version < 2) throw new Error(`${path}: GGUF version ${version} not supported`);
    u64(); // tensor count
    const nKv = u64();
    const meta = {};
    for (let i = 0; i < nKv; i++) {
      const key = str();
      const t = u32();
      if (t === 9) {
        const et = u32();
        const n = u64();
        if (et === 8) for (let j = 0; j < n; j++) str();
        else { const sz = SIZES[et]; need(sz * n); pos += sz * n; }
        meta[key] = { arrayLength: n };
      } else {
        meta[key] = scalar(t);
      }
    }
    const arch = meta['general.architecture'];
    return {
      meta,
      name: meta['general.name'] ?? null,
      weights: FILE_TYPES[meta['general.file_type']] ?? `file_type_${meta['general.file_type']}`,
      vocabSize: meta[`${arch}.vocab_size`] ?? meta['tokenizer.ggml.tokens']?.arrayLength,
    };
  } finally {
    closeSync(fd);
  }
}

export const round = (x, digits = 1) => +x.toFixed(digits);

/** The Chromium the browser peers drive ($CHROMIUM overrides); each runner checks it exists and says so its own way. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html' };

/**
 * Serves a benchmark page on 127.0.0.1 (a free port): `html` at / and /index.html, /favicon.ico as 204 (no
 * 404 in the page's console), any other path as the file `fileFor(pathname)` returns (the raw URL pathname;
 * null, or not an existing file: 404), typed by extension, with its Content-Length. Nothing is cached.
 * `isolated` adds the COOP/COEP/CORP headers that make the page cross-origin isolated (needed for wasm
 * shared memory). Resolves to { origin, close }.
 */
export async function servePage(html, fileFor, { isolated = false } = {}) {
  const headers = {
    ...(isolated && {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
    }),
    'Cache-Control': 'no-store',
  };
  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (pathname === '/favicon.ico') {
      res.writeHead(204, headers);
      res.end();
      return;
    }
    if (pathname === '/' || pathname === '/index.html') {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8' });
      res.end(html);
      return;
    }
    const file = fileFor(pathname);
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/**
 * Opens `${origin}/` in headless CHROMIUM (playwright-core, a fresh temp profile so no state carries over
 * between runs, no network but loopback) and waits (30 s at most) for the page to set window.benchReady.
 * The page's console and errors are kept in `logs` (also echoed to stderr with `verbose`) to show when
 * the benchmark fails. `name` ('ort', 'wllama') names the profile and the message of the 10-minute kill
 * timer (peer_NAME), which runs until close(). Resolves to { browser, page, logs, close }; close() stops
 * the timer, closes the browser and deletes the profile (done here already if opening fails).
 */
export async function openBenchPage(origin, { name, verbose = false }) {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), `${name}-bench-`));
  let browser;
  const timer = setTimeout(() => {
    process.stderr.write(`peer_${name}: timed out after 10 minutes\n`);
    process.exit(1);
  }, 600_000);
  const close = async () => {
    clearTimeout(timer);
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-quic', '--disable-component-update', '--disable-sync'],
    });
    const page = browser.pages()[0] ?? await browser.newPage();
    const logs = [];
    page.on('console', (m) => { logs.push(`[${m.type()}] ${m.text()}`); if (verbose) process.stderr.write(`page: ${m.text()}\n`); });
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30_000 });
    return { browser, page, logs, close };
  } catch (e) {
    await close();
    throw e;
  }
}
