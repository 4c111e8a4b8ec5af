// Test fixtures: a random-weight Doge checkpoint in the HF layout and a small byte-level BPE tokenizer
// with Llama-3-style special tokens and a chat template, so that generation can be tested end to end.
import { mkdirSync, writeFileSync } from 'node:fs';
import { writeSafetensors } from './safetensors.js';

export const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>', '<|finetune_right_pad_id|>', '<|start_header_id|>', '<|end_header_id|>'];
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n" +
  "{{ message['content'] }}<|end_of_text|>\n\n{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}";
const MERGES = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['Ġ', 'a'], ['i', 'n'], ['o', 'u'], ['e', 'r'], ['Ġ', 's'], ['Ġ', 'w'], ['o', 'n']];

/** GPT-2's byte -> printable character table of ByteLevel pre-tokenization. */
function byteChars() {
  const keep = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map = new Map(keep.map((b) => [b, String.fromCharCode(b)]));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!map.has(b)) map.set(b, String.fromCharCode(256 + n++));
  return [...Array(256).keys()].map((b) => map.get(b));
}

export function tokenizerJson() {
  const vocab = {};
  SPECIALS.forEach((t, i) => (vocab[t] = i));
  byteChars().forEach((c) => (vocab[c] = Object.keys(vocab).length));
  for (const [a, b] of MERGES) vocab[a + b] = Object.keys(vocab).length;
  const bos = { id: '<|begin_of_text|>', type_id: 0 };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: bos }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: bos }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [0], tokens: ['<|begin_of_text|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: MERGES.map(([a, b]) => `${a} ${b}`) },
  };
}

/** Deterministic N(0, 1) numbers. */
function gaussian(seed) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

/**
 * Writes config.json, generation_config.json, model.safetensors, tokenizer.json and tokenizer_config.json.
 * @param {string} dir
 * `plain`: A = 0 and residual weights 1, which makes every block exactly a Qwen3 block (for peer runtimes).
 * @param {{vocab?: number, hidden?: number, layers?: number, heads?: number, kvHeads?: number, inter?: number, seed?: number,
 *   maxPos?: number, keepWindow?: number, plain?: boolean, generationConfig?: object}} [o]
 */
export function writeTinyModel(dir, o = {}) {
  const V = o.vocab ?? 320, D = o.hidden ?? 64, L = o.layers ?? 2, H = o.heads ?? 4, KV = o.kvHeads ?? 2, I = o.inter ?? 128;
  const hd = D / H;
  const rand = gaussian(o.seed ?? 1234);
  const tensors = {};
  const put = (name, shape, f) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = f();
    tensors[name] = { dtype: 'F32', shape, bytes: Buffer.from(v.buffer) };
  };
  const lin = (inDim) => () => rand() / Math.sqrt(inDim);
  const nearOne = () => 1 + 0.1 * rand();
  const residual = o.plain ? () => 1 : nearOne;
  put('model.embed_tokens.weight', [V, D], () => 0.2 * rand()); // tied head: keeps logits ~N(0, 2), sampling diverse
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    put(`${p}input_layernorm.weight`, [D], nearOne);
    put(`${p}input_residual`, [D], residual);
    put(`${p}self_attn.q_proj.weight`, [H * hd, D], lin(D));
    put(`${p}self_attn.k_proj.weight`, [KV * hd, D], lin(D));
    put(`${p}self_attn.v_proj.weight`, [KV * hd, D], lin(D));
    put(`${p}self_attn.A`, [KV], o.plain ? () => 0 : () => -0.5 + 0.2 * rand());
    put(`${p}self_attn.dt_proj.weight`, [KV, KV * hd], lin(KV * hd));
    put(`${p}self_attn.o_proj.weight`, [D, H * hd], lin(H * hd));
    put(`${p}self_attn.q_norm.weight`, [hd], nearOne);
    put(`${p}self_attn.k_norm.weight`, [hd], nearOne);
    put(`${p}post_attention_layernorm.weight`, [D], nearOne);
    put(`${p}post_attention_residual`, [D], residual);
    put(`${p}mlp.gate_proj.weight`, [I, D], lin(D));
    put(`${p}mlp.up_proj.weight`, [I, D], lin(D));
    put(`${p}mlp.down_proj.weight`, [D, I], lin(I));
  }
  put('model.norm.weight', [D], nearOne);
  mkdirSync(dir, { recursive: true });
  writeSafetensors(`${dir}/model.safetensors`, tensors);
  const config = {
    architectures: ['DogeForCausalLM'], model_type: 'doge', vocab_size: V, hidden_size: D, intermediate_size: I,
    num_hidden_layers: L, num_attention_heads: H, num_key_value_heads: KV, max_position_embeddings: o.maxPos ?? 128,
    keep_window_size: o.keepWindow ?? 32, rope_theta: 10000.0, rms_norm_eps: 1e-6, tie_word_embeddings: true,
    bos_token_id: 0, eos_token_id: 1, pad_token_id: 2,
  };
  writeFileSync(`${dir}/config.json`, JSON.stringify(config, null, 2));
  writeFileSync(`${dir}/generation_config.json`, JSON.stringify(o.generationConfig ?? { bos_token_id: 0, eos_token_id: 1, pad_token_id: 2 }));
  writeFileSync(`${dir}/tokenizer.json`, JSON.stringify(tokenizerJson()));
  writeFileSync(`${dir}/tokenizer_config.json`, JSON.stringify({
    bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', pad_token: '<|finetune_right_pad_id|>',
    chat_template: CHAT_TEMPLATE, model_max_length: o.maxPos ?? 128,
  }));
  return config;
}
