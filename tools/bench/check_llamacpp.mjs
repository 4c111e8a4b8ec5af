#!/usr/bin/env node
// Sanity check of a converted GGUF: llama.cpp (node-llama-cpp, native) against our reference CLI.
//   node tools/bench/check_llamacpp.mjs --model build/bench/models/doge-20m --gguf build/bench/gguf/doge-20m-f32.gguf \
//        [--prompt-tokens 256] [--new-tokens 8] [--native build/native/doge-native] [--exact]
// llama.cpp evaluates the benchmark prompt with logits for every position, then decodes greedily; the
// reference (`doge-native logits`) runs prompt + generated ids in one prefill. Prints one JSON line with the
// largest absolute difference of the log-probabilities (all positions, whole vocabulary), the number of
// positions whose argmax differs, and whether the greedy tokens agree; exits 1 if any greedy token differs
// or if the text form of the prompt (tokenWord, used by peer_wllama.mjs) does not round-trip to the ids.
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { benchPrompt, readGgufMeta, tokenWord } from './common.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    gguf: { type: 'string' },
    native: { type: 'string', default: 'build/native/doge-native' },
    'prompt-tokens': { type: 'string', default: '256' },
    'new-tokens': { type: 'string', default: '8' },
    // F32 KV cache and no flash attention: llama.cpp's defaults (F16 KV cache; CPU flash attention also
    // rounds to F16) are the only source of differences beyond float rounding.
    exact: { type: 'boolean' },
  },
});
if (!values.model || !values.gguf) {
  process.stderr.write('usage: node tools/bench/check_llamacpp.mjs --model DIR --gguf FILE [--prompt-tokens 256] [--new-tokens 8] [--native PATH] [--exact]\n');
  process.exit(2);
}
const P = Number(values['prompt-tokens']);
const K = Number(values['new-tokens']);
const info = readGgufMeta(values.gguf);
const V = info.vocabSize;
const prompt = benchPrompt(P, V);

const argmax = (a, off = 0) => {
  let best = 0;
  for (let j = 1; j < V; j++) if (a[off + j] > a[off + best]) best = j;
  return best;
};

const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: values.gguf, gpuLayers: 0 });
const context = await model.createContext({
  contextSize: P + K + 1, batchSize: P, sequences: 1,
  ...(values.exact ? { flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } : {}),
});
const seq = context.getSequence();
// The text form of the prompt used by peer_wllama.mjs must tokenize to exactly the prompt ids.
const promptText = prompt.map(tokenWord).join('');
const textIds = [...model.tokenize(promptText)];
const textOk = textIds.length === P && textIds.every((t, i) => t === prompt[i]) && model.detokenize(prompt) === promptText;

// node-llama-cpp 3.21 gives no raw logits, but the full next-token distribution at temperature 1 with
// every filter off: log p = logit - logsumexp(logits), compared with the reference's log-softmax. The
// greedy token is the argmax of p (the sampled token is not used).
const toRow = (probMap) => {
  const row = new Float32Array(V).fill(-Infinity);
  for (const [tok, p] of probMap) row[tok] = Math.log(p);
  return row;
};
const want = { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 } } };
const rows = [];
const greedy = [];
let out = await seq.controlledEvaluate(prompt.map((t) => [t, want]));
for (let i = 0; i < P; i++) rows.push(toRow(out[i].next.probabilities));
greedy.push(argmax(rows[P - 1]));
for (let k = 1; k < K; k++) {
  out = await seq.controlledEvaluate([[greedy[k - 1], want]]);
  rows.push(toRow(out[0].next.probabilities));
  greedy.push(argmax(rows[rows.length - 1]));
}
await context.dispose();
await model.dispose();
await llama.dispose();

const ids = [...prompt, ...greedy.slice(0, K - 1)];
const ref = JSON.parse(execFileSync(values.native, ['logits', '--model', values.model, '--ids', ids.join(',')],
  { maxBuffer: 1 << 30, encoding: 'utf8' }));
if (ref.shape[0] !== ids.length || ref.shape[1] !== V) throw new Error(`reference shape ${ref.shape}`);
let maxDiff = 0;
let underflow = 0;
let argmaxMismatch = 0;
const refGreedy = [];
for (let r = 0; r < ids.length; r++) {
  const off = r * V;
  let mx = -Infinity;
  for (let j = 0; j < V; j++) mx = Math.max(mx, ref.logits[off + j]);
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(ref.logits[off + j] - mx);
  const lse = mx + Math.log(sum);
  for (let j = 0; j < V; j++) {
    if (rows[r][j] === -Infinity) { underflow++; continue; }
    maxDiff = Math.max(maxDiff, Math.abs(rows[r][j] - (ref.logits[off + j] - lse)));
  }
  const a = argmax(ref.logits, off);
  if (a !== argmax(rows[r])) argmaxMismatch++;
  if (r >= P - 1) refGreedy.push(a);
}
const ok = refGreedy.every((t, i) => t === greedy[i]);
process.stdout.write(JSON.stringify({
  gguf: values.gguf,
  weights: info.weights,
  llamacpp_settings: values.exact ? 'f32 kv cache, no flash attention' : 'defaults (f16 kv cache, flash attention auto)',
  positions: ids.length,
  max_abs_logprob_diff: +maxDiff.toPrecision(3),
  underflowed_probabilities: underflow,
  argmax_mismatches: argmaxMismatch,
  llamacpp_greedy: greedy,
  reference_greedy: refGreedy,
  text_prompt_round_trip: textOk,
  first_token_match: refGreedy[0] === greedy[0],
  greedy_match: ok,
}) + '\n');
process.exit(ok && textOk ? 0 : 1);
