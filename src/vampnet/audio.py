"""Audio files and signal conditioning: read, write (atomically), mono, resample (soxr), loudness (pyloudnorm).

The only module that touches audio files. Waveforms are float32 torch tensors shaped (batch, channels, samples)
with the sample rate carried beside them."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .errors import AudioError
from .serialization import atomic_path

TARGET_LUFS = -24.0
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif"}  # what find_audio collects


def load(path, max_seconds: float | None = None, offset_s: float = 0.0) -> tuple[torch.Tensor, int]:
    """Read an audio file -> ((1, channels, samples) float32, sample rate), from `offset_s` seconds on and at most
    `max_seconds` long. Raises AudioError with the reason."""
    import soundfile as sf

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
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise AudioError(f"cannot read audio {path}: {reason}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file has no samples: {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file contains NaN or infinite samples: {path}")
    return torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0), int(sr)


def save(path, wav: torch.Tensor, sample_rate: int, metadata: dict | None = None) -> Path:
    """Write (1, channels, samples) or (channels, samples) audio atomically; format from the extension."""
    import soundfile as sf

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
    import json

    return json.dumps(metadata, sort_keys=True, default=str)[:2000]


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, 1, N) by averaging channels."""
    return wav.mean(dim=1, keepdim=True) if wav.shape[1] != 1 else wav


def resample(wav: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """High-quality resampling with soxr; (B, C, N) at sr_in -> (B, C, M) at sr_out."""
    if sr_in == sr_out:
        return wav
    import soxr

    out = [soxr.resample(w.T.numpy().astype(np.float32), sr_in, sr_out, quality="HQ").T for w in wav.cpu()]
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).float()


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770) of a (1, C, N) signal; -inf for silence.

    Clips shorter than one 400 ms gating block are measured by their mean square instead."""
    import pyloudnorm

    x = wav[0].double().cpu().numpy().T
    if x.shape[0] < int(0.4 * sample_rate) + 1:
        ms = float(np.mean(x**2))
        return -0.691 + 10 * math.log10(ms) if ms > 0 else -math.inf
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipping, which we handle after
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


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
    import soundfile as sf

    try:
        info = sf.info(os.fspath(path))
    except Exception as e:
        raise AudioError(f"cannot read audio {path}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}") from None
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
