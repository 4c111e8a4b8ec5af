#!/usr/bin/env node
// The onnxruntime-web peer of `make bench`: runs the ONNX export of a plain Doge checkpoint
// (tools/bench/export_onnx.py) with onnxruntime-web's wasm backend (SIMD, numThreads 1), in Node 20
// (default) or in headless Chromium (--where chromium: /usr/bin/chromium through playwright-core,
// fresh profile, loopback HTTP server for the page, ort's files and the .onnx).
//
//   node tools/bench/peer_ort.mjs --onnx build/bench/onnx/doge-20m.onnx [--model build/bench/models/doge-20m]
//        [--where node|chromium] [--prompt-tokens 256] [--new-tokens 128] [--threads 1]
//
// load_ms: reading (Node) or fetching (Chromium) the .onnx + InferenceSession.create (graph optimisation
// level "all"). Prefill: one run over the P prompt ids (empty past); ttft_ms = that run + the argmax of
// its logits (the first token); prefill_tok_s = P / ttft. Decode: N greedy single-token runs feeding back
// the present KV; decode_tok_s = N / their total time (JS <-> wasm copies of the KV included, as they
// are part of every ort-web decode loop). Prints one JSON line ("runtime":"onnxruntime-web").
// "model" is the basename of --model if given, else the .onnx file name without extension.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchPrompt, CHROMIUM, openBenchPage, servePage } from './common.mjs';

const USAGE = 'usage: node tools/bench/peer_ort.mjs --onnx FILE.onnx [--model DIR] [--where node|chromium] ' +
  '[--prompt-tokens 256] [--new-tokens 128] [--threads 1]';

function parseArgs(argv) {
  const o = { onnx: null, model: null, where: 'node', promptTokens: 256, newTokens: 128, threads: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--onnx') o.onnx = v, i++;
    else if (a === '--model') o.model = v, i++;
    else if (a === '--where') o.where = v, i++;
    else if (a === '--prompt-tokens') o.promptTokens = Number(v), i++;
    else if (a === '--new-tokens') o.newTokens = Number(v), i++;
    else if (a === '--threads') o.threads = Number(v), i++;
    else if (a === '-h' || a === '--help') { process.stdout.write(USAGE + '\n'); process.exit(0); }
    else { process.stderr.write(`unknown argument ${a}\n${USAGE}\n`); process.exit(2); }
  }
  const ok = (n) => Number.isInteger(n) && n >= 1;
  if (!o.onnx || !ok(o.promptTokens) || !ok(o.newTokens) || !ok(o.threads) || !['node', 'chromium'].includes(o.where)) {
    process.stderr.write(USAGE + '\n');
    process.exit(2);
  }
  return o;
}

/**
 * The benchmark itself. Self-contained (no closure over module variables): in Chromium its source is
 * sent to the page. `load()` returns the model bytes; `kvDims` = [KV, head_dim] or null.
 */
async function bench(ort, load, { prompt, newTokens: N, threads, kvDims }) {
  const P = prompt.length;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  const t0 = performance.now();
  const bytes = await load();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const t1 = performance.now();

  const pastNames = session.inputNames.filter((n) => n.startsWith('past_'));
  if (!pastNames.length) throw new Error('the model has no past_* inputs');
  if (!kvDims) {
    const m = session.inputMetadata?.find?.((x) => x.name === pastNames[0]);
    if (m && Array.isArray(m.shape) && typeof m.shape[1] === 'number' && typeof m.shape[3] === 'number') kvDims = [m.shape[1], m.shape[3]];
    else throw new Error('cannot read the KV dimensions from the model; pass --model DIR');
  }
  const argmax = (d) => { let b = 0; for (let i = 1; i < d.length; i++) if (d[i] > d[b]) b = i; return b; };
  const feeds = (ids, offset, past) => {
    const S = ids.length;
    const f = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, S]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: S }, (_, i) => BigInt(offset + i)), [1, S]),
    };
    for (const n of pastNames) f[n] = past[n];
    return f;
  };
  const nextPast = (out) => Object.fromEntries(pastNames.map((n) => [n, out[n.replace('past_', 'present_')]]));
  const empty = Object.fromEntries(pastNames.map((n) => [n, new ort.Tensor('float32', new Float32Array(0), [1, kvDims[0], 0, kvDims[1]])]));

  const t2 = performance.now();
  let out = await session.run(feeds(prompt, 0, empty));
  const first = argmax(out.logits.data);
  const t3 = performance.now();
  let tok = first;
  let past = nextPast(out);
  const tokens = [first];
  for (let i = 0; i < N; i++) {
    out = await session.run(feeds([tok], P + i, past));
    tok = argmax(out.logits.data);
    tokens.push(tok);
    past = nextPast(out);
  }
  const t4 = performance.now();
  await session.release();
  return { loadMs: t1 - t0, ttftMs: t3 - t2, decodeMs: t4 - t3, first, tokens };
}

