#!/usr/bin/python3
"""Independent numpy reference generator for doge-wasm test cases.

Writes small random Doge checkpoints (HF transformers ~4.57 layout) together with
the logits that HF `DogeForCausalLM` / `DogeForSequenceClassification` would
produce in fp32 with `attn_implementation="eager"`.  Cases with "layout": "old" use the
original remote-code ("OLD", V1) checkpoint layout and math of shared/doge-legacy.md
sections 2-3 (eager `modeling_old_doge.py`, fp32); "layout": "mid" is small-doge's
converter output (HF names, OLD attention tensors).

    /usr/bin/python3 tests/reference/make_cases.py OUTDIR [--selfcheck] [--only NAME ...]

The forward pass below is written from the spec (shared/doge-spec.md) and the HF
source, module by module, in float32 with the op order of PyTorch.  It is a
second, independent implementation: it must not be adjusted to agree with the
C engine.

Layout of OUTDIR:
    index.json                  list of case names
    <case>/config.json          HF DogeConfig json
    <case>/model.safetensors    or model.safetensors.index.json + model-0000k-of-0000n.safetensors
    <case>/case.json            {"name", "kind", "ids", "shape", "prefill", "decode", "notes", ...}
                                (+ "layout": "old" | "mid" and "options": {"moe_routing": ...} where they apply;
                                 kind "error" cases carry "expect_error", a substring of the engine's message)
    <case>/expected.f32         logits of one forward over all ids (little-endian f32)
    <case>/expected_decode.f32  logits of HF-style incremental decoding (causal cases)

Pure numpy + stdlib; deterministic (fixed seeds).
"""

import argparse
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np

F32 = np.float32
MIN = np.finfo(np.float32).min  # torch.finfo(torch.float32).min = -3.4028234663852886e38


def f32(x):
    return np.float32(x)


# ------------------------------------------------------------------------------------------------
# Config: HF DogeConfig defaults (4.57) and resolution of a config.json dict
# ------------------------------------------------------------------------------------------------

DOGE_DEFAULTS = {
    "vocab_size": 32768,
    "hidden_size": 1024,
    "intermediate_size": 2048,
    "num_hidden_layers": 32,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "num_attention_heads": 8,
    "num_key_value_heads": None,
    "attention_bias": False,
    "mlp_bias": False,
    "sliding_window": None,
    "keep_window_size": 2048,
    "is_moe": False,
    "num_experts": 16384,
    "num_experts_per_tok": 64,
    "norm_topk_prob": False,
    "pad_token_id": None,
}


class Config:
    """The subset of DogeConfig used by the forward pass, resolved with HF defaults."""

    def __init__(self, d):
        self.raw = d
        g = lambda k: d[k] if k in d else DOGE_DEFAULTS[k]
        self.vocab_size = g("vocab_size")
        self.hidden_size = g("hidden_size")
        self.intermediate_size = g("intermediate_size")
        self.num_hidden_layers = g("num_hidden_layers")
        self.hidden_act = g("hidden_act")
        self.rms_norm_eps = g("rms_norm_eps")
        self.tie_word_embeddings = g("tie_word_embeddings")
        self.max_position_embeddings = g("max_position_embeddings")
        self.rope_theta = g("rope_theta")
        self.num_attention_heads = g("num_attention_heads")
        kv = g("num_key_value_heads")
        self.num_key_value_heads = self.num_attention_heads if kv is None else kv
        self.attention_bias = g("attention_bias")
        self.mlp_bias = g("mlp_bias")
        self.sliding_window = g("sliding_window")
        self.keep_window_size = g("keep_window_size")
        self.is_moe = g("is_moe")
        self.num_experts = g("num_experts")
        self.num_experts_per_tok = g("num_experts_per_tok")
        self.norm_topk_prob = g("norm_topk_prob")
        self.pad_token_id = g("pad_token_id")
        # DogeAttention: getattr(config, "head_dim", hidden_size // num_attention_heads)
        self.head_dim = d.get("head_dim") or self.hidden_size // self.num_attention_heads
        self.partial_rotary_factor = d.get("partial_rotary_factor", 1.0)
        # optional top-level field used by longrope (PretrainedConfig keeps unknown keys as attributes)
        self.original_max_position_embeddings = d.get("original_max_position_embeddings")
        rs = g("rope_scaling")
        if rs is not None:
            rs = dict(rs)
            if "type" in rs and "rope_type" not in rs:  # DogeConfig: BC "type" -> "rope_type"
                rs["rope_type"] = rs["type"]
        self.rope_scaling = rs
        self.rope_type = "default" if rs is None else rs.get("rope_type", rs.get("type"))
        assert self.hidden_act == "silu", "only silu is implemented"
        assert self.sliding_window is None, "sliding_window is not implemented here"
        self.num_labels = len(d["id2label"]) if "id2label" in d else d.get("num_labels", 2)
        # OLD (remote-code) era fields (doge-legacy.md 3.7): one `hidden_bias` flag for q,k,v,o,dt_proj,gate,up,down
        self.model_type = d.get("model_type")
        self.hidden_bias = d.get("hidden_bias")
        if self.hidden_bias is not None:
            self.attention_bias = self.mlp_bias = bool(self.hidden_bias)
        self.dynamic_mask_ratio = d.get("dynamic_mask_ratio", 0.0)


# ------------------------------------------------------------------------------------------------
# Elementary ops (float32, PyTorch op order)
# ------------------------------------------------------------------------------------------------

def linear(x, w, b=None):
    y = x @ w.T
    if b is not None:
        y = y + b
    return y


def silu(x):
    with np.errstate(over="ignore"):
        return x / (f32(1) + np.exp(-x))


def softplus(x):
    # F.softplus(x, beta=1, threshold=20)
    with np.errstate(over="ignore"):
        return np.where(x > f32(20), x, np.log1p(np.exp(x))).astype(F32)


def softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def topk_keep_mask(x, k):
    """Boolean mask of the k largest entries along the last axis.

    Ties are broken toward the lower index (stable sort of the negated values)."""
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return keep


class Probe:
    """Collects the smallest selection margins seen during a forward pass (near-tie detection)."""

    def __init__(self):
        self.topk_gap = math.inf  # relative gap between the W-th and (W+1)-th kept bias values
        self.moe_gap = math.inf  # relative gap between the top_k-th and (top_k+1)-th expert scores
        self.topk_rows = 0  # rows where the top-k actually dropped an allowed key
        # legacy_2025_03 routing only: relative gap between neighbours of the sorted first router half (its ORDER
        # becomes part of the expert scores, so a near-tie there could swap experts)
        self.sort_gap = math.inf

    def merge(self, other):
        self.topk_gap = min(self.topk_gap, other.topk_gap)
        self.moe_gap = min(self.moe_gap, other.moe_gap)
        self.topk_rows += other.topk_rows
        self.sort_gap = min(self.sort_gap, other.sort_gap)


# ------------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------------

class RMSNorm:
    def __init__(self, weight, eps):
        self.weight = weight
        self.eps = eps

    def __call__(self, x):
        x = x.astype(F32)
        variance = np.mean(x * x, axis=-1, keepdims=True)
        x = x * (f32(1) / np.sqrt(variance + f32(self.eps)))
        return self.weight * x


# ---- RoPE init functions (ROPE_INIT_FUNCTIONS of modeling_rope_utils, 4.5x) ------------------------

def _rope_dim(cfg):
    return int(cfg.head_dim * cfg.partial_rotary_factor)


def _exponents(dim):
    # torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return np.arange(0, dim, 2, dtype=np.int64).astype(F32) / f32(dim)


def _inv_from_base(base32, dim):
    return f32(1) / np.power(base32, _exponents(dim), dtype=F32)


def rope_default(cfg, seq_len=None):
    return _inv_from_base(f32(cfg.rope_theta), _rope_dim(cfg)), 1.0


def rope_linear(cfg, seq_len=None):
    inv, att = rope_default(cfg)
    return inv / f32(cfg.rope_scaling["factor"]), att


def rope_dynamic(cfg, seq_len=None):
    dim = _rope_dim(cfg)
    max_pos = cfg.max_position_embeddings  # NOT rope_scaling["original_max_position_embeddings"]
    factor = cfg.rope_scaling["factor"]
    if seq_len is None or seq_len <= max_pos:
        # python-number path: the bracket is exactly 1.0
        base = f32(cfg.rope_theta)
    else:
        # seq_len is a 0-d int64 tensor in HF: the whole base recomputation is fp32 tensor math
        s = f32(seq_len)
        bracket = (f32(factor) * s) / f32(max_pos) - f32(factor - 1)
        p = np.power(bracket, f32(dim / (dim - 2)), dtype=F32)
        base = f32(f32(cfg.rope_theta) * p)
    return _inv_from_base(base, dim), 1.0


def rope_yarn(cfg, seq_len=None):
    rs = cfg.rope_scaling
    base = cfg.rope_theta
    dim = _rope_dim(cfg)
    factor = rs["factor"]
    attention_factor = rs.get("attention_factor")
    mscale = rs.get("mscale")
    mscale_all_dim = rs.get("mscale_all_dim")
    if "original_max_position_embeddings" in rs:
        orig = rs["original_max_position_embeddings"]
        factor = cfg.max_position_embeddings / orig
    else:
        orig = cfg.max_position_embeddings

    def get_mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = rs.get("beta_fast") or 32
    beta_slow = rs.get("beta_slow") or 1

    def correction_dim(rot):
        return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=F32) - f32(low)) / f32(high - low), f32(0), f32(1))
    extrapolation_factor = f32(1) - ramp
    pos_freqs = np.power(f32(base), _exponents(dim), dtype=F32)
    inv_extrapolation = f32(1) / pos_freqs
    inv_interpolation = f32(1) / (f32(factor) * pos_freqs)
    inv = inv_interpolation * (f32(1) - extrapolation_factor) + inv_extrapolation * extrapolation_factor
    return inv.astype(F32), attention_factor


def _longrope_orig_and_factor(cfg):
    factor = cfg.rope_scaling.get("factor")
    if cfg.original_max_position_embeddings is not None:
        orig = cfg.original_max_position_embeddings
        factor = cfg.max_position_embeddings / orig
    else:
        orig = cfg.max_position_embeddings
    return orig, factor


