#!/usr/bin/python3
"""Exports a *plain* Doge checkpoint (A = 0, residual weights 1) to ONNX with a KV cache, for the
onnxruntime-web peer of `make bench` (tools/bench/peer_ort.mjs).

A plain Doge block is exactly a Qwen3 block:
    x += o_proj(attn(rmsnorm(x)))   q/k RMSNorm over head_dim before half-split RoPE, GQA, 1/sqrt(hd)
    x += down(silu(gate(h)) * up(h)), h = rmsnorm(x)
    logits = rmsnorm(x) @ embed^T   (tied head)
dt_proj and A are dropped (A = 0 adds the same constant to every attention logit of a row); the script
refuses checkpoints where A != 0 or a residual weight != 1.

Graph inputs:  input_ids int64 [1,S], position_ids int64 [1,S],
               past_key_<l>, past_value_<l> float32 [1,KV,P,hd] (P may be 0)
Graph outputs: logits float32 [1,V] (last position only),
               present_key_<l>, present_value_<l> float32 [1,KV,P+S,hd]
S and P are dynamic. The export is shaped for onnxruntime-web's CPU kernels (the math is unchanged):
activations are 2-D [S,D] so every linear is a Gemm(transB=1) on the stored weight (the tied embedding
is shared by the Gather and the head), and k/v come from a batched MatMul straight into [1,KV,S,hd], so
no Transpose meets the KV Concat. --proj matmul --kv-proj linear give the plain torch export instead
(MatMul on transposed weight copies, +33 MB for the head). One decode step of doge-20m at P = 300 in
onnxruntime-web 1.30 (Node, 1 thread) took 11.2 ms with the defaults, 12.5 with --proj matmul, 15.0 with
--kv-proj linear and 13.0 with both.

    /usr/bin/python3 tools/bench/export_onnx.py --model build/bench/models/doge-20m \
        --out build/bench/onnx/doge-20m.onnx [--check build/native/doge-native] [--check-tokens 256]

--check compares the torch logits (all rows, and the last row through the KV-cache path) with
`doge-native logits --model DIR --ids ...` on the bench prompt ids[i] = (1000 + 37 i) % 32768.
Needs Debian's python3-torch, python3-onnx, python3-numpy (and libopenblas0-pthread for speed).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)
warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)  # shape arithmetic is meant to be traced


def read_safetensors(path):
    """{name: np.ndarray} for an F32 safetensors file (8-byte LE header length, JSON header, data)."""
    with open(path, 'rb') as f:
        blob = f.read()
    (hlen,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        if info['dtype'] != 'F32':
            raise SystemExit(f'{name}: dtype {info["dtype"]}, only F32 is supported')
        a, b = info['data_offsets']
        arr = np.frombuffer(blob, dtype='<f4', count=(b - a) // 4, offset=base + a)
        out[name] = arr.reshape(info['shape']).copy()
    return out


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class PlainDoge(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.V = cfg['vocab_size']
        self.D = cfg['hidden_size']
        self.L = cfg['num_hidden_layers']
        self.H = cfg['num_attention_heads']
        self.KV = cfg['num_key_value_heads']
        self.hd = cfg.get('head_dim') or self.D // self.H
        self.eps = float(cfg['rms_norm_eps'])
        theta = float(cfg.get('rope_theta', 10000.0))
        self.register_buffer('inv_freq', torch.tensor(
            1.0 / theta ** (np.arange(0, self.hd, 2, dtype=np.float64) / self.hd), dtype=torch.float32))
        t = lambda name: torch.nn.Parameter(torch.from_numpy(w[name]), requires_grad=False)
        self.embed = t('model.embed_tokens.weight')
        self.norm = t('model.norm.weight')
        self.layers = torch.nn.ModuleList()
        for l in range(self.L):
            p = f'model.layers.{l}.'
            if np.any(w[p + 'self_attn.A'] != 0) or np.any(w[p + 'input_residual'] != 1) \
                    or np.any(w[p + 'post_attention_residual'] != 1):
                raise SystemExit(f'layer {l} is not plain (A != 0 or residual weights != 1)')
            m = torch.nn.Module()
            for short, name in [('attn_norm', 'input_layernorm.weight'), ('wq', 'self_attn.q_proj.weight'),
                                ('wk', 'self_attn.k_proj.weight'), ('wv', 'self_attn.v_proj.weight'),
                                ('wo', 'self_attn.o_proj.weight'), ('q_norm', 'self_attn.q_norm.weight'),
                                ('k_norm', 'self_attn.k_norm.weight'),
                                ('mlp_norm', 'post_attention_layernorm.weight'),
                                ('w_gate', 'mlp.gate_proj.weight'), ('w_up', 'mlp.up_proj.weight'),
                                ('w_down', 'mlp.down_proj.weight')]:
                setattr(m, short, t(p + name))
            self.layers.append(m)
        self.all_logits = False  # the check uses every row; the export returns the last one
        self.proj = 'gemm'
        self.kv_proj = 'batched'
        self._zeros = {}

    def forward(self, input_ids, position_ids, *past):
        H, KV, hd = self.H, self.KV, self.hd
        group = H // KV
        S = input_ids.shape[1]
        x = F.embedding(input_ids[0], self.embed)  # [S,D]: 2-D activations so that linears export as Gemm
        freqs = position_ids.unsqueeze(-1).to(torch.float32) * self.inv_freq  # [1,S,hd/2]
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)  # [1,1,S,hd]
        cos, sin = emb.cos(), emb.sin()
        P = past[0].shape[2]
        q_pos = torch.arange(S, device=x.device) + P
        k_pos = torch.arange(P + S, device=x.device)
        mask = (k_pos.unsqueeze(0) > q_pos.unsqueeze(1)).to(torch.float32) * -1e30  # [S,P+S]
        presents = []
        for l, m in enumerate(self.layers):
            h = rmsnorm(x, m.attn_norm, self.eps)
            q = self.linear(h, m.wq).view(1, S, H, hd).transpose(1, 2)  # [1,H,S,hd]
            if self.kv_proj == 'batched':
                # k and v as one batched MatMul [1,1,S,D] @ [KV,D,hd] -> [1,KV,S,hd]: no Transpose next to
                # the KV Concat, which onnxruntime's transpose optimizer would move onto the past tensors
                h4 = h.view(1, 1, S, -1)
                k = torch.matmul(h4, m.wk.view(KV, hd, -1).transpose(1, 2))
                v = torch.matmul(h4, m.wv.view(KV, hd, -1).transpose(1, 2))
            else:
                k = self.linear(h, m.wk).view(1, S, KV, hd).transpose(1, 2)
                v = self.linear(h, m.wv).view(1, S, KV, hd).transpose(1, 2)
            q = rmsnorm(q, m.q_norm, self.eps)
            k = rmsnorm(k, m.k_norm, self.eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = torch.cat((past[2 * l], k), dim=2)
            v = torch.cat((past[2 * l + 1], v), dim=2)
            presents += [k, v]
            qg = q.reshape(1, KV, group * S, hd)  # heads h = kv * group + g share kv head kv
            att = torch.matmul(qg, k.transpose(2, 3)).view(1, KV, group, S, -1) * (1.0 / math.sqrt(hd))
            att = torch.softmax(att + mask, dim=-1)
            o = torch.matmul(att.view(1, KV, group * S, -1), v).view(1, H, S, hd)
            o = o.transpose(1, 2).reshape(S, H * hd)
            x = x + self.linear(o, m.wo)
            h = rmsnorm(x, m.mlp_norm, self.eps)
            x = x + self.linear(F.silu(self.linear(h, m.w_gate)) * self.linear(h, m.w_up), m.w_down)
        if not self.all_logits:
            x = x[-1:, :]  # [1,D]
        logits = self.linear(rmsnorm(x, self.norm, self.eps), self.embed)
        return (logits, *presents)

    def linear(self, x, w):
        """x [S,in] @ w[out,in]^T. With a (zero) bias torch exports a 2-D linear as Gemm(transB=1) on the
        weight itself; without one, as MatMul on a transposed copy. onnxruntime-web's Gemm is much faster
        than its MatMul for one row (e.g. 0.11 vs 0.50 ms for 256x512, 2.1 vs 3.1 ms for the 32768x256 head)."""
        if self.proj == 'gemm':
            return F.linear(x, w, self.zero_bias(w.shape[0]))
        return F.linear(x, w)

    def zero_bias(self, n):
        if n not in self._zeros:
            self._zeros[n] = torch.zeros(n)
        return self._zeros[n]

    def empty_past(self, P=0):
        return [torch.zeros(1, self.KV, P, self.hd) for _ in range(2 * self.L)]


def bench_ids(n):
    return [(1000 + 37 * i) % 32768 for i in range(n)]


def run(model, ids, past, offset):
    inp = torch.tensor([ids], dtype=torch.int64)
    pos = torch.arange(offset, offset + len(ids), dtype=torch.int64).unsqueeze(0)
    return model(inp, pos, *past)


def check(model, model_dir, native, n):
    ids = bench_ids(n)
    res = subprocess.run([native, 'logits', '--model', model_dir, '--ids', ','.join(map(str, ids))],
                         check=True, capture_output=True, text=True)
    ref = json.loads(res.stdout)
    ref = np.asarray(ref['logits'], dtype=np.float32).reshape(ref['shape'])
    model.all_logits = True
    full = run(model, ids, model.empty_past(), 0)[0].numpy()
    model.all_logits = False
    scale = np.abs(ref).max()
    rel_full = np.abs(full - ref).max() / scale
    # the KV-cache path: a prefill of n - 8 tokens, then 8 single-token steps
    out = run(model, ids[:n - 8], model.empty_past(), 0)
    for i in range(n - 8, n):
        out = run(model, [ids[i]], out[1:], i)
    last = out[0][0].numpy()
    rel_kv = np.abs(last - ref[-1]).max() / np.abs(ref[-1]).max()
    same_argmax = int(np.sum(full.argmax(-1) == ref.argmax(-1)))
    print(json.dumps({'check': os.path.basename(os.path.normpath(model_dir)), 'tokens': n,
                      'max_rel_diff_all_rows': float(rel_full), 'max_rel_diff_last_row_kv_path': float(rel_kv),
                      'argmax_agree_rows': same_argmax, 'native_first_token': int(ref[-1].argmax()),
                      'torch_first_token': int(last.argmax())}))
    if rel_full > 1e-4 or rel_kv > 1e-4 or int(last.argmax()) != int(ref[-1].argmax()):
        raise SystemExit('torch and doge-native disagree')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--opset', type=int, default=17)
    ap.add_argument('--check', metavar='DOGE_NATIVE', help='path of build/native/doge-native')
    ap.add_argument('--check-tokens', type=int, default=256)
    ap.add_argument('--proj', choices=['gemm', 'matmul'], default='gemm')
    ap.add_argument('--kv-proj', choices=['batched', 'linear'], default='batched')
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with open(os.path.join(a.model, 'config.json')) as f:
        cfg = json.load(f)
    model = PlainDoge(cfg, read_safetensors(os.path.join(a.model, 'model.safetensors'))).eval()
    model.proj, model.kv_proj = a.proj, a.kv_proj
    if a.check:
        check(model, a.model, a.check, a.check_tokens)

    L = model.L
    past_names = [f'past_{kind}_{l}' for l in range(L) for kind in ('key', 'value')]
    present_names = [f'present_{kind}_{l}' for l in range(L) for kind in ('key', 'value')]
    dyn = {'input_ids': {1: 'S'}, 'position_ids': {1: 'S'}}
    dyn.update({n: {2: 'P'} for n in past_names})
    dyn.update({n: {2: 'T'} for n in present_names})
    # trace with S = 3, P = 2 so that neither is specialised to 0 or 1
    example = (torch.tensor([[5, 6, 7]], dtype=torch.int64), torch.tensor([[2, 3, 4]], dtype=torch.int64),
               *[torch.randn(1, model.KV, 2, model.hd) for _ in range(2 * L)])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(model, example, a.out, input_names=['input_ids', 'position_ids', *past_names],
                      output_names=['logits', *present_names], dynamic_axes=dyn, opset_version=a.opset,
                      do_constant_folding=True)
    import onnx
    onnx.checker.check_model(a.out)
    print(f'wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB)', file=sys.stderr)


if __name__ == '__main__':
    main()
