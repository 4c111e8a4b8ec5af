#!/usr/bin/python3
"""Convert a "plain" Doge checkpoint (A = 0, residual weights 1, dense MLP) to a llama.cpp `qwen3` GGUF.

    /usr/bin/python3 tools/bench/gguf.py build/bench/models/doge-20m out.gguf [--type f32|q8_0]

With A = 0 and unit residual weights a Doge block is exactly a Qwen3 block: q/k RMSNorm over head_dim
before NEOX ("rotate_half") RoPE, GQA, SwiGLU MLP, tied head. `dt_proj` and `A` are dropped (A = 0 adds
the same constant to every attention logit, which softmax ignores), as are the residual weights (all 1).
Qwen3 uses the NEOX rope type, so Q and K are written as they are (no permutation).

The GGUF v3 writer below is self-contained (numpy only). Layout: magic "GGUF", u32 version 3,
u64 tensor count, u64 kv count, the key/value pairs, the tensor infos (name, n_dims, dims innermost
first, ggml type, offset into the data section), padding to 32 bytes, then each tensor's data padded to
32 bytes. The tokenizer is a `gpt2` vocabulary of vocab_size synthetic normal tokens (see synthetic_vocab: the text
" abcd" is exactly one token, so text-only runtimes can be fed and give back token ids); bos/eos/pad ids
are the checkpoint's, add_bos false. Benchmarks feed token ids; nobody tokenizes real text with it.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

ALIGN = 32

# gguf value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

# ggml tensor types
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
# llama_ftype (general.file_type)
FTYPE = {'f32': 0, 'q8_0': 7}

QK8_0 = 32


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == '__metadata__':
                continue
            if info['dtype'] not in ('F32', 'F16', 'BF16'):
                raise SystemExit(f'{name}: unsupported dtype {info["dtype"]}')
            a, b = info['data_offsets']
            f.seek(base + a)
            raw = f.read(b - a)
            if info['dtype'] == 'F32':
                arr = np.frombuffer(raw, dtype='<f4')
            elif info['dtype'] == 'F16':
                arr = np.frombuffer(raw, dtype='<f2').astype(np.float32)
            else:
                arr = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
            out[name] = arr.reshape(info['shape']).astype(np.float32, copy=False)
        return out


def quantize_q8_0(x):
    """ggml's quantize_row_q8_0_ref: per block of 32, d = absmax/127, q = roundf(x/d) (half away from 0)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[-1] % QK8_0 == 0, x.shape
    blocks = x.reshape(-1, QK8_0)
    amax = np.abs(blocks).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide='ignore'):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = blocks * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)
    out = np.empty(blocks.shape[0], dtype=[('d', '<f2'), ('qs', 'i1', (QK8_0,))])
    out['d'] = d.astype(np.float16)
    out['qs'] = q
    return out.tobytes()


