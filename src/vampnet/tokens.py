"""Token files (`vampnet encode` / `vampnet decode`): a codes grid plus what is needed to decode it, as .npz,
written atomically and validated on reading."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import CodesFileError
from .serialization import atomic_path

FORMAT = "vampnet-codes"
VERSION = 1


def save_codes(path, codes: torch.Tensor, *, sample_rate: int, hop_length: int, codebook_size: int,
               n_samples: int, loudness: float, source: dict | None = None) -> Path:
    """Write (1, K, T) codes and their decoding metadata to `path` (.npz); `source`: the input file's sample rate,
    channels and sample format (what a decoded file defaults to)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise CodesFileError(f"token files end in .npz, got {path.name}")
    dtype = np.int16 if codebook_size <= 2**15 else np.int32
    meta = {"format": FORMAT, "version": VERSION, "sample_rate": int(sample_rate), "hop_length": int(hop_length),
            "codebook_size": int(codebook_size), "n_samples": int(n_samples), "loudness": float(loudness)}
    if source:
        meta["source"] = dict(source)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, codes=codes.cpu().numpy().astype(dtype), meta=np.array(json.dumps(meta)))
    return path


def load_codes(path) -> tuple[torch.Tensor, dict]:
    """Read a token file -> ((1, K, T) int64 codes, metadata); CodesFileError if it is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise CodesFileError(f"token file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            codes, meta = f["codes"], json.loads(str(f["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
        raise CodesFileError(f"{path} is not a vampnet token file ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise CodesFileError(f"{path} is not a vampnet token file")
    if codes.ndim != 3 or codes.shape[0] != 1 or codes.min(initial=0) < 0 or codes.max(initial=0) >= meta["codebook_size"]:
        raise CodesFileError(f"{path} holds codes of an invalid shape or range")
    return torch.from_numpy(codes.astype(np.int64)), meta
