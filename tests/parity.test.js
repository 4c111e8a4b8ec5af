// Parity with Hugging Face (through the numpy reference): native and both wasm builds, prefill and
// KV-cache decoding, on every reference case.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, LOGITS } from '../js/wasm-engine.js';
import { openSource } from '../js/sources.js';
import { streamWeights } from '../js/weights.js';
import { loadCases, run, runCli, NATIVE, assertMatches, relError } from './helpers.js';

const cases = loadCases();
const good = cases.filter((c) => c.kind !== 'error');
const bad = cases.filter((c) => c.kind === 'error');
const width = (c) => c.shape[c.shape.length - 1];
const routing = (c) => c.options?.moe_routing ?? 'hf';
const LAYOUT_NAMES = { old: 'original', mid: 'mid' };
const layoutName = (c) => LAYOUT_NAMES[c.layout] ?? 'transformers';

test('the reference covers the cases the core must handle', () => {
  assert.ok(good.length >= 20, `only ${good.length} cases`);
  assert.ok(bad.length >= 1);
  for (const c of good) assert.ok(c.expected, `${c.name} has expected logits`);
});

describe('native build', () => {
  for (const c of good) {
    test(`${c.name}: prefill`, () => {
      const r = run(NATIVE, ['logits', '--model', c.dir, '--ids', c.ids.join(','), '--moe-routing', routing(c), '--verbose']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`^doge-native: ${layoutName(c)} layout, MoE routing ${routing(c)}`));
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.shape, c.shape);
      assertMatches(Float32Array.from(out.logits), c.expected, width(c), c.name);
    });
    if (c.decode) {
      test(`${c.name}: decode with the KV cache`, () => {
        const r = run(NATIVE, ['logits', '--model', c.dir, '--ids', c.ids.join(','), '--decode-split', String(c.decode.split), '--moe-routing', routing(c)]);
        assert.equal(r.code, 0, r.stderr);
        assertMatches(Float32Array.from(JSON.parse(r.stdout).logits), c.expectedDecode, width(c), `${c.name} decode`);
      });
    }
  }
  // A call in pieces of 3 tokens gives the same bits as one whole call (the rotary state is set once per call;
  // MoE routing and sequence classification need the whole call and ignore the piece size).
  for (const c of good.filter((x) => x.ids.length > 3)) {
    test(`${c.name}: the same logits in pieces of 3 tokens`, () => {
      const args = ['logits', '--model', c.dir, '--ids', c.ids.join(','), '--moe-routing', routing(c)];
      const whole = run(NATIVE, args), pieces = run(NATIVE, [...args, '--batch', '3']);
      assert.equal(pieces.code, 0, pieces.stderr);
      assert.equal(pieces.stdout, whole.stdout);
    });
  }
  for (const c of bad) {
    test(`${c.name}: refused with a message that says why`, () => {
      const r = run(NATIVE, ['logits', '--model', c.dir, '--ids', '1,2']);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.ok(r.stderr.includes(c.expect_error), `'${r.stderr.trim()}' should mention '${c.expect_error}'`);
      const w = runCli(['logits', '--model', c.dir, '--ids', '1,2']);
      assert.equal(w.code, 2);
      assert.ok(w.stderr.includes(c.expect_error), `wasm: '${w.stderr.trim()}' should mention '${c.expect_error}'`);
    });
  }
});

async function loadDir(engine, dir) {
  const source = await openSource(dir);
  return streamWeights(engine, source, await source.readText('config.json'));
}

for (const build of ['single', 'threads']) {
  describe(`wasm ${build} build`, () => {
    let engine;
    before(async () => {
      engine = await Engine.create({ build, threads: build === 'threads' ? 2 : 1 });
    });
    after(() => engine.dispose());

    test('runs the requested build', () => {
      assert.equal(engine.info.build, build);
      assert.equal(engine.info.threads, build === 'threads' ? 2 : 1);
    });

    for (const c of good) {
      test(`${c.name}: prefill and decode`, async () => {
        const model = await loadDir(engine, c.dir);
        try {
          assert.equal(model.layout, layoutName(c));
          model.setMoeRouting(routing(c));
          const nCtx = Math.max(c.ids.length, model.maxPositionEmbeddings);
          const s = model.createSession(nCtx);
          assert.equal(s.threads, engine.info.threads);
          const causal = c.kind === 'causal';
          const prefill = s.forward(c.ids, causal ? LOGITS.ALL : LOGITS.LAST);
          assertMatches(prefill, c.expected, width(c), `${c.name} prefill`);
          if (c.decode) {
            // one call on the first `split` ids, then one token per call
            s.reset();
            const V = width(c);
            const got = new Float32Array(c.ids.length * V);
            got.set(s.forward(c.ids.slice(0, c.decode.split), LOGITS.ALL));
            for (let t = c.decode.split; t < c.ids.length; t++) got.set(s.forward([c.ids[t]], LOGITS.LAST), t * V);
            assertMatches(got, c.expectedDecode, V, `${c.name} decode`);
            // Where HF's own decode equals its prefill (dense, no RoPE state change), ours gives the same bits
            // (every kernel sums a token's values in one order whatever the number of tokens in the call).
            if (relError(c.expectedDecode, c.expected) < 1e-5) assert.deepEqual(got, prefill, `${c.name}: decode differs from prefill`);
          }
          s.free();
        } finally {
          model.free();
        }
      });
    }
  });
}

test('dense cases where decode must equal prefill are exercised', () => {
  const equal = good.filter((c) => c.decode && relError(c.expectedDecode, c.expected) < 1e-5);
  assert.ok(equal.length >= 15, `only ${equal.length} cases`);
  assert.ok(!equal.some((c) => c.name.startsWith('moe')), 'MoE decode routes per call and must differ');
});

test('doge-wasm logits prints the JSON the tools depend on', () => {
  const c = good.find((x) => x.name === 'tiny_tied');
  const r = runCli(['logits', '--model', c.dir, '--ids', c.ids.join(','), '--threads', '2']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(out), ['shape', 'logits']);
  assert.deepEqual(out.shape, c.shape);
  assertMatches(Float32Array.from(out.logits), c.expected, width(c), 'cli');
  const cls = good.find((x) => x.kind === 'seqcls');
  const r2 = runCli(['logits', '--model', cls.dir, '--ids', cls.ids.join(',')]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(JSON.parse(r2.stdout).shape, cls.shape);
});
