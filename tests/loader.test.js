// The streaming loader: chunk-size invariance, and clear errors for bad checkpoints and bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { Engine } from '../js/wasm-engine.js';
import { streamWeights, weightFiles } from '../js/weights.js';
import { openSource } from '../js/sources.js';
import { loadModel } from '../js/index.js';
import { CASES_DIR, NATIVE, caseCopy, run, runCli } from './helpers.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

const nativeHash = (dir, chunk) => {
  const r = run(NATIVE, ['logits', '--model', dir, '--ids', '1', '--chunk', String(chunk), '--hash']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).weights_hash;
};

/** A directory source that hands out every file in chunks of exactly `size` bytes. */
async function chunkedSource(dir, size) {
  const inner = await openSource(dir);
  return {
    label: dir,
    readText: (f) => inner.readText(f),
    async open(file) {
      const bytes = readFileSync(`${dir}/${file}`);
      return {
        size: bytes.length,
        chunks: (function* () {
          for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
        })(),
      };
    },
  };
}

for (const name of ['mixed_dtype', 'sharded', 'f16', 'bf16']) {
  test(`${name}: 1-byte, 7-byte, 64 KiB and whole-file chunks give bitwise identical weights`, async () => {
    const dir = `${CASES_DIR}/${name}`;
    const hashes = new Set([1, 7, 65536, 1 << 30].map((c) => nativeHash(dir, c)));
    assert.equal(hashes.size, 1, 'native hashes differ across chunk sizes');
    const [expected] = hashes;
    const engine = await Engine.create({ build: 'single' });
    try {
      for (const size of [1, 7, 65536, 1 << 30]) {
        const source = await chunkedSource(dir, size);
        const model = await streamWeights(engine, source, await source.readText('config.json'));
        assert.equal(model.weightsHash(), expected, `wasm, ${size}-byte chunks`);
        model.free();
      }
    } finally {
      engine.dispose();
    }
  });
}

test('progress events are monotone and end at each file size', async () => {
  const dir = `${CASES_DIR}/sharded`;
  const engine = await Engine.create({ build: 'single' });
  const source = await openSource(dir);
  const events = [];
  const model = await streamWeights(engine, source, await source.readText('config.json'), { onProgress: (p) => events.push(p) });
  model.free();
  engine.dispose();
  const files = await weightFiles(source);
  assert.equal(files.length, 3);
  for (const f of files) {
    const mine = events.filter((e) => e.file === f);
    const size = readFileSync(`${dir}/${f}`).length;
    assert.ok(mine.length >= 2);
    for (let i = 1; i < mine.length; i++) assert.ok(mine[i].loaded >= mine[i - 1].loaded);
    assert.equal(mine.at(-1).loaded, size);
    assert.ok(mine.every((e) => e.total === size));
  }
});

/** Copies a reference case to a scratch dir, lets `mutate` break it, and runs both CLIs on it. */
function brokenCase(base, mutate) {
  const dir = caseCopy(base);
  mutate(dir);
  return { nativeRun: run(NATIVE, ['logits', '--model', dir, '--ids', '1,2']), wasmRun: runCli(['logits', '--model', dir, '--ids', '1,2']) };
}

