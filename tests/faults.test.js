// The loader against a fault-injecting HTTP server: dropped connections, stalls, servers without Range
// support, lying Content-Length, HTTP errors. Every scenario ends in identical weights or a clear error.
// The small files (config.json, the index, ...) go through the same download: stall timeout, resume, abort.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { Engine } from '../js/wasm-engine.js';
import { openSource } from '../js/sources.js';
import { loadModel } from '../js/index.js';
import { streamWeights } from '../js/weights.js';
import { writeTinyModel } from './fixtures.js';
import { tempDir } from './helpers.js';

const dir = tempDir('faults');
writeTinyModel(dir);
const files = Object.fromEntries(['config.json', 'model.safetensors'].map((f) => [f, readFileSync(`${dir}/${f}`)]));
const INDEX = 'model.safetensors.index.json'; // served only where a scenario names it
files[INDEX] = Buffer.from(JSON.stringify({ weight_map: { 'model.embed_tokens.weight': 'model.safetensors' } }));

/** Per scenario (first path segment), what the n-th request for model.safetensors does. */
const SCENARIOS = {
  ok: () => 'serve',
  drop: (n) => (n === 0 ? 'drop-half' : 'serve'),
  dropmany: (n) => (n < 3 ? 'drop-half' : 'serve'),
  norange: (n) => (n === 0 ? 'drop-half' : 'serve-ignoring-range'),
  stall: (n) => (n === 0 ? 'stall-half' : 'serve'),
  shortlength: (n) => (n === 0 ? 'claim-more' : 'serve'),
  longbody: () => 'send-more',
  e500: () => 'status-500',
  flaky500: (n) => (n === 0 ? 'drop-half' : 'status-500'),
  forever: () => 'drop-half',
  silent: () => 'no-answer',
};

/** Per scenario, what the n-th request for a small file does (files not named here are served plainly). */
const SMALL_SCENARIOS = {
  cfgsilent: { 'config.json': () => 'no-answer' },
  cfgdrop: { 'config.json': (n) => (n === 0 ? 'drop-half' : 'serve') },
  cfgstall: { 'config.json': (n) => (n === 0 ? 'stall-half' : 'serve') },
  cfgnorange: { 'config.json': (n) => (n === 0 ? 'drop-half' : 'serve-ignoring-range') },
  cfgforever: { 'config.json': () => 'drop-half' },
  cfg500: { 'config.json': () => 'status-500' },
  indexsilent: { [INDEX]: () => 'no-answer' },
  gzip: { 'config.json': () => 'serve-gzip' }, // a server that compresses JSON (nginx, CDNs)
  cfg503: { 'config.json': (n) => (n < 2 ? 'status-503' : 'serve') }, // busy, then fine
};

