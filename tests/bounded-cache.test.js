// The bounded KV cache: once full it keeps only the keep_window_size keys with the largest dynamic-mask bias
// per layer and kv head. Its results must be exactly those of an unbounded cache, far past the window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../js/index.js';
import { writeTinyModel } from './fixtures.js';
import { CASES_DIR, caseCopy, runCli, tempDir } from './helpers.js';

const dir = tempDir('bounded');
writeTinyModel(dir, { seed: 77 }); // keep_window_size 32, max_position_embeddings 128, A != 0

for (const build of ['single', 'threads']) {
  test(`${build} build: bounded cache (40 slots) gives bitwise the logits and tokens of a full cache over 10 windows`, async () => {
    const threads = build === 'threads' ? 2 : 1;
    const full = await loadModel(dir, { build, threads, contextLength: 400 });
    const bounded = await loadModel(dir, { build, threads, contextLength: 40, boundedCache: true });
    try {
      assert.equal(bounded.info.boundedCache, true);
      assert.ok(bounded.info.kvCacheBytes * 9 < full.info.kvCacheBytes);
      // a 300-token prompt runs in pieces of contextLength - keep_window_size, evicting between them
      const ids = Array.from({ length: 300 }, (_, i) => (i * 7 + 3) % 270);
      assert.deepEqual(await bounded.logits(ids), await full.logits(ids));
      for (const opts of [{ temperature: 0 }, { temperature: 1, seed: 5 }]) {
        const run = (m) => m.generate([5, 6, 7], { ...opts, maxNewTokens: 330, eosTokenId: [] }).result;
        const [a, b] = [await run(full), await run(bounded)];
        assert.equal(b.ids.length, 330);
        assert.equal(b.stats.stopReason, 'length');
        assert.deepEqual(b.ids, a.ids, JSON.stringify(opts));
      }
    } finally {
      await full.dispose();
      await bounded.dispose();
    }
  });
}

test('without the bounded cache, generation stops when the context is full', async () => {
  const model = await loadModel(dir, { contextLength: 40 });
  try {
    const r = await model.generate([5, 6, 7], { maxNewTokens: 100, temperature: 0, eosTokenId: [] }).result;
    assert.equal(r.stats.stopReason, 'context');
    await assert.rejects(model.logits(Array(41).fill(5)), (e) => e.code === 'CONTEXT_OVERFLOW');
  } finally {
    await model.dispose();
  }
});

test('the bounded cache is refused where it cannot be exact, with the reason', async () => {
  await assert.rejects(loadModel(dir, { contextLength: 32, boundedCache: true }),
    (e) => e.code === 'BAD_INPUT' && /must hold more than keep_window_size tokens \(context 32, keep_window_size 32\)/.test(e.message));
  await assert.rejects(loadModel(`${CASES_DIR}/old_dense`, { contextLength: 4096, boundedCache: true }),
    (e) => e.code === 'BAD_INPUT' && /attends to every key/.test(e.message));
  await assert.rejects(loadModel(`${CASES_DIR}/seqcls`, { contextLength: 4096, boundedCache: true }),
    (e) => e.code === 'BAD_INPUT' && /causal LMs only/.test(e.message));
  const r = runCli(['generate', '--model', dir, '--ids', '5,6', '--bounded-cache', '--context-length', '20']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^doge-wasm: BAD_INPUT: the bounded cache cannot be used/);
});

test('MoE: the bounded cache decodes exactly, and refuses a call it would have to split (routing spans the call)', async () => {
  const moe = caseCopy('moe_e16_k4');
  const config = JSON.parse(readFileSync(`${moe}/config.json`, 'utf8'));
  writeFileSync(`${moe}/config.json`, JSON.stringify({ ...config, keep_window_size: 4 }));
  const full = await loadModel(moe, { contextLength: 64 });
  const bounded = await loadModel(moe, { contextLength: 8, boundedCache: true });
  try {
    const run = (m) => m.generate([5, 6, 7], { temperature: 0, maxNewTokens: 40, eosTokenId: [] }).result;
    assert.deepEqual((await run(bounded)).ids, (await run(full)).ids);
    const ids = Array.from({ length: 20 }, (_, i) => (i * 5 + 1) % 100);
    await assert.rejects(bounded.logits(ids), (e) => e.code === 'BAD_INPUT' && /only in one piece/.test(e.message));
    assert.deepEqual(await bounded.logits(ids.slice(0, 8)), await full.logits(ids.slice(0, 8)));
  } finally {
    await full.dispose();
    await bounded.dispose();
  }
});
