"""The `.vmpz` compressed-file format (`vampnet compress` / `decompress`, the studio's compress mode), beside the
token files of vampnet.tokens: a clip's kept tokens (the first codebooks at every N-th frame, `kept_mask`),
bit-packed and entropy-coded, after a small versioned JSON header and before a CRC-32 of the whole file.

Layout: MAGIC, version (u8), header length (u32 LE), header JSON, payload length (u32 LE), payload, crc32 (u32 LE).
The payload is the tokens, `bits` bits each, big-endian, compressed by the header's `method` (zlib, lzma or raw:
whichever is smallest)."""
from __future__ import annotations

import io
import json
import lzma
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import CodesFileError
from .prompts import periodic
from .serialization import atomic_path

MAGIC = b"VAMPNETZ"
VERSION = 1


def kept_mask(codes_shape, codebooks: int, period: int) -> torch.Tensor:
    """True where a token is kept: the first `codebooks` codebooks at every `period`-th frame."""
    keep = ~periodic(codes_shape, period) if period > 1 else torch.ones(codes_shape, dtype=torch.bool)
    keep[:, codebooks:] = False
    return keep


def encode_tokens(tokens: np.ndarray, bits: int) -> tuple[str, bytes]:
    """(method, payload): the tokens bit-packed, then compressed by whichever method makes them smallest."""
    packed = _pack(tokens, bits)
    return min((("zlib", zlib.compress(packed, 9)), ("lzma", lzma.compress(packed, preset=9)), ("raw", packed)),
               key=lambda m: len(m[1]))


def write_compressed(path, header: dict, payload: bytes) -> int:
    """Write a compressed file atomically (header: what `read_compressed` returns; payload: `encode_tokens`'s).
    Returns its size in bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<BI", VERSION, len(head)) + head + struct.pack("<I", len(payload)) + payload
    data = body + struct.pack("<I", zlib.crc32(body))
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_compressed(path) -> tuple[dict, np.ndarray]:
    """Parse and validate a compressed file -> (header, kept tokens). CodesFileError on any inconsistency."""
    path = Path(path)
    if not path.is_file():
        raise CodesFileError(f"compressed file not found: {path}")
    data = path.read_bytes()
    f = io.BytesIO(data)
    try:
        if f.read(len(MAGIC)) != MAGIC:
            raise CodesFileError(f"{path} is not a vampnet compressed file")
        version, head_len = struct.unpack("<BI", f.read(5))
        if version != VERSION:
            raise CodesFileError(f"{path} has format version {version}; this vampnet reads version {VERSION}")
        header = json.loads(f.read(head_len))
        (payload_len,) = struct.unpack("<I", f.read(4))
        payload = f.read(payload_len)
        (crc,) = struct.unpack("<I", f.read(4))
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError):
        raise CodesFileError(f"{path} is truncated or corrupt") from None
    if len(payload) != payload_len or f.read() or zlib.crc32(data[:-4]) != crc:
        raise CodesFileError(f"{path} is truncated or corrupt (checksum mismatch)")
    try:
        packed = {"zlib": zlib.decompress, "lzma": lzma.decompress, "raw": bytes}[header["method"]](payload)
        tokens = _unpack(packed, header["bits"], header["count"])
    except (KeyError, zlib.error, lzma.LZMAError, ValueError):
        raise CodesFileError(f"{path} has an unreadable payload") from None
    return header, tokens


def _pack(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers -> a big-endian bit stream of `bits` bits each."""
    v = values.astype(np.uint32)
    bit_matrix = ((v[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def _unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of _pack: the first `count` integers of the stream."""
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if stream.size < count * bits:
        raise ValueError("payload too short")
    matrix = stream[: count * bits].reshape(count, bits).astype(np.uint32)
    return (matrix << np.arange(bits - 1, -1, -1, dtype=np.uint32)).sum(1).astype(np.int64)
