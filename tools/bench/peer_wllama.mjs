#!/usr/bin/env node
// wllama (llama.cpp compiled to wasm) peer benchmark in headless Chromium.
//   node tools/bench/peer_wllama.mjs --gguf FILE [--threads 1] [--prompt-tokens 256] [--new-tokens 128] [--verbose]
// Serves the page, wllama's ES module and wasm, and the GGUF from a loopback HTTP server (cross-origin
// isolated: wllama's wasm memory is a shared memory even with one thread), opens it in headless Chromium
// (/usr/bin/chromium through playwright-core, fresh profile, no network but loopback) and runs there:
// load (fetch of the GGUF + Wllama.loadModel with n_threads, no warmup), then one raw completion whose
// prompt is the P benchmark token ids, greedy (temperature 0), N + 1 new tokens, end-of-generation ignored,
// streamed. Times are taken in the page with performance.now(): ttft_ms = request start to the first
// token's arrival (prefill + first token), decode_tok_s = N / (arrival of token N + 1 - arrival of token
// 1). wllama 3.x takes only text prompts (its llama-server glue stores the prompt as a string), so the
// prompt is given as text: in the GGUFs of tools/bench/gguf.py token i is the word ' ' + 4 letters (base
// 26) and the text tokenizes to exactly the ids (checked against the server's prompt token count); the
// streamed text gives back the generated ids the same way.
// llama-server's own timings (inside the wasm, without the page <-> worker round trips) are reported as
// server_prefill_tok_s / server_decode_tok_s. Prints one JSON line.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchPrompt, CHROMIUM, openBenchPage, parseBenchArgs, readGgufMeta, round, servePage, tokenWord } from './common.mjs';

const args = parseBenchArgs('usage: node tools/bench/peer_wllama.mjs --gguf FILE [--threads 1] [--prompt-tokens 256] [--new-tokens 128] [--verbose]');
const info = readGgufMeta(args.gguf);
const verbose = args.verbose;
const P = args.promptTokens;
const N = args.newTokens;
if (!existsSync(CHROMIUM)) {
  process.stderr.write(`${CHROMIUM} is missing: apt-get install -y chromium\n`);
  process.exit(1);
}

const here = fileURLToPath(new URL('.', import.meta.url));
const wllamaDir = join(here, 'node_modules/@wllama/wllama');
const wllamaVersion = JSON.parse(readFileSync(join(wllamaDir, 'package.json'), 'utf8')).version;

const PAGE = `<!doctype html><meta charset="utf-8"><title>wllama bench</title>
<script type="module">
import { Wllama } from '/wllama/esm/index.js';
window.runBench = async ({ ids, text: promptText, newTokens, threads }) => {
  const t0 = performance.now();
  const blob = await (await fetch('/model.gguf')).blob();
  const wllama = new Wllama({ default: new URL('/wllama/esm/wasm/wllama.wasm', location.href).href },
    { suppressNativeLog: true, allowOffline: true });
  await wllama.loadModel([blob], {
    n_threads: threads, n_gpu_layers: 0, n_ctx: ids.length + newTokens + 16,
    n_batch: ids.length, n_ubatch: ids.length, n_parallel: 1, warmup: false,
  });
  const loadMs = performance.now() - t0;
  const arrivals = [];
  const tokens = [];
  let text = '';
  let last = null;
  const t1 = performance.now();
  await wllama.createCompletion({
    prompt: promptText,         // the words of the ids: exactly the ids once tokenized
    max_tokens: newTokens + 1,  // the first token (from the prefill) + newTokens decode steps
    temperature: 0,
    ignore_eos: true,
    stream: true,
    onData: (chunk) => {
      const now = performance.now();
      last = chunk;
      text += chunk.choices?.[0]?.text ?? '';
      // a token's text may in principle arrive split over chunks: parse the whole text so far
      const found = [...text.matchAll(/ ([a-z]{4})(?= |$)/g)].map((m) => [...m[1]].reduce((a, c) => a * 26 + c.charCodeAt(0) - 97, 0));
      while (tokens.length < found.length) { tokens.push(found[tokens.length]); arrivals.push(now); }
    },
  });
  const t2 = performance.now();
  const result = {
    loadMs, ttftMs: arrivals[0] - t1, totalMs: t2 - t1, tokens, arrivals: arrivals.map((a) => a - t1),
    timings: last?.timings ?? null, multithread: wllama.isMultithread(), threads: wllama.getNumThreads(),
    isolated: self.crossOriginIsolated, userAgent: navigator.userAgent,
  };
  await wllama.exit();
  return result;
};
window.benchReady = true;
</script>`;

// wllama's wasm memory is shared even with one thread: the page must be cross-origin isolated
const server = await servePage(PAGE, (pathname) => {
  if (pathname === '/model.gguf') return args.gguf;
  if (!pathname.startsWith('/wllama/esm/')) return null;
  const rel = normalize(decodeURIComponent(pathname.slice('/wllama/'.length)));
  return !rel.startsWith('esm/') || rel.includes('..') ? null : join(wllamaDir, rel);
}, { isolated: true });

let opened;
try {
  opened = await openBenchPage(server.origin, { name: 'wllama', verbose });
  const { page, logs } = opened;
  const prompt = benchPrompt(P, info.vocabSize ?? 32768);
  let r;
  try {
    r = await page.evaluate((p) => window.runBench(p), { ids: prompt, text: prompt.map(tokenWord).join(''), newTokens: N, threads: args.threads });
  } catch (e) {
    process.stderr.write(logs.slice(-30).join('\n') + '\n');
    throw e;
  }
  if (verbose) process.stderr.write(JSON.stringify({ ...r, arrivals: r.arrivals.slice(0, 4) }) + '\n');
  if (r.timings && r.timings.prompt_n + (r.timings.cache_n ?? 0) !== P) throw new Error(`the prompt text became ${r.timings.prompt_n} tokens, not ${P}`);
  if (r.tokens.length < N + 1) throw new Error(`wllama returned ${r.tokens.length} tokens, wanted ${N + 1}`);
  const decodeMs = r.arrivals[N] - r.arrivals[0];
  const t = r.timings;
  const report = {
    runtime: 'wllama',
    where: 'chromium',
    weights: info.weights,
    model: info.name ?? basename(args.gguf).replace(/\.gguf$/, ''),
    threads: r.threads,
    prompt_tokens: P,
    new_tokens: N,
    prefill_tok_s: round(P / (r.ttftMs / 1000)),
    decode_tok_s: round(N / (decodeMs / 1000)),
    ttft_ms: round(r.ttftMs, 2),
    load_ms: round(r.loadMs),
    first_token: r.tokens[0],
    server_prefill_tok_s: t?.prompt_per_second != null ? round(t.prompt_per_second) : null,
    server_decode_tok_s: t?.predicted_per_second != null ? round(t.predicted_per_second) : null,
    version: `wllama ${wllamaVersion}, ${r.userAgent.match(/(?:Headless)?Chrome\/[\d.]+/)?.[0] ?? r.userAgent}`,
    multithread: r.multithread,
    tokens_head: r.tokens.slice(0, 8),
  };
  process.stdout.write(JSON.stringify(report) + '\n');
} finally {
  await opened?.close();
  server.close();
}
