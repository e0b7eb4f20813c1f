"""Audio files and signal conditioning: read, write (atomically), mono, resample (soxr), loudness (ITU-R BS.1770).

The only module that touches audio files. Waveforms are float32 torch tensors shaped (batch, channels, samples)
with the sample rate carried beside them."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from .errors import AudioError, first_line
from .serialization import atomic_path

TARGET_LUFS = -24.0
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif"}  # what find_audio collects


def load(path, max_seconds: float | None = None, offset_s: float = 0.0) -> tuple[torch.Tensor, int]:
    """Read an audio file -> ((1, channels, samples) float32, sample rate), from `offset_s` seconds on and at most
    `max_seconds` long. Raises AudioError with the reason."""
    import soundfile as sf  # audio I/O loads on use: training from tokens runs where it is not installed

    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file, got a folder: {path}")
    try:
        info = sf.info(str(path))
        frames = -1 if max_seconds is None else int(max_seconds * info.samplerate)
        start = max(0, int(offset_s * info.samplerate))
        data, sr = sf.read(str(path), frames=frames, start=start, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile reports every failure as a RuntimeError/LibsndfileError with a message
        reason = first_line(e, last=True)
        raise AudioError(f"cannot read audio {path}: {reason}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file has no samples: {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file contains NaN or infinite samples: {path}")
    return torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0), int(sr)


def save(path, wav: torch.Tensor, sample_rate: int, metadata: dict | None = None) -> Path:
    """Write (1, channels, samples) or (channels, samples) audio atomically; format from the extension."""
    import soundfile as sf  # see load()

    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"cannot write '{path.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    data = wav.detach().float().cpu()
    if data.dim() == 3:
        if data.shape[0] != 1:
            raise AudioError("save writes one signal at a time (batch size 1)")
        data = data[0]
    data = data.numpy().T
    if not np.isfinite(data).all():
        raise AudioError("refusing to write audio with NaN or infinite samples")
    subtype = "FLOAT" if fmt == "WAV" else None
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=data.shape[1], format=fmt, subtype=subtype) as f:
            if metadata and fmt != "OGG":
                f.comment = _metadata_comment(metadata)
            f.write(data)
    return path


def _metadata_comment(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, default=str)[:2000]


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, 1, N) by averaging channels."""
    return wav.mean(dim=1, keepdim=True) if wav.shape[1] != 1 else wav


def resample(wav: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """High-quality resampling with soxr; (B, C, N) at sr_in -> (B, C, M) at sr_out."""
    if sr_in == sr_out:
        return wav
    import soxr  # see load()

    out = [soxr.resample(w.T.numpy().astype(np.float32), sr_in, sr_out, quality="HQ").T for w in wav.cpu()]
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).float()


def resample_periodic(wav: torch.Tensor, n: int) -> torch.Tensor:
    """One period of a periodic signal (..., N) -> the same period in exactly `n` samples, by band-limited
    interpolation in the frequency domain (the spectrum cut or zero-padded). Exact for periodic signals, and the
    result is periodic again, so a loop resampled this way keeps its seam; soxr would treat the ends as edges."""
    N = wav.shape[-1]
    if n < 1 or N < 1:
        raise AudioError(f"cannot resample a period of {N} samples to {n}")
    if n == N:
        return wav.clone()
    spec = torch.fft.rfft(wav.double(), dim=-1)[..., : min(N, n) // 2 + 1].clone()
    if min(N, n) % 2 == 0:  # the shorter length's Nyquist bin: a cosine there is split (or folded) between +-N/2
        spec[..., -1] = spec[..., -1].real * (0.5 if n > N else 2.0)
    return (torch.fft.irfft(spec, n=n, dim=-1) * (n / N)).to(wav.dtype)


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4: K-weighting, 400 ms blocks overlapping by 75 %, gates at
    -70 LUFS and 10 LU below the ungated mean) of a (1, C, N) signal, C <= 5; -inf for silence.

    The same filters and block boundaries as pyloudnorm's default meter (its values agree to ~1e-12 LU), computed
    with numpy alone: pyloudnorm's filtering needs scipy.signal, whose import would add a large share of torch's
    import time to every `vampnet vamp`. Clips shorter than one gating block are measured by their mean square instead."""
    x = wav[0].double().cpu().numpy()  # (C, N)
    if x.shape[0] > len(CHANNEL_WEIGHTS):
        raise AudioError(f"loudness is defined for at most {len(CHANNEL_WEIGHTS)} channels, got {x.shape[0]}")
    block = 0.4 * sample_rate
    if x.shape[1] < int(block) + 1:
        ms = float(np.mean(x**2))
        return -0.691 + 10 * math.log10(ms) if ms > 0 else -math.inf
    y = x
    for b, a in _k_weighting(float(sample_rate)):
        y = _biquad(b, a, y)
    n_blocks = int(np.round((x.shape[1] / sample_rate - 0.4) / (0.4 * 0.25))) + 1
    bounds = [(int(0.4 * (j * 0.25) * sample_rate), int(0.4 * (j * 0.25 + 1) * sample_rate)) for j in range(n_blocks)]
    z = np.array([[(1.0 / block) * np.sum(np.square(ch[lo:hi])) for lo, hi in bounds] for ch in y])  # (C, blocks)
    weights = np.array(CHANNEL_WEIGHTS[: x.shape[0]])[:, None]
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10((weights * z).sum(0))
        above_abs = block_lufs >= -70.0
        if not above_abs.any():
            return -math.inf
        relative = -0.691 + 10 * np.log10((weights[:, 0] * z[:, above_abs].mean(1)).sum()) - 10.0
        gated = (block_lufs > relative) & (block_lufs > -70.0)
        if not gated.any():
            return -math.inf
        return float(-0.691 + 10 * np.log10((weights[:, 0] * z[:, gated].mean(1)).sum()))


CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 channel gains: L, R, C, Ls, Rs


def _k_weighting(rate: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's K-weighting as two biquads (b, a), a[0] = 1: a +4 dB high shelf at 1500 Hz (Q 1/sqrt 2), then a
    high pass at 38 Hz (Q 0.5), from the audio-EQ-cookbook formulas (the design pyloudnorm's meter uses)."""
    A = 10 ** (4.0 / 40)
    w0 = 2 * np.pi * 1500.0 / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * (1 / np.sqrt(2)))
    shelf_b = np.array([A * ((A + 1) + (A - 1) * cos + 2 * np.sqrt(A) * alpha), -2 * A * ((A - 1) + (A + 1) * cos),
                        A * ((A + 1) + (A - 1) * cos - 2 * np.sqrt(A) * alpha)])
    shelf_a = np.array([(A + 1) - (A - 1) * cos + 2 * np.sqrt(A) * alpha, 2 * ((A - 1) - (A + 1) * cos),
                        (A + 1) - (A - 1) * cos - 2 * np.sqrt(A) * alpha])
    w0 = 2 * np.pi * 38.0 / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * 0.5)
    hp_b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
    hp_a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return [(shelf_b / shelf_a[0], shelf_a / shelf_a[0]), (hp_b / hp_a[0], hp_a / hp_a[0])]


