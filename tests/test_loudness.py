"""Integrated loudness (ITU-R BS.1770) computed with numpy alone agrees with pyloudnorm's meter, the reference."""
from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import torch

from vampnet import audio
from vampnet.errors import AudioError


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_loudness_matches_pyloudnorm(rate, channels):
    rng = np.random.default_rng(rate + channels)
    n = int(3.3 * rate)
    # noise with a rising envelope and a quiet start, so both gates drop some blocks
    x = rng.standard_normal((channels, n)) * np.linspace(0.0005, 0.5, n) ** 2
    x[:, : rate // 2] *= 1e-4
    wav = torch.from_numpy(x.astype(np.float32))[None]
    ref = pyloudnorm.Meter(rate).integrated_loudness(wav[0].double().numpy().T)
    assert audio.loudness(wav, rate) == pytest.approx(ref, abs=1e-9)


def test_loudness_of_a_full_scale_sine_is_minus_3_lufs_and_silence_is_minus_inf():
    rate = 48000
    t = torch.arange(5 * rate) / rate
    sine = torch.sin(2 * math.pi * 997 * t).view(1, 1, -1)  # BS.1770's check: 0 dBFS 997 Hz sine in one channel
    assert audio.loudness(sine, rate) == pytest.approx(-3.01, abs=0.05)
    assert audio.loudness(torch.zeros(1, 1, rate), rate) == -math.inf


def test_loudness_refuses_more_than_five_channels():
    with pytest.raises(AudioError, match="at most 5 channels"):
        audio.loudness(torch.randn(1, 6, 48000), 48000)


# --- the true-peak limiter and match_loudness ----------------------------------------------------------------------
RATE = 22050
CEILING = 10 ** (audio.TRUE_PEAK_CEILING_DB / 20)


def dense(seconds: float, rate: int = RATE, seed: int = 0) -> torch.Tensor:
    """Dense loud-ish material: seven partials under a pumping envelope, plus noise (peaks ~14 dB over its loudness)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (55, 110, 220, 441, 883, 1760, 3520))
    x = x * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2 * t))) ** 3 + 0.3 * rng.standard_normal(t.size)
    return torch.from_numpy(x.astype(np.float32)).view(1, 1, -1)


def test_true_peak_finds_the_peak_between_samples():
    # a quarter-rate sine sampled 45 degrees off its crests: every sample is at 0.707, the waveform reaches 1.0
    n = np.arange(4000)
    fade = np.clip(np.minimum(n, n[::-1]) / 400, 0, 1)  # no abrupt start, whose ringing is a true peak of its own
    x = torch.from_numpy(np.sin(np.pi / 2 * n + np.pi / 4) * fade).view(1, 1, -1)
    assert float(x.abs().max()) == pytest.approx(2 ** -0.5, abs=1e-6)
    assert audio.true_peak(x, RATE) == pytest.approx(1.0, abs=0.01)


def test_sliding_min_is_the_minimum_of_each_window():
    x = np.random.default_rng(0).standard_normal(1001)
    for k in (1, 2, 7, 16, 1001):
        naive = np.array([x[i:i + k].min() for i in range(x.size - k + 1)])
        assert np.array_equal(audio._sliding_min(x, k), naive)


def test_limiter_leaves_audio_under_the_ceiling_untouched():
    x = 0.5 * torch.sin(torch.linspace(0, 3000, 2 * RATE)).view(1, 1, -1)
    assert torch.equal(audio.limit(x, RATE), x)


def test_limiter_holds_true_peaks_at_the_ceiling_touching_only_the_time_around_an_over():
    t = torch.arange(2 * RATE) / RATE
    x = 0.3 * torch.sin(2 * np.pi * 440 * t)
    burst = slice(RATE, RATE + RATE // 20)  # 50 ms at 6.7 times the level: 2.0, 16.5 dB over the ceiling
    x[burst] *= 6.7
    y = audio.limit(x.view(1, 1, -1), RATE)[0, 0]
    assert audio.true_peak(y.view(1, 1, -1), RATE) <= CEILING * 1.001
    gain = y / torch.where(x.abs() > 1e-3, x, torch.ones_like(x))
    sure = x.abs() > 1e-3
    lookahead = int(audio.LOOKAHEAD_S * RATE) + 2 * audio.LIMITER_BLOCK
    release = int((16.5 + 1) / audio.RELEASE_DB_PER_S * RATE) + 2 * audio.LIMITER_BLOCK
    assert torch.allclose(gain[:burst.start - lookahead][sure[:burst.start - lookahead]], torch.tensor(1.0))
    assert torch.allclose(gain[burst.stop + release:][sure[burst.stop + release:]], torch.tensor(1.0))
    assert gain[burst].max() <= CEILING / 2.0 * 1.01  # inside the burst: down by the over, no more than needed + 1 %
    # smooth: the gain falls over the lookahead and rises at the release rate, never in a step
    steps = (gain[1:] - gain[:-1])[sure[1:] & sure[:-1]].abs()
    assert steps.max() < 0.02


def test_match_loudness_brings_loud_material_to_the_target_below_the_ceiling():
    x = dense(10.0)  # +2.6 LUFS, true peak +16.7 dBTP
    for target in (-14.0, -10.0):
        y = audio.match_loudness(x, RATE, target)
        assert pyloudnorm.Meter(RATE).integrated_loudness(y[0, 0].double().numpy()) == pytest.approx(target, abs=0.1)
        assert audio.true_peak(y, RATE) <= CEILING * 1.001
    # material with headroom only gets the gain: no limiting, the waveform's shape is kept
    y = audio.match_loudness(x, RATE, -30.0)
    assert audio.loudness(y, RATE) == pytest.approx(-30.0, abs=1e-6)
    ratio = y[x.abs() > 1e-3] / x[x.abs() > 1e-3]
    assert float(ratio.max() - ratio.min()) < 1e-5


def test_a_looped_signal_is_limited_around_its_joint():
    # a peak at the loop's start: the gain falls before it at the loop's end, as when the loop plays again
    x = 0.3 * torch.sin(torch.linspace(0, 2000, RATE)).view(1, 1, -1)
    x[..., :200] *= 5.0
    looped, once = audio.limit(x, RATE, circular=True), audio.limit(x, RATE)
    assert float((looped / x)[0, 0, -20:].max()) < 0.9 and torch.equal(once[..., -20:], x[..., -20:])
    assert audio.true_peak(torch.cat([looped, looped], -1), RATE) <= CEILING * 1.001
