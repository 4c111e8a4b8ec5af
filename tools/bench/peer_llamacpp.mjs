#!/usr/bin/env node
// Native llama.cpp peer benchmark through node-llama-cpp's prebuilt CPU binary (never built or downloaded).
//   node tools/bench/peer_llamacpp.mjs --gguf FILE [--threads 1] [--prompt-tokens 256] [--new-tokens 128]
// Prefills P token ids (the `doge-wasm bench` prompt) and greedily samples the first token, then runs N
// single-token decode steps, each sampling the next token greedily. It uses a context sequence's token
// iterator (LlamaContextSequence.evaluate), the lowest level node-llama-cpp offers: one llama_decode and
// one sampler call per step, no chat wrapper, no detokenization. End-of-generation tokens do not stop it.
// Prints one JSON line. ttft_ms = prefill of the P ids + sampling of the first token (prefill_tok_s is P
// over that same time); decode_tok_s = N / the N decode steps; load_ms = model load + context creation.
// llama_prefill_tok_s / llama_decode_tok_s are llama.cpp's own timers (llama_perf_context: the
// llama_decode calls alone, without sampling over the vocabulary and the JS step around it).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { benchPrompt, parseBenchArgs, readGgufMeta, round } from './common.mjs';

const packageVersion = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;

const args = parseBenchArgs('usage: node tools/bench/peer_llamacpp.mjs --gguf FILE [--threads 1] [--prompt-tokens 256] [--new-tokens 128]');
const info = readGgufMeta(args.gguf);
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');

const log = [];
const llama = await getLlama({
  gpu: false,
  build: 'never',          // only the prebuilt @node-llama-cpp/linux-x64 binary: no cmake, no download
  usePrebuiltBinaries: true,
  skipDownload: true,
  progressLogs: false,
  logLevel: LlamaLogLevel.info,   // llama_perf_context_print logs at info level
  logger: (level, message) => {
    log.push(message);
    if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(`llama.cpp: ${message}\n`);
  },
  maxThreads: args.threads,
});

const P = args.promptTokens;
const N = args.newTokens;
const t0 = performance.now();
const model = await llama.loadModel({ modelPath: args.gguf, gpuLayers: 0, useMmap: false });
const context = await model.createContext({
  contextSize: P + N + 1,
  batchSize: P,                                   // the whole prompt in one llama_decode
  sequences: 1,
  threads: { ideal: args.threads, min: args.threads },
  performanceTracking: true,                      // llama.cpp's own timers (llama_perf_context)
});
const sequence = context.getSequence();
const loadMs = performance.now() - t0;

const prompt = benchPrompt(P, info.vocabSize ?? 32768);

// temperature 0 = greedy; yieldEogToken keeps going through end-of-generation tokens.
const it = sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true });
const t1 = performance.now();
const first = await it.next();
const t2 = performance.now();
if (first.done) throw new Error('no first token');
const tokens = [first.value];
for (let i = 0; i < N; i++) {
  const r = await it.next();
  if (r.done) throw new Error(`generation stopped after ${i} decode steps`);
  tokens.push(r.value);
}
const t3 = performance.now();
await it.return();

const ttftMs = t2 - t1;
// llama.cpp's own times: "prompt eval time = X ms / P tokens", "eval time = Y ms / R runs" (llama_decode
// calls only, without sampling and the JS around it).
const logStart = log.length;
await context.printTimings();
const perf = log.slice(logStart).join('\n');
const perfRate = (what) => {
  const m = perf.match(new RegExp(`\\b${what} time =\\s*([\\d.]+) ms /\\s*(\\d+)`));
  return m ? round(+m[2] / (+m[1] / 1000)) : null;
};
const report = {
  runtime: 'llama.cpp',
  where: 'native',
  weights: info.weights,
  model: info.name ?? basename(args.gguf).replace(/\.gguf$/, ''),
  threads: context.currentThreads ?? args.threads,
  prompt_tokens: P,
  new_tokens: N,
  prefill_tok_s: round(P / (ttftMs / 1000)),
  decode_tok_s: round(N / ((t3 - t2) / 1000)),
  ttft_ms: round(ttftMs, 2),
  load_ms: round(loadMs),
  first_token: tokens[0],
  llama_prefill_tok_s: perfRate('prompt eval'),
  llama_decode_tok_s: perfRate('(?<!prompt )eval'),
  flash_attention: context.flashAttention,
  version: `node-llama-cpp ${packageVersion('node-llama-cpp')}, llama.cpp ${llama.llamaCppRelease?.release ?? '?'}`,
  tokens_head: tokens.slice(0, 8),
};
process.stdout.write(JSON.stringify(report) + '\n');
await context.dispose();
await model.dispose();
await llama.dispose();