function expectError(result, pattern) {
  for (const [which, r] of Object.entries(result)) {
    assert.equal(r.code, 2, `${which}: exit code (stderr: ${r.stderr})`);
    assert.equal(r.stdout, '', `${which}: nothing on stdout`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${which}: one line on stderr, got: ${r.stderr}`);
    assert.match(lines[0], pattern, which);
  }
}

const st = (dir) => `${dir}/model.safetensors`;
const editTensors = (dir, fn) => {
  const t = readSafetensors(st(dir));
  fn(t);
  writeSafetensors(st(dir), t);
};
const editConfig = (dir, fn) => {
  const c = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
  fn(c);
  writeFileSync(`${dir}/config.json`, JSON.stringify(c));
};

const BAD = [
  ['truncated file', (d) => writeFileSync(st(d), readFileSync(st(d)).subarray(0, -100)),
    /BAD_SAFETENSORS: model\.safetensors: the file is truncated \(it ends before the last tensor's data\)/],
  ['file cut inside the header', (d) => writeFileSync(st(d), readFileSync(st(d)).subarray(0, 20)),
    /BAD_SAFETENSORS: model\.safetensors: the file is truncated \(it ends inside the JSON header\)/],
  ['header length past 100 MB', (d) => { const b = readFileSync(st(d)); b.writeBigUInt64LE(1n << 40n); writeFileSync(st(d), b); },
    /BAD_SAFETENSORS: model\.safetensors: safetensors header length \d+ is larger than 100 MB/],
  ['header that is not JSON', (d) => { const b = readFileSync(st(d)); b.write('{"x":', 8); writeFileSync(st(d), b); },
    /BAD_SAFETENSORS: model\.safetensors: the safetensors header is not valid JSON/],
  ['trailing bytes', (d) => writeFileSync(st(d), Buffer.concat([readFileSync(st(d)), Buffer.alloc(8)])),
    /BAD_SAFETENSORS: model\.safetensors: 8 unexpected bytes after the last tensor/],
  ['a missing tensor', (d) => editTensors(d, (t) => delete t['model.layers.1.mlp.up_proj.weight']),
    /BAD_TENSOR: the checkpoint is missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'/],
  ['q/k norms in some layers only', (d) => editTensors(d, (t) => delete t['model.layers.1.self_attn.k_norm.weight']),
    /BAD_TENSOR: the checkpoint has q_norm\/k_norm in some layers but not 'model\.layers\.1\.self_attn\.k_norm\.weight': they must be in every layer or in none/],
  ['an unexpected tensor', (d) => editTensors(d, (t) => { t['model.extra.weight'] = { dtype: 'F32', shape: [1], bytes: Buffer.alloc(4) }; }),
    /BAD_TENSOR: model\.safetensors: unexpected tensor 'model\.extra\.weight' for this config\.json \(transformers layout\)/],
  ['a shape that disagrees with the config', (d) => editConfig(d, (c) => { c.intermediate_size += 2; }),
    /BAD_TENSOR: model\.safetensors: tensor 'model\.layers\.\d+\.mlp\.\w+_proj\.weight' has shape \[\d+, \d+\] but config\.json implies \[\d+, \d+\]/],
  ['an unknown dtype', (d) => editTensors(d, (t) => { const x = t['model.norm.weight']; t['model.norm.weight'] = { ...x, dtype: 'I32' }; }),
    /BAD_TENSOR: model\.safetensors: tensor 'model\.norm\.weight' has dtype 'I32'; only F32, BF16 and F16 are supported/],
  ['data_offsets that do not match the shape', (d) => editTensors(d, (t) => { const x = t['model.norm.weight']; t['model.norm.weight'] = { ...x, shape: [x.shape[0] + 1] }; }),
    /BAD_SAFETENSORS: model\.safetensors: tensor 'model\.norm\.weight' has data_offsets \[\d+, \d+\] \(\d+ bytes\) but shape x dtype needs \d+ bytes/],
  ['heads that kv heads do not divide', (d) => editConfig(d, (c) => { c.num_key_value_heads = 3; }),
    /BAD_CONFIG: config\.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3/],
  ['an unknown rope type', (d) => editConfig(d, (c) => { c.rope_scaling = { rope_type: 'warp', factor: 2 }; }),
    /BAD_CONFIG: config\.json: unknown rope_scaling type 'warp'/],
  ['a config that is not JSON', (d) => writeFileSync(`${d}/config.json`, '{"hidden_size": 64,'),
    /BAD_CONFIG: config\.json: not valid JSON/],
  ['a non-integer size', (d) => editConfig(d, (c) => { c.hidden_size = '64'; }),
    /BAD_CONFIG: config\.json: 'hidden_size' must be an integer/],
  ['another model_type', (d) => editConfig(d, (c) => { c.model_type = 'doge2'; }),
    /UNSUPPORTED_MODEL: config\.json: model_type is 'doge2', not 'doge'/],
  ['experts that are not a square', (d) => editConfig(d, (c) => { c.is_moe = true; c.num_experts = 15; }),
    /BAD_CONFIG: config\.json: num_experts 15 is not a perfect square/],
];

for (const [what, mutate, pattern] of BAD) {
  test(`a checkpoint with ${what} gives a clear error (native and wasm)`, () => {
    expectError(brokenCase('tiny_tied', mutate), pattern);
  });
}

test('token ids outside the vocabulary are refused', () => {
  const dir = `${CASES_DIR}/tiny_tied`;
  expectError({ nativeRun: run(NATIVE, ['logits', '--model', dir, '--ids', '1,128']), wasmRun: runCli(['logits', '--model', dir, '--ids', '1,128']) },
    /BAD_INPUT: token id 128 at index 1 is outside the vocabulary \[0, 128\)/);
});

test('CLI usage errors', () => {
  expectError({ badIds: runCli(['logits', '--model', `${CASES_DIR}/tiny_tied`, '--ids', '1,x']) }, /BAD_ARGUMENT: --ids must be comma-separated non-negative integers/);
  expectError({ missing: runCli(['logits', '--model', '/nonexistent/dir', '--ids', '1']) }, /NOT_FOUND: \/nonexistent\/dir: no such model directory/);
  const help = runCli(['logits', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: doge-wasm logits --model <dir\|url\|repo-id> --ids 5,17,42/);
});

test('shards load whatever shard the index names first: the one telling the layout is read first', () => {
  const dir = caseCopy('sharded');
  const all = {};
  for (const f of ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']) {
    Object.assign(all, readSafetensors(`${dir}/${f}`));
    rmSync(`${dir}/${f}`);
  }
  // the last shard holds only tensors that do not tell the layout; by key order the index names it first
  const shardOf = (name) => (name === 'lm_head.weight' || name === 'model.norm.weight' ? 3 : name.startsWith('model.layers.2.') ? 2 : 1);
  const weightMap = {};
  for (const k of [1, 2, 3]) {
    const file = `model-0000${k}-of-00003.safetensors`;
    const names = Object.keys(all).filter((n) => shardOf(n) === k);
    writeSafetensors(`${dir}/${file}`, Object.fromEntries(names.map((n) => [n, all[n]])));
    for (const n of names) weightMap[n] = file;
  }
  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((n) => [n, weightMap[n]]));
  assert.equal(Object.values(sorted)[0], 'model-00003-of-00003.safetensors');
  writeFileSync(`${dir}/model.safetensors.index.json`, JSON.stringify({ metadata: {}, weight_map: sorted }));
  for (const cli of [(args) => run(NATIVE, args), runCli]) { // each build against itself on the original shards
    const logits = (model) => {
      const r = cli(['logits', '--model', model, '--ids', '1,2,3']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).logits;
    };
    assert.deepEqual(logits(dir), logits(`${CASES_DIR}/sharded`));
  }
});

test('a file restarted after a NaN in its first attempt loads (int8 notes non-finite values while quantizing)', async () => {
  const clean = readFileSync(`${CASES_DIR}/tiny_tied/model.safetensors`);
  const t = readSafetensors(`${CASES_DIR}/tiny_tied/model.safetensors`);
  const name = 'model.layers.0.self_attn.q_proj.weight';
  const bad = Buffer.from(clean);
  bad.writeFloatLE(NaN, clean.indexOf(t[name].bytes));
  const engine = await Engine.create({ build: 'single' });
  try {
    const config = readFileSync(`${CASES_DIR}/tiny_tied/config.json`, 'utf8');
    /** Feeds `dropped` (a first attempt cut short, then restarted) if given, then `body`, and finishes. */
    const load = (dropped, body) => {
      const loader = engine.createLoader(config, 'int8');
      try {
        loader.beginFile('model.safetensors');
        if (dropped) {
          loader.feed(dropped);
          loader.restartFile();
        }
        loader.feed(body);
        loader.endFile();
        loader.finish().free();
      } finally {
        loader.free();
      }
    };
    load(bad.subarray(0, bad.length - 64), clean); // the NaN arrived, the connection dropped, the file came again clean
    assert.throws(() => load(null, bad), (e) => e.code === 'BAD_TENSOR' && /non-finite value/.test(e.message));
    assert.throws(() => load(clean.subarray(0, 100), bad), (e) => e.code === 'BAD_TENSOR' && /non-finite value/.test(e.message));
  } finally {
    engine.dispose();
  }
});

test('sizes past 4 GB are refused as OUT_OF_MEMORY, not wrapped around in 32-bit wasm', () => {
  const dir = caseCopy('tiny_tied');
  editConfig(dir, (c) => Object.assign(c, { vocab_size: 1 << 24, hidden_size: 1024 })); // a 64 GiB embedding
  let r = runCli(['logits', '--model', dir, '--ids', '1']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^doge-wasm: OUT_OF_MEMORY: config\.json: the model needs 6\d\.\d\d GiB of f32 weights/);
  // a KV cache of 2^24 tokens of the Doge-20M shape: 128 GB
  r = runCli(['logits', '--model', `${CASES_DIR}/doge20m_shape`, '--ids', '1', '--context-length', String(1 << 24)]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^doge-wasm: OUT_OF_MEMORY: out of memory for a 16777216-token KV cache \(13797\d\.\d MB\)/);
});

test('load options are checked, not silently changed: build, threads with the single build, contextLength', async () => {
  const dir = `${CASES_DIR}/tiny_tied`;
  for (const [options, message] of [
    [{ build: 'thread' }, /build must be one of auto, threads, single, got 'thread'/],
    [{ build: 'single', threads: 4 }, /threads: 4 needs the threads build/],
    [{ contextLength: -5 }, /contextLength must be an integer from 1 to 16777216, got -5/],
    [{ contextLength: 1.5 }, /contextLength must be an integer from 1 to 16777216, got 1\.5/],
    [{ contextLength: '64' }, /contextLength must be an integer from 1 to 16777216, got '64'/],
    [{ contextLength: 1e10 }, /contextLength must be an integer from 1 to 16777216, got 10000000000/],
  ]) {
    await assert.rejects(loadModel(dir, options), (e) => e.code === 'BAD_ARGUMENT' && message.test(e.message), JSON.stringify(options));
  }
  // a prompt that fills the context exactly still gives its one token
  const model = await loadModel(dir, { contextLength: 8 });
  try {
    const r = await model.generate([1, 2, 3, 4, 5, 6, 7, 8], { temperature: 0, maxNewTokens: 5, eosTokenId: [] }).result;
    assert.equal(r.ids.length, 1);
    assert.equal(r.stats.stopReason, 'context');
  } finally {
    await model.dispose();
  }
});

test('errors of the core name their file; a bad generation_config.json is BAD_CONFIG, not the caller\'s option', async () => {
  const dir = caseCopy('tiny_tied');
  writeFileSync(`${dir}/generation_config.json`, JSON.stringify({ do_sample: true, temperature: -1 }));
  const model = await loadModel(dir);
  try {
    await assert.rejects(model.generate([1, 2]).result,
      (e) => e.code === 'BAD_CONFIG' && e.file === 'generation_config.json' && /^generation_config\.json: temperature must be >= 0, got -1$/.test(e.message));
    const r = await model.generate([1, 2], { temperature: 0, maxNewTokens: 2 }).result; // the caller's value wins
    assert.equal(r.ids.length, 2);
    await assert.rejects(model.generate([1, 2], { temperature: 0.5, topP: 2 }).result, (e) => e.code === 'BAD_ARGUMENT' && /invalid generation option: topP/.test(e.message));
  } finally {
    await model.dispose();
  }
  editTensors(dir, (t) => delete t['model.norm.weight']);
  await assert.rejects(loadModel(dir), (e) => e.code === 'BAD_TENSOR' && e.file === undefined);
  writeFileSync(st(dir), readFileSync(st(dir)).subarray(0, 50));
  await assert.rejects(loadModel(dir), (e) => e.code === 'BAD_SAFETENSORS' && e.file === 'model.safetensors');
});
