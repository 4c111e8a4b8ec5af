// int8 weights: quantized while streaming (row by row), the same whatever the chunking and the thread count,
// about 3.5x smaller, and close to fp32 where it matters: cross-entropy of the trained embedded model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../js/index.js';
import { Engine, LOGITS } from '../js/wasm-engine.js';
import { streamWeights } from '../js/weights.js';
import { openSource } from '../js/sources.js';
import { CASES_DIR, NATIVE, ROOT, caseCopy, run, tempDir } from './helpers.js';
import { writeTinyModel } from './fixtures.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

const EMBEDDED = `${ROOT}models/doge-mini`;
const PASSAGE = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want ' +
  'of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, ' +
  'this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property ' +
  'of some one or other of their daughters. In the beginning God created the heaven and the earth.';

const nativeRun = (args) => {
  const r = run(NATIVE, args);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};

/** Mean next-token cross-entropy (nats) of ids under logits [S, V]. */
function crossEntropy(logits, ids, V) {
  let sum = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const z = row.reduce((a, b) => a + Math.exp(b - max), 0);
    sum += Math.log(z) + max - row[ids[t + 1]];
  }
  return sum / (ids.length - 1);
}

test('embedded model: int8 cross-entropy within 1% of f32, weights under 30% of the f32 bytes', async () => {
  const f32 = await loadModel(EMBEDDED, { weights: 'f32' });
  const int8 = await loadModel(EMBEDDED, { weights: 'int8' });
  try {
    assert.equal(int8.info.weights, 'int8');
    assert.equal(f32.info.weights, 'f32');
    const ids = await f32.tokenize(PASSAGE);
    assert.ok(ids.length > 60, `${ids.length} tokens`);
    const V = f32.info.vocabSize;
    const ceF = crossEntropy(await f32.logits(ids), ids, V), ceQ = crossEntropy(await int8.logits(ids), ids, V);
    assert.ok(Math.abs(ceQ - ceF) / ceF < 0.01, `f32 ${ceF}, int8 ${ceQ}`);
    assert.ok(int8.info.weightBytes < 0.3 * f32.info.weightBytes, `${int8.info.weightBytes} vs ${f32.info.weightBytes}`);
  } finally {
    await f32.dispose();
    await int8.dispose();
  }
});

// vocab 321: the embedding and the head end with a band of 1 row (matrices keep bands of 8 rows, padded)
const oddRows = tempDir('int8-rows');
writeTinyModel(oddRows, { vocab: 321 });
const CHUNKED = [...['mixed_dtype', 'sharded', 'bf16', 'untied'].map((name) => [name, `${CASES_DIR}/${name}`]), ['vocab 321', oddRows]];

for (const [name, dir] of CHUNKED) {
  test(`${name}: int8 weights are the same for 1-byte, 7-byte and whole-file chunks, native and wasm`, async () => {
    const hashes = new Set([1, 7, 1 << 30].map((c) => nativeRun(['logits', '--model', dir, '--ids', '1', '--chunk', String(c), '--hash', '--weights', 'int8']).weights_hash));
    assert.equal(hashes.size, 1, 'native int8 hashes differ across chunk sizes');
    const f32Hash = nativeRun(['logits', '--model', dir, '--ids', '1', '--hash']).weights_hash;
    assert.notEqual([...hashes][0], f32Hash, 'int8 weights differ from f32 ones');
    const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5]; // two 4-token tiles and one token left
    const native = nativeRun(['logits', '--model', dir, '--ids', ids.join(','), '--weights', 'int8']).logits;
    const f32 = nativeRun(['logits', '--model', dir, '--ids', ids.join(',')]).logits;
    for (const build of ['single', 'threads']) {
      const model = await loadModel(dir, { weights: 'int8', build, threads: build === 'threads' ? 2 : 1 });
      try {
        const got = await model.logits(ids);
        let diff = 0, ref = 0, vsF32 = 0;
        got.forEach((v, i) => {
          diff = Math.max(diff, Math.abs(v - native[i]));
          vsF32 = Math.max(vsF32, Math.abs(v - f32[i]));
          ref = Math.max(ref, Math.abs(f32[i]));
        });
        assert.ok(diff / ref < 1e-5, `${build}: wasm int8 vs native int8 ${diff / ref}`);
        assert.ok(vsF32 / ref > 1e-6 && vsF32 / ref < 0.1, `${build}: int8 vs f32 ${vsF32 / ref}`);
      } finally {
        await model.dispose();
      }
    }
  });
}

