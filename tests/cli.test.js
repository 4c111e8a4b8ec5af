// The doge-wasm command line end to end, and the npm package installed from its tarball.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { runCli, run, ROOT, NATIVE, argmaxRows, tempDir } from './helpers.js';
import { benchPrompt } from '../js/bench.js';
import { writeTinyModel, CHAT_TEMPLATE } from './fixtures.js';
import { Tokenizer as RustTokenizer } from 'tokenizers';

const dir = tempDir('cli');
writeTinyModel(dir);

test('generate streams text; --json prints ids, text and stats', () => {
  const plain = runCli(['generate', '--model', dir, '--prompt', 'Hello the', '--max-new-tokens', '8', '--temperature', '0']);
  assert.equal(plain.code, 0, plain.stderr);
  const json = runCli(['generate', '--model', dir, '--prompt', 'Hello the', '--max-new-tokens', '8', '--temperature', '0', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const out = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(out), ['ids', 'text', 'stats']);
  assert.equal(out.ids.length, 8);
  assert.equal(plain.stdout, `${out.text}\n`);
  assert.match(plain.stderr, /\[8 tokens, [\d.]+ tok\/s, .*stop: length/);
  assert.equal(out.stats.stopReason, 'length');
});

const rustIds = async (text, addSpecialTokens) => (await RustTokenizer.fromFile(`${dir}/tokenizer.json`).encode(text, null, { addSpecialTokens })).getIds();

test('generate --ids, --chat with --system, sampling options and --seed', async () => {
  const a = JSON.parse(runCli(['generate', '--model', dir, '--ids', '0,100,101', '--max-new-tokens', '6', '--temperature', '0.9', '--top-k', '20', '--top-p', '0.9', '--min-p', '0.01', '--repetition-penalty', '1.1', '--seed', '7', '--json']).stdout);
  const b = JSON.parse(runCli(['generate', '--model', dir, '--ids', '0,100,101', '--max-new-tokens', '6', '--temperature', '0.9', '--top-k', '20', '--top-p', '0.9', '--min-p', '0.01', '--repetition-penalty', '1.1', '--seed', '7', '--json']).stdout);
  assert.deepEqual(a.ids, b.ids);
  assert.equal(a.stats.seed, 7);
  const chat = JSON.parse(runCli(['generate', '--model', dir, '--chat', '--system', 'Be brief.', '--prompt', 'Hi', '--max-new-tokens', '3', '--json', '--threads', '2']).stdout);
  const rendered = '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nBe brief.<|end_of_text|>\n\n' +
    '<|start_header_id|>user<|end_header_id|>\nHi<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\n';
  assert.ok(CHAT_TEMPLATE.includes('add_generation_prompt'));
  assert.equal(chat.stats.promptTokens, (await rustIds(rendered, false)).length);
  assert.equal(chat.stats.threads, 2);
});

test('--verbose reports the checkpoint layout and the engine', () => {
  const r = runCli(['generate', '--model', dir, '--ids', '0,5', '--max-new-tokens', '1', '--verbose', '--build', 'single']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^model: transformers layout, causal-lm, vocabulary 320; engine: single build, 1 thread \(single-thread build requested\)/);
});

test('chat reads turns from stdin and keeps the conversation', () => {
  const r = run(process.execPath, [`${ROOT}js/cli.js`, 'chat', '--model', dir, '--max-new-tokens', '4', '--temperature', '0'], { input: 'hello\nhow are you\n/reset\nagain\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n').length - 1, 3, 'one reply line per message');
  assert.match(r.stderr, /\(new conversation\)/);
});

test('chat drops the oldest turns (not the system prompt) when the context is full, and survives a message too long', () => {
  // the tiny model's context is 128 tokens; each turn with its reply takes about 40
  const last = Array(7).fill('the weather').join(' '); // about 94 tokens with the system prompt: fits only alone
  const input = `${'hello there\n'.repeat(6)}${'x'.repeat(200)}\n${last}\n`;
  const sampling = ['--system', 'Be brief.', '--max-new-tokens', '8', '--temperature', '0'];
  const r = run(process.execPath, [`${ROOT}js/cli.js`, 'chat', '--model', dir, ...sampling], { input });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\(dropped the oldest \d+ turns? to fit the context of 128 tokens\)/);
  assert.match(r.stderr, /\ndoge-wasm: CONTEXT_OVERFLOW: this message with the system prompt is a prompt of \d+ tokens; the context holds 128 \(raise --context-length\)\n/);
  // the last reply saw only the system prompt and the last message
  const alone = runCli(['generate', '--model', dir, '--chat', '--prompt', last, ...sampling, '--json']);
  assert.equal(alone.code, 0, alone.stderr);
  const { text } = JSON.parse(alone.stdout);
  assert.ok(text.length > 0);
  assert.ok(r.stdout.endsWith(`${text}\n`), `${JSON.stringify(r.stdout)} should end with ${JSON.stringify(text)}`);
});

test('chat: a message too long for the context leaves the conversation as it was', () => {
  const sampling = ['--max-new-tokens', '8', '--temperature', '0'];
  const chat = (input) => run(process.execPath, [`${ROOT}js/cli.js`, 'chat', '--model', dir, ...sampling], { input });
  const plain = chat('hello there\nwhat is it\n');
  const interrupted = chat(`hello there\n${'x'.repeat(200)}\nwhat is it\n`);
  assert.equal(interrupted.code, 0, interrupted.stderr);
  assert.match(interrupted.stderr, /CONTEXT_OVERFLOW/);
  assert.doesNotMatch(interrupted.stderr, /dropped the oldest/);
  const lastReply = (r) => r.stdout.trimEnd().split('\n').at(-1);
  assert.equal(lastReply(interrupted), lastReply(plain), 'the last reply saw the first turn in both');
});

test('a closed stdout (| head) ends generate quietly with exit code 0', () => {
  const endless = tempDir('endless');
  writeTinyModel(endless, { maxPos: 4096, generationConfig: { eos_token_id: [] } }); // never stops before 4000 tokens
  const cmd = `set -o pipefail; "${process.execPath}" "${ROOT}js/cli.js" generate --model "${endless}" --prompt 'Hello the' ` +
    '--max-new-tokens 4000 --temperature 0 | head -c 1 > /dev/null';
  const r = run('bash', ['-c', cmd]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('logits --bounded-cache without --context-length runs with the model\'s context', () => {
  const plain = runCli(['logits', '--model', dir, '--ids', '0,5,7,9']);
  const bounded = runCli(['logits', '--model', dir, '--ids', '0,5,7,9', '--bounded-cache']);
  assert.equal(bounded.code, 0, bounded.stderr);
  assert.deepEqual(JSON.parse(bounded.stdout), JSON.parse(plain.stdout));
});

test('tokenize needs only the tokenizer files', async () => {
  const only = tempDir('tok-only');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(`${dir}/${f}`, `${only}/${f}`);
  const r = runCli(['tokenize', '--model', only, '--text', 'the weather']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ids: await rustIds('the weather', true) });
  assert.equal(JSON.parse(r.stdout).ids[0], 0, 'bos first');
  writeFileSync(`${only}/in.txt`, 'the weather');
  assert.deepEqual(JSON.parse(runCli(['tokenize', '--model', only, '--text-file', `${only}/in.txt`, '--no-special']).stdout), { ids: await rustIds('the weather', false) });
  // like every command it takes the engine options (README), which change nothing here
  const engine = runCli(['tokenize', '--model', only, '--text', 'the weather', '--threads', '2', '--build', 'threads', '--weights', 'int8', '--context-length', '8']);
  assert.equal(engine.code, 0, engine.stderr);
  assert.equal(engine.stdout, r.stdout);
});

test('without --model the commands use the embedded model', () => {
  const r = runCli(['generate', '--prompt', 'In the beginning', '--max-new-tokens', '12', '--temperature', '0', '--json', '--verbose']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ids.length, 12);
  assert.ok(out.text.trim().length > 0);
  assert.match(r.stderr, /model: transformers layout, causal-lm, vocabulary 4096/);
  const tok = runCli(['tokenize', '--text', 'In the beginning']);
  assert.equal(JSON.parse(tok.stdout).ids[0], 0, 'bos from the embedded tokenizer');
});

test('bench prints speeds and memory as JSON; its first token is the model\'s greedy token', () => {
  const r = runCli(['bench', '--model', dir, '--prompt-tokens', '8', '--new-tokens', '4', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  for (const key of ['prefill_tok_s', 'prefill_again_tok_s', 'decode_tok_s', 'ttft_ms', 'load_ms', 'load_mb_s', 'peak_rss_mb', 'wasm_memory_mb'])
    assert.ok(out[key] > 0, `${key} = ${out[key]}`);
  for (const key of ['weight_mb', 'kv_cache_mb']) assert.ok(out[key] >= 0 && out[key] < out.wasm_memory_mb, `${key} = ${out[key]}`);
  assert.equal(out.weights, 'f32');
  assert.equal(out.threads, 1);
  assert.equal(out.prompt_tokens, 8);
  assert.equal(out.new_tokens, 4);
  // the same prompt through the native build
  const V = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')).vocab_size;
  const ids = benchPrompt(8, V);
  const native = JSON.parse(run(NATIVE, ['logits', '--model', dir, '--ids', ids.join(',')]).stdout);
  assert.equal(out.first_token, argmaxRows(native.logits, V).at(-1));
});

test('every command has --help', () => {
  for (const c of ['generate', 'chat', 'tokenize', 'logits']) {
    const r = runCli([c, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^usage: doge-wasm ${c} `));
  }
  assert.match(runCli(['--help']).stdout, /commands:\n {2}generate/);
});

test('usage errors exit 2 with one line on stderr', () => {
  const cases = [
    [['generate', '--model', dir], /BAD_ARGUMENT: give exactly one of --prompt and --ids/],
    [['generate', '--model', dir, '--prompt', 'x', '--temperature=-1'], /BAD_ARGUMENT: invalid generation option: temperature must be >= 0/],
    [['generate', '--model', dir, '--prompt', 'x', '--top-p', 'abc'], /BAD_ARGUMENT: --top-p must be a number/],
    [['generate', '--model', dir, '--prompt', 'x', '--bogus'], /BAD_ARGUMENT: Unknown option '--bogus'/],
    [['frobnicate'], /BAD_ARGUMENT: unknown command 'frobnicate'/],
    [['tokenize', '--model', dir, '--text-file', '/nonexistent'], /NOT_FOUND: \/nonexistent: no such file/],
    [['generate', '--model', dir, '--prompt', 'x', '--system', 'S'], /BAD_ARGUMENT: --system needs --chat \(or the chat command\)/],
    [['generate', '--model', dir, '--prompt', 'x', '--build', 'single', '--threads', '4'], /BAD_ARGUMENT: --threads 4 needs the threads build: --build single runs one thread/],
    [['tokenize', '--model', dir, '--text', 'x', '--build', 'bogus'], /BAD_ARGUMENT: --build must be auto, threads or single/],
    [['generate', '--model', dir, '--prompt', 'x', '--temperature', '-1'], /BAD_ARGUMENT: invalid generation option: temperature must be >= 0, got -1/],
    [['tokenize', '--model', dir, '--text', 'x', '--weights', 'int4'], /BAD_ARGUMENT: --weights must be f32 or int8, got 'int4'/],
    [['tokenize', '--model', dir, '--text', 'x', '--moe-routing', 'foo'], /BAD_ARGUMENT: --moe-routing must be hf or legacy_2025_03, got 'foo'/],
  ];
  for (const [args, re] of cases) {
    const r = runCli(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
});

test('npm pack gives a package that installs into an empty folder with a working library and CLI', () => {
  const work = tempDir('pack');
  const pack = run('npm', ['pack', '--pack-destination', work], { cwd: ROOT });
  assert.equal(pack.code, 0, pack.stderr);
  const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
  const app = `${work}/app`;
  mkdirSync(app);
  writeFileSync(`${app}/package.json`, JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  const inst = run('npm', ['install', '--no-audit', '--no-fund', `${work}/${tgz}`], { cwd: app });
  assert.equal(inst.code, 0, inst.stderr);
  const cli = run(`${app}/node_modules/.bin/doge-wasm`, ['generate', '--model', dir, '--ids', '0,5', '--max-new-tokens', '3', '--temperature', '0', '--json'], { cwd: app });
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(JSON.parse(cli.stdout).ids.length, 3);
  const embedded = run(`${app}/node_modules/.bin/doge-wasm`, ['generate', '--prompt', 'The whale', '--max-new-tokens', '3', '--json'], { cwd: app });
  assert.equal(embedded.code, 0, embedded.stderr);
  assert.equal(JSON.parse(embedded.stdout).ids.length, 3, 'the packaged embedded model');
  writeFileSync(`${app}/use.mjs`, `import { loadModel } from 'doge-wasm';
const m = await loadModel(${JSON.stringify(dir)});
const s = m.generate('Hello', { maxNewTokens: 4, temperature: 0 });
let n = 0; for await (const p of s) n++;
console.log(n, m.info.build);
await m.dispose();`);
  const lib = run(process.execPath, ['use.mjs'], { cwd: app });
  assert.equal(lib.code, 0, lib.stderr);
  assert.equal(lib.stdout.trim(), '4 threads');
});
