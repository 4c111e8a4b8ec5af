// `make bench`: doge-wasm (native, wasm in Node, wasm in Chromium) and its peers on random checkpoints with the
// dimensions of Doge-20M and Doge-60M, one after another on this machine, in one run. Writes
// bench/results.json (every measurement), bench/RESULTS.md (tables, the targets of issue #6 as ratios) and
// bench/decode.svg (decode speed per runtime), and prints each measurement as it comes.
//   node tools/bench/run.mjs [--models doge-20m,doge-60m] [--repeat 3] [--long-tokens 20000] [--only ours|peers] [--render-only]
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median, renderMarkdown, renderSvg } from './report.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'doge-20m,doge-60m' },
    repeat: { type: 'string', default: '3' },
    'long-tokens': { type: 'string', default: '20000' },
    only: { type: 'string' },
    'render-only': { type: 'boolean' },
  },
});
const REPEAT = Number(values.repeat);
const BUSY_REPEAT = 3 * REPEAT; // busyCoreRuns
const PY = '/usr/bin/python3';

function sh(cmd, args, { timeoutMs = 30 * 60e3, cwd = root } = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 28 });
  return { ok: r.status === 0, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

function prepare(name) {
  const dir = `build/bench/models/${name}`;
  const steps = [
    [`${dir}/model.safetensors`, 'node', ['tools/bench/make_checkpoint.mjs', name, dir]],
    [`build/bench/gguf/${name}-f32.gguf`, PY, ['tools/bench/gguf.py', dir, `build/bench/gguf/${name}-f32.gguf`, '--type', 'f32']],
    [`build/bench/gguf/${name}-q8_0.gguf`, PY, ['tools/bench/gguf.py', dir, `build/bench/gguf/${name}-q8_0.gguf`, '--type', 'q8_0']],
    [`build/bench/onnx/${name}.onnx`, PY, ['tools/bench/export_onnx.py', '--model', dir, '--out', `build/bench/onnx/${name}.onnx`]],
  ];
  mkdirSync(`${root}build/bench/gguf`, { recursive: true });
  mkdirSync(`${root}build/bench/onnx`, { recursive: true });
  for (const [out, cmd, args] of steps) {
    if (existsSync(`${root}${out}`)) continue;
    const r = sh(cmd, args);
    if (!r.ok) console.error(`bench: could not make ${out}: ${r.stderr.trim().split('\n').pop()}`);
  }
}

/** The arguments of `node` for `doge-wasm bench --json` on a bench model, then `more`. */
const wasmBench = (model, ...more) => ['js/cli.js', 'bench', '--json', '--model', `build/bench/models/${model}`, ...more];

/** The JSON object a benchmark prints last. */
const lastJson = (stdout) => JSON.parse(stdout.trim().split('\n').pop());

/** Every configuration measured for one model: [label, command, args]; each prints one JSON object last. */
function configs(name) {
  const dir = `build/bench/models/${name}`;
  const gguf = (t) => `build/bench/gguf/${name}-${t}.gguf`;
  const ours = [];
  for (const w of ['f32', 'int8']) {
    for (const t of [1, 2]) ours.push([`doge-native ${w} ${t}t`, 'build/native/doge-native', ['bench', '--model', dir, '--weights', w, '--threads', String(t)]]);
    ours.push([`doge-wasm node single ${w} 1t`, 'node', wasmBench(name, '--weights', w, '--build', 'single')]);
    for (const t of [1, 2]) ours.push([`doge-wasm node threads ${w} ${t}t`, 'node', wasmBench(name, '--weights', w, '--build', 'threads', '--threads', String(t))]);
    for (const t of [1, 2]) ours.push([`doge-wasm chromium ${w} ${t}t`, 'node', ['tools/bench/ours_browser.mjs', '--model', dir, '--weights', w, '--threads', String(t)]]);
  }
  const peers = [
    ['plain-c native f32 1t', 'build/bench/plain_loop', ['--model', dir]],
    ['plain-c node f32 1t', 'node', ['build/bench/plain-wasm/plain_loop.js', '--model', dir]],
    ['llama.cpp native f32 1t', 'node', ['tools/bench/peer_llamacpp.mjs', '--gguf', gguf('f32')]],
    ['llama.cpp native q8_0 1t', 'node', ['tools/bench/peer_llamacpp.mjs', '--gguf', gguf('q8_0')]],
    ['wllama chromium f32 1t', 'node', ['tools/bench/peer_wllama.mjs', '--gguf', gguf('f32')]],
    ['wllama chromium q8_0 1t', 'node', ['tools/bench/peer_wllama.mjs', '--gguf', gguf('q8_0')]],
    ['onnxruntime-web node f32 1t', 'node', ['tools/bench/peer_ort.mjs', '--onnx', `build/bench/onnx/${name}.onnx`, '--model', dir]],
  ];
  return values.only === 'ours' ? ours : values.only === 'peers' ? peers : [...ours, ...peers];
}


/** One run of a configuration: its JSON object, or {error}. */
function runOnce([label, cmd, args]) {
  const r = sh(cmd, args, { timeoutMs: 10 * 60e3 });
  try {
    if (!r.ok) throw new Error(r.stderr.trim().split('\n').slice(-2).join(' '));
    return lastJson(r.stdout);
  } catch (e) {
    return { error: `${label}: ${String(e.message ?? e).slice(0, 300)}` };
  }
}

/** The entry of a configuration from its runs: decode figures from the run with the median decode speed,
 * prefill (first prompt, and the prompt again where measured) the medians of the prefill speeds. */
function summarize(model, label, runs) {
  const failed = runs.find((r) => r.error);
  if (failed) return { label, model, error: failed.error };
  const mid = median(runs.map((r) => r.decode_tok_s));
  const pick = runs.find((r) => r.decode_tok_s === mid);
  const again = runs.every((r) => r.prefill_again_tok_s) ? { prefill_again_tok_s: median(runs.map((r) => r.prefill_again_tok_s)) } : {};
  const threads = runs.every((r) => r.decode_threads !== undefined) ? { decode_threads_runs: runs.map((r) => r.decode_threads) } : {};
  return { label, ...pick, model, prefill_tok_s: median(runs.map((r) => r.prefill_tok_s)), ...again,
    decode_runs: runs.map((r) => r.decode_tok_s), prefill_runs: runs.map((r) => r.prefill_tok_s), ...threads };
}

/** Every configuration `repeat` times, round-robin, so that the machine's slow spells (2 shared cores) fall on
 * all of them alike and the ratios between them stay fair. */
function measureAll(model, list, repeat = REPEAT) {
  const runs = list.map(() => []);
  for (let i = 0; i < repeat; i++)
    list.forEach((c, k) => {
      if (runs[k].some((r) => r.error)) return;
      const r = runOnce(c);
      runs[k].push(r);
      process.stderr.write(`${c[0]} run ${i + 1}: ${r.error ?? `decode ${r.decode_tok_s} tok/s, prefill ${r.prefill_tok_s} tok/s`}\n`);
    });
  const entries = list.map(([label], k) => summarize(model, label, runs[k]));
  for (const e of entries) console.log(JSON.stringify(e));
  return entries;
}

/** Constant memory: int8 generation with the bounded cache (keep_window_size + 256 slots), short and long. */
function longRuns(model) {
  const ctx = String(2048 + 256);
  return measureAll(model, [1000, Number(values['long-tokens'])].map((n) => [`doge-wasm node single int8 1t bounded ${n}`, 'node',
    wasmBench(model, '--weights', 'int8', '--build', 'single', '--bounded-cache', '--context-length', ctx, '--prompt-tokens', '16',
      '--new-tokens', String(n))]), 1);
}

/** "2 threads never slower than 1" when another process holds a core: int8 decoding, 1 and 2 threads, 512 new
 * tokens, while a busy loop runs. Three times the runs of the others: single runs swing +-10 % here, more than the
 * difference this looks for, and these runs are short. */
function busyCoreRuns(model) {
  const busy = spawn('node', ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  try {
    return measureAll(model, [1, 2].map((t) => [`doge-wasm node threads int8 ${t}t one core busy`, 'node',
      wasmBench(model, '--weights', 'int8', '--build', 'threads', '--threads', String(t), '--new-tokens', '512')]), BUSY_REPEAT);
  } finally {
    busy.kill();
  }
}

/** What two cores give on this machine: two single-thread int8 benches at once, each against one alone (2.0 = two
 * free cores; vCPUs that share a physical core or a busy host give less). Bounds what 2 threads can reach. */
async function parallelCeiling(model) {
  const args = wasmBench(model, '--weights', 'int8', '--build', 'single');
  const once = () => new Promise((resolve) => execFile('node', args, { cwd: root }, (err, stdout) => {
    try {
      resolve(err ? null : lastJson(stdout));
    } catch {
      resolve(null);
    }
  }));
  const alone = [], pair = [];
  for (let i = 0; i < REPEAT; i++) {
    alone.push(await once());
    pair.push(...(await Promise.all([once(), once()])));
  }
  if ([...alone, ...pair].some((r) => !r)) return { label: 'two processes at once', model, error: 'a bench run failed' };
  const ratio = (key) => +(2 * median(pair.map((r) => r[key])) / median(alone.map((r) => r[key]))).toFixed(2);
  const entry = { label: 'two processes at once', model, prefill_scaling: ratio('prefill_tok_s'), decode_scaling: ratio('decode_tok_s') };
  console.log(JSON.stringify(entry));
  return entry;
}

/** bench/RESULTS.md and bench/decode.svg from the results. */
function writeReport(results) {
  writeFileSync(`${root}bench/RESULTS.md`, renderMarkdown(results));
  writeFileSync(`${root}bench/decode.svg`, renderSvg(results));
}

if (values['render-only']) { // the report again from bench/results.json
  writeReport(JSON.parse(readFileSync(`${root}bench/results.json`, 'utf8')));
  process.exit(0);
}

const results = { date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, repeat: REPEAT, busy_repeat: BUSY_REPEAT, runs: [] };
for (const model of values.models.split(',')) {
  prepare(model);
  results.runs.push(...measureAll(model, configs(model)));
  if (model === 'doge-20m' && values.only !== 'peers') {
    results.runs.push(...longRuns(model).map((r) => ({ ...r, long: true })));
    results.runs.push(...busyCoreRuns(model));
    results.parallel = await parallelCeiling(model);
  }
}
mkdirSync(`${root}bench`, { recursive: true });
writeFileSync(`${root}bench/results.json`, JSON.stringify(results, null, 1) + '\n');
writeReport(results);
console.log(`bench: wrote bench/results.json, bench/RESULTS.md, bench/decode.svg`);