test('int8: 1 and 2 threads give identical logits; a matrix too narrow for groups of 32 stays f32', async () => {
  const dir = `${CASES_DIR}/doge20m_shape`;
  const ids = [7, 100, 2000, 31000, 5];
  const one = await loadModel(dir, { weights: 'int8', build: 'threads', threads: 1 });
  const two = await loadModel(dir, { weights: 'int8', build: 'threads', threads: 2 });
  try {
    assert.deepEqual(await one.logits(ids), await two.logits(ids));
  } finally {
    await one.dispose();
    await two.dispose();
  }
  // head_dim_custom has rows of a width that is not a multiple of 32: those stay fp32 and still run
  const odd = `${CASES_DIR}/head_dim_custom`;
  const f32 = nativeRun(['logits', '--model', odd, '--ids', '1,2,3']).logits;
  const int8 = nativeRun(['logits', '--model', odd, '--ids', '1,2,3', '--weights', 'int8']).logits;
  assert.equal(int8.length, f32.length);
  assert.ok(int8.every(Number.isFinite));
});

test('int8: a non-finite value in a quantized matrix is a BAD_TENSOR error naming the tensor', async () => {
  const dir = caseCopy('mixed_dtype');
  const tensors = readSafetensors(`${dir}/model.safetensors`);
  const name = 'model.layers.0.mlp.up_proj.weight';
  const t = tensors[name];
  const bytes = Buffer.from(t.bytes);
  if (t.dtype === 'F32') bytes.writeFloatLE(NaN, 4 * 5);
  else bytes.writeUInt16LE(0x7fc0, 2 * 5); // NaN in both BF16 and F16
  tensors[name] = { ...t, bytes };
  writeSafetensors(`${dir}/model.safetensors`, tensors);
  await assert.rejects(loadModel(dir, { weights: 'int8' }), (e) => e.code === 'BAD_TENSOR' && e.message.includes(name) && /non-finite/.test(e.message));
  await assert.rejects(loadModel(dir, { weights: 'int4' }), (e) => e.code === 'BAD_ARGUMENT' && /weights must be one of f32, int8/.test(e.message));
  const r = run(NATIVE, ['logits', '--model', dir, '--ids', '1', '--weights', 'int8']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /non-finite/);
});

test('int8: prefill and token-by-token decoding give the same bits (native and wasm)', async () => {
  const dir = `${CASES_DIR}/doge20m_shape`;
  const ids = [7, 100, 2000, 31000, 5, 9, 11, 13, 17, 19];
  const prefill = nativeRun(['logits', '--model', dir, '--ids', ids.join(','), '--weights', 'int8']).logits;
  const decode = nativeRun(['logits', '--model', dir, '--ids', ids.join(','), '--weights', 'int8', '--decode-split', '1']).logits;
  assert.deepEqual(decode, prefill);
  const engine = await Engine.create({ build: 'single' });
  try {
    const source = await openSource(dir);
    const model = await streamWeights(engine, source, await source.readText('config.json'), { weights: 'int8' });
    const session = model.createSession(ids.length);
    const all = session.forward(ids, LOGITS.ALL);
    session.reset();
    const V = model.vocabSize;
    ids.forEach((id, t) => assert.deepEqual(session.forward([id], LOGITS.LAST), all.subarray(t * V, (t + 1) * V), `token ${t}`));
    session.free();
    model.free();
  } finally {
    engine.dispose();
  }
});
