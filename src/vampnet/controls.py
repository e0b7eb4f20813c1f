"""Control features from audio: what a vamp can be asked to follow besides its prompt (issue 28).

Loudness is the one control today. Per codec frame t (the frame covering samples [t*hop, (t+1)*hop), centred on
c = t*hop + hop/2) it is the RMS level in dB of the samples in a window of WINDOW_HOPS * hop samples centred on c:

    loudness[t] = max(floor_db, 10 * log10(mean(x[c - W/2 : c + W/2] ** 2)))      W = WINDOW_HOPS * hop

where the mean runs over the window's samples that exist (at the edges of the signal the window is cut, not
zero-padded, so a steady sound has the same level everywhere). A sine of amplitude A therefore reads
20 * log10(A / sqrt(2)) dB (when the window holds whole periods) and silence reads `floor_db` (-80 dB by default).
Optionally the levels are smoothed (a centred moving average over `smooth_frames` frames, in dB) and quantised
(rounded to multiples of `step_db`). The sample rate and hop are the codec's (`codec.sample_rate`,
`codec.hop_length`).

Levels are those of the audio the model sees: the pipeline normalises its input to -24 LUFS before encoding and
the tokeniser normalises every excerpt the same way, so an envelope taken from a file (`loudness_from_file`) is
measured after normalising that file to -24 LUFS too; its shape is what is followed, at the model's level.

A loudness curve (`loudness_from_curve`, the CLI's `--loudness`) is a small text of time/level points:

    0:-40, 2.5:-18, 4:-18, 6:-60          (or one `time_s:dB` pair per line; spaces are ignored)

times in seconds, increasing, levels in dB as above. The level is linearly interpolated between points at each
frame's centre time; frames before the first point or after the last are not controlled (free), so a curve
over part of a clip controls that part only.

A `Control` is what the pipeline and sampler take: per-frame values in their natural units (dB), which frames are
controlled (`present`), and the names of its channels; `features()` scales them to what the model reads."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import audio
from .errors import OptionError

WINDOW_HOPS = 4          # the RMS window is this many hops long, centred on each frame
FLOOR_DB = -80.0         # silence reads this level
CONTROL_NAMES = ("loudness",)
# what the model reads: (value - offset) / scale, so typical levels (-80 .. 0 dB) lie within about +-2
FEATURE_SCALING = {"loudness": (-40.0, 20.0)}
FITS = ("stretch", "align")


@dataclass(frozen=True)
class Control:
    """Per-frame control values (T, C) in natural units, the frames they control (T,) bool, the channels' names."""

    values: torch.Tensor
    present: torch.Tensor
    names: tuple[str, ...] = ("loudness",)

    def __post_init__(self):
        if not isinstance(self.values, torch.Tensor) or self.values.dim() != 2 or self.values.shape[1] != len(self.names):
            raise OptionError(f"control values must be shaped (frames, {len(self.names)})")
        if not isinstance(self.present, torch.Tensor) or self.present.shape != self.values.shape[:1]:
            raise OptionError("the control's present mask must have one entry per frame")
        unknown = [n for n in self.names if n not in FEATURE_SCALING]
        if unknown:
            raise OptionError(f"unknown control '{unknown[0]}' (known: {', '.join(CONTROL_NAMES)})")
        if not torch.isfinite(self.values[self.present.bool()]).all():
            raise OptionError("control values must be finite where the control is present")
        object.__setattr__(self, "values", self.values.float())
        object.__setattr__(self, "present", self.present.bool())

    @property
    def n_frames(self) -> int:
        return self.values.shape[0]

    def features(self) -> torch.Tensor:
        """(T, C) values scaled to what the model reads; absent frames are zeros (the model ignores them)."""
        scaled = scale_features(self.values, self.names)
        return torch.where(self.present[:, None], scaled, torch.zeros_like(scaled))

    def frames(self, start: int, end: int) -> "Control":
        """The control of frames [start, end)."""
        return Control(self.values[start:end], self.present[start:end], self.names)


def scale_features(values: torch.Tensor, names=("loudness",)) -> torch.Tensor:
    """(..., C) values in natural units -> what the model reads, (value - offset) / scale per channel."""
    offset = torch.tensor([FEATURE_SCALING[n][0] for n in names], device=values.device)
    scale = torch.tensor([FEATURE_SCALING[n][1] for n in names], device=values.device)
    return (values.float() - offset) / scale


def loudness_control(db, present=None) -> Control:
    """A loudness Control from per-frame levels in dB (T,); `present` (T,) bool, all frames by default."""
    db = torch.as_tensor(np.asarray(db, dtype=np.float32)).reshape(-1)
    present = torch.ones(db.shape[0], dtype=torch.bool) if present is None else torch.as_tensor(present).bool()
    return Control(db[:, None], present)


