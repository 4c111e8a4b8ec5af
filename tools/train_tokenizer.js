#!/usr/bin/env node
/**
 * train_tokenizer.js — byte-level BPE tokenizer of doge-mini, trained on build/corpus/train.txt.
 *
 * Usage (from the repository root, after tools/corpus/fetch_corpus.sh):
 *   node tools/train_tokenizer.js [--vocab 4096] [--out models/doge-mini]   train + write + verify
 *   node tools/train_tokenizer.js --verify-only [--out models/doge-mini]     verify an existing file
 *
 * Training is done by the official Rust `tokenizers` (npm `tokenizers@0.23.2`, prebuilt binary). Its JS
 * binding only exposes `Tokenizer.train(files)` with the model's default BpeTrainer (vocab 30000, no
 * options), so we train that and keep the first merges: BPE training is greedy, so the first k merges of a
 * long run are exactly what a k-merge run would learn. The final vocabulary is laid out as
 *   ids 0..5    Llama-3-style special tokens (<|begin_of_text|> = bos, <|end_of_text|> = eos, ...)
 *   ids 6..261  the 256 byte symbols of the GPT-2 byte-to-unicode map, in byte order (every string encodes)
 *   ids 262..   merged tokens in merge order, up to --vocab entries in total.
 * Pipeline: no normalizer; pre-tokenizer Sequence[Split(Llama-3 regex, Isolated), ByteLevel(use_regex false)];
 * BPE (byte_fallback false, ignore_merges false); ByteLevel decoder; TemplateProcessing prepends bos.
 * Deterministic: the trainer counts words exactly and breaks ties deterministically; no randomness here.
 *
 * Writes OUT/tokenizer.json and OUT/tokenizer_config.json (bos/eos/pad, chat template of spec §8.2), then
 * verifies on 3000 held-out lines/slices (build/corpus/heldout.txt) that the Rust binding and the pure-JS
 * `@huggingface/tokenizers@0.2.0` give identical ids and that decode(encode(x)) == x (summary also written
 * to build/tokenizer_check.txt for TRAINING.md).
 * npm dependencies live in a scratch dir: NPM_DIR (default /tmp/doge-tok-npm), installed when missing.
 */
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const VOCAB = Number(opt('--vocab', 4096));
const OUT = path.resolve(ROOT, opt('--out', 'models/doge-mini'));
const CORPUS = path.join(ROOT, 'build/corpus');
const NPM_DIR = process.env.NPM_DIR || '/tmp/doge-tok-npm';
const DOC_SEP = '<|end_of_text|>';

const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>', '<|finetune_right_pad_id|>',
  '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'];
// The Llama-3 pre-tokenizer regex (same as in Meta's tokenizer.json).
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}" +
  "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n' + message['content'] + '<|end_of_text|>\\n\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n' }}{% endif %}";

function npmDeps() {
  const pkgs = ['tokenizers@0.23.2', '@huggingface/tokenizers@0.2.0'];
  const have = (p) => fs.existsSync(path.join(NPM_DIR, 'node_modules', p, 'package.json'));
  if (!have('tokenizers') || !have('@huggingface/tokenizers')) {
    fs.mkdirSync(NPM_DIR, { recursive: true });
    if (!fs.existsSync(path.join(NPM_DIR, 'package.json'))) fs.writeFileSync(path.join(NPM_DIR, 'package.json'), '{"private":true}');
    execSync(`npm i --no-audit --no-fund ${pkgs.join(' ')}`, { cwd: NPM_DIR, stdio: 'inherit' });
  }
  const req = createRequire(path.join(NPM_DIR, 'package.json'));
  return { rust: req('tokenizers'), js: req('@huggingface/tokenizers') };
}

/** GPT-2 bytes_to_unicode: byte b -> printable character, listed in byte order. */
function byteAlphabet() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const map = new Map(bs.map((b) => [b, b]));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!map.has(b)) map.set(b, 256 + n++);
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(map.get(b)));
}

const preTokenizer = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
};

function bpeModel(vocab, merges) {
  return { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges };
}

