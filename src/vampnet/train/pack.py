"""Token packs: a whole token dataset (both splits, its first N codebooks) in one compact file, to carry to a
training machine whose upload is small. The trainer reads a pack wherever it reads a dataset folder, and needs
no codec file for it: the pack holds the codec's codebook vectors that the transformers embed tokens with.

A pack is a numpy .npz archive (a zip; numpy alone reads it, no pickle):
    meta        uint8   UTF-8 JSON: the dataset's manifest (n_codebooks = the codebooks kept), the pack's own
                        fields, and the excerpts (the dataset's index rows, offsets into `codes`)
    codes       uint8   the codes, bit-packed at ceil(log2(codebook_size)) bits each (10 for 1024 entries),
                        codebook by codebook over all frames; the source files' tokens one after another
    codebooks   float32 (codec codebooks, codebook_size, codebook_dim): every codebook vector of the codec
    loudness    uint8   (frames,) optional: the per-frame loudness control (vampnet.controls) of every frame of
                        `codes`, as round((dB + 80) * 2): 0.5 dB steps from the -80 dB floor (meta "controls")
Members are stored, not deflated: bit-packed codes of a well-used codebook barely compress (BENCHMARKS.md)."""
from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import VampNetError
from ..serialization import atomic_path

FORMAT, VERSION = "vampnet-token-pack", 1
_CHUNK = 1 << 20  # codes bit-packed at a time (a multiple of 8, so every chunk ends on a byte)


class PackError(VampNetError):
    """A token pack is unreadable, of another format, or inconsistent."""


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Non-negative integers below 2**bits -> their low `bits` bits, least significant first, as bytes."""
    flat = np.ascontiguousarray(codes, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise PackError(f"codes must lie in [0, {1 << bits}) to pack them at {bits} bits")
    weights = np.arange(bits, dtype=np.int64)
    out = [np.packbits(((flat[a:a + _CHUNK, None] >> weights) & 1).astype(np.uint8), bitorder="little")
           for a in range(0, flat.size, _CHUNK)]
    return np.concatenate(out) if out else np.zeros(0, np.uint8)


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: the first `count` integers (int16) from `data`."""
    if data.size * 8 < count * bits:
        raise PackError(f"packed codes are truncated: {data.size} bytes for {count} codes of {bits} bits")
    weights = (1 << np.arange(bits, dtype=np.int64)).astype(np.int16)
    out = np.empty(count, np.int16)
    step = _CHUNK * bits // 8  # bytes per chunk of codes
    for i, a in enumerate(range(0, count, _CHUNK)):
        n = min(_CHUNK, count - a)
        b = np.unpackbits(data[i * step: i * step + (n * bits + 7) // 8], bitorder="little", count=n * bits)
        out[a:a + n] = b.reshape(n, bits).astype(np.int16) @ weights
    return out


def encode_loudness(db: np.ndarray) -> np.ndarray:
    """Loudness in dB -> the pack's uint8 (0.5 dB steps above -80 dB, clipped to [-80, 47.5])."""
    return np.clip(np.round((np.asarray(db, np.float32) + 80.0) * 2.0), 0, 255).astype(np.uint8)


def decode_loudness(data: np.ndarray) -> np.ndarray:
    """The pack's uint8 loudness -> dB (float32)."""
    return data.astype(np.float32) / 2.0 - 80.0


def write_pack(output, manifest: dict, rows: list[dict], codes: np.ndarray, codebooks: np.ndarray,
               loudness: np.ndarray | None = None) -> int:
    """Write a pack atomically: `codes` (K, frames) ints below manifest's codebook_size, `rows` with offsets into
    them, `codebooks` the codec's (K_codec, V, L) vectors, `loudness` (frames,) dB or None. Returns the file's
    size in bytes."""
    bits = max(1, math.ceil(math.log2(manifest["codebook_size"])))
    k, frames = codes.shape
    if k != manifest["n_codebooks"]:
        raise PackError(f"the manifest names {manifest['n_codebooks']} codebooks, the codes have {k}")
    meta = {"format": FORMAT, "version": VERSION, "bits": bits, "frames": int(frames), "manifest": manifest, "rows": rows}
    controls = {}
    if loudness is not None:
        if np.shape(loudness) != (frames,):
            raise PackError(f"the loudness control has {np.shape(loudness)} values for {frames} frames")
        controls["loudness"] = encode_loudness(loudness)
        meta["controls"] = ["loudness"]
    members = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), "codes": pack_bits(codes, bits),
               "codebooks": np.ascontiguousarray(codebooks, np.float32), **controls}
    with atomic_path(Path(output)) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for key, value in members.items():
                buf = io.BytesIO()
                np.save(buf, value)
                z.writestr(f"{key}.npy", buf.getvalue())
    return Path(output).stat().st_size


def read_pack(path) -> tuple[dict, list[dict], np.ndarray, np.ndarray]:
    """A pack file -> (manifest, rows, codes (K, frames) int16, codec codebooks (K_codec, V, L) float32)."""
    meta = read_pack_meta(path)
    with np.load(path, allow_pickle=False) as z:
        packed, codebooks = z["codes"], z["codebooks"]
    manifest = meta["manifest"]
    k, frames = int(manifest["n_codebooks"]), int(meta["frames"])
    codes = unpack_bits(packed, int(meta["bits"]), k * frames).reshape(k, frames)
    return manifest, meta["rows"], codes, codebooks


def read_pack_controls(path) -> dict[str, np.ndarray]:
    """The control arrays of a pack ({"loudness": (frames,) dB}), empty for a pack made without them."""
    names = read_pack_meta(path).get("controls", [])
    with np.load(path, allow_pickle=False) as z:
        return {name: decode_loudness(z[name]) for name in names if name == "loudness"}


def read_pack_meta(path) -> dict:
    """The JSON part of a pack (manifest, rows), without unpacking its codes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise PackError(f"{path} is not a token pack: {e}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PackError(f"{path} is not a version-{VERSION} token pack")
    return meta
