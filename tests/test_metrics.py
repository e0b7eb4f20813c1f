"""Objective metrics (SI-SDR, mel distance front end) and the Opus baseline, against analytic values."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from vampnet.errors import OptionError
from vampnet.eval.metrics import mel_distance, si_sdr

SR = 22050


def _noise(n, seed):
    return torch.randn(1, 1, n, generator=torch.Generator().manual_seed(seed))


def test_si_sdr_is_scale_invariant_and_matches_the_signal_to_noise_ratio():
    x = _noise(SR, 0)
    n = _noise(SR, 1)
    n = n - (n * x).sum() / (x * x).sum() * x  # orthogonal to x, so the SNR is exact
    for snr_db in (0.0, 10.0, 25.0):
        y = x + n * math.sqrt((x.pow(2).sum() / n.pow(2).sum()) / 10 ** (snr_db / 10))
        assert si_sdr(x - x.mean(), y - y.mean()) == pytest.approx(snr_db, abs=0.05)
        assert si_sdr(x, 0.3 * y) == pytest.approx(si_sdr(x, y), abs=1e-6)
    assert si_sdr(x, x) > 80


def test_mel_distance_is_zero_for_identical_signals_and_pads_short_estimates():
    x = _noise(SR, 2) * 0.1
    assert mel_distance(x, x, SR) == 0.0
    assert mel_distance(x, x[..., : SR // 2], SR) == mel_distance(x, torch.cat([x[..., : SR // 2], torch.zeros(1, 1, SR - SR // 2)], -1), SR)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is installed by .ci/run; not on this machine")
def test_opus_round_trip_keeps_length_and_alignment_and_reports_its_bitrate():
    from vampnet.eval.opus import opus_roundtrip

    t = torch.arange(2 * SR) / SR
    x = (0.3 * torch.sin(2 * math.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)))[None, None]
    y, kbps = opus_roundtrip(x, SR, 24)
    assert y.shape == x.shape
    assert 12 < kbps < 36
    assert si_sdr(x, y) > 10  # a steady tone at 24 kbit/s comes back nearly intact and time-aligned
    lo, _ = opus_roundtrip(x, SR, 6)
    assert mel_distance(x, lo, SR) > mel_distance(x, y, SR)
    with pytest.raises(OptionError):
        opus_roundtrip(x, SR, 0.1)
    with pytest.raises(OptionError, match="same stream"):  # below 6 kbit/s libopus gives one stream for every target
        opus_roundtrip(x, SR, 4.59)


def test_frechet_caveat_names_too_few_excerpts_or_vectors():
    from vampnet.eval.fad import MIN_FRECHET_EXCERPTS, frechet_caveat

    assert frechet_caveat(MIN_FRECHET_EXCERPTS, 5000, 272) is None
    few = frechet_caveat(2, 400, 272)
    assert "2 excerpts" in few and "dimensions" not in few
    singular = frechet_caveat(50, 100, 128)
    assert "100 embedding vectors for 128 dimensions" in singular and "excerpt" not in singular.split(":")[0][-30:]
    assert "1 excerpt " in frechet_caveat(1, 272, 272) and "singular" in frechet_caveat(1, 272, 272)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    import numpy as np

    from vampnet.eval.fad import embedding_distance, frechet_distance

    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)  # commuting (diagonal) covariances
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(closed, rel=1e-10)
    # rotating both distributions by the same orthogonal matrix leaves the distance unchanged
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    assert frechet_distance(q @ mu1, q @ np.diag(d1) @ q.T, q @ mu2, q @ np.diag(d2) @ q.T) == pytest.approx(closed, rel=1e-8)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)
    x = np.random.default_rng(1).standard_normal((500, 4))
    assert embedding_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert embedding_distance(x, x + 2.0) == pytest.approx(16.0, rel=1e-9)
    with pytest.raises(OptionError):
        frechet_distance([0.0, 1.0], np.eye(2), [0.0], np.eye(1))