def _biquad(b: np.ndarray, a: np.ndarray, x: np.ndarray, block: int = 256) -> np.ndarray:
    """Filter (C, N) signals by one biquad from rest, without a Python loop per sample: the feed-forward part
    directly; the recursion w[n] = v[n] - a1 w[n-1] - a2 w[n-2] block by block, each block's response from rest
    as one matrix product with the recursion's impulse response, plus the response to the state the previous block
    left (carried from block to block: one 2x2 step per block)."""
    C, N = x.shape
    v = b[0] * x
    v[:, 1:] += b[1] * x[:, :-1]
    v[:, 2:] += b[2] * x[:, :-2]
    M = np.array([[-a[1], -a[2]], [1.0, 0.0]])  # (w[n], w[n-1]) = M (w[n-1], w[n-2]) + (v[n], 0)
    powers = [np.eye(2)]
    for _ in range(block):
        powers.append(M @ powers[-1])
    h = np.array([p[0, 0] for p in powers[:block]])  # impulse response of the recursion
    lags = np.arange(block)[:, None] - np.arange(block)[None, :]
    toeplitz = np.where(lags >= 0, h[lags.clip(min=0)], 0.0)  # toeplitz[m, j] = h[m - j]
    from_state = np.array([p[0] for p in powers[1:]])  # (block, 2): w[m] gets from_state[m] @ state before the block
    n_blocks = -(-N // block)
    vb = np.zeros((C, n_blocks * block))
    vb[:, :N] = v
    w = vb.reshape(C, n_blocks, block) @ toeplitz.T  # each block's response from rest
    ends = w[:, :, [block - 1, block - 2]]  # (C, blocks, 2): the state each block leaves, from rest
    carry = from_state[[block - 1, block - 2]]  # how the state before a block shows in the state it leaves
    before = np.zeros((C, n_blocks, 2))
    for k in range(1, n_blocks):
        before[:, k] = ends[:, k - 1] + before[:, k - 1] @ carry.T
    w += before @ from_state.T
    return w.reshape(C, -1)[:, :N]


def normalize_loudness(wav: torch.Tensor, sample_rate: int, target: float = TARGET_LUFS,
                       measured: float | None = None) -> tuple[torch.Tensor, float]:
    """Scale to `target` LUFS, then down to a peak of at most 1. Returns (audio, its loudness before).
    `measured`: the loudness of `wav` when the caller has it already (it is not measured again)."""
    before = loudness(wav, sample_rate) if measured is None else measured
    if math.isfinite(before):
        wav = wav * 10 ** ((target - before) / 20)
    return limit_peak(wav), before


def limit_peak(wav: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Scale down (never up) so that max |x| <= peak."""
    m = float(wav.abs().max()) if wav.numel() else 0.0
    return wav * (peak / m) if m > peak else wav


def match_loudness(wav: torch.Tensor, sample_rate: int, target: float) -> torch.Tensor:
    """Scale to the loudness `target` (e.g. the input's), keeping the peak at most 1."""
    now = loudness(wav, sample_rate)
    if math.isfinite(now) and math.isfinite(target):
        wav = wav * 10 ** ((target - now) / 20)
    return limit_peak(wav)


def duration(path) -> float:
    """Seconds of audio in a file, without reading the samples."""
    import soundfile as sf  # see load()

    try:
        info = sf.info(os.fspath(path))
    except Exception as e:
        raise AudioError(f"cannot read audio {path}: {first_line(e, last=True)}") from None
    return info.frames / info.samplerate


def find_audio(dirs) -> list[tuple[Path, str]]:
    """(absolute path, path relative to its root) of every audio file under the given folders, sorted; the
    relative path starts with the folder's own name ("corpus/wesnoth/a.ogg"), as train/validation splits use it."""
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise AudioError(f"audio folder not found: {d}")
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                found.append((p, f"{d.name}/{p.relative_to(d).as_posix()}"))
    return found