def loudness_db(wav, hop_length: int, *, floor_db: float = FLOOR_DB, step_db: float = 0.0,
                smooth_frames: int = 1) -> np.ndarray:
    """Per-frame RMS level (dB) of mono audio at the codec rate (any shape ending in samples), ceil(N / hop)
    frames; see the module docstring for the window, floor, smoothing and quantisation."""
    x = np.asarray(wav.detach().cpu().float() if isinstance(wav, torch.Tensor) else wav, dtype=np.float64).reshape(-1)
    if hop_length < 1 or x.size == 0:
        raise OptionError("loudness needs a positive hop and a non-empty signal")
    if smooth_frames < 1 or step_db < 0:
        raise OptionError("smooth_frames must be >= 1 and step_db >= 0")
    n_frames = math.ceil(x.size / hop_length)
    centres = np.arange(n_frames) * hop_length + hop_length / 2
    half = WINDOW_HOPS * hop_length / 2
    lo = np.clip(np.ceil(centres - half), 0, x.size).astype(np.int64)
    hi = np.clip(np.ceil(centres + half), 0, x.size).astype(np.int64)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    mean_square = (energy[hi] - energy[lo]) / np.maximum(hi - lo, 1)
    with np.errstate(divide="ignore"):
        db = np.maximum(10 * np.log10(np.maximum(mean_square, 0.0)), floor_db)
    if smooth_frames > 1:
        db = _moving_average(db, smooth_frames)
    if step_db > 0:
        db = np.round(db / step_db) * step_db
    return db.astype(np.float32)


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over n frames, the window cut at the ends (so the ends are not pulled down)."""
    sums = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    lo, hi = np.clip(i - n // 2, 0, x.size), np.clip(i - n // 2 + n, 0, x.size)
    return (sums[hi] - sums[lo]) / (hi - lo)


def fit_frames(db: np.ndarray, n_frames: int, fit: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """An envelope made to cover `n_frames`: "stretch" resamples it linearly over them (a time-stretch);
    "align" keeps its frames in time from the first, and frames past its end are not controlled.
    Returns (levels (n_frames,), present (n_frames,) bool)."""
    if fit not in FITS:
        raise OptionError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if n_frames < 1 or len(db) == 0:
        raise OptionError("an envelope needs at least one frame to fit, and a positive frame count")
    db = np.asarray(db, dtype=np.float32)
    if fit == "align":
        out = np.full(n_frames, FLOOR_DB, np.float32)
        n = min(n_frames, len(db))
        out[:n] = db[:n]
        return out, np.arange(n_frames) < n
    positions = (np.arange(n_frames) + 0.5) * len(db) / n_frames - 0.5  # frame centres mapped onto the source
    return np.interp(positions, np.arange(len(db)), db).astype(np.float32), np.ones(n_frames, bool)


def loudness_from_audio(wav: torch.Tensor, sample_rate: int, codec, n_frames: int | None = None,
                        fit: str = "stretch", **options) -> Control:
    """The loudness Control of a signal (channels, samples) or (1, channels, samples) at any rate: mixed to mono,
    resampled to the codec's rate and normalised to -24 LUFS as the pipeline does, measured at the codec's hop,
    then fitted to `n_frames` (see fit_frames; None keeps its own length). `options`: loudness_db's."""
    wav = torch.as_tensor(wav).float()
    wav = wav.reshape(1, 1, -1) if wav.dim() == 1 else wav if wav.dim() == 3 else wav.unsqueeze(0)
    if wav.shape[-1] == 0:
        raise OptionError("the control's audio is empty")
    x = audio.resample(audio.to_mono(wav), int(sample_rate), codec.sample_rate)
    x, _ = audio.normalize_loudness(x, codec.sample_rate)
    db = loudness_db(x, codec.hop_length, **options)
    if n_frames is None:
        return loudness_control(db)
    db, present = fit_frames(db, n_frames, fit)
    return loudness_control(db, present)


def loudness_from_file(path, n_frames: int | None, codec, fit: str = "stretch", **options) -> Control:
    """The loudness Control of an audio file (see loudness_from_audio); AudioError if it cannot be read."""
    wav, sr = audio.load(Path(path))
    return loudness_from_audio(wav, sr, codec, n_frames, fit, **options)


_PAIR = re.compile(r"^([-+]?[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?):([-+]?[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)$", re.I)


def parse_curve(text: str) -> list[tuple[float, float]]:
    """`time_s:dB` pairs separated by commas or newlines -> [(time, dB)], times strictly increasing."""
    items = [item.replace(" ", "").replace("\t", "") for item in re.split(r"[,\n;]", str(text))]
    points = []
    for item in filter(None, items):
        found = _PAIR.match(item)
        if not found:
            raise OptionError(f"loudness curve: {item!r} is not time_s:dB (e.g. 0:-30, 2.5:-12)")
        points.append((float(found.group(1)), float(found.group(2))))
    if not points:
        raise OptionError("loudness curve is empty: give time_s:dB points, e.g. 0:-30, 2.5:-12")
    times = [t for t, _ in points]
    if times[0] < 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise OptionError("loudness curve: times must be >= 0 and strictly increasing")
    if any(not FLOOR_DB <= db <= 20 for _, db in points):
        raise OptionError(f"loudness curve: levels must lie in [{FLOOR_DB:g}, 20] dB")
    return points


def loudness_from_curve(text: str, n_frames: int, frame_rate: float) -> Control:
    """A loudness Control from a curve (module docstring): interpolated at each frame's centre time, present from
    the first point's time to the last's. OptionError for a malformed curve or one that controls no frame."""
    points = parse_curve(text)
    if n_frames < 1 or frame_rate <= 0:
        raise OptionError("a loudness curve needs a positive frame count and frame rate")
    times = (np.arange(n_frames) + 0.5) / frame_rate
    t, db = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    present = (times >= t[0] - 1e-9) & (times <= t[-1] + 1e-9)
    if not present.any():
        raise OptionError(f"the loudness curve ({t[0]:g}-{t[-1]:g} s) covers no frame of this "
                          f"{n_frames / frame_rate:.2f} s clip")
    levels = np.where(present, np.interp(times, t, db), FLOOR_DB).astype(np.float32)
    return loudness_control(levels, present)


def pearson(a, b) -> float:
    """Pearson correlation of two envelopes (the adherence measure); nan when either is constant."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")
