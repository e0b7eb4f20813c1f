"""Which audio files are validation: a file's split follows from a hash of its relative path alone, so the corpus
report, the tokenizer and evaluation agree on it, on any machine, in any order, and adding files never moves
existing ones."""
from __future__ import annotations

import hashlib

VAL_FRACTION = 0.05  # share of source files that go to validation
SPLIT_SALT = "vampnet"  # changes which files land in validation


def split_of(relpath: str, val_fraction: float = VAL_FRACTION, salt: str = SPLIT_SALT) -> str:
    """'val' or 'train' for a file, from a hash of its relative path: stable across runs, machines and order."""
    h = int.from_bytes(hashlib.sha1(f"{salt}/{relpath}".encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"
