"""Objective audio metrics: the paper's multi-scale mel distance (spectral.py) and scale-invariant SDR."""
from __future__ import annotations

import torch

from ..spectral import multiscale_mel_distance


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """The paper's multi-scale mel distance (audiotools' defaults: mel bands [150, 80], windows [2048, 512], L1 of log10
    magnitudes plus L1 of magnitudes) between two (..., N) signals; the estimate is cut or zero-padded to the
    reference's length."""
    estimate = _match_length(estimate, reference.shape[-1])
    return float(multiscale_mel_distance(reference.float(), estimate.float(), sample_rate))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019) of zero-mean signals, averaged over
    the leading dimensions; the estimate is cut or zero-padded to the reference's length."""
    ref = reference.double().reshape(-1, reference.shape[-1])
    est = _match_length(estimate, reference.shape[-1]).double().reshape(-1, reference.shape[-1])
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return float((10 * torch.log10(ratio)).mean())


def _match_length(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[-1] >= n:
        return x[..., :n]
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))
