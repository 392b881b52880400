#!/usr/bin/env python3
"""Compose the mixed-length review set `bench/data/mixed.tsv` from the short sentences in the repo.

    .venv/bin/python bench/make_mixed.py [--model bench/.cache/minilm-sentiment] [--out bench/data/mixed.tsv]
                                         [--count 2000] [--seed 15]

Real product and movie review corpora are long-tailed: most reviews are a line or two, a few
run to several paragraphs. With no corpus to download, the reviews here are put together from
the 210 short review sentences of `bench/data/train.tsv` and `heldout.tsv` (7 to 16 tokens
each): a review of k sentences is k distinct sentences drawn at random, all of one sentiment
(so a review reads as one opinion), joined by spaces. Every review draws its own sentences, so
long reviews are not all made of the same few.

Lengths are counted in MiniLM tokens with the model's own tokenizer, special tokens ([CLS],
[SEP]) included and truncation switched off: the count a server sees before it truncates at
the model's max_sequence_length (128). The target shape, as exact quotas of `--count`:

    bucket   share   tokens drawn log-uniformly in
    <=16     35%     one sentence (7..16 tokens)
    17-32    25%     17..32
    33-64    20%     33..64
    65-128   15%     65..128
    >128      5%     129..512 (servers truncate these to 128)

For a review in a bucket above the first, a target length is drawn (log-uniform, so shorter is
likelier inside each bucket as well) and sentences are appended until the review reaches it;
a review that overshoots its bucket is drawn again. The reviews are then shuffled: the file
order is the send order of the benchmark.

Output: one review per line, no header, `tokens<TAB>bucket<TAB>text`. Deterministic for a given
seed, sentence files and tokenizer. Prints the distribution it produced.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from textclf import find_tokenizer, read_mlmodel, read_tsv  # noqa: E402

# (bucket name, lowest tokens, highest tokens, share of the reviews)
BUCKETS = [
    ("<=16", 1, 16, 0.35),
    ("17-32", 17, 32, 0.25),
    ("33-64", 33, 64, 0.20),
    ("65-128", 65, 128, 0.15),
    (">128", 129, 512, 0.05),
]


def bucket_of(tokens: int) -> str:
    for name, lo, hi, _ in BUCKETS:
        if lo <= tokens <= hi:
            return name
    return BUCKETS[-1][0]


def quotas(count: int) -> list[str]:
    """Bucket names in exact proportion to the shares (largest-remainder rounding)."""
    raw = [share * count for *_, share in BUCKETS]
    n = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - n[i], reverse=True)[: count - sum(n)]:
        n[i] += 1
    return [name for (name, *_), k in zip(BUCKETS, n) for _ in range(k)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(HERE / ".cache" / "minilm-sentiment"), help="model dir (its tokenizer)")
    ap.add_argument("--out", default=str(HERE / "data" / "mixed.tsv"))
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    model_dir = Path(args.model)
    tok = Tokenizer.from_file(str(find_tokenizer(model_dir, read_mlmodel(model_dir))))
    tok.no_truncation()
    tok.no_padding()

    def tokens(text: str) -> int:
        return len(tok.encode(text).ids)

    by_label: dict[str, list[str]] = {}
    for name in ("train.tsv", "heldout.tsv"):
        for label, text in read_tsv(HERE / "data" / name):
            by_label.setdefault(label, []).append(" ".join(text.split()))
    labels = sorted(by_label)

    rng = random.Random(args.seed)
    spans = {name: (lo, hi) for name, lo, hi, _ in BUCKETS}

    def compose(bucket: str) -> tuple[int, str]:
        lo, hi = spans[bucket]
        while True:
            pool = by_label[rng.choice(labels)]
            order = rng.sample(pool, len(pool))  # distinct sentences, fresh order per review
            if bucket == BUCKETS[0][0]:
                text = order[0]
            else:
                target = round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
                picked = []
                for s in order:
                    picked.append(s)
                    if tokens(" ".join(picked)) >= target:
                        break
                text = " ".join(picked)
            n = tokens(text)
            if lo <= n <= hi:
                return n, text

    reviews = [compose(b) for b in quotas(args.count)]
    rng.shuffle(reviews)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for n, text in reviews:
            assert "\t" not in text and "\n" not in text
            f.write(f"{n}\t{bucket_of(n)}\t{text}\n")

    counts = np.array([n for n, _ in reviews])
    print(f"{out}: {len(reviews)} reviews (seed {args.seed}), MiniLM tokens incl. [CLS]/[SEP], before truncation")
    for name, *_ in BUCKETS:
        k = sum(1 for n, _ in reviews if bucket_of(n) == name)
        print(f"  {name:>7}: {k:5d}  {100 * k / len(reviews):5.1f}%")
    print(
        f"  tokens: mean {counts.mean():.1f}, median {np.median(counts):.0f}, p90 {np.percentile(counts, 90):.0f}, "
        f"p99 {np.percentile(counts, 99):.0f}, max {counts.max()}; "
        f"mean after truncation at 128: {np.minimum(counts, 128).mean():.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