async function train(rust) {
  // Plain training text: the document separator lines are not text.
  const plain = path.join(os.tmpdir(), `doge-tok-train-${process.pid}.txt`);
  const text = fs.readFileSync(path.join(CORPUS, 'train.txt'), 'utf8');
  fs.writeFileSync(plain, text.split(`\n${DOC_SEP}\n`).join('\n\n'));

  const skeleton = { version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: preTokenizer, post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpeModel({}, []) };
  const tok = rust.Tokenizer.fromString(JSON.stringify(skeleton));
  const t0 = Date.now();
  tok.train([plain]);                         // default BpeTrainer: 30000 tokens, ordered merges
  const trainedPath = plain + '.json';
  tok.save(trainedPath);
  const trained = JSON.parse(fs.readFileSync(trainedPath, 'utf8'));
  fs.rmSync(plain); fs.rmSync(trainedPath);
  console.log(`rust BpeTrainer: ${trained.model.merges.length} merges in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const vocab = {};
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
  SPECIALS.forEach(add);
  byteAlphabet().forEach(add);
  const merges = [];
  for (const m of trained.model.merges) {
    if (Object.keys(vocab).length >= VOCAB) break;
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    if (!(a in vocab) || !(b in vocab)) throw new Error(`merge ${a} ${b} uses an unknown token`);
    merges.push([a, b]);
    add(a + b);
  }

  const bos = { id: SPECIALS[0], type_id: 0 };
  const tokenizer = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: bos }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: bos }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: SPECIALS[0], type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [SPECIALS[0]]: { id: SPECIALS[0], ids: [0], tokens: [SPECIALS[0]] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpeModel(vocab, merges),
  };
  const tokenizerConfig = {
    added_tokens_decoder: Object.fromEntries(SPECIALS.map((content, id) => [String(id), { content, lstrip: false,
      normalized: false, rstrip: false, single_word: false, special: true }])),
    bos_token: SPECIALS[0], eos_token: SPECIALS[1], pad_token: SPECIALS[2],
    add_bos_token: true, add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    model_input_names: ['input_ids', 'attention_mask'],
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: CHAT_TEMPLATE,
  };
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'tokenizer.json'), JSON.stringify(tokenizer, null, 2) + '\n');
  fs.writeFileSync(path.join(OUT, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  console.log(`wrote ${OUT}/tokenizer.json: vocab ${Object.keys(vocab).length} (${merges.length} merges)`);
}

async function verify(rust, js) {
  const file = path.join(OUT, 'tokenizer.json');
  const rtok = rust.Tokenizer.fromFile(file);
  const jtok = new js.Tokenizer(JSON.parse(fs.readFileSync(file, 'utf8')),
    JSON.parse(fs.readFileSync(path.join(OUT, 'tokenizer_config.json'), 'utf8')));
  const held = fs.readFileSync(path.join(CORPUS, 'heldout.txt'), 'utf8');
  const lines = held.split('\n').filter((l) => l.trim() && l !== DOC_SEP).slice(0, 3000);
  // Plus fixed-stride 200-character slices (cut anywhere, also mid-word) to reach a few thousand cases.
  for (let i = 0; lines.length < 3000 && i + 200 <= held.length; i += 257) lines.push(held.slice(i, i + 200));
  // Also a few multi-line chunks and odd strings (newlines, digits, unicode, special-token text).
  const extra = [held.slice(0, 4000), held.slice(100000, 104000), '  two  spaces\n\n\nand tabs\t\there ',
    'Numbers 1234567 and 3.14159; café — naïve “quotes” ✓ 東京', `<|start_header_id|>user<|end_header_id|>\nHi${SPECIALS[1]}`];
  let same = 0, roundtrip = 0, tokens = 0, chars = 0;
  const cases = lines.concat(extra);
  for (const text of cases) {
    const enc = await rtok.encode(text, null, { addSpecialTokens: true });
    const r = Array.from(enc.getIds());
    const j = Array.from(jtok.encode(text).ids);
    if (r.length === j.length && r.every((v, i) => v === j[i])) same++;
    else if (cases.length - same < 10) console.log('MISMATCH', JSON.stringify(text.slice(0, 80)), r.slice(0, 12), j.slice(0, 12));
    const back = await rtok.decode(r, false);
    if (back === SPECIALS[0] + text) roundtrip++;
    else console.log('ROUNDTRIP', JSON.stringify(text.slice(0, 80)), JSON.stringify(back.slice(0, 80)));
    if (r[0] !== 0) throw new Error('bos not prepended');
    tokens += r.length - 1; chars += text.length;
  }
  const report = [
    `${path.relative(ROOT, file)}: vocab ${rtok.getVocabSize(true)}`,
    `parity rust tokenizers@0.23.2 vs @huggingface/tokenizers@0.2.0: ${same}/${cases.length} identical id sequences`,
    `(held-out lines and 200-char slices, plus edge cases); decode(encode(x)) == bos + x: ${roundtrip}/${cases.length};`,
    `${(chars / tokens).toFixed(2)} characters/token on these cases`,
  ];
  console.log(report.join('\n'));
  fs.writeFileSync(path.join(CORPUS, '..', 'tokenizer_check.txt'), report.join('\n') + '\n');
  if (same !== cases.length || roundtrip !== cases.length) process.exit(1);
}

const { rust, js } = npmDeps();
if (!args.includes('--verify-only')) await train(rust);
await verify(rust, js);
