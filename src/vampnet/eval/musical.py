"""Whether a generated clip keeps its input's rhythm and key: octave-tolerant tempo agreement (librosa's beat
tracker), the correlation of the two onset-strength envelopes (are the transients where they were, as sharp?)
and chroma similarity (the cosine of the two clips' time-averaged chroma, a key profile).

Tempo agreement counts an estimate as kept when it is within `TEMPO_TOLERANCE` (4 %) of the input's tempo, or of
half or twice it: beat trackers often lock onto another metrical level of the same beat, which says nothing
about the music. Both measures need librosa (the `beats` extra)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError

TEMPO_TOLERANCE = 0.04
OCTAVES = (1.0, 2.0, 0.5)
# librosa's tracker picks its tempo from onset-envelope lags of one hop each. At its default 512-sample hop
# (22.05 kHz) neighbouring lags lie 5-6 % apart around 140 BPM, wider than TEMPO_TOLERANCE: a 10 ms delay of the
# same excerpt "lost" its tempo on 5 of 24 validation excerpts. At 256 samples they lie under 3 % apart and no
# delay lost it (docs/evaluation.md, "The tempo measure").
TEMPO_HOP_S = 256 / 22050


def _librosa():
    try:
        import librosa
    except ImportError:
        raise OptionError("tempo and chroma measures need librosa: pip install 'vampnet[beats]'") from None
    return librosa


def _mono(x) -> np.ndarray:
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return x.reshape(-1, x.shape[-1]).mean(0) if x.ndim > 1 else x


def tempo(x, sample_rate: int, hop: int | None = None) -> float:
    """The tempo (BPM) librosa's beat tracker finds in a signal (any leading dims are mixed to mono), on an onset
    envelope of `hop` samples (default: TEMPO_HOP_S); 0 if none."""
    librosa = _librosa()
    hop = hop or max(1, round(TEMPO_HOP_S * sample_rate))
    found, _ = librosa.beat.beat_track(y=_mono(x), sr=sample_rate, hop_length=hop)
    return float(np.atleast_1d(found)[0])


def tempo_agrees(reference_bpm: float, estimate_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Whether `estimate_bpm` is within `tolerance` (relative) of `reference_bpm`, or of half or twice it."""
    if reference_bpm <= 0 or estimate_bpm <= 0:
        return False
    return any(abs(estimate_bpm / (reference_bpm * octave) - 1) <= tolerance for octave in OCTAVES)


def onset_correlation(reference, estimate, sample_rate: int) -> float:
    """Pearson correlation of the two signals' onset-strength envelopes (librosa, 512-sample hop), over the
    shorter length; 0 when either is flat."""
    librosa = _librosa()
    a, b = (librosa.onset.onset_strength(y=_mono(x), sr=sample_rate) for x in (reference, estimate))
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def key_profile(x, sample_rate: int) -> np.ndarray:
    """The time-averaged 12-bin chroma (librosa's STFT chroma) of a signal."""
    librosa = _librosa()
    return librosa.feature.chroma_stft(y=_mono(x), sr=sample_rate).mean(axis=1)


def chroma_similarity(reference, estimate, sample_rate: int) -> float:
    """Cosine similarity of the two signals' key profiles: 1 for the same pitch classes in the same proportions."""
    a, b = key_profile(reference, sample_rate), key_profile(estimate, sample_rate)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def keeps_rhythm_and_key(reference, estimate, sample_rate: int) -> dict:
    """The measures of `estimate` against `reference`: the two tempi, whether they agree, the onset-strength
    correlation and the chroma similarity."""
    t_ref, t_est = tempo(reference, sample_rate), tempo(estimate, sample_rate)
    return {"tempo_input": t_ref, "tempo_output": t_est, "tempo_kept": tempo_agrees(t_ref, t_est),
            "onset_correlation": onset_correlation(reference, estimate, sample_rate),
            "chroma_similarity": chroma_similarity(reference, estimate, sample_rate)}