let server;
let base;
const counts = {};
before(async () => {
  server = createServer((req, res) => {
    const [, scenario, file] = req.url.split('/');
    const body = files[file];
    const plan = file === 'model.safetensors' ? SCENARIOS[scenario] : SMALL_SCENARIOS[scenario]?.[file];
    if (!body || (file === INDEX && !plan)) return res.writeHead(404).end();
    if (!plan) {
      if (file === 'model.safetensors' && !SMALL_SCENARIOS[scenario]) return res.writeHead(404).end();
      return res.writeHead(200, { 'content-length': body.length }).end(body);
    }
    const key = `${scenario}/${file}`;
    const n = (counts[key] = (counts[key] ?? 0) + 1) - 1;
    const action = plan(n);
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range && action === 'serve' ? Number(range[1]) : 0;
    const part = body.subarray(start);
    const headers = { 'content-length': part.length, 'accept-ranges': 'bytes' };
    if (range && action === 'serve') Object.assign(headers, { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    switch (action) {
      case 'serve':
      case 'serve-ignoring-range':
        res.writeHead(range && action === 'serve' ? 206 : 200, headers);
        return res.end(part);
      case 'drop-half':
        res.writeHead(200, headers);
        res.write(part.subarray(0, part.length >> 1));
        return setTimeout(() => res.socket.destroy(), 20);
      case 'stall-half':
        res.writeHead(200, headers);
        return res.write(part.subarray(0, part.length >> 1)); // and then nothing, connection open
      case 'claim-more':
        res.writeHead(200, { ...headers, 'content-length': part.length + 1000 });
        res.write(part);
        return setTimeout(() => res.socket.destroy(), 20);
      case 'send-more':
        res.writeHead(200, { ...headers, 'content-length': part.length - 1000 });
        return res.end(part);
      case 'serve-gzip': { // Content-Length counts the compressed bytes; fetch hands over the decoded ones
        const packed = gzipSync(body);
        res.writeHead(200, { 'content-length': packed.length, 'content-encoding': 'gzip' });
        return res.end(packed);
      }
      case 'status-500':
        return res.writeHead(500).end('boom');
      case 'status-503':
        return res.writeHead(503).end('busy');
      case 'no-answer':
        return undefined; // never answers
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server.closeAllConnections();
  return new Promise((r) => server.close(r));
});

async function load(scenario, events = []) {
  const engine = await Engine.create({ build: 'single' });
  try {
    const source = await openSource(`${base}/${scenario}`, { download: { retries: 4, backoffMs: 5, stallMs: 300 } });
    const model = await streamWeights(engine, source, await source.readText('config.json'), { onProgress: (p) => events.push(p) });
    const hash = model.weightsHash();
    model.free();
    return hash;
  } finally {
    engine.dispose();
  }
}

let expected;
test('a plain download gives the reference weights', async () => {
  expected = await load('ok');
  assert.match(expected, /^[0-9a-f]{16}$/);
});

test('a dropped connection resumes with a Range request; progress continues', async () => {
  const events = [];
  assert.equal(await load('drop', events), expected);
  const loaded = events.map((e) => e.loaded);
  for (let i = 1; i < loaded.length; i++) assert.ok(loaded[i] >= loaded[i - 1], 'progress never goes back');
  assert.equal(loaded.at(-1), files['model.safetensors'].length);
});

test('several drops in a row are retried', async () => {
  assert.equal(await load('dropmany'), expected);
});

test('a server without Range support restarts the file cleanly', async () => {
  const events = [];
  assert.equal(await load('norange', events), expected);
  assert.ok(events.some((e, i) => i > 0 && e.loaded === 0), 'progress restarts at 0');
});

test('a stalled connection is abandoned and resumed', async () => {
  assert.equal(await load('stall'), expected);
});

test('a Content-Length that promises more than the file holds ends in a clear error', async () => {
  await assert.rejects(load('shortlength'), (e) => ['NETWORK', 'BAD_SAFETENSORS'].includes(e.code) && /model\.safetensors/.test(e.message));
});

test('a body cut short by a lying Content-Length is a clear error', async () => {
  await assert.rejects(load('longbody'), (e) => e.code === 'BAD_SAFETENSORS' && /model\.safetensors: the file is truncated/.test(e.message));
});

test('HTTP errors and endless failures end in clear errors', async () => {
  await assert.rejects(load('e500'), (e) => e.code === 'NETWORK' && /model\.safetensors: HTTP 500/.test(e.message));
  await assert.rejects(load('flaky500'), (e) => e.code === 'NETWORK' && /gave up after 4 retries at byte \d+: HTTP 500 when resuming/.test(e.message));
  await assert.rejects(load('forever'), (e) => e.code === 'NETWORK' && /gave up after 4 retries/.test(e.message));
  await assert.rejects(load('silent'), (e) => e.code === 'NETWORK' && /model\.safetensors: no response within 300 ms/.test(e.message));
  await assert.rejects(load('nothere'), (e) => e.code === 'NOT_FOUND' && /model\.safetensors: HTTP 404/.test(e.message));
});

// Small files (config.json, generation_config.json, the tokenizer files, the safetensors index): the same
// download as the weights, so the same stall timeout, resume, retries and abort.
const configText = files['config.json'].toString();
const smallSource = (scenario, opts = {}) =>
  openSource(`${base}/${scenario}`, { download: { retries: 4, backoffMs: 5, stallMs: 300 }, ...opts });
const since = (t0) => performance.now() - t0;

test('a small file that never answers fails after the stall timeout, naming the file', { timeout: 10000 }, async () => {
  const t0 = performance.now();
  await assert.rejects((await smallSource('cfgsilent')).readText('config.json'),
    (e) => e.code === 'NETWORK' && /cfgsilent\/config\.json: no response within 300 ms/.test(e.message) && e.file === 'config.json');
  assert.ok(since(t0) < 3000, `took ${since(t0)} ms`);
});

test('a dropped, stalled or non-resumable small file is resumed or restarted', { timeout: 10000 }, async () => {
  assert.equal(await (await smallSource('cfgdrop')).readText('config.json'), configText);
  assert.equal(await (await smallSource('cfgstall')).readText('config.json'), configText);
  assert.equal(await (await smallSource('cfgnorange')).readText('config.json'), configText);
  assert.equal(counts['cfgdrop/config.json'], 2);
});

test('a small file that keeps failing gives up after the retries; HTTP errors and 404s as before', { timeout: 10000 }, async () => {
  await assert.rejects((await smallSource('cfgforever')).readText('config.json'),
    (e) => e.code === 'NETWORK' && /config\.json: gave up after 4 retries at byte \d+/.test(e.message));
  await assert.rejects((await smallSource('cfg500')).readText('config.json'), (e) => e.code === 'NETWORK' && /config\.json: HTTP 500/.test(e.message));
  assert.equal(await (await smallSource('ok')).readText('generation_config.json'), null);
});

test("aborting the source's signal, or a readText's own, ends a small-file request at once", { timeout: 10000 }, async () => {
  const slow = { download: { stallMs: 60000 } };
  const ctl = new AbortController();
  const source = await smallSource('cfgsilent', { ...slow, signal: ctl.signal });
  let t0 = performance.now();
  setTimeout(() => ctl.abort(), 100);
  await assert.rejects(source.readText('config.json'), (e) => e.code === 'ABORTED' && /config\.json: aborted/.test(e.message));
  assert.ok(since(t0) < 2000, `took ${since(t0)} ms`);
  await assert.rejects(source.readText('config.json'), (e) => e.code === 'ABORTED', 'an aborted signal refuses the next request');

  const own = new AbortController();
  t0 = performance.now();
  setTimeout(() => own.abort(), 100);
  await assert.rejects((await smallSource('cfgsilent', slow)).readText('config.json', { signal: own.signal }), (e) => e.code === 'ABORTED');
  assert.ok(since(t0) < 2000, `took ${since(t0)} ms`);

  const asked = counts['cfgsilent/config.json'];
  await assert.rejects((await smallSource('cfgsilent', slow)).readText('config.json', { signal: AbortSignal.abort() }), (e) => e.code === 'ABORTED');
  assert.equal(counts['cfgsilent/config.json'], asked, 'an already aborted signal sends no request');
});

test('a silent safetensors index fails after the stall timeout', { timeout: 10000 }, async () => {
  await assert.rejects(load('indexsilent'), (e) => e.code === 'NETWORK' && /model\.safetensors\.index\.json: no response within 300 ms/.test(e.message));
});

test("loadModel: a config.json that never answers fails after download.stallMs", { timeout: 20000 }, async () => {
  const t0 = performance.now();
  await assert.rejects(loadModel(`${base}/cfgsilent`, { build: 'single', download: { stallMs: 300, retries: 1, backoffMs: 10 } }),
    (e) => e.code === 'NETWORK' && /config\.json: no response within 300 ms \(tried 2 times\)/.test(e.message));
  assert.ok(since(t0) < 5000, `took ${since(t0)} ms`);
});

test('loadModel: aborting while config.json is pending rejects at once with ABORTED', { timeout: 20000 }, async () => {
  const ctl = new AbortController();
  setTimeout(() => ctl.abort(), 100);
  const t0 = performance.now();
  await assert.rejects(loadModel(`${base}/cfgsilent`, { build: 'single', signal: ctl.signal, download: { stallMs: 2000 } }),
    (e) => e.code === 'ABORTED');
  assert.ok(since(t0) < 1500, `took ${since(t0)} ms`);
});

test('a gzip-compressed config.json loads (its Content-Length counts the compressed bytes)', async () => {
  const model = await loadModel(`${base}/gzip`, { build: 'single' });
  try {
    assert.equal(model.info.vocabSize, JSON.parse(files['config.json']).vocab_size);
  } finally {
    await model.dispose();
  }
});

test('a first request answered 503 (or not at all) is tried again like a resume', async () => {
  assert.equal(await (await smallSource('cfg503')).readText('config.json'), configText);
  assert.equal(counts['cfg503/config.json'], 3);
  const fail = openSource('http://127.0.0.1:9/', { download: { retries: 2, backoffMs: 5, stallMs: 300 } }); // nothing listens
  await assert.rejects((await fail).readText('config.json'),
    (e) => e.code === 'NETWORK' && /config\.json: fetch failed: .+ \(tried 3 times\)/.test(e.message));
});
