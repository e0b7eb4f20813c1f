"""Result files a musician can rely on: by default the input's sample rate and (16/24-bit PCM) sample format, mono,
at the input's loudness with no sample over full scale; or the rate, channels, file type and bit depth asked for."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from conftest import sine_mix
from vampnet import audio, modes
from vampnet.audio import FileFormat, OutputOptions
from vampnet.errors import OptionError
from vampnet.sampling import SamplingConfig

FAST = SamplingConfig(steps=2)


def meter(path) -> float:
    """The integrated loudness a meter reads on a file (pyloudnorm, all its channels)."""
    data, rate = sf.read(str(path), always_2d=True)
    return pyloudnorm.Meter(rate).integrated_loudness(data)


def loud_master(path, seconds: float, rate: int, channels: int, subtype: str, lufs: float = -10.0, seed: int = 0):
    """A file like a loud master: dense material saturated (tanh) until, peaking at -0.1 dBFS, it measures `lufs`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (55, 110, 220, 330, 660, 1320, 2640))
    beat = (0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2 * t))) ** 3  # a pumping envelope: peaks well above the mean
    x = np.stack([beat * (tones + 0.5 * rng.standard_normal(t.size)) for _ in range(channels)], 1)
    master = lambda drive: 0.99 * np.tanh(drive * x) / np.tanh(drive * np.abs(x).max())  # noqa: E731
    lo, hi = 1e-3, 10.0
    for _ in range(60):  # the drive that gives `lufs`
        drive = (lo * hi) ** 0.5
        lo, hi = (drive, hi) if pyloudnorm.Meter(rate).integrated_loudness(master(drive)) < lufs else (lo, drive)
    sf.write(str(path), master(drive), rate, subtype=subtype)
    return path


