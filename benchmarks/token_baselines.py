#!/usr/bin/env python
"""How predictable a token dataset's codes are without a transformer: count-based baselines per codebook, fitted on
the training split and scored on the validation split of a `vampnet tokenize` folder.

    python benchmarks/token_baselines.py DATASET [--codebooks 4] [--json FILE]

Per codebook, for every validation token:
  - unigram: the training split's code frequencies (add-one smoothed);
  - bigram: the code given the code just before it in the same codebook (the left neighbour always visible),
    add-0.1 smoothed and interpolated with the unigram (weight chosen on the validation split from 0.5/0.7/0.9,
    so the bigram numbers are slightly optimistic).
It reports cross-entropy (nats), top-1 and top-25 accuracy of each. A masked transformer sees more than one
neighbour, but in the heavily masked regime (r < 0.5 of masked_accuracy: more than 71 % of tokens hidden) it
usually has less; these numbers put its accuracy in proportion to what the codes allow."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

WEIGHTS = (0.5, 0.7, 0.9)


def load_split(folder: Path, codebooks: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Token arrays (codebooks, frames) of each source file, by split, and the vocabulary size."""
    index = folder / "index.csv"
    if not index.is_file():
        raise SystemExit(f"{folder} is not a token dataset (no index.csv; run `vampnet tokenize` first)")
    manifest = json.loads((folder / "manifest.json").read_text())
    with open(index, newline="") as f:
        split_of_file = {row["tokens_file"]: row["split"] for row in csv.DictReader(f)}
    train, val = [], []
    for name, split in split_of_file.items():
        codes = np.load(folder / name, mmap_mode="r")[:codebooks].astype(np.int64)
        (val if split == "val" else train).append(codes)
    if not train or not val:
        raise SystemExit(f"{folder} needs both a training and a validation split")
    return train, val, int(manifest["codebook_size"])


def codebook_baselines(train: list[np.ndarray], val: list[np.ndarray], k: int, vocab: int) -> dict:
    counts = np.zeros((vocab, vocab))
    uni = np.ones(vocab)
    for a in train:
        np.add.at(counts, (a[k, :-1], a[k, 1:]), 1)
        uni += np.bincount(a[k], minlength=vocab)
    p_uni = uni / uni.sum()
    p_bi = (counts + 0.1) / (counts + 0.1).sum(1, keepdims=True)
    prev = np.concatenate([a[k, :-1] for a in val])
    nxt = np.concatenate([a[k, 1:] for a in val])
    uni_top = np.argsort(-p_uni)[:25]
    bi_top = np.argsort(-counts, 1)[:, :25]
    ce_bi = min(float(-np.log(w * p_bi[prev, nxt] + (1 - w) * p_uni[nxt]).mean()) for w in WEIGHTS)
    return {"tokens": int(nxt.size),
            "unigram": {"cross_entropy": float(-np.log(p_uni[nxt]).mean()), "acc1": float((uni_top[0] == nxt).mean()),
                        "acc25": float(np.isin(nxt, uni_top).mean())},
            "bigram": {"cross_entropy": ce_bi, "acc1": float((bi_top[prev, 0] == nxt).mean()),
                       "acc25": float((bi_top[prev] == nxt[:, None]).any(1).mean())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--codebooks", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    train, val, vocab = load_split(args.dataset, args.codebooks)
    results = {f"codebook {k}": codebook_baselines(train, val, k, vocab) for k in range(args.codebooks)}
    print("| codebook | unigram CE | unigram top-1 | unigram top-25 | bigram CE | bigram top-1 | bigram top-25 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        u, b = r["unigram"], r["bigram"]
        print(f"| {name} | {u['cross_entropy']:.3f} | {u['acc1']:.3f} | {u['acc25']:.3f} | {b['cross_entropy']:.3f} | "
              f"{b['acc1']:.3f} | {b['acc25']:.3f} |")
    mean = lambda part, key: float(np.mean([r[part][key] for r in results.values()]))
    print(f"| mean | {mean('unigram', 'cross_entropy'):.3f} | {mean('unigram', 'acc1'):.3f} | {mean('unigram', 'acc25'):.3f} | "
          f"{mean('bigram', 'cross_entropy'):.3f} | {mean('bigram', 'acc1'):.3f} | {mean('bigram', 'acc25'):.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
