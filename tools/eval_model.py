#!/usr/bin/python3
"""eval_model.py - evaluate a saved doge-mini checkpoint under the PyTorch reference (tools/doge_torch.py).

Usage: /usr/bin/python3 tools/eval_model.py [--model models/doge-mini] [--seq-len 256] [--seed 1234]

Prints, and writes to build/eval_summary.json:
  * held-out cross-entropy (nats/token) of the checkpoint as saved (F16 weights, fp32 compute): the held-out
    token stream build/corpus/heldout.ids cut into non-overlapping windows of seq_len + 1 tokens, every token
    after the first of a window predicted from its window prefix (same windows as tools/train.py);
  * the unigram cross-entropy of the same predicted tokens, with unigram probabilities estimated on
    build/corpus/train.ids with add-one smoothing over the vocabulary, and the ratio model / unigram;
  * a cache check: a 300-token prefill versus prefill of 200 + 100 single-token decode steps through the KV
    cache (keep_window_size < 300, so the top-k path of the dynamic mask is exercised in both), for both tie
    modes of doge_torch (HF's torch.topk on GEMM-rounded biases, and the deterministic lower_index mode);
  * 3 greedy and 3 sampled continuations (generation_config.json settings: temperature, top_k, top_p,
    repetition_penalty; torch.Generator seeded with --seed) of fixed prompts.
Text is encoded/decoded by the official Rust tokenizer (npm tokenizers@0.23.2 under NPM_DIR, default
/tmp/doge-tok-npm, installed by tools/train_tokenizer.js) through a small node child process.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from doge_torch import count_parameters, load_hf, set_topk_ties  # noqa: E402
from train import ROOT, evaluate, heldout_windows, load_ids  # noqa: E402

PROMPTS = ["The whale", "In the beginning", "Mr. Speaker,"]

_TOKENIZER_JS = r"""
const { createRequire } = require('module');
const path = require('path');
const { Tokenizer } = createRequire(path.join(process.env.NPM_DIR, 'package.json'))('tokenizers');
const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const tok = Tokenizer.fromFile(req.tokenizer);
(async () => {
  const out = [];
  for (const t of req.encode || []) out.push(Array.from((await tok.encode(t, null, { addSpecialTokens: true })).getIds()));
  for (const ids of req.decode || []) out.push(await tok.decode(ids, true));
  process.stdout.write(JSON.stringify(out));
})();
"""


def tokenizer_call(model_dir, encode=(), decode=()):
    env = dict(os.environ, NPM_DIR=os.environ.get("NPM_DIR", "/tmp/doge-tok-npm"))
    req = {"tokenizer": os.path.join(model_dir, "tokenizer.json"), "encode": list(encode), "decode": list(decode)}
    res = subprocess.run(["node", "-e", _TOKENIZER_JS], input=json.dumps(req), capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout)


@torch.no_grad()
def generate(model, ids, max_new, eos, greedy=True, gen=None, temperature=1.0, top_k=0, top_p=1.0,
             repetition_penalty=1.0):
    """Incremental decoding with the KV cache; HF-style logits processors (repetition penalty, temperature,
    top-k, top-p) for sampling."""
    cache = []
    logits = model(torch.tensor([ids]), cache)[0, -1].float()
    out = list(ids)
    for _ in range(max_new):
        if greedy:
            nxt = int(torch.argmax(logits))
        else:
            scores = logits.clone()
            seen = torch.tensor(sorted(set(out)))
            prev = scores[seen]
            scores[seen] = torch.where(prev < 0, prev * repetition_penalty, prev / repetition_penalty)
            scores = scores / temperature
            if top_k:
                kth = torch.topk(scores, top_k).values[-1]
                scores[scores < kth] = -float("inf")
            if top_p < 1.0:
                sorted_scores, order = torch.sort(scores, descending=False)
                cum = torch.softmax(sorted_scores, -1).cumsum(-1)
                remove = cum <= (1 - top_p)
                remove[-1] = False
                scores[order[remove]] = -float("inf")
            nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=gen))
        out.append(nxt)
        if nxt == eos:
            break
        logits = model(torch.tensor([[nxt]]), cache)[0, -1].float()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/doge-mini")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-new", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-windows", type=int, default=0, help="evaluate only the first N windows (0: all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = os.path.join(ROOT, args.model)
    model = load_hf(model_dir)
    cfg = model.config
    with open(os.path.join(model_dir, "generation_config.json")) as f:
        gcfg = json.load(f)

    # held-out cross-entropy, model vs unigram, on the same predicted tokens
    held = heldout_windows(load_ids("heldout"), args.seq_len)
    if args.max_windows:
        held = held[:args.max_windows]
    ce = evaluate(model, held)
    counts = np.bincount(load_ids("train"), minlength=cfg.vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    targets = held[:, 1:].reshape(-1)
    uni = float(-logp[targets].mean())
    ratio = ce / uni
    print("held-out: %d windows x %d = %d predicted tokens" % (len(held), args.seq_len, targets.size))
    print("model CE   %.4f nats/token (perplexity %.1f)" % (ce, math.exp(ce)))
    print("unigram CE %.4f nats/token (add-one, train counts)" % uni)
    print("ratio      %.4f (target <= 0.65: %s)" % (ratio, "met" if ratio <= 0.65 else "MISSED"))

    # KV-cache decode versus one prefill, past keep_window_size
    seq = [int(t) for t in held.reshape(-1)[:300]]
    cache_diff = {}
    for ties in ("lower_index", "torch"):
        set_topk_ties(model, ties)
        with torch.no_grad():
            full = model(torch.tensor([seq]))[0]
            cache = []
            parts = [model(torch.tensor([seq[:200]]), cache)[0]]
            for t in seq[200:]:
                parts.append(model(torch.tensor([[t]]), cache)[0])
            inc = torch.cat(parts)
        cache_diff[ties] = float((full - inc).abs().max() / full.abs().max())
        print("cache check (300 tokens, W=%d, ties %s): max |prefill - decode| / max|logit| = %.2e"
              % (cfg.keep_window_size, ties, cache_diff[ties]))
    set_topk_ties(model, "torch")

    # continuations
    enc = tokenizer_call(model_dir, encode=PROMPTS)
    gen = torch.Generator().manual_seed(args.seed)
    outs = []
    for mode in ("greedy", "sampled"):
        for prompt, ids in zip(PROMPTS, enc):
            ids_out = generate(model, ids, args.max_new, gcfg["eos_token_id"], greedy=(mode == "greedy"), gen=gen,
                               temperature=gcfg["temperature"], top_k=gcfg["top_k"], top_p=gcfg["top_p"],
                               repetition_penalty=gcfg["repetition_penalty"])
            outs.append((mode, prompt, ids_out))
    texts = tokenizer_call(model_dir, decode=[o[2] for o in outs])
    samples = []
    for (mode, prompt, ids_out), text in zip(outs, texts):
        print("\n[%s] %r ->\n%s" % (mode, prompt, text))
        samples.append({"mode": mode, "prompt": prompt, "text": text, "tokens": len(ids_out)})

    summary = {"model": args.model, "params": count_parameters(model), "heldout_windows": len(held),
               "heldout_predicted_tokens": int(targets.size), "model_ce": ce, "unigram_ce": uni, "ratio": ratio,
               "cache_check_rel_diff": cache_diff, "samples": samples, "seed": args.seed}
    with open(os.path.join(ROOT, "build", "eval_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
