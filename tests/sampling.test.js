// The C sampler against a direct computation of Hugging Face's logits processors on known logits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, WasmSampler } from '../js/wasm-engine.js';
import { NATIVE, caseCopy, run, runCli } from './helpers.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

let engine;
before(async () => {
  engine = await Engine.create({ build: 'single' });
});
after(() => engine.dispose());

const V = 50;
function knownLogits(seed) {
  const out = new Float32Array(V);
  let s = seed;
  for (let i = 0; i < V; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out[i] = ((s / 2 ** 31) * 8 - 4) * (i % 3 === 0 ? 1.5 : 1);
  }
  return out;
}

const softmax = (x) => {
  const m = Math.max(...x.filter((v) => v > -Infinity));
  const e = x.map((v) => (v === -Infinity ? 0 : Math.exp(v - m)));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

/** transformers' processors, written out: RepetitionPenalty, Temperature, TopK, TopP, MinP, softmax. */
function hfDistribution(logits, { temperature = 1, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1, context = [] }) {
  let x = Array.from(logits);
  for (const t of new Set(context)) x[t] = x[t] < 0 ? x[t] * repetitionPenalty : x[t] / repetitionPenalty;
  x = x.map((v) => v / temperature);
  if (topK > 0) {
    const kth = [...x].sort((a, b) => b - a)[Math.min(topK, V) - 1];
    x = x.map((v) => (v < kth ? -Infinity : v));
  }
  if (topP < 1) {
    const order = [...x.keys()].sort((a, b) => x[a] - x[b]); // ascending
    const p = softmax(order.map((i) => x[i]));
    let cum = 0;
    const remove = new Set();
    order.forEach((i, r) => {
      cum += p[r];
      if (cum <= 1 - topP && r < order.length - 1) remove.add(i);
    });
    x = x.map((v, i) => (remove.has(i) ? -Infinity : v));
  }
  if (minP > 0) {
    const p = softmax(x);
    const top = Math.max(...p);
    x = x.map((v, i) => (p[i] < minP * top ? -Infinity : v));
  }
  return softmax(x);
}

function check(params, seed = 7) {
  const logits = knownLogits(seed);
  const sp = new WasmSampler(engine, V, { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 1, ...params });
  try {
    sp.accept(params.context ?? []);
    const { token, probs } = sp.sampleFrom(logits);
    const want = hfDistribution(logits, params);
    for (let i = 0; i < V; i++) assert.ok(Math.abs(probs[i] - want[i]) < 1e-6, `p[${i}] = ${probs[i]}, want ${want[i]} (${JSON.stringify(params)})`);
    assert.ok(probs[token] > 0, 'the drawn token has probability > 0');
    return probs;
  } finally {
    sp.free();
  }
}

test('temperature alone reshapes the softmax', () => {
  check({ temperature: 0.7 });
  check({ temperature: 1.8 });
});

test('top-k keeps the k best scores', () => {
  const p = check({ topK: 5 });
  assert.equal(p.filter((v) => v > 0).length, 5);
});

test('top-p keeps the smallest best set reaching p', () => {
  for (const topP of [0.1, 0.5, 0.9, 0.99]) check({ topP });
  check({ topP: 0.8, temperature: 0.6 });
});

test('min-p drops tokens below min_p x the best probability', () => {
  for (const minP of [0.05, 0.3, 0.9]) check({ minP });
});

test('repetition penalty divides positive and multiplies negative scores of context tokens', () => {
  const logits = knownLogits(7);
  const context = [0, 3, 3, 10, 11, 49];
  assert.ok(context.some((t) => logits[t] < 0) && context.some((t) => logits[t] > 0), 'context has both signs');
  check({ repetitionPenalty: 1.3, context });
  check({ repetitionPenalty: 0.7, context });
});

test('all of them together, in transformers order', () => {
  check({ repetitionPenalty: 1.2, context: [1, 2, 5], temperature: 0.8, topK: 20, topP: 0.9, minP: 0.02 });
});

test('greedy takes the first maximum after the repetition penalty', () => {
  const logits = knownLogits(3);
  const best = logits.indexOf(Math.max(...logits));
  const sp = new WasmSampler(engine, V, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 100, seed: 0 });
  assert.equal(sp.sampleFrom(logits).token, best);
  sp.accept([best]);
  assert.notEqual(sp.sampleFrom(logits).token, best);
  sp.free();
});

