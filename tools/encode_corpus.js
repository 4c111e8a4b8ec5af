#!/usr/bin/env node
/**
 * encode_corpus.js — token ids of build/corpus/{train,heldout}.txt under models/doge-mini/tokenizer.json,
 * encoded by the official Rust tokenizer (npm `tokenizers@0.23.2`), for tools/train.py and tools/eval_model.py.
 *
 * Usage: node tools/encode_corpus.js [--tokenizer models/doge-mini/tokenizer.json]
 * Each document (documents are separated by a `<|end_of_text|>` line) is encoded with special tokens, i.e.
 * `<|begin_of_text|>` (0) + ids, and followed by `<|end_of_text|>` (1); the documents are concatenated in
 * file order and written as little-endian uint16 to build/corpus/{train,heldout}.ids. Deterministic.
 * npm dependencies live in NPM_DIR (default /tmp/doge-tok-npm), installed when missing.
 */
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);
const tokPath = path.resolve(ROOT, args.includes('--tokenizer') ? args[args.indexOf('--tokenizer') + 1] : 'models/doge-mini/tokenizer.json');
const NPM_DIR = process.env.NPM_DIR || '/tmp/doge-tok-npm';
if (!fs.existsSync(path.join(NPM_DIR, 'node_modules/tokenizers/package.json'))) {
  fs.mkdirSync(NPM_DIR, { recursive: true });
  if (!fs.existsSync(path.join(NPM_DIR, 'package.json'))) fs.writeFileSync(path.join(NPM_DIR, 'package.json'), '{"private":true}');
  execSync('npm i --no-audit --no-fund tokenizers@0.23.2', { cwd: NPM_DIR, stdio: 'inherit' });
}
const { Tokenizer } = createRequire(path.join(NPM_DIR, 'package.json'))('tokenizers');
const tok = Tokenizer.fromFile(tokPath);
const EOS = tok.tokenToId('<|end_of_text|>');

for (const split of ['train', 'heldout']) {
  const text = fs.readFileSync(path.join(ROOT, 'build/corpus', `${split}.txt`), 'utf8').replace(/\n$/, '');
  const docs = text.split('\n<|end_of_text|>\n');
  const encs = await tok.encodeBatch(docs, { addSpecialTokens: true });
  const ids = [];
  for (const e of encs) { for (const id of e.getIds()) ids.push(id); ids.push(EOS); }
  const out = new Uint16Array(ids);
  fs.writeFileSync(path.join(ROOT, 'build/corpus', `${split}.ids`), Buffer.from(out.buffer));
  console.log(`${split}: ${docs.length} documents, ${ids.length} tokens -> build/corpus/${split}.ids`);
}