class GGUFWriter:
    def __init__(self):
        self.kv = []          # (key, type, value[, elem type])
        self.tensors = []     # (name, dims innermost-first, ggml type, bytes)

    # --- key/values
    def add(self, key, vtype, value, elem_type=None):
        self.kv.append((key, vtype, value, elem_type))

    def u32(self, key, v): self.add(key, T_UINT32, int(v))
    def i32(self, key, v): self.add(key, T_INT32, int(v))
    def f32(self, key, v): self.add(key, T_FLOAT32, float(v))
    def bool(self, key, v): self.add(key, T_BOOL, bool(v))
    def str(self, key, v): self.add(key, T_STRING, str(v))
    def arr(self, key, elem_type, values): self.add(key, T_ARRAY, list(values), elem_type)

    # --- tensors
    def tensor(self, name, array, qtype):
        """array: numpy float32 in row-major (HF) shape; GGUF dims are the reverse (innermost first)."""
        dims = list(reversed(array.shape))
        if qtype == GGML_F32:
            data = np.ascontiguousarray(array, dtype='<f4').tobytes()
        elif qtype == GGML_Q8_0:
            data = quantize_q8_0(array)
        else:
            raise ValueError(qtype)
        self.tensors.append((name, dims, qtype, data))

    # --- serialization
    @staticmethod
    def _string(s):
        b = s.encode('utf-8')
        return struct.pack('<Q', len(b)) + b

    @classmethod
    def _scalar(cls, vtype, v):
        if vtype == T_STRING:
            return cls._string(v)
        fmt = {T_UINT8: '<B', T_INT8: '<b', T_UINT16: '<H', T_INT16: '<h', T_UINT32: '<I', T_INT32: '<i',
               T_FLOAT32: '<f', T_BOOL: '<?', T_UINT64: '<Q', T_INT64: '<q', T_FLOAT64: '<d'}[vtype]
        return struct.pack(fmt, v)

    def write(self, path):
        parts = [b'GGUF', struct.pack('<IQQ', 3, len(self.tensors), len(self.kv))]
        for key, vtype, value, elem_type in self.kv:
            parts.append(self._string(key))
            parts.append(struct.pack('<I', vtype))
            if vtype == T_ARRAY:
                parts.append(struct.pack('<IQ', elem_type, len(value)))
                if elem_type == T_INT32:
                    parts.append(np.asarray(value, dtype='<i4').tobytes())
                elif elem_type == T_FLOAT32:
                    parts.append(np.asarray(value, dtype='<f4').tobytes())
                else:
                    parts.extend(self._scalar(elem_type, v) for v in value)
            else:
                parts.append(self._scalar(vtype, value))
        offset = 0
        for name, dims, qtype, data in self.tensors:
            parts.append(self._string(name))
            parts.append(struct.pack('<I', len(dims)))
            parts.append(struct.pack(f'<{len(dims)}Q', *dims))
            parts.append(struct.pack('<IQ', qtype, offset))
            offset += len(data)
            offset += -offset % ALIGN
        head = b''.join(parts)
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(head)
            f.write(b'\0' * (-len(head) % ALIGN))
            for _, _, _, data in self.tensors:
                f.write(data)
                f.write(b'\0' * (-len(data) % ALIGN))
        os.replace(tmp, path)


def token_word(i):
    """Token i as text: a space and 4 lowercase letters, i in base 26 ('a' = 0): 0 -> ' aaaa', 27 -> ' aabb'."""
    letters = ''
    for _ in range(4):
        letters = chr(ord('a') + i % 26) + letters
        i //= 26
    return ' ' + letters


def synthetic_vocab(n):
    """A byte-level BPE vocabulary in which the text token_word(i) tokenizes to exactly id i.

    llama.cpp's default BPE pre-tokenizer (the GPT-2 regex) splits " abcd efgh" into the words " abcd" and
    " efgh"; the merges build each word left to right ("Ġ a", "Ġa b", "Ġab c", "Ġabc d": every merge's left side starts with Ġ, the
    byte-level form of the space, so no other pair of a word ever merges) into the token "Ġabcd". A
    runtime that only takes and returns text (wllama) can thus be given and give back token ids.
    """
    if n > 26 ** 4:
        raise SystemExit(f'vocab_size {n} > {26 ** 4}')
    tokens = ['\u0120' + token_word(i)[1:] for i in range(n)]
    prefixes = sorted({t[:k] for t in tokens for k in range(2, len(t) + 1)}, key=lambda p: (len(p), p))
    merges = [f'{p[:-1]} {p[-1]}' for p in prefixes]
    return tokens, merges


