"""Turning a game's music files into corpus audio: headerless PCM, tracker modules (ffmpeg's libopenmpt),
songs shipped as stems (mixed), tracks stored as one loop played over and over (found, cut to one pass), and
the loudness envelope that recognises the same recording shipped twice."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..errors import CorpusError

ENVELOPE_RATE = 10  # loudness envelope frames per second (duplicate detection)


@dataclass(frozen=True)
class RawFormat:
    """How to read a package's headerless PCM files (they carry no rate or sample format of their own)."""

    sample_rate: int
    channels: int = 1
    encoding: str = "u8"  # unsigned 8-bit; the only raw encoding met so far


def read_raw(src: Path, fmt: RawFormat) -> torch.Tensor:
    """A headerless PCM file as (1, channels, N) float audio."""
    if fmt.encoding != "u8":
        raise CorpusError(f"raw encoding {fmt.encoding!r} is not supported")
    data = np.fromfile(src, dtype=np.uint8)
    data = data[: len(data) - len(data) % fmt.channels]
    if data.size == 0:
        raise CorpusError(f"raw audio file is empty: {src}")
    # unsigned 8-bit: 128 is silence, one step is 1/128 of full scale
    wav = (data.astype(np.float32) - 128.0) / 128.0
    return torch.from_numpy(wav.reshape(-1, fmt.channels).T.copy()).unsqueeze(0)


def decode_with_ffmpeg(src: Path, sample_rate: int = 44100, max_s: float = 900.0) -> tuple[torch.Tensor, int]:
    """Audio ffmpeg can read and soundfile cannot (tracker modules through libopenmpt, played once), as
    (1, 2, N) at `sample_rate`."""
    if shutil.which("ffmpeg") is None:
        raise CorpusError("ffmpeg not found: run `sudo apt-get install ffmpeg` (tracker modules need it)")
    with tempfile.TemporaryDirectory(prefix="vampnet-module-") as tmp:
        wav_path = Path(tmp) / "module.wav"
        command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-t", str(max_s), "-ac", "2",
                   "-ar", str(sample_rate), "-c:a", "pcm_f32le", str(wav_path)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60 + max_s)
        except subprocess.TimeoutExpired:
            raise CorpusError(f"ffmpeg did not finish {src.name}") from None
        if result.returncode != 0 or not wav_path.is_file():
            raise CorpusError(f"ffmpeg cannot decode {src.name}: {(result.stderr or 'no output').strip()[-200:]}")
        return audio.load(wav_path)


def mix_stems(paths: list[Path]) -> tuple[torch.Tensor, int]:
    """Stems of one song (guitar, rhythm, backing...) summed into one stereo recording, peak-limited."""
    stems = []
    for path in paths:
        wav, sr = audio.load(path)
        stems.append((wav if wav.shape[1] == 2 else wav.mean(1, keepdim=True).expand(1, 2, -1), sr))
    rate = stems[0][1]
    stems = [audio.resample(w, sr, rate) for w, sr in stems]
    mix = torch.zeros(1, 2, max(w.shape[-1] for w in stems))
    for w in stems:
        mix[..., : w.shape[-1]] += w
    return audio.limit_peak(mix, 0.99), rate


def loop_period(wav: np.ndarray, sample_rate: int, probe_s: float = 10.0) -> tuple[float, float] | None:
    """(t, P) when a recording from time t on repeats itself with period P seconds to its very end (a game track
    stored as the same loop played several times over), else None. Such files are cut at t + P, which keeps
    everything once, so training does not see the loop many times.

    A 10 s probe (from 30 s in, else from a third of the way) is looked for later in the file (normalised
    cross-correlation above 0.98); a match at lag P counts only if 95% of the 5 s stretches after it (the last
    15 s aside) equal the audio P seconds earlier (correlation above 0.95), so a chorus heard twice in an
    evolving piece is not taken for a loop."""
    decimate = max(1, sample_rate // 4000)  # ~4-5 kHz keeps enough of the waveform to recognise it exactly
    n = len(wav) // decimate
    x = wav[: n * decimate].reshape(n, decimate).mean(axis=1).astype(np.float64)  # box low-pass, then decimate
    rate = sample_rate / decimate
    length, chunk = int(probe_s * rate), int(5.0 * rate)
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    size = 1 << int(np.ceil(np.log2(n + length))) if n else 1
    spectrum = np.fft.rfft(x, size) if n else None
    for start in (int(30.0 * rate), n // 3):
        if n < start + 3 * length:
            continue
        probe = x[start:start + length]
        probe_norm = np.linalg.norm(probe)
        if probe_norm < 1e-6:
            continue
        cc = np.fft.irfft(spectrum * np.conj(np.fft.rfft(probe, size)), size)[: n - length + 1]
        window = np.sqrt(np.maximum(energy[length:] - energy[:-length], 0.0))
        score = cc / (window * probe_norm + 1e-9)
        score[: start + length] = 0  # only matches after the probe itself
        peaks = [i for i in np.nonzero(score > 0.98)[0]
                 if score[i] >= score[max(i - 1, 0)] and score[i] >= score[min(i + 1, len(score) - 1)]]
        for pos in peaks:
            lag = int(pos) - start
            # the last 15 s may differ (a fade-out, a final chord); so may a stray 5 s here and there
            same = [_same(x[s:s + chunk], x[s - lag:s - lag + chunk])
                    for s in range(start + lag, n - chunk - int(15.0 * rate), chunk)]
            if same and sum(same) >= 0.95 * len(same):
                return start * decimate / sample_rate, lag * decimate / sample_rate
    return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-6 and nb < 1e-6:
        return True  # silence on both sides
    return float(a @ b) / (na * nb + 1e-12) > 0.95


def loudness_envelope(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level in dB (floored at -80) of every 1/ENVELOPE_RATE s of a mono recording: a fingerprint that survives
    re-encoding, resampling and small level changes."""
    hop = sample_rate // ENVELOPE_RATE
    n = len(mono) // hop
    frames = mono[: n * hop].reshape(n, hop).astype(np.float64)
    return np.maximum(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12), -80.0)


def same_recording(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two loudness envelopes are one recording: the same length within a second, and level curves
    that agree (correlation above 0.99 once each is centred)."""
    if abs(len(a) - len(b)) > ENVELOPE_RATE or min(len(a), len(b)) < 5 * ENVELOPE_RATE:
        return False
    n = min(len(a), len(b))
    x, y = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    denominator = np.linalg.norm(x) * np.linalg.norm(y)
    return denominator > 0 and float(x @ y) / denominator > 0.99
