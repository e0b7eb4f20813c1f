"""Loops are exactly the length asked for: each variation is round(seconds x rate) samples at the output rate (the
clip's own length when the loop is the whole clip) and the chain variations x repeats x that, through the loop
mode, the CLI (8.000 s clips, --seconds 4 and --bars 2, at 44.1 and 48 kHz) and the studio (the OSC bridge's in
test_osc.py); and the periodic resampling that puts a loop on the codec's frame grid and back is exact, so the seam
survives it (the seam itself: test_modes.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import save_model_folder, sine_mix
from vampnet import SamplingConfig, audio, modes
from vampnet.cli import main
from vampnet.ui import Settings, Studio

FAST = dict(sampling=SamplingConfig(steps=1), seed=0)


def tone(t: np.ndarray, period: int) -> np.ndarray:
    """A band-limited periodic test signal sampled at positions t of a period `period` samples long."""
    return np.cos(2 * np.pi * 3 * t / period + 0.4) + 0.5 * np.sin(2 * np.pi * 7 * t / period)


@pytest.mark.parametrize("N, n", [(100, 218), (218, 100), (101, 64), (64, 101), (8, 8)])
def test_resampling_a_period_gives_the_same_periodic_signal_at_the_new_length(N, n):
    x = torch.from_numpy(tone(np.arange(N), N)).float().view(1, 1, N)
    y = audio.resample_periodic(x, n)
    assert y.shape == (1, 1, n) and y.dtype == torch.float32
    assert np.allclose(y[0, 0].numpy(), tone(np.arange(n), n), atol=1e-5)


def test_a_cosine_at_the_nyquist_frequency_keeps_its_amplitude():
    """For even lengths the Nyquist bin holds a cosine split between +-N/2: upsampled it becomes a cosine of the
    same amplitude, and a cosine at the new Nyquist frequency survives downsampling."""
    t8, t16 = np.arange(8), np.arange(16)
    up = audio.resample_periodic(torch.from_numpy(np.cos(np.pi * t8)).view(1, 1, 8), 16)
    assert np.allclose(up[0, 0].numpy(), np.cos(np.pi * t16 / 2), atol=1e-9)
    down = audio.resample_periodic(torch.from_numpy(np.cos(np.pi * t16 / 2)).view(1, 1, 16), 8)
    assert np.allclose(down[0, 0].numpy(), np.cos(np.pi * t8), atol=1e-9)


def click_track(seconds: float, sr: int) -> np.ndarray:
    """Clicks at 120 BPM from 0.5 s, every 4th accented (the bar starts: 0.5, 2.5, 4.5 ... s), over a quiet tone."""
    x = 0.05 * sine_mix(seconds, sr)
    for k in range(int((seconds - 0.6) / 0.5) + 1):
        start, n = int((0.5 + 0.5 * k) * sr), sr // 70
        x[start:start + n] += (1.0 if k % 4 == 0 else 0.4) * np.hanning(2 * n)[n:] * np.sin(np.arange(n) * 0.7)
    return x.astype(np.float32)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_loop_variations_and_chain_are_exactly_the_requested_length(tiny_pipeline, rate):
    """A 3.000 s clip (and one a sample longer) looped whole, 1.5 s of it, and a length as bars give it (from a
    downbeat, not a whole number of frames): at the codec's rate and at the clip's own rate. (The CLI test below
    does the 8.000 s clips.)"""
    clip = torch.from_numpy(sine_mix(3.0, rate)).view(1, 1, -1)
    assert clip.shape[-1] == 3 * rate
    codec_rate = tiny_pipeline.sample_rate
    odd = torch.cat([clip, clip[..., :1]], -1)
    cases = [  # (clip, loop options, output rate, samples per variation)
        (clip, {}, None, 3 * codec_rate),
        (clip, {}, rate, 3 * rate),
        (odd, {}, rate, 3 * rate + 1),                     # the clip's own length, whatever it is
        (clip, {"seconds": 1.5}, rate, 3 * rate // 2),
        (clip, {"seconds": 1.5}, None, round(1.5 * codec_rate)),
        (clip, {"seconds": 1.0917, "start_s": 0.5123}, rate, round(1.0917 * rate)),
    ]
    for i, (x, kw, out_rate, n) in enumerate(cases):
        variations = 2 if i == 0 else 1  # (one variation is enough for the others, and faster)
        res = modes.loop(tiny_pipeline, x, rate, variations=variations, repeats=3, output_rate=out_rate, **kw, **FAST)
        assert res.sample_rate == (out_rate or codec_rate)
        assert [v.audio.shape for v in res.variations] == [(1, 1, n)] * variations, (kw, out_rate)
        assert res.chain.shape == (1, 1, variations * 3 * n)
        assert res.variations[0].settings["loop_samples"] == n


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_pipeline):
    p = tiny_pipeline
    return save_model_folder(tmp_path_factory.mktemp("tiny") / "model", p.codec, p.coarse, p.c2f)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_cli_loops_of_a_whole_clip_of_seconds_and_of_bars_are_exact(model_dir, tmp_path, rate):
    """`vampnet loop` of an 8.000 s clip, with --seconds 4 and with --bars 2: every variation file is
    round(length x rate) samples at the rate it is written at, and the chain variations x repeats x that."""
    clip = tmp_path / f"clip-{rate}.wav"
    sf.write(clip, click_track(8.0, rate), rate, subtype="FLOAT")
    wav, sr = audio.load(clip)
    bars_start, bars_s, _ = modes.loop_region(wav, sr, bars=2, tracker="madmom")
    assert abs(bars_s - 4.0) < 0.1 and bars_start > 0.3  # two bars of 120 BPM from the first downbeat
    for name, extra, seconds, variations in (("whole", [], 8.0, 2), ("seconds", ["--seconds", "4"], 4.0, 1),
                                             ("bars", ["--bars", "2", "--beat-tracker", "madmom"], bars_s, 1)):
        out = tmp_path / f"{name}.wav"
        assert main(["loop", str(clip), "-o", str(out), "--models", str(model_dir), "--variations", str(variations),
                     "--repeats", "3", "--steps", "1", "--seed", "0", "-q", *extra]) == 0
        written = sf.info(str(out)).samplerate
        n = modes.loop_samples(seconds, written)
        files = [tmp_path / f"{name}-{i}.wav" for i in range(1, variations + 1)]
        assert [sf.info(str(f)).frames for f in files] == [n] * variations, name
        assert sf.info(str(out)).frames == variations * 3 * n, name


def test_studio_loops_and_their_chain_are_exact(tiny_pipeline, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, sine_mix(2.0, 44100), 44100)
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        result = studio.generate(path, Settings(mode="loop", loop_seconds=1.3, variations=2, steps=1, seed=0))
        n = modes.loop_samples(1.3, 44100)  # the files have the input's rate, and are exact there
        assert [sf.info(str(f)).frames for f in result.audio] == [n, n]
        assert {sf.info(str(f)).samplerate for f in result.audio} == {44100}
        chain = [f for f in result.downloads if "chain" in f.name]
        assert len(chain) == 1 and sf.info(str(chain[0])).frames == 2 * n  # the studio plays each variation once
    finally:
        studio.close()


def test_loop_seconds_are_exact_and_snapped_only_when_asked():
    x = click_track(6.0, 22050)
    assert modes.loop_region(x, 22050, seconds=1.9) == (0.0, 1.9, "loop: 1.9 s from the start")
    start, length, how = modes.loop_region(x, 22050, seconds=1.9, snap=True, tracker="librosa")
    assert start == 0.0 and abs(length - 2.0) < 0.05 and "snapped" in how
    assert math.isclose(modes.loop_samples(1.9, 22050), 41895)
