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
