#!/usr/bin/python3
"""doge_torch.py - a PyTorch 1.13 implementation of Hugging Face DogeForCausalLM (transformers 4.57, eager
attention), written from /work/shared/doge-spec.md sections 1-7, for training and checking doge-mini.

What is implemented (spec section in brackets):
  * DogeConfig: the 4.57 fields (1); dense MLP only (is_moe must be false), default RoPE only (no rope_scaling).
  * DogeRMSNorm: fp32 statistics, cast back to the input dtype, then times the weight (3).
  * rotary embedding: default inv_freq, fp32 table, rotate_half ("half-split") layout (4.1-4.3).
  * DogeAttention: q_norm/k_norm over head_dim before RoPE, GQA, dynamic mask attention: bias
    exp(A * softplus(dt_proj(v))) per (kv head, key), causal positions overwritten with finfo.min, top-k of
    keep_window_size per (kv head, query row) when the key length T > keep_window_size, repeat_kv, eager
    softmax in fp32 (5.2-5.4). A KV cache (a list of (K, V) per layer) supports incremental decoding (5.5).
  * DogeMLP (SwiGLU), decoder layer with the bare input_residual / post_attention_residual vectors, final
    norm, lm_head tied to embed_tokens (2, 6.1).
  * state_dict keys are exactly the HF 4.57 names of spec 7 (no lm_head.weight: the head is tied).
  * save_hf / load_hf: config.json + model.safetensors (F32, F16 or BF16) written and read without the
    safetensors package; prefill_logits(dir, ids) returns fp32 logits of one prefill call.

CLI (prints like `node js/cli.js logits`):
  /usr/bin/python3 tools/doge_torch.py logits --model models/doge-mini --ids 1,2,3
      -> {"shape": [S, V], "logits": [...]}  (all positions, row-major, fp32, eager semantics)
  --ties lower_index: equal biases (frequent in layer 0, see DogeAttention.topk_ties) are made bit-equal and
  the top-k keeps the lower key index among them (the wasm engine's rule) instead of torch.topk's
  implementation-defined choice on GEMM-rounded values (HF).

Deterministic: no randomness except the weight initialisation, which uses torch's global generator (seed it).
"""
import argparse
import dataclasses
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class DogeConfig:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    hidden_dropout: float = 0.0
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    rope_scaling: dict = None
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    sliding_window: int = None
    keep_window_size: int = 128
    is_moe: bool = False
    num_experts: int = 16384
    num_experts_per_tok: int = 64
    norm_topk_prob: bool = False
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    bos_token_id: int = 0
    eos_token_id: int = 1
    pad_token_id: int = 2

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if "head_dim" not in d:                       # spec P16: getattr(config, "head_dim", D // H)
            cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
        if cfg.num_key_value_heads is None:
            cfg.num_key_value_heads = cfg.num_attention_heads
        return cfg

    def to_hf_dict(self, torch_dtype="float32"):
        d = {"architectures": ["DogeForCausalLM"], "model_type": "doge"}
        d.update(dataclasses.asdict(self))
        d["torch_dtype"] = torch_dtype
        d["transformers_version"] = "4.57.0"
        return d


class DogeRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(input_dtype)


class DogeRotaryEmbedding(nn.Module):
    """Default RoPE (rope_type "default"): inv_freq[i] = 1 / theta^(2i/hd); attention_scaling = 1."""

    def __init__(self, config):
        super().__init__()
        if config.rope_scaling:
            raise NotImplementedError("doge_torch.py implements the default RoPE only (rope_scaling must be null)")
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        pos = position_ids[:, None, :].float()
        freqs = (inv @ pos).transpose(1, 2)                  # [B, S, hd/2], fp32
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)           # [B, 1, S, hd]: broadcast over heads
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def rowwise_linear(x, linear):
    """linear(x) with one reduction per output element, the same for every row (no GEMM tiling)."""
    y = (x.unsqueeze(-2) * linear.weight).sum(-1)
    return y + linear.bias if linear.bias is not None else y


def repeat_kv(x, n_rep):
    """[B, KV, T, d] -> [B, KV * n_rep, T, d]; query head h uses kv head h // n_rep."""
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


class DogeAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim ** -0.5
        self.keep_window_size = config.keep_window_size
        self.sliding_window = config.sliding_window
        # Ties in the top-k (spec 5.3/P2: implementation-defined in HF). In layer 0, v (and so the bias)
        # depends on the token id only, so every repeated token has an equal bias in exact arithmetic; in
        # float, GEMM kernels can round equal rows differently (remainder tiles, 1-row decode calls), which
        # turns such ties into rounding-noise orderings.
        # "torch": torch.topk and GEMMs exactly as HF. "lower_index": v_proj and dt_proj are computed row by
        # row (equal inputs -> bit-equal biases, prefill and decode alike) and among equal values the lower
        # key index wins (the wasm engine's rule): a deterministic reference, same math.
        self.topk_ties = "torch"
        bias = config.attention_bias
        d, hd = config.hidden_size, self.head_dim
        self.q_proj = nn.Linear(d, self.num_heads * hd, bias=bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * hd, bias=bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * hd, bias=bias)
        self.A = nn.Parameter(torch.zeros(self.num_kv_heads))
        self.dt_proj = nn.Linear(self.num_kv_heads * hd, self.num_kv_heads, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * hd, d, bias=bias)
        self.q_norm = DogeRMSNorm(hd, eps=config.rms_norm_eps)
        self.k_norm = DogeRMSNorm(hd, eps=config.rms_norm_eps)

    def prepare_dynamic_mask(self, hidden_states, dt_states, allowed):
        """dt_states [B, KV, T]; allowed [S, T] bool (causal). Returns the additive mask [B, KV, S, T]."""
        min_dtype = torch.finfo(hidden_states.dtype).min
        s = hidden_states.shape[1]
        attn_mask = dt_states[:, :, None, :].expand(-1, -1, s, -1)
        attn_mask = attn_mask.masked_fill(~allowed[None, None], min_dtype)
        if attn_mask.shape[-1] > self.keep_window_size:
            if self.topk_ties == "lower_index":
                topk_indices = torch.sort(attn_mask, dim=-1, descending=True, stable=True).indices
                topk_indices = topk_indices[..., :self.keep_window_size]
            else:
                topk_indices = torch.topk(attn_mask, self.keep_window_size, dim=-1, largest=True, sorted=False).indices
            active = torch.zeros_like(attn_mask).scatter(-1, topk_indices, 1.0)
            attn_mask = attn_mask.masked_fill(active == 0.0, min_dtype)
        return attn_mask

    def forward(self, hidden_states, cos, sin, past_len, cache=None):
        b, s, _ = hidden_states.shape
        hd = self.head_dim
        q = self.q_norm(self.q_proj(hidden_states).view(b, s, -1, hd)).transpose(1, 2)
        k = self.k_norm(self.k_proj(hidden_states).view(b, s, -1, hd)).transpose(1, 2)
        exact = self.topk_ties == "lower_index"
        v = (rowwise_linear(hidden_states, self.v_proj) if exact else self.v_proj(hidden_states))
        v = v.view(b, s, -1, hd).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache is not None:                                  # cache: list of (K, V) per layer
            if len(cache) > self.layer_idx:
                pk, pv = cache[self.layer_idx]
                k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
                cache[self.layer_idx] = (k, v)
            else:
                cache.append((k, v))
        t = k.shape[2]

        # dynamic mask from the value states of every key (cache + current), spec 5.3
        v_flat = v.transpose(1, 2).reshape(b, t, -1)
        dt = rowwise_linear(v_flat, self.dt_proj) if exact else self.dt_proj(v_flat)   # [B, T, KV]
        dt = torch.exp(self.A * F.softplus(dt)).transpose(-1, -2)            # [B, KV, T]
        qpos = torch.arange(past_len, past_len + s, device=hidden_states.device)[:, None]
        kpos = torch.arange(t, device=hidden_states.device)[None, :]
        allowed = kpos <= qpos
        if self.sliding_window is not None:
            allowed = allowed & (kpos > qpos - self.sliding_window)
        mask = repeat_kv(self.prepare_dynamic_mask(hidden_states, dt, allowed), self.num_key_value_groups)

        # eager attention
        k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(out)


class DogeMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, i, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(d, i, bias=bias)
        self.up_proj = nn.Linear(d, i, bias=bias)
        self.down_proj = nn.Linear(i, d, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DogeDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        if config.is_moe:
            raise NotImplementedError("doge_torch.py implements the dense MLP only")
        d = config.hidden_size
        self.input_layernorm = DogeRMSNorm(d, eps=config.rms_norm_eps)
        self.self_attn = DogeAttention(config, layer_idx)
        self.input_residual = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm = DogeRMSNorm(d, eps=config.rms_norm_eps)
        self.mlp = DogeMLP(config)
        self.post_attention_residual = nn.Parameter(torch.ones(d))
        self.hidden_dropout = config.hidden_dropout

    def forward(self, x, cos, sin, past_len, cache=None):
        h = self.self_attn(self.input_layernorm(x), cos, sin, past_len, cache)
        h = F.dropout(h, p=self.hidden_dropout, training=self.training)
        x = self.input_residual * x + h
        h = self.mlp(self.post_attention_layernorm(x))
        h = F.dropout(h, p=self.hidden_dropout, training=self.training)
        return self.post_attention_residual * x + h


class DogeModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList([DogeDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = DogeRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = DogeRotaryEmbedding(config)

    def forward(self, input_ids, cache=None):
        past_len = cache[0][0].shape[2] if cache else 0
        x = self.embed_tokens(input_ids)
        position_ids = torch.arange(past_len, past_len + input_ids.shape[1], device=input_ids.device)[None, :]
        cos, sin = self.rotary_emb(x, position_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, past_len, cache)
        return self.norm(x)


class DogeForCausalLM(nn.Module):
    """HF DogeForCausalLM with tie_word_embeddings=true: lm_head is model.embed_tokens.weight."""

    def __init__(self, config):
        super().__init__()
        if not config.tie_word_embeddings:
            raise NotImplementedError("doge_torch.py implements the tied head only")
        self.config = config
        self.model = DogeModel(config)
        self.init_weights()

    def init_weights(self):
        """HF DogePreTrainedModel._init_weights: normal(0, initializer_range) for Linear/Embedding, zero biases,
        ones for norms and residual vectors, A = 0."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
            elif isinstance(m, DogeAttention):
                nn.init.zeros_(m.A)

    def forward(self, input_ids, cache=None):
        h = self.model(input_ids, cache)
        return F.linear(h, self.model.embed_tokens.weight)  # [B, S, V]


def set_topk_ties(model, mode):
    """mode "torch" (HF: torch.topk) or "lower_index" (ties to the lower key index, like the wasm engine)."""
    assert mode in ("torch", "lower_index")
    for m in model.modules():
        if isinstance(m, DogeAttention):
            m.topk_ties = mode
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# safetensors, written and read by hand: 8-byte LE header length, JSON header, raw little-endian data

_ST_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def write_safetensors(path, tensors, metadata=None):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t, dtype = tensors[name]
        tt = t.detach().to("cpu", _ST_DTYPES[dtype][0]).contiguous()
        raw = (tt.view(torch.int16) if dtype == "BF16" else tt).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(tt.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in chunks:
            f.write(raw)


def read_safetensors(path):
    """Returns {name: fp32 tensor}."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = data[base + a: base + b]
        if info["dtype"] == "F32":
            arr = torch.from_numpy(np.frombuffer(buf, dtype="<f4").copy())
        elif info["dtype"] == "F16":
            arr = torch.from_numpy(np.frombuffer(buf, dtype="<f2").astype(np.float32))
        elif info["dtype"] == "BF16":
            arr = torch.from_numpy(np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(torch.float32)
        else:
            raise ValueError("unsupported dtype %s for %s" % (info["dtype"], name))
        out[name] = arr.reshape(info["shape"])
    return out


def save_hf(model, out_dir, dtype="F16"):
    """Writes out_dir/config.json and out_dir/model.safetensors (all tensors in `dtype`: F32, F16 or BF16).
    lm_head.weight is not written: the head is tied to model.embed_tokens.weight."""
    os.makedirs(out_dir, exist_ok=True)
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.config.to_hf_dict(torch_dtype), f, indent=2)
        f.write("\n")
    tensors = {k: (v, dtype) for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "pt"})


def load_hf(model_dir):
    """Reads config.json + model.safetensors into an fp32 DogeForCausalLM in eval mode."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = DogeConfig.from_dict(json.load(f))
    model = DogeForCausalLM(config)
    state = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    state.pop("lm_head.weight", None)           # tied; a file may carry the duplicate
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError("state_dict mismatch: missing %s, unexpected %s" % (missing, unexpected))
    return model.eval()


@torch.no_grad()
def prefill_logits(model_or_dir, ids, ties=None):
    """fp32 logits [S, V] of one prefill call over `ids` (no cache), eager semantics. ties: None (keep the
    model's setting, "torch" for a loaded model), "torch" or "lower_index" (see DogeAttention.topk_ties)."""
    model = load_hf(model_or_dir) if isinstance(model_or_dir, str) else model_or_dir
    if ties:
        set_topk_ties(model, ties)
    x = torch.tensor([list(ids)], dtype=torch.long)
    return model(x)[0].float()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits", help='print {"shape": [S, V], "logits": [...]} for one prefill')
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True, help="comma-separated token ids")
    lg.add_argument("--threads", type=int, default=2)
    lg.add_argument("--ties", choices=["torch", "lower_index"], default="torch",
                    help="top-k tie rule: torch.topk as HF (default) or lower key index first (the wasm engine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ids = [int(t) for t in args.ids.split(",") if t.strip()]
    logits = prefill_logits(args.model, ids, ties=args.ties)
    sys.stdout.write(json.dumps({"shape": list(logits.shape), "logits": logits.reshape(-1).tolist()}) + "\n")


if __name__ == "__main__":
    main()
