// The streaming loader: chunk-size invariance, and clear errors for bad checkpoints and bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Engine } from '../js/wasm-engine.js';
import { streamWeights, weightFiles } from '../js/weights.js';
import { openSource } from '../js/sources.js';
import { CASES_DIR, NATIVE, run, runCli } from './helpers.js';
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
  const dir = mkdtempSync(`${tmpdir()}/doge-bad-`);
  cpSync(`${CASES_DIR}/${base}`, dir, { recursive: true });
  mutate(dir);
  const nativeRun = run(NATIVE, ['logits', '--model', dir, '--ids', '1,2']);
  const wasmRun = runCli(['logits', '--model', dir, '--ids', '1,2']);
  rmSync(dir, { recursive: true, force: true });
  return { nativeRun, wasmRun };
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
  assert.match(help.stdout, /usage: doge-wasm logits --model <dir> --ids 5,17,42/);
});
