"""Objective metrics (SI-SDR, mel distance front end) and the Opus baseline, against analytic values."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from vampnet.errors import OptionError
from vampnet.metrics import mel_distance, si_sdr

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
    from vampnet.opus import opus_roundtrip

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