def convert(model_dir, out, qtype_name):
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    w = read_safetensors(os.path.join(model_dir, 'model.safetensors'))

    vocab = cfg['vocab_size']
    hidden = cfg['hidden_size']
    layers = cfg['num_hidden_layers']
    heads = cfg['num_attention_heads']
    kv_heads = cfg.get('num_key_value_heads') or heads
    head_dim = cfg.get('head_dim') or hidden // heads
    inter = cfg['intermediate_size']
    eps = cfg.get('rms_norm_eps', 1e-6)
    theta = cfg.get('rope_theta', 10000.0)
    ctx = cfg.get('max_position_embeddings', 2048)

    # Only the "plain" case is exactly Qwen3.
    if cfg.get('is_moe'):
        raise SystemExit('MoE Doge has no qwen3 equivalent')
    if cfg.get('rope_scaling'):
        raise SystemExit('rope_scaling is not supported by this converter')
    if cfg.get('tie_word_embeddings', True) is False or 'lm_head.weight' in w:
        raise SystemExit('only tied embeddings are supported')
    for i in range(layers):
        p = f'model.layers.{i}.'
        a = w.get(p + 'self_attn.A')
        if a is not None and np.any(a != 0):
            raise SystemExit(f'{p}self_attn.A is not 0: not a plain checkpoint')
        for r in ('input_residual', 'post_attention_residual'):
            if p + r in w and np.any(w[p + r] != 1):
                raise SystemExit(f'{p}{r} is not 1: not a plain checkpoint')
    if cfg.get('keep_window_size', ctx) < ctx:
        print(f'warning: keep_window_size {cfg["keep_window_size"]} < context {ctx}: '
              'identical to qwen3 only for sequences up to keep_window_size', file=sys.stderr)

    q = {'f32': GGML_F32, 'q8_0': GGML_Q8_0}[qtype_name]
    g = GGUFWriter()
    arch = 'qwen3'
    name = os.path.basename(os.path.normpath(model_dir))
    g.str('general.architecture', arch)
    g.str('general.name', name)
    g.str('general.description', 'random-weight plain Doge (A = 0, residual weights 1) written as qwen3')
    g.u32('general.file_type', FTYPE[qtype_name])
    g.u32('general.quantization_version', 2)
    g.u32(f'{arch}.context_length', ctx)
    g.u32(f'{arch}.embedding_length', hidden)
    g.u32(f'{arch}.block_count', layers)
    g.u32(f'{arch}.feed_forward_length', inter)
    g.u32(f'{arch}.attention.head_count', heads)
    g.u32(f'{arch}.attention.head_count_kv', kv_heads)
    g.u32(f'{arch}.attention.key_length', head_dim)
    g.u32(f'{arch}.attention.value_length', head_dim)
    g.u32(f'{arch}.rope.dimension_count', head_dim)
    g.f32(f'{arch}.rope.freq_base', theta)
    g.f32(f'{arch}.attention.layer_norm_rms_epsilon', eps)

    tokens, merges = synthetic_vocab(vocab)
    types = [1] * vocab            # 1 = normal
    g.str('tokenizer.ggml.model', 'gpt2')
    g.str('tokenizer.ggml.pre', 'default')
    g.arr('tokenizer.ggml.tokens', T_STRING, tokens)
    g.arr('tokenizer.ggml.token_type', T_INT32, types)
    g.arr('tokenizer.ggml.merges', T_STRING, merges)
    for key, cfg_key in (('bos_token_id', 'bos_token_id'), ('eos_token_id', 'eos_token_id'),
                         ('padding_token_id', 'pad_token_id')):
        if cfg.get(cfg_key) is not None:
            g.u32(f'tokenizer.ggml.{key}', cfg[cfg_key])
    g.bool('tokenizer.ggml.add_bos_token', False)
    g.bool('tokenizer.ggml.add_eos_token', False)

    def mat(name, arr):   # 2-D weights: quantized when asked
        g.tensor(name, arr, q)

    def vec(name, arr):   # norms stay F32
        g.tensor(name, arr, GGML_F32)

    mat('token_embd.weight', w['model.embed_tokens.weight'])
    for i in range(layers):
        p = f'model.layers.{i}.'
        b = f'blk.{i}.'
        vec(b + 'attn_norm.weight', w[p + 'input_layernorm.weight'])
        mat(b + 'attn_q.weight', w[p + 'self_attn.q_proj.weight'])
        mat(b + 'attn_k.weight', w[p + 'self_attn.k_proj.weight'])
        mat(b + 'attn_v.weight', w[p + 'self_attn.v_proj.weight'])
        mat(b + 'attn_output.weight', w[p + 'self_attn.o_proj.weight'])
        vec(b + 'attn_q_norm.weight', w[p + 'self_attn.q_norm.weight'])
        vec(b + 'attn_k_norm.weight', w[p + 'self_attn.k_norm.weight'])
        vec(b + 'ffn_norm.weight', w[p + 'post_attention_layernorm.weight'])
        mat(b + 'ffn_gate.weight', w[p + 'mlp.gate_proj.weight'])
        mat(b + 'ffn_up.weight', w[p + 'mlp.up_proj.weight'])
        mat(b + 'ffn_down.weight', w[p + 'mlp.down_proj.weight'])
    vec('output_norm.weight', w['model.norm.weight'])
    g.write(out)
    size = os.path.getsize(out)
    print(f'wrote {out}: qwen3 {qtype_name}, {len(g.tensors)} tensors, {size / 1e6:.1f} MB', file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('model_dir')
    ap.add_argument('out')
    ap.add_argument('--type', choices=['f32', 'q8_0'], default='f32')
    a = ap.parse_args()
    convert(a.model_dir, a.out, a.type)


if __name__ == '__main__':
    main()