def rope_longrope(cfg, seq_len=None):
    rs = cfg.rope_scaling
    dim = _rope_dim(cfg)
    orig, factor = _longrope_orig_and_factor(cfg)
    attention_factor = rs.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    ext = np.array(rs["long_factor"] if (seq_len and seq_len > orig) else rs["short_factor"], dtype=F32)
    inv = f32(1) / (ext * np.power(f32(cfg.rope_theta), _exponents(dim), dtype=F32))
    return inv, attention_factor


def rope_llama3(cfg, seq_len=None):
    inv, att = rope_default(cfg)
    rs = cfg.rope_scaling
    factor = rs["factor"]
    lf, hf = rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / lf, old / hf
    wavelen = (f32(1) / inv) * f32(2 * math.pi)  # torch: 2*pi / t == t.reciprocal() * (2*pi)
    inv_l = np.where(wavelen > f32(low_wl), inv / f32(factor), inv)
    smooth = ((f32(1) / wavelen) * f32(old) - f32(lf)) / f32(hf - lf)
    smoothed = ((f32(1) - smooth) * inv_l) / f32(factor) + smooth * inv_l
    is_medium = ~(wavelen < f32(high_wl)) & ~(wavelen > f32(low_wl))
    return np.where(is_medium, smoothed, inv_l).astype(F32), att


ROPE_INIT = {
    "default": rope_default,
    "linear": rope_linear,
    "dynamic": rope_dynamic,
    "yarn": rope_yarn,
    "longrope": rope_longrope,
    "llama3": rope_llama3,
}