@pytest.mark.parametrize("rate, channels, subtype", [(44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (48000, 2, "PCM_24")])
def test_a_loud_input_comes_back_at_its_loudness_with_no_sample_over_full_scale(tiny_pipeline, tmp_path, rate,
                                                                                channels, subtype):
    src = loud_master(tmp_path / "master.wav", 6.0, rate, channels, subtype)
    assert meter(src) == pytest.approx(-10.0, abs=0.01) and np.abs(sf.read(str(src))[0]).max() > 0.95
    dst = tmp_path / "vamp.wav"
    tiny_pipeline.vamp_file(src, dst, sampling=FAST, seed=0)
    data, got_rate = sf.read(str(dst), always_2d=True)
    info = sf.info(str(dst))
    assert (got_rate, info.channels, info.subtype) == (rate, 1, subtype)  # the input's rate and sample format, mono
    assert abs(meter(dst) - meter(src)) <= 1.0
    assert np.abs(data).max() <= 1.0


@pytest.mark.parametrize("subtype, expected", [("PCM_16", "PCM_16"), ("PCM_24", "PCM_24"), ("FLOAT", "PCM_24"),
                                               ("PCM_U8", "PCM_24")])
def test_the_result_file_has_the_inputs_rate_and_pcm_sample_format(tiny_pipeline, tmp_path, subtype, expected):
    src = tmp_path / "in.wav"
    sf.write(str(src), np.stack([sine_mix(1.0, 32000)] * 2, 1), 32000, subtype=subtype)
    tiny_pipeline.vamp_file(src, tmp_path / "out.wav", sampling=FAST, seed=0)
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (32000, 1, expected, 32000)


@pytest.mark.parametrize("name, options, expected", [
    ("a.wav", OutputOptions(sample_rate=96000, channels=2, bit_depth=32), (96000, 2, "FLOAT")),
    ("b.flac", OutputOptions(sample_rate=44100, bit_depth=16), (44100, 1, "PCM_16")),
    ("c.flac", OutputOptions(channels=2), (48000, 2, "PCM_24")),
    ("d.ogg", OutputOptions(sample_rate=22050), (22050, 1, "VORBIS")),
    ("e.mp3", OutputOptions(sample_rate=44100, channels=2), (44100, 2, "MPEG_LAYER_III")),
])
def test_results_are_written_as_asked_and_read_back_the_same(tiny_pipeline, tmp_path, name, options, expected):
    if name.endswith(".mp3") and "mp3" not in audio.writable_formats():
        pytest.skip("this libsndfile writes no MP3")
    wav = torch.from_numpy(sine_mix(1.5, 48000)).view(1, 1, -1)
    result = tiny_pipeline.vamp(wav, 48000, sampling=FAST, seed=0)
    assert result.source == FileFormat(48000, 1)  # the result remembers its input
    path = result.save(tmp_path / name, options)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == expected
    data = sf.read(str(path), always_2d=True)[0]
    n = round(result.audio.shape[-1] * expected[0] / result.sample_rate)  # exactly the result's duration
    if expected[2] in ("PCM_16", "PCM_24", "FLOAT"):  # lossless: the same samples, resampled, to the format's precision
        assert data.shape[0] == n
        want = audio.resample(result.audio, result.sample_rate, expected[0])[0, 0].numpy() / np.sqrt(expected[1])
        step = {"PCM_16": 2.0 ** -15, "PCM_24": 2.0 ** -23, "FLOAT": 1e-7}[expected[2]]
        assert np.abs(data - want[:, None]).max() <= step
    if expected[1] == 2:  # the mono result on both channels, the file as loud as the mono result
        assert np.array_equal(data[:, 0], data[:, 1])
        mono = audio.loudness(audio.resample(result.audio, result.sample_rate, expected[0]), expected[0])
        assert pyloudnorm.Meter(expected[0]).integrated_loudness(data) == pytest.approx(mono, abs=0.3)


@pytest.mark.parametrize("name, options, message", [
    ("x.flac", OutputOptions(bit_depth=32), "FLAC holds 16- or 24-bit"),
    ("x.wav", OutputOptions(bit_depth=20), "bit depth must be 16, 24 or 32"),
    ("x.ogg", OutputOptions(bit_depth=16), "no bit depth"),
    ("x.wav", OutputOptions(channels=3), "mono"),
    ("x.wav", OutputOptions(sample_rate=10), "sample rate must be"),
    ("x.mp3", OutputOptions(sample_rate=96000), "MP3 files hold"),
    ("x.wav", OutputOptions(file_type="flac"), "does not end in .flac, the file type asked for"),
])
def test_a_format_the_file_cannot_hold_is_a_clear_error(name, options, message):
    if name.endswith(".mp3") and "mp3" not in audio.writable_formats():
        pytest.skip("this libsndfile writes no MP3")
    with pytest.raises(OptionError, match=message):
        audio.output_format(name, FileFormat(48000, 2, "PCM_16"), options)


def test_a_loop_resampled_to_another_rate_joins_without_an_edge():
    # 100 periods of a cosine in the loop: resampled as a loop it is the cosine at the new rate, its joint included
    n, rate = 22050, 48000
    loop = torch.cos(2 * np.pi * 100 * torch.arange(n, dtype=torch.float64) / n).view(1, 1, -1)
    out = audio.resample(loop, 22050, rate, circular=True)[0, 0]
    assert out.shape[-1] == round(n * rate / 22050)
    exact = np.cos(2 * np.pi * 100 * np.arange(out.shape[-1]) / out.shape[-1])
    assert np.abs(out.numpy() - exact).max() < 1e-3
    plain = audio.resample(loop, 22050, rate)[0, 0]
    assert np.abs(plain.numpy() - exact)[:20].max() > 0.01  # resampled as a one-off, its start has an edge


def test_loops_and_their_chain_are_written_at_the_inputs_rate(tiny_pipeline, tmp_path):
    wav = torch.from_numpy(sine_mix(2.0, 48000)).view(1, 1, -1)
    result = modes.loop(tiny_pipeline, wav, 48000, variations=2, seconds=1.0, sampling=FAST, seed=0)
    for i, v in enumerate(result.variations):
        path = v.save(tmp_path / f"loop-{i}.wav")
        assert sf.info(str(path)).frames == round(v.audio.shape[-1] * 48000 / tiny_pipeline.sample_rate)
        assert np.abs(sf.read(str(path))[0]).max() <= 1.0
    chain = result.save_chain(tmp_path / "chain.flac")
    assert sf.info(str(chain)).samplerate == 48000


def test_decoded_tokens_get_the_encoded_files_rate_format_and_loudness(tiny_pipeline, tmp_path):
    src = loud_master(tmp_path / "in.wav", 3.0, 44100, 2, "PCM_24", lufs=-12.0)
    tiny_pipeline.encode_file(src, tmp_path / "c.npz")
    tiny_pipeline.decode_file(tmp_path / "c.npz", tmp_path / "out.wav")
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_24", 3 * 44100)
    assert meter(src) == pytest.approx(-12.0, abs=0.01)
    assert meter(tmp_path / "out.wav") == pytest.approx(-12.0, abs=1.0)
    tiny_pipeline.decode_file(tmp_path / "c.npz", tmp_path / "low.flac", OutputOptions(sample_rate=16000, bit_depth=16))
    assert (sf.info(str(tmp_path / "low.flac")).samplerate, sf.info(str(tmp_path / "low.flac")).subtype) == (16000, "PCM_16")
