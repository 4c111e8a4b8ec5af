#!/usr/bin/python3
"""train.py - train doge-mini, the small embedded default model of doge-wasm, on build/corpus/train.ids.

Pipeline (from the repository root; see models/doge-mini/TRAINING.md for the exact run):
  bash tools/corpus/fetch_corpus.sh          # build/corpus/{train,heldout}.txt
  node tools/train_tokenizer.js              # models/doge-mini/tokenizer.json, tokenizer_config.json
  node tools/encode_corpus.js                # build/corpus/{train,heldout}.ids (uint16)
  /usr/bin/python3 tools/train.py            # models/doge-mini/{config.json,model.safetensors,...}
The defaults are the settings of the shipped model (4 layers, hidden 256, 4 heads x 64, 2 kv heads,
intermediate 512, keep_window_size 128, 900 steps x 16 x 256 tokens, lr 3e-3 -> 3e-4), sized from a
throughput trial (`--trial-seconds 60`: ~1350 tokens/s here) to train in about 45 minutes on 2 cores.

Training: random windows of seq_len + 1 tokens from the packed token stream (documents are
<|begin_of_text|> ... <|end_of_text|>, concatenated), next-token cross-entropy, AdamW (betas 0.9/0.95,
weight decay 0.1 on matrices only), linear warmup then cosine decay to min_lr, gradient clipping at 1.0,
fp32, torch.set_num_threads(2). Everything is seeded (--seed, default 1234): torch's generator drives the
initialisation, a numpy Generator the window offsets. Held-out cross-entropy (nats/token) is printed every
--eval-every steps on a fixed subset of held-out windows, and on all held-out windows at the end.
--trial-seconds S runs S seconds of training only and prints the throughput (no checkpoint).

The checkpoint is written in F16 by doge_torch.save_hf, with generation_config.json, and the tokenizer
files are expected in --out already (tools/train_tokenizer.js writes them there). At the end it writes
OUT/TRAINING.md (commands, seed, wall time, parameter and token counts, metrics) from build/train_summary.json
plus, when present, build/eval_summary.json (tools/eval_model.py) and build/wasm_check.txt
(tools/check_torch_vs_wasm.py); `--report-only` rewrites it after those have run.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from doge_torch import DogeConfig, DogeForCausalLM, count_parameters, load_hf, save_hf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GENERATION_CONFIG = {
    "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2,
    "do_sample": True, "temperature": 0.8, "top_p": 0.9, "top_k": 50,
    "repetition_penalty": 1.1, "max_new_tokens": 200,
    "transformers_version": "4.57.0",
}


def load_ids(split):
    return np.fromfile(os.path.join(ROOT, "build", "corpus", split + ".ids"), dtype="<u2").astype(np.int64)


def heldout_windows(ids, seq_len):
    """Non-overlapping windows of seq_len + 1 tokens (the last token of one is the first of the next)."""
    n = (len(ids) - 1) // seq_len
    return np.stack([ids[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)])


@torch.no_grad()
def evaluate(model, windows, batch=16):
    """Mean next-token cross-entropy (nats/token) over all windows."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = torch.from_numpy(windows[i:i + batch])
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    model.train()
    return total / count


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def write_report(out_dir):
    """models/doge-mini/TRAINING.md from build/train_summary.json (this script), build/eval_summary.json
    (tools/eval_model.py) and build/wasm_check.txt (tools/check_torch_vs_wasm.py) and build/tokenizer_check.txt (tools/train_tokenizer.js), whichever exist."""
    def load(name):
        path = os.path.join(ROOT, "build", name)
        return json.load(open(path)) if os.path.exists(path) and name.endswith(".json") else \
            (open(path).read().strip() if os.path.exists(path) else None)
    tr, ev, wasm = load("train_summary.json"), load("eval_summary.json"), load("wasm_check.txt")
    tok = load("tokenizer_check.txt")
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    L = ["# doge-mini: how it was trained", "",
         "The embedded default model of doge-wasm: a Hugging Face `DogeForCausalLM` (transformers 4.57 layout)",
         "trained from scratch on this machine (2 CPU cores, PyTorch %s from Debian, fp32), offline." % tr["torch"], "",
         "## Reproduce (from the repository root)", "", "```sh",
         "apt-get update && apt-get install -y python3-torch libopenblas0-pthread python3-numpy",
         "bash tools/corpus/fetch_corpus.sh            # build/corpus/{train,heldout}.txt (Bible, fortunes, SOTU, Moby-Dick)",
         "node tools/train_tokenizer.js                # tokenizer.json + tokenizer_config.json, parity check",
         "node tools/encode_corpus.js                  # build/corpus/{train,heldout}.ids",
         "nohup /usr/bin/python3 tools/train.py %s > /tmp/train.log 2>&1 &" % " ".join(tr["argv"]),
         "/usr/bin/python3 tools/eval_model.py         # held-out CE, unigram CE, samples",
         "/usr/bin/python3 tools/check_torch_vs_wasm.py  # needs `make all`; writes build/wasm_check.txt",
         "/usr/bin/python3 tools/train.py --report-only   # rewrites this file", "```", "",
         "Seed %d everywhere (weight init: torch.manual_seed; window offsets: numpy default_rng). Fixed thread" % tr["seed"],
         "count (2); different BLAS builds or thread counts can change low-order bits of the result.", "",
         "## Model", "",
         "| field | value |", "|---|---|"]
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "keep_window_size", "max_position_embeddings", "rope_theta",
              "rope_scaling", "tie_word_embeddings", "torch_dtype"):
        L.append("| %s | %s |" % (k, json.dumps(cfg[k])))
    L += ["", "Parameters: %s (tied head). `model.safetensors`: %s bytes (F16)." % (format(tr["params"], ","), format(size, ",")),
          "", "## Data and training", "",
          "* Corpus: %s training tokens, %s held-out tokens (held-out = 2%% of the documents of every source,"
          % (format(tr["train_tokens"], ","), format(tr["heldout_tokens"], ",")),
          "  chosen by document, never trained on; see build/corpus/manifest.tsv).",
          "* Tokens seen: %s (%.2f epochs); 256-token random windows; AdamW (0.9, 0.95), weight decay 0.1,"
          % (format(tr["tokens_seen"], ","), tr["tokens_seen"] / tr["train_tokens"]),
          "  warmup + cosine learning rate, gradient clipping 1.0, A initialised to 0 and trained.",
          "* Training wall time: %.1f min." % (tr["train_seconds"] / 60),
          "* Held-out CE during training (fixed subset of windows): " +
          ", ".join("step %d: %.3f" % (s, c) for s, c in tr["eval_history"]),
          "* Held-out CE at the end (fp32 weights, all windows): %.4f nats/token." % tr["heldout_ce_fp32"]]
    L += ["", "## Tokenizer", "",
          "Byte-level BPE, %d tokens (6 Llama-3-style special tokens at ids 0-5, 256 byte symbols, merges), trained"
          % cfg["vocab_size"],
          "on train.txt by the Rust `tokenizers` (npm tokenizers@0.23.2) BpeTrainer; Split(Llama-3 regex) + ByteLevel",
          "pre-tokenizer, ByteLevel decoder, TemplateProcessing prepends `<|begin_of_text|>`. tools/train_tokenizer.js:"]
    if tok:
        L += ["", "```", tok, "```"]
    if ev:
        L += ["", "## Evaluation (tools/eval_model.py, saved F16 checkpoint, fp32 compute)", "",
              "| metric | value |", "|---|---|",
              "| held-out cross-entropy | %.4f nats/token (perplexity %.1f) |" % (ev["model_ce"], math.exp(ev["model_ce"])),
              "| unigram cross-entropy (add-one, train counts) | %.4f nats/token |" % ev["unigram_ce"],
              "| ratio model / unigram | %.4f (target <= 0.65: %s) |" % (ev["ratio"], "met" if ev["ratio"] <= 0.65 else "missed"),
              "| predicted held-out tokens | %s |" % format(ev["heldout_predicted_tokens"], ","),
              "| KV-cache decode vs prefill, 300 tokens, ties lower_index / torch (HF) | %.1e / %.1e relative |"
              % (ev["cache_check_rel_diff"]["lower_index"], ev["cache_check_rel_diff"]["torch"]), "",
              "Continuations (60 new tokens at most; sampled with generation_config.json, seed %d):" % ev["seed"], ""]
        for smp in ev["samples"]:
            L += ["**%s, %s**" % (smp["mode"], json.dumps(smp["prompt"])), "", "```", smp["text"], "```", ""]
    if wasm:
        L += ["## PyTorch reference vs the wasm engine (tools/check_torch_vs_wasm.py)", "",
              "Prefill logits of the first S held-out tokens, `node js/cli.js logits` vs tools/doge_torch.py (fp32).",
              "Beyond keep_window_size the top-k of the dynamic mask decides which keys survive. In layer 0 the",
              "bias of a key depends on its token id only, so repeated tokens tie exactly; torch's GEMMs round",
              "equal rows differently (remainder tiles, 1-row decode calls) and torch.topk then picks among the",
              "ties by rounding noise (ties=torch, what HF does). With ties=lower_index doge_torch computes",
              "v_proj/dt_proj row by row (bit-equal biases for equal tokens) and keeps the lower key index among",
              "equal values, the wasm engine's rule: the comparison is then at float rounding level.", "",
              "```", wasm, "```", ""]
    with open(os.path.join(out_dir, "TRAINING.md"), "w") as f:
        f.write("\n".join(L).rstrip() + "\n")
    print("wrote %s" % os.path.join(out_dir, "TRAINING.md"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="models/doge-mini")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trial-seconds", type=float, default=0)
    p.add_argument("--report-only", action="store_true",
                   help="only (re)write OUT/TRAINING.md from build/{train,eval}_summary.json and build/wasm_check.txt")
    # model shape
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--keep-window", type=int, default=128)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--init", default=None,
                   help="continue training from this checkpoint directory (its config wins over the size flags)")
    args = p.parse_args()

    if args.report_only:
        write_report(os.path.join(ROOT, args.out))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out_dir = os.path.join(ROOT, args.out)

    with open(os.path.join(out_dir, "tokenizer.json")) as f:
        vocab_size = len(json.load(f)["model"]["vocab"])
    config = DogeConfig(vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
                        num_hidden_layers=args.layers, num_attention_heads=args.heads,
                        num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                        max_position_embeddings=args.max_pos, keep_window_size=args.keep_window)
    model = load_hf(os.path.join(ROOT, args.init)) if args.init else DogeForCausalLM(config)
    n_params = count_parameters(model)

    train_ids, held_ids = load_ids("train"), load_ids("heldout")
    held = heldout_windows(held_ids, args.seq_len)
    held_subset = held[np.linspace(0, len(held) - 1, min(args.eval_windows, len(held))).astype(int)]
    print("params %d | train tokens %d | heldout tokens %d (%d windows) | tokens/step %d | steps %d"
          % (n_params, len(train_ids), len(held_ids), len(held), args.batch * args.seq_len, args.steps), flush=True)

    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    t0 = time.time()
    offsets_max = len(train_ids) - args.seq_len - 1
    model.train()
    smooth = None
    history = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        starts = rng.integers(0, offsets_max, size=args.batch)
        batch = torch.from_numpy(np.stack([train_ids[s:s + args.seq_len + 1] for s in starts]))
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        elapsed = time.time() - t0
        if step % 25 == 0 or step == args.steps - 1:
            tok_s = (step + 1) * args.batch * args.seq_len / elapsed
            print("step %5d | loss %.4f (avg %.4f) | lr %.2e | gnorm %.2f | %.0f tok/s | %.1f min"
                  % (step, loss.item(), smooth, lr_at(step, args), gnorm, tok_s, elapsed / 60), flush=True)
        if args.trial_seconds and elapsed > args.trial_seconds:
            print("trial: %d steps in %.1f s = %.2f s/step, %.0f tok/s"
                  % (step + 1, elapsed, elapsed / (step + 1), (step + 1) * args.batch * args.seq_len / elapsed))
            return
        if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            ce = evaluate(model, held_subset)
            history.append((step + 1, ce))
            print("eval step %5d | heldout-subset CE %.4f nats/token" % (step + 1, ce), flush=True)

    train_seconds = time.time() - t0
    ce_full = evaluate(model, held)
    print("final | heldout CE %.4f nats/token (all %d windows) | train time %.1f min"
          % (ce_full, len(held), train_seconds / 60), flush=True)

    save_hf(model, out_dir, dtype="F16")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write("\n")
    summary = {
        "seed": args.seed, "argv": sys.argv[1:], "params": n_params, "train_tokens": int(len(train_ids)),
        "heldout_tokens": int(len(held_ids)), "tokens_seen": args.steps * args.batch * args.seq_len,
        "train_seconds": train_seconds, "heldout_ce_fp32": ce_full, "eval_history": history,
        "torch": torch.__version__,
    }
    with open(os.path.join(ROOT, "build", "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("saved %s" % out_dir, flush=True)
    write_report(out_dir)


if __name__ == "__main__":
    main()