class RotaryEmbedding:
    """DogeRotaryEmbedding incl. the @dynamic_rope_update state machine (4.5x)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.rope_type = cfg.rope_type
        self.init_fn = ROPE_INIT[self.rope_type]
        self.inv_freq, self.attention_scaling = self.init_fn(cfg)
        self.original_inv_freq = self.inv_freq
        self.max_seq_len_cached = cfg.max_position_embeddings
        self.original_max_seq_len = cfg.max_position_embeddings

    def _dynamic_update(self, seq_len):
        if seq_len > self.max_seq_len_cached:  # growth
            self.inv_freq, self.attention_scaling = self.init_fn(self.cfg, seq_len=seq_len)
            self.max_seq_len_cached = seq_len
        if seq_len < self.original_max_seq_len and self.max_seq_len_cached > self.original_max_seq_len:  # reset
            self.inv_freq = self.original_inv_freq
            self.max_seq_len_cached = self.original_max_seq_len

    def _longrope_update(self, seq_len):
        orig = self.cfg.original_max_position_embeddings or self.cfg.max_position_embeddings
        if seq_len > orig:
            self.inv_freq, _ = self.init_fn(self.cfg, seq_len=orig + 1)  # long factors
        else:
            self.inv_freq = self.original_inv_freq  # short factors

    def __call__(self, position_ids):
        seq_len = int(np.max(position_ids)) + 1
        if "dynamic" in self.rope_type:
            self._dynamic_update(seq_len)
        elif self.rope_type == "longrope":
            self._longrope_update(seq_len)
        freqs = position_ids.astype(F32)[:, None] * self.inv_freq[None, :]  # [S, dim/2], one fp32 product
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos = np.cos(emb) * f32(self.attention_scaling)
        sin = np.sin(emb) * f32(self.attention_scaling)
        return cos.astype(F32), sin.astype(F32)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def apply_rotary_pos_emb(x, cos, sin):
    # x: [S, heads, hd]; cos/sin: [S, hd]
    c, s = cos[:, None, :], sin[:, None, :]
    return (x * c) + (rotate_half(x) * s)


class LayerCache:
    def __init__(self, kv, hd):
        self.k = np.zeros((0, kv, hd), F32)  # after k_norm and RoPE
        self.v = np.zeros((0, kv, hd), F32)  # raw v_proj output


class DogeAttention:
    def __init__(self, cfg, w, prefix, probe):
        self.cfg, self.probe = cfg, probe
        self.H, self.KV, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.groups = self.H // self.KV
        self.scaling = self.hd ** -0.5
        self.W = cfg.keep_window_size
        p = prefix
        b = (lambda n: w[p + n + ".bias"]) if cfg.attention_bias else (lambda n: None)
        self.q = (w[p + "q_proj.weight"], b("q_proj"))
        self.k = (w[p + "k_proj.weight"], b("k_proj"))
        self.v = (w[p + "v_proj.weight"], b("v_proj"))
        self.o = (w[p + "o_proj.weight"], b("o_proj"))
        self.dt = (w[p + "dt_proj.weight"], b("dt_proj"))
        self.A = w[p + "A"]
        self.q_norm = RMSNorm(w[p + "q_norm.weight"], cfg.rms_norm_eps)
        self.k_norm = RMSNorm(w[p + "k_norm.weight"], cfg.rms_norm_eps)

    def prepare_dynamic_mask(self, dt_states, S, P):
        """dt_states [KV, T] -> additive mask [KV, S, T] (causal MIN fill, then top-k if T > W)."""
        KV, T = dt_states.shape
        mask = np.broadcast_to(dt_states[:, None, :], (KV, S, T)).copy()
        q_pos = P + np.arange(S)[:, None]  # cache positions of the queries
        forbidden = np.arange(T)[None, :] > q_pos  # eager causal mask != 0
        mask[:, forbidden] = MIN
        if T > self.W:
            keep = topk_keep_mask(mask, self.W)
            self._record_topk_margin(mask, ~forbidden)
            mask[~keep] = MIN
        return mask

    def _record_topk_margin(self, mask, allowed):
        for g in range(mask.shape[0]):
            for i in range(mask.shape[1]):
                vals = np.sort(mask[g, i][allowed[i]])[::-1]
                if len(vals) > self.W:
                    a, b = float(vals[self.W - 1]), float(vals[self.W])
                    self.probe.topk_gap = min(self.probe.topk_gap, (a - b) / abs(a))
                    self.probe.topk_rows += 1

    def __call__(self, h, cos, sin, cache, P):
        S = h.shape[0]
        q = self.q_norm(linear(h, *self.q).reshape(S, self.H, self.hd))
        k = self.k_norm(linear(h, *self.k).reshape(S, self.KV, self.hd))
        v = linear(h, *self.v).reshape(S, self.KV, self.hd)
        q = apply_rotary_pos_emb(q, cos, sin)
        k = apply_rotary_pos_emb(k, cos, sin)
        cache.k = np.concatenate([cache.k, k], axis=0)
        cache.v = np.concatenate([cache.v, v], axis=0)
        K, V = cache.k, cache.v
        T = K.shape[0]
        # dynamic mask from the value states of ALL keys (cache + current)
        dt = linear(V.reshape(T, self.KV * self.hd), *self.dt)  # [T, KV]
        dt_states = np.exp(self.A * softplus(dt)).T  # [KV, T]
        mask = self.prepare_dynamic_mask(dt_states, S, P)
        out = np.empty((S, self.H, self.hd), F32)
        for hh in range(self.H):
            g = hh // self.groups  # repeat_kv for K, V and the mask
            scores = (q[:, hh, :] @ K[:, g, :].T) * f32(self.scaling)
            scores = scores + mask[g]
            probs = softmax(scores)
            out[:, hh, :] = probs @ V[:, g, :]
        return linear(out.reshape(S, self.H * self.hd), *self.o)


class DogeMLP:
    def __init__(self, cfg, w, prefix):
        b = (lambda n: w[prefix + n + ".bias"]) if cfg.mlp_bias else (lambda n: None)
        self.gate = (w[prefix + "gate_proj.weight"], b("gate_proj"))
        self.up = (w[prefix + "up_proj.weight"], b("up_proj"))
        self.down = (w[prefix + "down_proj.weight"], b("down_proj"))

    def __call__(self, x):
        return linear(silu(linear(x, *self.gate)) * linear(x, *self.up), *self.down)


class DogeCDMoE(DogeMLP):
    def __init__(self, cfg, w, prefix, probe):
        super().__init__(cfg, w, prefix)
        self.probe = probe
        self.num_keys = math.floor(math.sqrt(cfg.num_experts))
        self.top_k = cfg.num_experts_per_tok
        self.norm_topk_prob = cfg.norm_topk_prob
        self.router = w[prefix + "router_gate.weight"]
        self.down_embed = w[prefix + "down_embed.weight"]
        self.up_embed = w[prefix + "up_embed.weight"]

    def __call__(self, x):
        N = x.shape[0]  # tokens of THIS call (batch 1)
        K = self.num_keys
        # router_gate(x).view(2, N, K): raw reinterpretation of the [N, 2K] buffer
        flat = linear(x, self.router).reshape(-1)
        rx, ry = flat[: N * K].reshape(N, K), flat[N * K:].reshape(N, K)
        ix = np.argsort(-rx, axis=-1, kind="stable")  # topk(K) == full sort, descending
        iy = np.argsort(-ry, axis=-1, kind="stable")
        sx = np.take_along_axis(rx, ix, -1)
        sy = np.take_along_axis(ry, iy, -1)
        all_scores = (sx[:, :, None] + sy[:, None, :]).reshape(N, K * K)
        all_indices = (ix[:, :, None] * K + iy[:, None, :]).reshape(N, K * K)
        pos = np.argsort(-all_scores, axis=-1, kind="stable")
        self._record_margin(all_scores, pos)
        pos = pos[:, : self.top_k]
        scores = np.take_along_axis(all_scores, pos, -1)
        indices = np.take_along_axis(all_indices, pos, -1)
        routing = softmax(scores)
        if self.norm_topk_prob:
            routing = routing / np.sum(routing, axis=-1, keepdims=True)
        down = self.down_embed[indices]  # [N, k, D]
        up = self.up_embed[indices]
        ew = np.einsum("nkd,nd->nk", down, x).astype(F32)
        ew = silu(ew) * routing
        experts = np.einsum("nk,nkd->nd", ew, up).astype(F32)
        shared = super().__call__(x)
        return shared + experts  # DogeCDMoE returns (hidden, router_logits); element 0 is used

    def _record_margin(self, all_scores, order):
        if all_scores.shape[1] <= self.top_k:
            return
        for n in range(all_scores.shape[0]):
            a = float(all_scores[n, order[n, self.top_k - 1]])
            b = float(all_scores[n, order[n, self.top_k]])
            scale = float(np.max(np.abs(all_scores[n])))
            self.probe.moe_gap = min(self.probe.moe_gap, (a - b) / scale)


class DogeDecoderLayer:
    def __init__(self, cfg, w, i, probe):
        p = "model.layers.%d." % i
        self.input_layernorm = RMSNorm(w[p + "input_layernorm.weight"], cfg.rms_norm_eps)
        self.self_attn = DogeAttention(cfg, w, p + "self_attn.", probe)
        self.input_residual = w[p + "input_residual"]
        self.post_attention_layernorm = RMSNorm(w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
        self.mlp = DogeCDMoE(cfg, w, p + "mlp.", probe) if cfg.is_moe else DogeMLP(cfg, w, p + "mlp.")
        self.post_attention_residual = w[p + "post_attention_residual"]

    def __call__(self, x, cos, sin, cache, P):
        residual = x
        h = self.self_attn(self.input_layernorm(x), cos, sin, cache, P)
        x = self.input_residual * residual + h
        residual = x
        h = self.mlp(self.post_attention_layernorm(x))
        return self.post_attention_residual * residual + h


class DogeModel:
    """DogeModel + head.  One instance == one HF model object (RoPE state persists across calls)."""

    def __init__(self, cfg, w, kind="causal"):
        self.cfg, self.kind = cfg, kind
        self.probe = Probe()
        self.embed_tokens = w["model.embed_tokens.weight"]
        self.layers = [DogeDecoderLayer(cfg, w, i, self.probe) for i in range(cfg.num_hidden_layers)]
        self.norm = RMSNorm(w["model.norm.weight"], cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)
        if kind == "causal":
            # a missing lm_head is treated as tied (spec pitfall P9)
            self.lm_head = w.get("lm_head.weight", self.embed_tokens)
        else:
            self.score = w["score.weight"]
        self.cache = None

    def new_cache(self):
        self.cache = [LayerCache(self.cfg.num_key_value_heads, self.cfg.head_dim) for _ in self.layers]

    def hidden(self, ids):
        if self.cache is None:
            self.new_cache()
        P = self.cache[0].k.shape[0]
        S = len(ids)
        position_ids = np.arange(P, P + S)
        x = self.embed_tokens[np.asarray(ids)]
        cos, sin = self.rotary_emb(position_ids)
        for layer, c in zip(self.layers, self.cache):
            x = layer(x, cos, sin, c, P)
        return self.norm(x)

    def causal_logits(self, ids):
        return self.hidden(ids) @ self.lm_head.T

    def seqcls_logits(self, ids):
        logits = self.hidden(ids) @ self.score.T  # [S, num_labels]
        pad = self.cfg.pad_token_id
        if pad is None:
            last = -1
        else:
            non_pad = (np.asarray(ids) != pad).astype(np.int32)
            last = int(np.argmax(np.arange(len(ids), dtype=np.int32) * non_pad))
        return logits[last]


# ------------------------------------------------------------------------------------------------
# OLD (remote-code V1) and MID layouts (shared/doge-legacy.md sections 2, 3.1-3.3, 3.8)
# ------------------------------------------------------------------------------------------------

LEGACY_NAMES = {
    # OLD: modeling_old_doge.py module names (Residual is a module with .weight)
    "old": dict(embed="model.word_embed.weight", norm="model.final_layernorm.weight",
                ln1="pre_layernorm.weight", res1="pre_residual.weight",
                ln2="post_layernorm.weight", res2="post_residual.weight", ff="feed_forward."),
    # MID: small-doge >= 2025-06-19 (its converter's output): HF names, OLD attention tensors
    "mid": dict(embed="model.embed_tokens.weight", norm="model.norm.weight",
                ln1="input_layernorm.weight", res1="input_residual",
                ln2="post_attention_layernorm.weight", res2="post_attention_residual", ff="mlp."),
}

MOE_ROUTINGS = ("hf", "legacy_2025_03")


class OldDogeAttention:
    """V1 eager attention (doge-legacy.md 3.3): NO q/k RMSNorm; A [H] and dt_proj [H, KV*hd] give one additive bias
    row per QUERY head (the mask is not repeat_kv'd); the causal float mask (0 / MIN) is ADDED to it; with
    dynamic_mask_ratio 0 there is no kthvalue and no top-k at any length (keep_window_size is ignored).
    MID (layout "mid") is the same function while T <= keep_window_size; its top-k per query head is not
    implemented here (no case needs it)."""

    def __init__(self, cfg, w, prefix, layout):
        self.layout = layout
        self.H, self.KV, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.groups = self.H // self.KV
        self.scaling = self.hd ** -0.5
        self.W = cfg.keep_window_size
        p = prefix
        b = (lambda n: w[p + n + ".bias"]) if cfg.attention_bias else (lambda n: None)  # hidden_bias
        self.q = (w[p + "q_proj.weight"], b("q_proj"))
        self.k = (w[p + "k_proj.weight"], b("k_proj"))
        self.v = (w[p + "v_proj.weight"], b("v_proj"))
        self.o = (w[p + "o_proj.weight"], b("o_proj"))
        self.dt = (w[p + "dt_proj.weight"], b("dt_proj"))
        self.A = w[p + "A"]
        assert self.A.shape == (self.H,) and self.dt[0].shape == (self.H, self.KV * self.hd), p
        assert p + "q_norm.weight" not in w and p + "k_norm.weight" not in w, p

    def dynamic_mask(self, dyn, S, P):
        """dyn [H, T] -> attn_mask [H, S, T] = dynamic_mask[:, None, :] + causal float mask [S, T]."""
        H, T = dyn.shape
        if self.layout == "mid" and T > self.W:
            raise NotImplementedError("MID top-k per query head (T > keep_window_size) is not implemented")
        causal = np.where(np.arange(T)[None, :] > P + np.arange(S)[:, None], MIN, f32(0)).astype(F32)
        return dyn[:, None, :] + causal[None, :, :]  # forbidden: MIN + bias == MIN in fp32 for any bias used here

    def __call__(self, h, cos, sin, cache, P):
        S = h.shape[0]
        q = linear(h, *self.q).reshape(S, self.H, self.hd)  # no q_norm
        k = linear(h, *self.k).reshape(S, self.KV, self.hd)  # no k_norm
        v = linear(h, *self.v).reshape(S, self.KV, self.hd)
        q = apply_rotary_pos_emb(q, cos, sin)
        k = apply_rotary_pos_emb(k, cos, sin)
        cache.k = np.concatenate([cache.k, k], axis=0)  # K post-RoPE, V raw
        cache.v = np.concatenate([cache.v, v], axis=0)
        K, V = cache.k, cache.v
        T = K.shape[0]
        # dt_proj(value_states.transpose(1, 2).reshape(B, T, -1)): input order [kv_head][hd], output [T, H]
        dt = linear(V.reshape(T, self.KV * self.hd), *self.dt)
        dyn = np.exp(self.A * softplus(dt)).T  # [H, T], one row per QUERY head
        mask = self.dynamic_mask(dyn, S, P)
        out = np.empty((S, self.H, self.hd), F32)
        for hh in range(self.H):
            g = hh // self.groups  # repeat_kv for K and V only
            scores = (q[:, hh, :] @ K[:, g, :].T) * f32(self.scaling)
            scores = scores + mask[hh]
            probs = softmax(scores)
            out[:, hh, :] = probs @ V[:, g, :]
        return linear(out.reshape(S, self.H * self.hd), *self.o)


class OldCDMoE(DogeMLP):
    """Router-era CDMoE of the OLD code (doge-legacy.md 3.8): shared expert gate/up/down (+ hidden_bias) plus
    down_embed/up_embed [E, D]; router_gate Linear(D, 2K) with an optional bias (2025-03-17..03-20 files).
    routing "hf": >= 2025-04-15 code == HF 4.57 DogeCDMoE with norm_topk_prob False.
    routing "legacy_2025_03": the 2025-03-13..04-14 code (list-comprehension unpack bug, grid position = expert id)."""

    def __init__(self, cfg, w, prefix, probe, routing):
        super().__init__(cfg, w, prefix)
        assert routing in MOE_ROUTINGS, routing
        assert not cfg.norm_topk_prob, "the OLD code has no norm_topk_prob"
        self.prefix, self.probe, self.routing = prefix, probe, routing
        self.num_keys = int(math.sqrt(cfg.num_experts))  # OLD: int(math.sqrt(E)) (HF: floor; same value)
        self.top_k = cfg.num_experts_per_tok
        self.router = (w[prefix + "router_gate.weight"], w.get(prefix + "router_gate.bias"))
        self.down_embed = w[prefix + "down_embed.weight"]
        self.up_embed = w[prefix + "up_embed.weight"]

    def route(self, x):
        """x [N, D] (the N tokens of THIS call) -> (top_k scores [N, k] fp32, expert ids [N, k])."""
        N, K = x.shape[0], self.num_keys
        # router_gate(x).view(2, N, K): raw reinterpretation of the [N, 2K] buffer (bias added before the view)
        halves = linear(x, *self.router).reshape(2, N, K)
        if self.routing == "hf":
            # (sx, ix) = topk(Rx, K), (sy, iy) = topk(Ry, K); grid = sx[a] + sy[b], gid = ix[a]*K + iy[b]
            ix = np.argsort(-halves[0], axis=-1, kind="stable")
            iy = np.argsort(-halves[1], axis=-1, kind="stable")
            sx = np.take_along_axis(halves[0], ix, -1)
            sy = np.take_along_axis(halves[1], iy, -1)
            grid = (sx[:, :, None] + sy[:, None, :]).reshape(N, K * K)
            gid = (ix[:, :, None] * K + iy[:, None, :]).reshape(N, K * K)
        else:
            # [w.topk(K) for w in halves] == [(vals0, idx0), (vals1, idx1)] is unpacked as
            # (scores_x, scores_y), (indices_x, indices_y): scores_x = vals0, scores_y = idx0 (int64).
            # all_scores = vals0[a] + float(idx0[b]) (float32 + int64 -> float32); half y only feeds the unused
            # all_indices; expert id = the grid POSITION a*K + b (no gather).
            i0 = np.argsort(-halves[0], axis=-1, kind="stable")
            v0 = np.take_along_axis(halves[0], i0, -1)
            self._record_sort_margin(halves[0], v0)
            grid = (v0[:, :, None] + i0[:, None, :].astype(F32)).reshape(N, K * K)
            gid = np.broadcast_to(np.arange(K * K), (N, K * K))
        pos = np.argsort(-grid, axis=-1, kind="stable")  # topk(top_k), sorted descending
        self._record_margin(grid, pos)
        pos = pos[:, : self.top_k]
        return np.take_along_axis(grid, pos, -1), np.take_along_axis(gid, pos, -1)

    def __call__(self, x):
        scores, indices = self.route(x)
        routing = softmax(scores)  # scores.softmax(dim=-1), model dtype fp32
        down = self.down_embed[indices]  # [N, k, D]
        up = self.up_embed[indices]
        ew = np.einsum("nkd,nd->nk", down, x).astype(F32)  # matmul(down_embed, x[:, :, None])
        ew = silu(ew) * routing
        experts = np.einsum("nk,nkd->nd", ew, up).astype(F32)  # matmul(ew[:, None, :], up_embed)
        shared = super().__call__(x)
        return shared + experts

    def _record_margin(self, grid, order):
        if grid.shape[1] <= self.top_k:
            return
        for n in range(grid.shape[0]):
            a = float(grid[n, order[n, self.top_k - 1]])
            b = float(grid[n, order[n, self.top_k]])
            scale = float(np.max(np.abs(grid[n])))
            self.probe.moe_gap = min(self.probe.moe_gap, (a - b) / scale)

    def _record_sort_margin(self, rx, sorted_desc):
        for n in range(rx.shape[0]):
            gap = float(np.min(sorted_desc[n, :-1] - sorted_desc[n, 1:]))
            self.probe.sort_gap = min(self.probe.sort_gap, gap / float(np.max(np.abs(rx[n]))))


class OldDecoderLayer:
    def __init__(self, cfg, w, i, probe, layout, routing):
        n, p = LEGACY_NAMES[layout], "model.layers.%d." % i
        self.pre_layernorm = RMSNorm(w[p + n["ln1"]], cfg.rms_norm_eps)
        self.self_attn = OldDogeAttention(cfg, w, p + "self_attn.", layout)
        self.pre_residual = w[p + n["res1"]]
        self.post_layernorm = RMSNorm(w[p + n["ln2"]], cfg.rms_norm_eps)
        if cfg.is_moe:
            self.feed_forward = OldCDMoE(cfg, w, p + n["ff"], probe, routing)
        else:
            self.feed_forward = DogeMLP(cfg, w, p + n["ff"])
        self.post_residual = w[p + n["res2"]]

    def __call__(self, x, cos, sin, cache, P):
        residual = x
        h = self.self_attn(self.pre_layernorm(x), cos, sin, cache, P)
        x = self.pre_residual * residual + h  # Residual: weight * residual_states + hidden_states
        residual = x
        h = self.feed_forward(self.post_layernorm(x))
        return self.post_residual * residual + h


class OldDogeModel(DogeModel):
    """OLD/MID DogeForCausalLM.  Embedding gather, RoPE (same dynamic-NTK state machine), final norm and the head
    (tied when lm_head.weight is absent, doge-legacy.md 3.9) are as in HF, so hidden()/causal_logits() are shared."""

    def __init__(self, cfg, w, layout, routing=None):
        assert layout in LEGACY_NAMES, layout
        assert cfg.dynamic_mask_ratio == 0.0, "dynamic_mask_ratio > 0 (kthvalue masking) is not implemented"
        n = LEGACY_NAMES[layout]
        self.cfg, self.kind = cfg, "causal"
        self.probe = Probe()
        self.embed_tokens = w[n["embed"]]
        self.layers = [OldDecoderLayer(cfg, w, i, self.probe, layout, routing) for i in range(cfg.num_hidden_layers)]
        self.norm = RMSNorm(w[n["norm"]], cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)
        self.lm_head = w.get("lm_head.weight", self.embed_tokens)
        self.cache = None


def new_model(cfg, w, kind, layout="hf", options=None):
    if layout == "hf":
        return DogeModel(cfg, w, kind)
    assert kind == "causal", "OLD/MID cases are causal"
    return OldDogeModel(cfg, w, layout, (options or {}).get("moe_routing"))


def run_prefill(cfg, w, kind, ids, layout="hf", options=None):
    m = new_model(cfg, w, kind, layout, options)
    out = m.causal_logits(ids) if kind == "causal" else m.seqcls_logits(ids)
    return out.astype(F32), m.probe


def run_decode(cfg, w, ids, split, layout="hf", options=None):
    """HF-style generation: one call on ids[:split], then one call per remaining token (KV cache)."""
    m = new_model(cfg, w, "causal", layout, options)
    outs = [m.causal_logits(ids[:split])]
    for t in ids[split:]:
        outs.append(m.causal_logits([t]))
    return np.concatenate(outs, axis=0).astype(F32), m.probe


# ------------------------------------------------------------------------------------------------
# Weights: names/shapes (spec section 7), random init, storage rounding
# ------------------------------------------------------------------------------------------------

def round_bf16(a):
    """fp32 -> bf16 (round to nearest even on the fp32 bits) -> fp32."""
    u = np.ascontiguousarray(a, dtype=F32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(F32)


def round_to(a, dtype):
    if dtype == "F32":
        return a.astype(F32)
    if dtype == "BF16":
        return round_bf16(a)
    if dtype == "F16":
        return a.astype(np.float16).astype(F32)
    raise ValueError(dtype)


def weight_specs(cfg, kind="causal", lm_head=False, layout="hf", router_bias=False, variant=None):
    """List of (name, shape, init) in model order; init = (distribution, parameter).

    layout "hf": HF 4.57 keys (spec section 7).  "old": the remote-code V1 layout (spec 7.1, doge-legacy.md 2).
    "mid": old shapes (A [H], dt_proj [H, KV*hd], no q/k norm) under the HF 4.57 names.
    router_bias: OLD MoE `router_gate.bias` [2K] (2025-03-17..03-20 files).
    variant (refusal cases only): "pre_router" (feed_forward.queries_proj.weight [r, D] + feed_forward.keys
    [2, r/2, K] instead of router_gate, r = expert_retrieval_size), "dt_proj_dec2024" (dt_proj [H, D]),
    "partial_qk_norm" (q_norm/k_norm in layer 0 only)."""
    D, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    H, KV, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    lin = lambda fan_out, fan_in: ("normal", 1.0 / math.sqrt(fan_in))
    one = ("one", 0.1)  # norm weights and residual scales: 1 + 0.1 * N(0, 1)
    out = []
    add = lambda n, s, init: out.append((n, tuple(s), init))
    if layout == "old":
        add("model.word_embed.weight", (V, D), ("normal", 1.0))
    else:
        add("model.embed_tokens.weight", (V, D), ("normal", cfg.embed_std))
    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        if layout == "old":
            add(p + "pre_layernorm.weight", (D,), one)
            add(p + "pre_residual.weight", (D,), one)
        else:
            add(p + "input_layernorm.weight", (D,), one)
            add(p + "input_residual", (D,), one)
        a = p + "self_attn."
        for n, o in (("q_proj", H * hd), ("k_proj", KV * hd), ("v_proj", KV * hd)):
            add(a + n + ".weight", (o, D), lin(o, D))
            if cfg.attention_bias:
                add(a + n + ".bias", (o,), ("normal", 0.1))
        nA = H if layout in ("old", "mid") else KV
        dt_in = D if variant == "dt_proj_dec2024" else KV * hd
        add(a + "A", (nA,), ("uniform", (-1.0, 0.3)))
        add(a + "dt_proj.weight", (nA, dt_in), lin(nA, dt_in))
        if cfg.attention_bias:
            add(a + "dt_proj.bias", (nA,), ("normal", 0.3))
        add(a + "o_proj.weight", (D, H * hd), lin(D, H * hd))
        if cfg.attention_bias:
            add(a + "o_proj.bias", (D,), ("normal", 0.1))
        if layout == "hf" and not (variant == "partial_qk_norm" and i > 0):
            add(a + "q_norm.weight", (hd,), one)
            add(a + "k_norm.weight", (hd,), one)
        if layout == "old":
            add(p + "post_layernorm.weight", (D,), one)
            add(p + "post_residual.weight", (D,), one)
            m = p + "feed_forward."
        else:
            add(p + "post_attention_layernorm.weight", (D,), one)
            add(p + "post_attention_residual", (D,), one)
            m = p + "mlp."
        for n, o, i_ in (("gate_proj", I, D), ("up_proj", I, D), ("down_proj", D, I)):
            add(m + n + ".weight", (o, i_), lin(o, i_))
            if cfg.mlp_bias:
                add(m + n + ".bias", (o,), ("normal", 0.1))
        if cfg.is_moe:
            K = math.floor(math.sqrt(cfg.num_experts))
            if variant == "pre_router":
                r = cfg.raw["expert_retrieval_size"]
                add(m + "queries_proj.weight", (r, D), lin(r, D))
                add(m + "keys", (2, r // 2, K), ("normal", 1.0 / math.sqrt(r // 2)))
            else:
                add(m + "router_gate.weight", (2 * K, D), lin(2 * K, D))
                if router_bias:
                    add(m + "router_gate.bias", (2 * K,), ("normal", 0.5))
            add(m + "down_embed.weight", (cfg.num_experts, D), ("normal", 1.0 / math.sqrt(D)))
            add(m + "up_embed.weight", (cfg.num_experts, D), ("normal", 1.0))
    add("model.final_layernorm.weight" if layout == "old" else "model.norm.weight", (D,), one)
    if kind == "seqcls":
        add("score.weight", (cfg.num_labels, D), lin(cfg.num_labels, D))
    elif lm_head:
        add("lm_head.weight", (V, D), lin(V, D))
    return out


def make_weights(specs, rng, dtype_of):
    """Random weights, already rounded to their storage dtype. Returns {name: (fp32 array, dtype)}."""
    w = {}
    for name, shape, (init, prm) in specs:
        if init == "normal":
            a = rng.standard_normal(shape, dtype=F32) * f32(prm)
        elif init == "one":
            a = f32(1) + rng.standard_normal(shape, dtype=F32) * f32(prm)
        elif init == "uniform":
            a = rng.uniform(prm[0], prm[1], size=shape).astype(F32)
        else:
            raise ValueError(init)
        dt = dtype_of(name)
        w[name] = (round_to(a, dt), dt)
    return w


# ------------------------------------------------------------------------------------------------
# safetensors writer
# ------------------------------------------------------------------------------------------------

ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}


def encode(a, dtype):
    if dtype == "F32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "BF16":
        bits = np.ascontiguousarray(a, dtype=F32).view(np.uint32) >> 16  # already bf16-exact
        return bits.astype("<u2").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(a).astype("<f2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, data_order):
    """tensors: {name: (array, dtype)}.  The header lists keys sorted by name; the data section follows
    `data_order` (which may differ from the header order)."""
    blobs = {n: encode(*tensors[n]) for n in data_order}
    offsets, pos = {}, 0
    for n in data_order:
        offsets[n] = (pos, pos + len(blobs[n]))
        pos += len(blobs[n])
    header = {"__metadata__": {"format": "pt"}}
    for n in sorted(tensors):
        a, dt = tensors[n]
        header[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": list(offsets[n])}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for n in data_order:
            f.write(blobs[n])
    return pos


def order_for(names, tensors, mode, rng):
    names = list(names)
    if mode == "sorted":
        return sorted(names)
    if mode == "shuffled":
        perm = rng.permutation(len(names))
        return [names[i] for i in perm]
    if mode == "by_itemsize":  # what the real writer does: larger dtypes first, then by name (keeps alignment)
        return sorted(names, key=lambda n: (-ITEMSIZE[tensors[n][1]], n))
    raise ValueError(mode)


def write_checkpoint(d, tensors, model_order, shards, data_mode, rng):
    if shards <= 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors,
                          order_for(tensors, tensors, data_mode, rng))
        return
    # split in model order into `shards` chunks of roughly equal byte size (a layer may straddle files)
    sizes = [len(encode(*tensors[n])) for n in model_order]
    total, acc, chunks, cur = sum(sizes), 0, [[] for _ in range(shards)], 0
    for n, s in zip(model_order, sizes):
        if cur < shards - 1 and acc >= total * (cur + 1) / shards:
            cur += 1
        chunks[cur].append(n)
        acc += s
    weight_map = {}
    for k, names in enumerate(chunks):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        part = {n: tensors[n] for n in names}
        write_safetensors(os.path.join(d, fn), part, order_for(part, part, data_mode, rng))
        for n in names:
            weight_map[n] = fn
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


# ------------------------------------------------------------------------------------------------
# Case table
# ------------------------------------------------------------------------------------------------

def base_config(**over):
    c = {
        "architectures": ["DogeForCausalLM"],
        "model_type": "doge",
        "vocab_size": 128,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "hidden_dropout": 0.0,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "sliding_window": None,
        "keep_window_size": 2048,
        "is_moe": False,
        "num_experts": 16384,
        "num_experts_per_tok": 64,
        "norm_topk_prob": False,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "torch_dtype": "float32",
        "transformers_version": "4.57.0",
    }
    c.update(over)
    return c


def old_config(**over):
    """config.json of the remote-code era as released (doge-legacy.md 3.7, 4): auto_map, hidden_bias,
    dynamic_mask_ratio 0.0, keep_window_size (ignored by the OLD math), transformers 4.48.1, tied, no head_dim,
    no attention_bias/mlp_bias/sliding_window/norm_topk_prob; keys sorted like PretrainedConfig.to_json_string."""
    c = {
        "architectures": ["DogeForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_doge.DogeConfig",
                     "AutoModelForCausalLM": "modeling_doge.DogeForCausalLM"},
        "bos_token_id": 0,
        "dynamic_mask_ratio": 0.0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_bias": False,
        "hidden_dropout": 0.0,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "is_moe": False,
        "keep_window_size": 2048,
        "max_position_embeddings": 2048,
        "model_type": "doge",
        "num_attention_heads": 4,
        "num_channels": 3,
        "num_experts": 2048,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pad_token_id": 2,
        "patch_size": 16,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 2048, "rope_type": "dynamic"},
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.48.1",
        "use_cache": True,
        "vocab_size": 128,
    }
    c.update(over)
    return dict(sorted(c.items()))


def case(name, notes, config, S, split=None, kind="causal", lm_head=False, omit=(), dtype="F32",
         data="sorted", shards=1, ids=None, embed_std=1.0, layout="hf", expect_error=None, options=None,
         router_bias=False, variant=None):
    cfg = dict(config)
    for k in omit:
        cfg.pop(k, None)
    if split is None and kind == "causal" and expect_error is None:
        split = max(1, S // 2)
    return dict(name=name, notes=notes, config=cfg, S=S, split=split, kind=kind, lm_head=lm_head,
                dtype=dtype, data=data, shards=shards, ids=ids, embed_std=embed_std, layout=layout,
                expect_error=expect_error, options=options, router_bias=router_bias, variant=variant)


def specs_of(c, cfg):
    return weight_specs(cfg, c["kind"], c["lm_head"], c["layout"], c["router_bias"], c["variant"])


def mixed_dtype(name):
    if name.endswith("self_attn.A") or "dt_proj" in name or "mlp." in name:
        return "F32"
    if "o_proj" in name or name.endswith("norm.weight"):
        return "F16"
    return "BF16"


def longrope_factors(n, lo, hi, seed):
    r = np.random.default_rng(seed)
    return [round(float(x), 4) for x in np.sort(r.uniform(lo, hi, n))]


SEQCLS = dict(architectures=["DogeForSequenceClassification"],
              id2label={"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
              label2id={"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}, num_labels=3)

CASES = [
    case("tiny_tied", "dense, tied head (no lm_head.weight, tie_word_embeddings true), GQA H=4/KV=2; "
         "tensor data shuffled relative to the header order",
         base_config(), S=10, split=4, data="shuffled"),
    case("untied", "lm_head.weight present, tie_word_embeddings false, MHA (KV=H=2); rms_norm_eps 0.05 and "
         "rope_theta 1000 (non-default, large enough to matter); attention_bias/mlp_bias keys omitted",
         base_config(vocab_size=96, hidden_size=32, intermediate_size=48, num_attention_heads=2,
                     num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=0.05, rope_theta=1000.0),
         S=9, lm_head=True, omit=("attention_bias", "mlp_bias")),
    case("gqa4", "GQA H=8, KV=2 (R=4), head_dim 8",
         base_config(vocab_size=128, hidden_size=64, intermediate_size=96, num_attention_heads=8,
                     num_key_value_heads=2), S=12, data="shuffled"),
    case("gqa_r4_kv1", "GQA H=4, KV=1 (all query heads share one kv head and one A/dt_proj row)",
         base_config(vocab_size=80, hidden_size=32, num_attention_heads=4, num_key_value_heads=1), S=11),
    case("head_dim_custom", "explicit head_dim 16 != hidden/heads (48/4=12), H=4, KV=2",
         base_config(vocab_size=100, hidden_size=48, intermediate_size=80, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16), S=10),
    case("head_dim_6", "explicit head_dim 6 (hd % 4 = 2: the attention kernels' one-column tails), H=4, KV=2",
         base_config(vocab_size=96, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=6), S=10,
         split=4),
    case("biases", "attention_bias (q,k,v,o AND dt_proj biases) and mlp_bias",
         base_config(attention_bias=True, mlp_bias=True, vocab_size=112), S=10, data="shuffled"),
    case("bf16", "all tensors stored BF16 (config torch_dtype bfloat16); reference = fp32 compute on the "
         "bf16 values (HF 4.57 loads in fp32 unless dtype= is given)",
         base_config(vocab_size=120, torch_dtype="bfloat16"), S=10, dtype="BF16"),
    case("f16", "all tensors stored F16 (config torch_dtype float16); reference = fp32 compute on the f16 values",
         base_config(vocab_size=120, torch_dtype="float16"), S=10, dtype="F16"),
    case("mixed_dtype", "F32, BF16 and F16 tensors in one file (A, dt_proj, mlp F32; o_proj and norms F16; "
         "rest BF16); data sorted by item size like the real writer",
         base_config(vocab_size=120, tie_word_embeddings=False), S=10, lm_head=True, dtype=mixed_dtype,
         data="by_itemsize"),
    case("topk_window", "keep_window_size 8, S 30: top-k over the dt bias active in prefill (rows >= 8) and in "
         "every decode step after T > 8; decode split 5",
         base_config(keep_window_size=8, vocab_size=128), S=30, split=5),
    case("dynamic_rope", "rope_scaling dynamic factor 4 (original_max_position_embeddings 16 == max_position_"
         "embeddings 16), S 40: prefill uses the base for seq_len 40 at all positions; decode split 10 "
         "recomputes the base each step after position 16 and never re-rotates cached keys",
         base_config(max_position_embeddings=16, rope_scaling={"rope_type": "dynamic", "factor": 4.0,
                                                              "original_max_position_embeddings": 16},
                     vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2),
         S=40, split=10),
    case("dynamic_rope_legacy_type", "legacy rope_scaling {\"type\": \"dynamic\", \"factor\": 2.0}, "
         "max_position_embeddings 16, S 36, decode split 12",
         base_config(max_position_embeddings=16, rope_scaling={"type": "dynamic", "factor": 2.0},
                     vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2),
         S=36, split=12),
    case("dynamic_rope_origmax_ignored", "dynamic factor 3 with rope_scaling original_max_position_"
         "embeddings 8 but max_position_embeddings 20: HF uses max_position_embeddings (20) as the threshold "
         "and base length; S 32, decode split 6",
         base_config(max_position_embeddings=20, rope_scaling={"rope_type": "dynamic", "factor": 3.0,
                                                              "original_max_position_embeddings": 8},
                     vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2),
         S=32, split=6),
    case("linear_rope", "rope_scaling linear factor 2",
         base_config(rope_scaling={"rope_type": "linear", "factor": 2.0}, vocab_size=128,
                     hidden_size=64, num_attention_heads=4, num_key_value_heads=2), S=20, split=7),
    case("yarn_rope", "yarn factor 4, original_max_position_embeddings 16, max_position_embeddings 64, "
         "head_dim 32, rope_theta 100 (ramp over dims 0..4); attention_factor 0.1*ln(4)+1 multiplies cos/sin",
         base_config(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
                     max_position_embeddings=64, rope_theta=100.0, vocab_size=128, hidden_size=64,
                     num_attention_heads=2, num_key_value_heads=1), S=40, split=10),
    case("longrope", "longrope, head_dim 16 (8 short/long factors), top-level original_max_position_embeddings "
         "16, max_position_embeddings 64 (attention_factor sqrt(1+ln4/ln16)); S 30 > 16 so prefill uses "
         "long factors; decode split 8 uses short factors while max position+1 <= 16, long after",
         base_config(rope_scaling={"rope_type": "longrope", "short_factor": longrope_factors(8, 1.0, 1.6, 1),
                                   "long_factor": longrope_factors(8, 1.0, 6.0, 2)},
                     original_max_position_embeddings=16, max_position_embeddings=64, vocab_size=128,
                     hidden_size=64, num_attention_heads=4, num_key_value_heads=2), S=30, split=8),
    case("llama3_rope", "llama3 factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_"
         "embeddings 32 (so head_dim 32 has high-, medium- and low-frequency bands)",
         base_config(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                     max_position_embeddings=256, vocab_size=128, hidden_size=64, num_attention_heads=2,
                     num_key_value_heads=1), S=40, split=10),
    case("moe_e16_k4", "CDMoE E=16 (4x4 keys), top_k 4, norm_topk_prob false; S 9 (odd): view(2,N,K) "
         "cross-token routing, so decode (split 4, then N=1 calls) differs from prefill",
         base_config(is_moe=True, num_experts=16, num_experts_per_tok=4, norm_topk_prob=False,
                     vocab_size=128), S=9, split=4),
    case("moe_e64_k8_norm", "CDMoE E=64 (8x8), top_k 8, norm_topk_prob true; S 9, decode split 4",
         base_config(is_moe=True, num_experts=64, num_experts_per_tok=8, norm_topk_prob=True,
                     vocab_size=128), S=9, split=4),
    case("moe_e36_k3", "CDMoE E=36 (6x6), top_k 3, norm_topk_prob omitted (default false), mlp_bias on the "
         "shared expert; S 9, decode split 4",
         base_config(is_moe=True, num_experts=36, num_experts_per_tok=3, mlp_bias=True, vocab_size=128),
         S=9, split=4, omit=("norm_topk_prob",)),
    case("seqcls", "DogeForSequenceClassification, 3 labels, pad_token_id 3: ids have one pad in the middle "
         "and end with 2 pads, pooled at the right-most non-pad token (index S-3)",
         base_config(pad_token_id=3, vocab_size=64, **SEQCLS), S=12, kind="seqcls",
         ids="pad_mid_and_end"),
    case("seqcls_nopad", "DogeForSequenceClassification, pad_token_id absent from config (HF default None) -> "
         "pooled at the last position; the last id is 0",
         base_config(vocab_size=64, **SEQCLS), S=10, kind="seqcls", ids="last_zero",
         omit=("pad_token_id",)),
    case("sharded", "3 shard files + model.safetensors.index.json, untied lm_head, 3 layers (a layer "
         "straddles two shards), shuffled data order in each shard",
         base_config(vocab_size=128, num_hidden_layers=3, tie_word_embeddings=False), S=10, lm_head=True,
         shards=3, data="shuffled"),
    case("doge20m_shape", "real Doge-20M shape: vocab 32768, D 256, 8 layers, H 2, KV 1, head_dim 128 (implicit), "
         "I 512, tied, rope dynamic factor 4 / max_position_embeddings 2048, keep_window_size 2048; S 12 "
         "starting with bos 0 (no RoPE growth, no top-k)",
         base_config(vocab_size=32768, hidden_size=256, intermediate_size=512, num_hidden_layers=8,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                     rope_scaling={"rope_type": "dynamic", "factor": 4.0,
                                   "original_max_position_embeddings": 2048}, keep_window_size=2048),
         S=12, split=5, ids="bos"),
    case("defaults_omitted", "config omits num_key_value_heads (-> H=4), keep_window_size (-> 2048), "
         "rms_norm_eps (-> 1e-6; embeddings scaled to std 2e-3 so eps matters), rope_theta (-> 10000), "
         "tie_word_embeddings (-> False in HF) but no lm_head.weight stored: reference computed TIED "
         "(engine rule: missing lm_head == tied; HF itself would use a random lm_head), hidden_act (-> silu), "
         "rope_scaling, biases, MoE keys",
         base_config(num_attention_heads=4, vocab_size=100), S=10, embed_std=2e-3,
         omit=("num_key_value_heads", "keep_window_size", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
               "hidden_act", "rope_scaling", "attention_bias", "mlp_bias", "is_moe", "num_experts",
               "num_experts_per_tok", "norm_topk_prob", "sliding_window", "max_position_embeddings")),
    # the two former refusal cases: files unchanged, now loadable (OLD / MID math of doge-legacy.md 3.3)
    case("bad_old_layout", "OLD remote-code layout (doge-legacy.md 2) with an HF-4.57-style config (no auto_map, "
         "hidden_bias or dynamic_mask_ratio: OLD is recognised by the tensor names): word_embed, pre_layernorm, "
         "pre_residual.weight, post_layernorm, post_residual.weight, feed_forward.*, final_layernorm, A [H], "
         "dt_proj [H, KV*hd], no q_norm/k_norm; H = 2*KV. OLD math: bias per query head, dense causal; decode split 3",
         base_config(num_attention_heads=4, num_key_value_heads=2), S=6, split=3, layout="old"),
    case("bad_old_layout_renamed", "MID layout (small-doge's converter output): OLD tensors under the HF 4.57 "
         "names: A [H], dt_proj [H, KV*hd], no q_norm/k_norm; H = 2*KV. Bias per query head; keep_window_size 2048 "
         ">= S so MID's per-query-head top-k does not trigger; decode split 3",
         base_config(num_attention_heads=4, num_key_value_heads=2), S=6, split=3, layout="mid"),
    # ---- OLD (remote-code V1) layout and math, doge-legacy.md 2-3 -------------------------------------------------
    case("old_dense", "OLD dense, released-style config (auto_map, hidden_bias false, dynamic_mask_ratio 0.0, "
         "transformers 4.48.1, tied, rope dynamic 4 / 2048); GQA H=4, KV=2: A [4], dt_proj [4, 16], bias per QUERY "
         "head, no q/k norm; decode split 4",
         old_config(), S=10, split=4, layout="old"),
    case("old_long", "OLD dense, keep_window_size 8 and S 30: OLD ignores keep_window_size (no top-k at any T, "
         "all allowed keys attend); rope dynamic 4 / 2048 (no growth) so decode (split 6) == prefill",
         old_config(keep_window_size=8), S=30, split=6, layout="old"),
    case("old_dynamic_rope", "OLD dense, rope_scaling dynamic factor 4, max_position_embeddings 16 "
         "(original_max_position_embeddings 16), head_dim 16, S 40: prefill uses the base for seq_len 40; decode "
         "split 10 grows the base each step past position 16 (cached keys not re-rotated)",
         old_config(max_position_embeddings=16, hidden_size=64,
                    rope_scaling={"factor": 4.0, "original_max_position_embeddings": 16, "rope_type": "dynamic"}),
         S=40, split=10, layout="old"),
    case("old_biases", "OLD dense with hidden_bias true: .bias on q,k,v,o,dt_proj [H] and gate,up,down; "
         "tensor data shuffled; decode split 4",
         old_config(hidden_bias=True, vocab_size=112), S=10, split=4, layout="old", data="shuffled"),
    case("old_moe_hf", "OLD router-era CDMoE E=16 (4x4 keys) top_k 4, no router_gate.bias, shared expert "
         "feed_forward.{gate,up,down}_proj; routing \"hf\" (== HF DogeCDMoE, norm_topk_prob false, view(2,N,K) "
         "cross-token reinterpretation per call); S 9, decode split 4",
         old_config(is_moe=True, num_experts=16, num_experts_per_tok=4), S=9, split=4, layout="old",
         options={"moe_routing": "hf"}),
    case("old_moe_legacy", "OLD router-era CDMoE E=36 (6x6) top_k 3 WITH router_gate.bias [12]; routing "
         "\"legacy_2025_03\": (v0, i0) = sort_desc(Rx[n]) of the first view(2,N,K) half only, "
         "grid[a*K+b] = v0[a] + float(i0[b]), top_k over the grid, expert id = grid position, weights = softmax of "
         "the top_k grid scores; near-ties guarded in the Rx sort and the grid top_k; S 9, decode split 4",
         old_config(is_moe=True, num_experts=36, num_experts_per_tok=3), S=9, split=4, layout="old",
         options={"moe_routing": "legacy_2025_03"}, router_bias=True),
    case("old_bf16", "OLD dense, all tensors stored BF16 (torch_dtype bfloat16); reference = fp32 compute on the "
         "bf16 values",
         old_config(vocab_size=120, torch_dtype="bfloat16"), S=10, split=4, layout="old", dtype="BF16"),
    # ---- legacy checkpoints the engine must refuse ----------------------------------------------------------------
    case("err_pre_router_moe", "OLD names, is_moe with the Feb-2025 pre-router CDMoE: feed_forward.queries_proj."
         "weight [8, D] and feed_forward.keys [2, 4, 4] (expert_retrieval_size 8), no router_gate",
         old_config(is_moe=True, num_experts=16, num_experts_per_tok=4, expert_retrieval_size=8), S=6,
         layout="old", variant="pre_router", expect_error="pre-router CDMoE"),
    case("err_dt_proj_dec2024", "OLD names with the V0/Dec-2024 dt_proj [H, D] = [4, 32] (D 32 != KV*hd 16); "
         "A [H]; V1-style config",
         old_config(), S=6, layout="old", variant="dt_proj_dec2024", expect_error="dt_proj"),
    case("err_v0_config", "config with V0-era fields (inner_values_retrieval_size, num_inner_values, "
         "cross_domain_intermediate_size; no keep_window_size, transformers 4.46.3); tensors are a valid V1 OLD "
         "layout, so only the config makes it V0",
         old_config(inner_values_retrieval_size=8, num_inner_values=1, cross_domain_intermediate_size=64,
                    transformers_version="4.46.3"), S=6, layout="old", omit=("keep_window_size",),
         expect_error="V0"),
    case("err_doge2", "model_type doge2 (Doge2ForCausalLM, transformers 4.51.3); tensors are a valid HF 4.57 doge "
         "layout, so only model_type forbids it",
         base_config(model_type="doge2", architectures=["Doge2ForCausalLM"], transformers_version="4.51.3"),
         S=6, expect_error="doge2"),
    case("err_mask_ratio", "OLD layout and config with dynamic_mask_ratio 0.2 (kthvalue masking, non-causal within a "
         "call)",
         old_config(dynamic_mask_ratio=0.2), S=6, layout="old", expect_error="dynamic_mask_ratio"),
    case("err_partial_qk_norm", "HF 4.57 layout (A [KV]) but self_attn.q_norm/k_norm only in layer 0 of 2",
         base_config(), S=6, variant="partial_qk_norm", expect_error="q_norm"),
]


# ------------------------------------------------------------------------------------------------
# Building one case
# ------------------------------------------------------------------------------------------------

ARGMAX_REL_GAP = 1e-3
SELECT_REL_GAP = 1e-4
MAX_ATTEMPTS = 200


def make_ids(c, cfg, rng):
    S, V = c["S"], cfg.vocab_size
    special = {0, 1, 2, cfg.pad_token_id}
    pool = np.array([t for t in range(V) if t not in special])
    ids = [int(t) for t in rng.choice(pool, size=S)]
    if c["ids"] == "bos":
        ids[0] = 0
    elif c["ids"] == "pad_mid_and_end":
        ids[S // 2] = ids[-1] = ids[-2] = cfg.pad_token_id
    elif c["ids"] == "last_zero":
        ids[-1] = 0
    return ids


def argmax_gap(logits):
    x = np.atleast_2d(logits)
    s = np.sort(x, axis=-1)
    return float(np.min(s[:, -1] - s[:, -2]) / np.max(np.abs(x)))


def build(c, attempt):
    """Generate weights/ids/reference for one attempt; returns a dict or None if a near-tie check fails."""
    cfg = Config(c["config"])
    cfg.embed_std = c["embed_std"]
    seed = (zlib.crc32(c["name"].encode()) % 100000) * 1000 + attempt
    rng = np.random.default_rng(seed)
    dtype_of = c["dtype"] if callable(c["dtype"]) else (lambda n, d=c["dtype"]: d)
    specs = specs_of(c, cfg)
    tensors = make_weights(specs, rng, dtype_of)
    ids = make_ids(c, cfg, rng)
    res = dict(cfg=cfg, seed=seed, specs=specs, tensors=tensors, ids=ids, rng=rng, checks={})
    if c["expect_error"]:
        return res
    w = {n: a for n, (a, _) in tensors.items()}
    prefill, probe = run_prefill(cfg, w, c["kind"], ids, c["layout"], c["options"])
    res["prefill"] = prefill
    gaps = [argmax_gap(prefill)]
    if c["kind"] == "causal":
        decode, dprobe = run_decode(cfg, w, ids, c["split"], c["layout"], c["options"])
        res["decode"] = decode
        gaps.append(argmax_gap(decode))
        probe.merge(dprobe)
    res["checks"] = {"min_argmax_rel_gap": min(gaps)}
    if probe.topk_rows:
        res["checks"]["min_topk_rel_gap"] = probe.topk_gap
        res["checks"]["topk_rows"] = probe.topk_rows
    if cfg.is_moe:
        res["checks"]["min_moe_rel_gap"] = probe.moe_gap
    if probe.sort_gap < math.inf:
        res["checks"]["min_router_sort_rel_gap"] = probe.sort_gap
    ok = (min(gaps) > ARGMAX_REL_GAP and probe.topk_gap >= SELECT_REL_GAP and probe.moe_gap >= SELECT_REL_GAP
          and probe.sort_gap >= SELECT_REL_GAP and np.all(np.isfinite(prefill)))
    return res if ok else None


def write_case(outdir, c):
    t0 = time.time()
    for attempt in range(MAX_ATTEMPTS):
        res = build(c, attempt)
        if res is not None:
            break
    else:
        raise RuntimeError("%s: no seed without near-ties in %d attempts" % (c["name"], MAX_ATTEMPTS))
    d = os.path.join(outdir, c["name"])
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(d):  # stale files from a previous run (e.g. sharded vs single file)
        os.remove(os.path.join(d, fn))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c["config"], f, indent=2)
    model_order = [n for n, _, _ in res["specs"]]
    write_checkpoint(d, res["tensors"], model_order, c["shards"], c["data"], res["rng"])
    meta = {"name": c["name"], "kind": c["kind"], "ids": res["ids"], "notes": c["notes"], "seed": res["seed"]}
    if c["layout"] != "hf":
        meta["layout"] = c["layout"]
    if c["options"]:
        meta["options"] = c["options"]
    if c["expect_error"]:
        meta.update(kind="error", expect_error=c["expect_error"], shape=None, prefill=None, decode=None)
    else:
        cfg = res["cfg"]
        shape = [c["S"], cfg.vocab_size] if c["kind"] == "causal" else [cfg.num_labels]
        res["prefill"].astype("<f4").tofile(os.path.join(d, "expected.f32"))
        meta.update(shape=shape, prefill="expected.f32", decode=None)
        if "decode" in res:
            res["decode"].astype("<f4").tofile(os.path.join(d, "expected_decode.f32"))
            meta["decode"] = {"split": c["split"], "file": "expected_decode.f32"}
        meta["checks"] = res["checks"]
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("%-28s seed %-9d attempts %-3d %5.2fs %s" % (c["name"], res["seed"], attempt + 1, time.time() - t0,
                                                        json.dumps(res["checks"])), flush=True)
    return res


# ------------------------------------------------------------------------------------------------
# Self-check
# ------------------------------------------------------------------------------------------------

def read_safetensors_independent(path):
    """Minimal independent parser: returns {name: fp32 array}; validates the layout strictly."""
    raw = open(path, "rb").read()
    assert len(raw) >= 8, path
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and 8 + n <= len(raw), (path, n)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert raw[8:8 + n].rstrip(b" ").endswith(b"}"), "header padding must be spaces"
    assert header.get("__metadata__") == {"format": "pt"}, path
    data = raw[8 + n:]
    spans, out = [], {}
    size = {"F32": 4, "BF16": 2, "F16": 2}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        assert e - b == count * size[info["dtype"]], (path, name)
        spans.append((b, e))
        chunk = data[b:e]
        if info["dtype"] == "F32":
            a = np.frombuffer(chunk, "<f4").astype(F32)
        elif info["dtype"] == "F16":
            a = np.frombuffer(chunk, "<f2").astype(F32)
        else:
            a = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(F32)
        out[name] = (a.reshape(info["shape"]), info["dtype"])
    spans.sort()
    pos = 0
    for b, e in spans:  # contiguous, non-overlapping, covering the whole data section
        assert b == pos, (path, b, pos)
        pos = e
    assert pos == len(data), (path, pos, len(data))
    return out


def load_case_tensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return read_safetensors_independent(os.path.join(d, "model.safetensors"))
    index = json.load(open(idx))
    out, total = {}, 0
    for fn in sorted(set(index["weight_map"].values())):
        part = read_safetensors_independent(os.path.join(d, fn))
        for n, (a, dt) in part.items():
            assert index["weight_map"][n] == fn, (n, fn)
            total += a.size * ITEMSIZE[dt]
        out.update(part)
    assert set(out) == set(index["weight_map"]), "index weight_map does not match the shards"
    assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
    return out


def brute_force_topk_keep(row, k):
    """Per-row selection by repeated arg-max, lowest index first on ties."""
    keep = [False] * len(row)
    for _ in range(min(k, len(row))):
        best = None
        for j, v in enumerate(row):
            if not keep[j] and (best is None or v > row[best]):
                best = j
        keep[best] = True
    return keep


def check_topk_path(outdir):
    # (1) random rows with ties and MIN entries
    r = np.random.default_rng(7)
    x = r.integers(0, 5, size=(3, 7, 13)).astype(F32)
    x[r.random(x.shape) < 0.3] = MIN
    for k in (1, 4, 8, 12, 13):
        fast = topk_keep_mask(x, k)
        for idx in np.ndindex(x.shape[:-1]):
            assert fast[idx].tolist() == brute_force_topk_keep(x[idx].tolist(), k), ("topk", k, idx)
    # (2) the masked-bias tensors of the topk_window case, recomputed from the written files
    c = next(c for c in CASES if c["name"] == "topk_window")
    d = os.path.join(outdir, c["name"])
    cfg = Config(json.load(open(os.path.join(d, "config.json"))))
    w = {n: a for n, (a, _) in load_case_tensors(d).items()}
    ids = json.load(open(os.path.join(d, "case.json")))["ids"]
    seen = []
    orig = DogeAttention.prepare_dynamic_mask

    def spy(self, dt_states, S, P):
        out = orig(self, dt_states, S, P)
        seen.append((dt_states.copy(), S, P, out))
        return out

    DogeAttention.prepare_dynamic_mask = spy
    try:
        run_prefill(cfg, w, "causal", ids)
        run_decode(cfg, w, ids, c["split"])
    finally:
        DogeAttention.prepare_dynamic_mask = orig
    W, rows = cfg.keep_window_size, 0
    for dt_states, S, P, out in seen:
        KV, T = dt_states.shape
        for g in range(KV):
            for i in range(S):
                row = [float(dt_states[g, j]) if j <= P + i else float(MIN) for j in range(T)]
                keep = brute_force_topk_keep(row, W) if T > W else [True] * T
                expect = [row[j] if keep[j] else float(MIN) for j in range(T)]
                assert np.array_equal(np.array(expect, F32), out[g, i]), ("topk_window", g, i, P)
                rows += 1
    return rows


def _case_on_disk(outdir, name):
    d = os.path.join(outdir, name)
    cfg = Config(json.load(open(os.path.join(d, "config.json"))))
    w = {n: a for n, (a, _) in load_case_tensors(d).items()}
    return cfg, w, json.load(open(os.path.join(d, "case.json")))


def _spy(cls, attr, record):
    """Replace cls.attr by a wrapper that appends (self, args, result) to `record`; returns the original."""
    orig = getattr(cls, attr)

    def wrapper(self, *args):
        out = orig(self, *args)
        record.append((self, args, out))
        return out

    setattr(cls, attr, wrapper)
    return orig


def _run_case(cfg, w, meta):
    lay, opt = meta.get("layout", "hf"), meta.get("options")
    run_prefill(cfg, w, "causal", meta["ids"], lay, opt)
    run_decode(cfg, w, meta["ids"], meta["decode"]["split"], lay, opt)


def _spied_run(outdir, name, cls, attr):
    """Runs case `name` (prefill and decode) with cls.attr spied on; returns (cfg, w, [(self, args, result)])."""
    cfg, w, meta = _case_on_disk(outdir, name)
    seen = []
    orig = _spy(cls, attr, seen)
    try:
        _run_case(cfg, w, meta)
    finally:
        setattr(cls, attr, orig)
    return cfg, w, seen


def check_old_no_topk(outdir):
    """old_long: at every T (also T > keep_window_size) every allowed key keeps exactly its bias, forbidden keys are
    MIN; the bias rows of query heads sharing a kv head differ (A/dt_proj per query head)."""
    cfg, _, seen = _spied_run(outdir, "old_long", OldDogeAttention, "dynamic_mask")
    rows = wide = 0
    for att, (dyn, S, P), out in seen:
        H, T = dyn.shape
        assert H == cfg.num_attention_heads and not np.array_equal(dyn[0], dyn[1]), "bias must be per query head"
        for i in range(S):
            allowed = np.arange(T) <= P + i
            for h in range(H):
                assert np.array_equal(out[h, i, allowed], dyn[h, allowed]), ("old_long: allowed key masked", h, i, P)
                assert np.all(out[h, i, ~allowed] == MIN), ("old_long: future key not masked", h, i, P)
            rows += 1
            wide += int(allowed.sum() > cfg.keep_window_size)
    assert wide > 0, "old_long never exceeded keep_window_size"
    return rows, wide


def legacy_routing_literal(R, N, K, top_k):
    """Line-by-line transcription of the 2025-03-13..04-14 routing on one router output R [N, 2K] (python lists,
    fp32 adds): returns [(top_k scores, expert ids)] per token."""
    flat = [F32(v) for v in np.asarray(R, F32).reshape(-1)]
    routing_weights = [[flat[(p * N + n) * K:(p * N + n + 1) * K] for n in range(N)] for p in range(2)]  # view(2,N,K)

    def topk(rows, k):  # torch.topk(k, dim=-1) of a [N, K] tensor -> (values, indices), sorted descending
        vals, idx = [], []
        for row in rows:
            order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
            vals.append([row[j] for j in order])
            idx.append(order)
        return vals, idx

    (scores_x, scores_y), (indices_x, indices_y) = [topk(rw, K) for rw in routing_weights]
    out = []
    for n in range(N):
        # all_scores = scores_x.unsqueeze(-1) + scores_y.unsqueeze(-2) -> view(-1): float32 + int64 -> float32
        all_scores = [F32(scores_x[n][a] + F32(scores_y[n][b])) for a in range(K) for b in range(K)]
        scores, indices = topk([all_scores], top_k)  # indices = grid positions, used as expert ids
        out.append((scores[0], indices[0]))
    return out


def check_moe_routings(outdir, names):
    """old_moe_legacy: vectorised legacy routing == literal transcription (exact); old_moe_hf: OldCDMoE("hf") ==
    the HF DogeCDMoE module of this file on the same inputs.  Both over every prefill/decode call."""
    msgs = []
    if "old_moe_legacy" in names:
        _, _, seen = _spied_run(outdir, "old_moe_legacy", OldCDMoE, "route")
        tokens = 0
        for moe, (x,), (scores, ids) in seen:
            assert moe.routing == "legacy_2025_03" and moe.router[1] is not None
            lit = legacy_routing_literal(linear(x, *moe.router), x.shape[0], moe.num_keys, moe.top_k)
            for n, (ls, li) in enumerate(lit):
                assert ids[n].tolist() == li and scores[n].tolist() == [float(v) for v in ls], ("legacy", n)
                tokens += 1
        msgs.append("  (g) legacy_2025_03 routing == literal transcription on %d token routings (%d calls)"
                    % (tokens, len(seen)))
    if "old_moe_hf" in names:
        cfg, w, seen = _spied_run(outdir, "old_moe_hf", OldCDMoE, "__call__")
        worst = 0.0
        for moe, (x,), out in seen:
            assert moe.routing == "hf" and moe.router[1] is None
            ref = DogeCDMoE(cfg, w, moe.prefix, Probe())(x)
            worst = max(worst, float(np.max(np.abs(out - ref)) / np.max(np.abs(ref))))
        assert worst <= 1e-6, ("old_moe_hf: OLD hf routing != HF DogeCDMoE", worst)
        msgs.append("  (h) OLD \"hf\" routing == HF DogeCDMoE on %d calls (max rel diff %.1e)" % (len(seen), worst))
    return msgs


def selfcheck(outdir, names):
    print("self-check:", flush=True)
    n_files = 0
    equal = set()
    for c in CASES:
        if c["name"] not in names:
            continue
        d = os.path.join(outdir, c["name"])
        meta = json.load(open(os.path.join(d, "case.json")))
        tensors = load_case_tensors(d)  # (a) independent parser, sizes/offsets/coverage
        n_files += len([f for f in os.listdir(d) if f.endswith(".safetensors")])
        cfg = Config(json.load(open(os.path.join(d, "config.json"))))
        cfg.embed_std = c["embed_std"]
        expect_names = {n for n, _, _ in specs_of(c, cfg)}
        assert set(tensors) == expect_names, (c["name"], set(tensors) ^ expect_names)
        assert meta.get("layout", "hf") == c["layout"] and meta.get("options") == c["options"], c["name"]
        if meta["kind"] == "error":
            assert meta["expect_error"] == c["expect_error"] and not any(
                f.startswith("expected") for f in os.listdir(d)), c["name"]
            continue
        # (d) recompute from what is on disk: must reproduce the expected files exactly
        w = {n: a for n, (a, _) in tensors.items()}
        lay, opt = meta.get("layout", "hf"), meta.get("options")
        ref = np.fromfile(os.path.join(d, meta["prefill"]), "<f4").reshape(meta["shape"])
        got, _ = run_prefill(cfg, w, meta["kind"], meta["ids"], lay, opt)
        assert np.array_equal(got, ref), (c["name"], "prefill not reproducible from disk")
        if meta["decode"]:
            dref = np.fromfile(os.path.join(d, meta["decode"]["file"]), "<f4").reshape(meta["shape"])
            dgot, _ = run_decode(cfg, w, meta["ids"], meta["decode"]["split"], lay, opt)
            assert np.array_equal(dgot, dref), (c["name"], "decode not reproducible from disk")
            # (b) decode == prefill where HF semantics make them equal
            # (top-k is per query row over the keys it may see, so it does not break this equality;
            #  OLD/MID: dense causal + additive bias, the same argument without top-k)
            S = len(meta["ids"])
            static_rope = cfg.rope_type not in ("dynamic", "longrope") or (
                cfg.rope_type == "dynamic" and S <= cfg.max_position_embeddings)
            if static_rope and not cfg.is_moe:
                rel = float(np.max(np.abs(dref - ref)) / np.max(np.abs(ref)))
                assert rel <= 1e-5, (c["name"], "decode != prefill", rel)
                equal.add(c["name"])
                print("  %-28s decode == prefill (max rel diff %.2e)" % (c["name"], rel))
            else:
                rel = float(np.max(np.abs(dref - ref)) / np.max(np.abs(ref)))
                assert rel > 1e-4, (c["name"], "decode should differ from prefill here", rel)
                print("  %-28s decode differs from prefill as expected (max rel diff %.2e)" % (c["name"], rel))
    print("  (a) %d safetensors files re-read and validated" % n_files)
    if "topk_window" in names:
        print("  (c) top-k path matches brute force on %d rows" % check_topk_path(outdir))
    # (e) OLD dense without RoPE growth: decode must equal prefill (no top-k, no cross-token routing)
    for n in ("old_dense", "old_long"):
        if n in names:
            assert n in equal, (n, "OLD dense decode == prefill was not checked")
    if names & {"old_dense", "old_long"}:
        print("  (e) OLD dense decode == prefill: %s" % ", ".join(sorted(names & {"old_dense", "old_long"})))
    if "old_long" in names:
        print("  (f) old_long: no top-k, exact per-query-head bias on %d mask rows (%d rows with more keys than "
              "keep_window_size)" % check_old_no_topk(outdir))
    for m in check_moe_routings(outdir, names):
        print(m)
    # a few unit checks of helpers
    x = np.array([1.0, 1.00390625, 1.0078125, 1.01171875, 3.1415927, -2.5e-3], F32)
    y = round_bf16(x)
    assert y.tolist()[:4] == [1.0, 1.0, 1.0078125, 1.015625], y  # ties to even
    print("self-check OK", flush=True)


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--selfcheck", action="store_true", help="after generating, validate the output")
    ap.add_argument("--only", nargs="*", help="generate only these cases")
    args = ap.parse_args()
    t0 = time.time()
    os.makedirs(args.outdir, exist_ok=True)
    names = [c["name"] for c in CASES]
    todo = args.only or names
    unknown = set(todo) - set(names)
    if unknown:
        sys.exit("unknown case(s): %s" % ", ".join(sorted(unknown)))
    for c in CASES:
        if c["name"] in todo:
            write_case(args.outdir, c)
    present = [n for n in names if os.path.exists(os.path.join(args.outdir, n, "case.json"))]
    with open(os.path.join(args.outdir, "index.json"), "w") as f:
        json.dump(present, f, indent=2)
    print("generated %d cases in %.1fs" % (len(todo), time.time() - t0), flush=True)
    if args.selfcheck:
        selfcheck(args.outdir, set(todo))
    print("total %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
