"""Spectral representations and distances: STFT, a Slaney mel filterbank and the multi-scale mel distance.

Used by codec training (reconstruction losses) and by evaluation (the paper's mel distance). Bottom floor: it
imports only torch and numpy.

The evaluation metric `multiscale_mel_distance` follows audiotools' `MelSpectrogramLoss()` defaults, as the original
VampNet evaluation uses them:
for each (window, n_mels) in ((2048, 150), (512, 80)):
    S = |STFT(x)|        Hann window (periodic), hop = window / 4, centred frames (reflect padding), power 1
    M = S @ melbank.T    Slaney mel scale and Slaney area normalisation, fmin 0, fmax sr / 2
    d += mean|log10(clamp(Mx, 1e-5)^2) - log10(clamp(My, 1e-5)^2)|   (log term, weight 1)
       + mean|Mx - My|                                                  (magnitude term on the mel bands, weight 1)
Means run over every element (batch, channels, bands, frames). Codec training uses the same function with
DAC's settings (seven scales, power 1, magnitude weight 0)."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "hz_to_mel", "mel_to_hz", "mel_filterbank", "stft", "stft_magnitude", "mel_spectrogram",
    "multiscale_mel_distance", "EVAL_MEL_BANDS", "EVAL_MEL_WINDOWS",
]

EVAL_MEL_BANDS = (150, 80)
EVAL_MEL_WINDOWS = (2048, 512)

# Slaney's mel scale (Auditory Toolbox, also librosa's default `htk=False`): linear below 1 kHz at 200/3 Hz per
# mel, logarithmic above with 27 mels per factor 6.4 of frequency.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # = 15
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz):
    """Frequency in Hz -> Slaney mel (numpy array or float). hz_to_mel(1000) == 15."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel):
    """Slaney mel -> frequency in Hz; the inverse of hz_to_mel."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


@functools.lru_cache(maxsize=64)
def _mel_filterbank_np(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    # n_mels + 2 edge frequencies evenly spaced in mel: band i rises from edge i to a peak at edge i+1, falls to i+2
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: every triangle has unit area in Hz (height 2 / its base width)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters on Slaney's mel scale with Slaney (unit-area) normalisation.

    The same filters as `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` with its defaults (htk=False,
    norm='slaney'). Bands narrower than the FFT bin spacing may be all zero (only at very small n_fft)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel band edges must satisfy 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}")
    return torch.from_numpy(_mel_filterbank_np(int(sample_rate), int(n_fft), int(n_mels), float(fmin), float(fmax)).copy())


@functools.lru_cache(maxsize=64)
def _cached_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, device, dtype) -> torch.Tensor:
    return mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).to(device=device, dtype=dtype)


def stft(x: torch.Tensor, window_length: int, hop_length: int | None = None) -> torch.Tensor:
    """Complex STFT of (..., N) signals -> (..., window_length // 2 + 1, frames).

    Periodic Hann window, hop window/4 by default, centred frames: the signal is padded by window/2 on both sides
    by reflection (zeros when the signal is too short to reflect), giving 1 + N // hop frames."""
    hop_length = hop_length or window_length // 4
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    window = torch.hann_window(window_length, periodic=True, device=x.device, dtype=flat.dtype)
    pad_mode = "reflect" if shape[-1] > window_length // 2 else "constant"
    spec = torch.stft(flat, n_fft=window_length, hop_length=hop_length, window=window, center=True, pad_mode=pad_mode,
                      return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def stft_magnitude(x: torch.Tensor, window_length: int, hop_length: int | None = None, power: float = 1.0) -> torch.Tensor:
    """|STFT|^power of (..., N) signals -> (..., window_length // 2 + 1, frames), real."""
    mag = stft(x, window_length, hop_length).abs()
    return mag if power == 1.0 else mag.pow(power)


def mel_spectrogram(x: torch.Tensor, sample_rate: int, window_length: int, n_mels: int, hop_length: int | None = None,
                    fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """Mel magnitudes (power 1) of (..., N) signals -> (..., n_mels, frames)."""
    mag = stft_magnitude(x, window_length, hop_length)
    fb = _cached_filterbank(int(sample_rate), int(window_length), int(n_mels), float(fmin),
                            float(sample_rate / 2 if fmax is None else fmax), mag.device, mag.dtype)
    return torch.matmul(fb, mag)


def _check_pair(x: torch.Tensor, y: torch.Tensor):
    if x.shape != y.shape:
        raise ValueError(f"signals must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def multiscale_mel_distance(x: torch.Tensor, y: torch.Tensor, sample_rate: int, n_mels=EVAL_MEL_BANDS,
                            windows=EVAL_MEL_WINDOWS, *, log_weight: float = 1.0, mag_weight: float = 1.0,
                            power: float = 2.0, clamp_eps: float = 1e-5, fmin: float = 0.0,
                            fmax: float | None = None) -> torch.Tensor:
    """Multi-scale mel distance between (..., N) signals x and y (same shape, same sample rate); a 0-d tensor.

    Sum over scales (window_length, n_mels) of
        log_weight * mean|log10(clamp(Mx, eps)^power) - log10(clamp(My, eps)^power)| + mag_weight * mean|Mx - My|
    where M is the mel magnitude spectrogram (hop window/4). The defaults are audiotools' MelSpectrogramLoss (the
    paper's evaluation). It is symmetric, zero for identical inputs, and differentiable in both arguments. For
    y = s * x with every mel bin of both above eps the log term of each scale is exactly |power * log10(s)|."""
    _check_pair(x, y)
    if len(n_mels) != len(windows):
        raise ValueError(f"n_mels {tuple(n_mels)} and windows {tuple(windows)} must have the same length")
    total = x.new_zeros((), dtype=torch.float32)
    for n, w in zip(n_mels, windows):
        mx = mel_spectrogram(x, sample_rate, w, n, fmin=fmin, fmax=fmax)
        my = mel_spectrogram(y, sample_rate, w, n, fmin=fmin, fmax=fmax)
        if log_weight:
            lx = torch.log10(mx.clamp(min=clamp_eps).pow(power))
            ly = torch.log10(my.clamp(min=clamp_eps).pow(power))
            total = total + log_weight * F.l1_loss(lx, ly)
        if mag_weight:
            total = total + mag_weight * F.l1_loss(mx, my)
    return total