function kvDimsFromConfig(dir) {
  if (!dir) return null;
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  return [cfg.num_key_value_heads, cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads];
}

const here = fileURLToPath(new URL('.', import.meta.url));
const ortDir = join(here, 'node_modules/onnxruntime-web');
const ortVersion = JSON.parse(readFileSync(join(ortDir, 'package.json'), 'utf8')).version;

async function runNode(o, params) {
  const ort = await import('onnxruntime-web');
  const r = await bench(ort, async () => readFileSync(o.onnx), params);
  return { ...r, version: `onnxruntime-web ${ortVersion}, Node ${process.versions.node}` };
}

async function runChromium(o, params) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const PAGE = `<!doctype html><meta charset="utf-8"><title>ort bench</title>
<script type="module">
import * as ort from '/ort/ort.min.mjs';
ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;
window.ort = ort;
window.benchReady = true;
</script>`;
  const server = await servePage(PAGE, (pathname) => {
    if (pathname === '/model.onnx') return o.onnx;
    if (pathname.startsWith('/ort/')) {
      // only files directly in ort's dist/
      const rel = normalize(decodeURIComponent(pathname.slice('/ort/'.length)));
      if (!rel.includes('..') && !rel.includes('/')) return join(ortDir, 'dist', rel);
    }
    return null;
  });
  let opened;
  try {
    opened = await openBenchPage(server.origin, { name: 'ort' });
    const { page, logs } = opened;
    try {
      const r = await page.evaluate(`(async () => {
        const bench = ${bench.toString()};
        const r = await bench(window.ort, async () => new Uint8Array(await (await fetch('/model.onnx')).arrayBuffer()), ${JSON.stringify(params)});
        return { ...r, userAgent: navigator.userAgent };
      })()`);
      const ua = r.userAgent.match(/(?:Headless)?Chrome\/[\d.]+/)?.[0] ?? r.userAgent;
      return { ...r, version: `onnxruntime-web ${ortVersion}, ${ua}` };
    } catch (e) {
      process.stderr.write(logs.slice(-30).join('\n') + '\n');
      throw e;
    }
  } finally {
    await opened?.close();
    server.close();
  }
}

const o = parseArgs(process.argv.slice(2));
const params = { prompt: benchPrompt(o.promptTokens, 32768), newTokens: o.newTokens, threads: o.threads, kvDims: kvDimsFromConfig(o.model) };
const r = o.where === 'chromium' ? await runChromium(o, params) : await runNode(o, params);
const r2 = (x) => Math.round(x * 100) / 100;
const model = o.model ? basename(o.model.replace(/\/+$/, '')) : basename(o.onnx).replace(/\.onnx$/, '');
process.stdout.write(JSON.stringify({
  runtime: 'onnxruntime-web', where: o.where, weights: 'f32', model, threads: o.threads,
  prompt_tokens: o.promptTokens, new_tokens: o.newTokens,
  prefill_tok_s: r2(o.promptTokens / (r.ttftMs / 1e3)), decode_tok_s: r2(o.newTokens / (r.decodeMs / 1e3)),
  ttft_ms: r2(r.ttftMs), load_ms: r2(r.loadMs), first_token: r.first,
  version: r.version, tokens_head: r.tokens.slice(0, 8),
}) + '\n');