test('draws follow the distribution and a seed repeats them', () => {
  const logits = knownLogits(11);
  const draw = (seed) => {
    const sp = new WasmSampler(engine, V, { temperature: 1, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1, seed });
    const tokens = Array.from({ length: 4000 }, () => sp.sampleFrom(logits).token);
    sp.free();
    return tokens;
  };
  const a = draw(42);
  assert.deepEqual(draw(42), a, 'same seed, same draws');
  assert.notDeepEqual(draw(43), a, 'another seed, other draws');
  const want = hfDistribution(logits, { topP: 0.95 });
  const counts = new Array(V).fill(0);
  for (const t of a) counts[t]++;
  for (let i = 0; i < V; i++) {
    const sd = Math.sqrt(want[i] * (1 - want[i]) * a.length) + 1;
    assert.ok(Math.abs(counts[i] - want[i] * a.length) < 5 * sd, `token ${i}: ${counts[i]} draws, expected ${want[i] * a.length}`);
  }
});

test('invalid sampling values are refused', () => {
  const base = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };
  for (const [bad, msg] of [[{ temperature: -1 }, /temperature must be >= 0/], [{ topP: 0 }, /top_p must be in \(0, 1\]/], [{ topP: 1.5 }, /top_p/],
    [{ minP: -0.1 }, /min_p/], [{ repetitionPenalty: 0 }, /repetition_penalty must be > 0/], [{ topK: -2 }, /top_k must be >= 0/]]) {
    assert.throws(() => new WasmSampler(engine, V, { ...base, ...bad }), (e) => e.code === 'BAD_INPUT' && msg.test(e.message));
  }
});

const DEFAULTS = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };

test('NaN logits (or +inf when sampling) have no distribution: sampleFrom refuses them, greedy ignores -inf', () => {
  const nan = knownLogits(3);
  nan[7] = NaN;
  const inf = knownLogits(3);
  inf[9] = Infinity;
  for (const [params, logits] of [[{ temperature: 0 }, nan], [{ temperature: 1, topK: 5 }, nan], [{ temperature: 0.7 }, inf]]) {
    const sampler = new WasmSampler(engine, V, { ...DEFAULTS, ...params });
    try {
      assert.throws(() => sampler.sampleFrom(logits), (e) => e.code === 'NON_FINITE_LOGITS', JSON.stringify(params));
    } finally {
      sampler.free();
    }
  }
  const greedy = new WasmSampler(engine, V, { ...DEFAULTS, temperature: 0 });
  try {
    const masked = knownLogits(3);
    masked[2] = -Infinity;
    assert.equal(greedy.sampleFrom(inf).token, 9); // +inf is a maximum like any other for argmax
    assert.equal(greedy.sampleFrom(masked).token, greedy.sampleFrom(knownLogits(3)).token);
    assert.throws(() => greedy.sampleFrom(knownLogits(3).subarray(1)), (e) => e.code === 'BAD_ARGUMENT');
  } finally {
    greedy.free();
  }
});

test('a model whose values overflow float32 ends generation with NON_FINITE_LOGITS, and the native CLI prints null', () => {
  const dir = caseCopy('tiny_tied');
  const t = readSafetensors(`${dir}/model.safetensors`);
  for (const name of ['model.layers.0.input_residual', 'model.layers.0.post_attention_residual']) {
    const x = new Float32Array(t[name].bytes.length / 4).fill(3e38);
    t[name] = { ...t[name], bytes: Buffer.from(x.buffer) };
  }
  writeSafetensors(`${dir}/model.safetensors`, t);
  for (const sampling of [['--temperature', '0'], ['--temperature', '1', '--top-k', '40']]) {
    const r = runCli(['generate', '--model', dir, '--ids', '1,2,3', '--max-new-tokens', '3', ...sampling]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^doge-wasm: NON_FINITE_LOGITS: the logits at position 2 hold NaN or infinity/);
  }
  const n = run(NATIVE, ['logits', '--model', dir, '--ids', '1,2']);
  assert.equal(n.code, 0, n.stderr);
  assert.ok(JSON.parse(n.stdout).logits.includes(null));
});
