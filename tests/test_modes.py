"""Musical modes on the fixture models: loops (length, seamless joint), continuation, inpainting, compression."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sine_mix
from vampnet import CodesFileError, OptionError, PromptConfig, SamplingConfig, audio, compressed, modes
from vampnet.prompts import seconds_to_frames

FAST = dict(sampling=SamplingConfig(steps=3), seed=0)


def wav(seconds):
    return torch.from_numpy(sine_mix(seconds)).view(1, 1, -1)


def spectral_flux(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Positive spectral change between consecutive frames; flux[i] is the change into frame i+1."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1))
    return np.maximum(mag[1:] - mag[:-1], 0).sum(-1)


def joint_is_seamless(x: np.ndarray) -> bool:
    """Looping x twice, is the spectral flux around the joint no larger than around 95 % of other places?
    (max flux over 4 analysis frames, compared with the same statistic everywhere else)"""
    flux = spectral_flux(np.tile(x, 2))
    local = np.lib.stride_tricks.sliding_window_view(flux, 4).max(-1)  # local[k] covers flux[k:k+4]
    joint = len(x) // 256 - 2
    others = np.delete(local, range(max(0, joint - 4), joint + 5))
    return local[joint] <= np.percentile(others, 95)


@pytest.mark.parametrize("output_rate", [None, 48000])
def test_loop_variations_have_the_loop_length_and_loop_without_a_seam(pipeline_a, output_rate):
    """1.3 s is not a whole number of frames: the loop is warped onto the grid and back, exact and still seamless."""
    x = wav(2.0)
    res = modes.loop(pipeline_a, x, 44100, variations=2, seconds=1.3, repeats=2, output_rate=output_rate, **FAST)
    T, n = round(1.3 * pipeline_a.frame_rate), modes.loop_samples(1.3, output_rate or pipeline_a.sample_rate)
    assert T != 1.3 * pipeline_a.frame_rate and len(res.variations) == 2
    for v in res.variations:
        assert v.audio.shape[-1] == n and v.codes.shape[-1] == T and v.sample_rate == res.sample_rate
        assert joint_is_seamless(v.audio[0, 0].numpy())
    # the check can fail: the input cut at the same length and looped has an audible joint
    assert not joint_is_seamless(x[0, 0, : modes.loop_samples(1.3, 44100)].numpy())
    assert res.chain.shape[-1] == 2 * 2 * n
    assert not torch.equal(res.variations[0].codes, res.variations[1].codes)


def test_loop_variations_made_together_equal_each_made_alone(pipeline_a):
    """The variations are generated as one batch; each still equals the loop made alone with its own seed."""
    x, kw = wav(1.5), dict(seconds=1.0, feedback=1, sampling=SamplingConfig(steps=3))
    together = modes.loop(pipeline_a, x, 44100, variations=3, seed=20, **kw)
    for i, v in enumerate(together.variations):
        alone = modes.loop(pipeline_a, x, 44100, variations=1, seed=20 + i, **kw).variations[0]
        assert torch.equal(v.codes, alone.codes) and torch.allclose(v.audio, alone.audio, atol=1e-6)
        assert v.settings["seed"] == 20 + i and v.settings["variation"] == i + 1


def test_loop_seam_is_regenerated_in_context(pipeline_a, monkeypatch):
    """The frames around the joint come from one generation that saw the end and the start together: the loop's
    last and first `seam` frames are that generation's masked middle, the rest of the loop is the vamp unchanged,
    and the regenerated joint differs from the vamp's own end and start."""
    calls = []
    real = pipeline_a.generate

    def spy(codes, mask, *args, **kwargs):
        out = real(codes, mask, *args, **kwargs)
        calls.append((codes.clone(), mask.clone(), out.clone()))
        return out

    monkeypatch.setattr(pipeline_a, "generate", spy)
    res = modes.loop(pipeline_a, wav(1.0), 44100, variations=1, seam_s=0.1, **FAST)
    (_, _, vamp), (joint_in, joint_mask, joint_out) = calls  # the vamp, then the seam
    loop = res.variations[0].codes
    T, seam = loop.shape[-1], seconds_to_frames(0.1, pipeline_a.frame_rate)
    masked = joint_mask[0, 0].nonzero().flatten()
    ctx = int(masked[0])
    assert torch.equal(masked, torch.arange(ctx, ctx + 2 * seam))  # exactly the 2 x seam frames at the joint
    assert torch.equal(joint_in, torch.cat([vamp[..., T - seam - ctx:], vamp[..., :seam + ctx]], -1))  # end | start
    assert torch.equal(loop[..., T - seam:], joint_out[..., ctx:ctx + seam])
    assert torch.equal(loop[..., :seam], joint_out[..., ctx + seam:ctx + 2 * seam])
    assert torch.equal(loop[..., seam:T - seam], vamp[..., seam:T - seam])
    assert not torch.equal(torch.cat([loop[..., T - seam:], loop[..., :seam]], -1),
                           torch.cat([vamp[..., T - seam:], vamp[..., :seam]], -1))


def test_continuation_keeps_the_input_tokens(pipeline_a):
    x = wav(1.5)
    res = modes.continue_audio(pipeline_a, x, 44100, seconds=1.0, before=0.5, **FAST)
    prep = pipeline_a.prepare(x, 44100)
    a, b = res.settings["input_frames"]
    assert torch.equal(res.codes[..., a:b], prep.codes)
    assert a == seconds_to_frames(0.5, pipeline_a.frame_rate)
    assert res.codes.shape[-1] == b + seconds_to_frames(1.0, pipeline_a.frame_rate)
    assert res.audio.shape[-1] == res.codes.shape[-1] * pipeline_a.codec.hop_length
    with pytest.raises(OptionError):
        modes.continue_audio(pipeline_a, x, 44100, seconds=0.0)


def test_long_continuation_runs_in_windows(codec_a, coarse_a, c2f_a):
    from vampnet import Pipeline

    from vampnet.pipeline import window_starts

    pipe = Pipeline(codec_a, coarse_a, c2f_a, coarse_window_s=1.0, window_overlap_s=0.3)
    calls = []
    res = modes.continue_audio(pipe, wav(0.8), 44100, seconds=3.0, progress=lambda *c: calls.append(c), **FAST)
    T = res.codes.shape[-1]
    assert T > 3 * pipe.coarse_window
    n_windows = len(window_starts(T, pipe.coarse_window, pipe.window_overlap))
    assert [c for c in calls if c[0] == "coarse"][-1] == ("coarse", 3 * n_windows, 3 * n_windows)
    a, b = res.settings["input_frames"]
    assert torch.equal(res.codes[..., a:b], pipe.prepare(wav(0.8), 44100).codes)  # the input survives
    assert res.audio.shape[-1] == T * pipe.codec.hop_length


def test_inpainting_changes_only_the_range(pipeline_a):
    x = wav(2.0)
    res = modes.inpaint(pipeline_a, x, 44100, [(0.5, 1.0), (1.5, 1.7)], **FAST)
    prep = pipeline_a.prepare(x, 44100)
    inside = res.mask[0, 0]
    fr = pipeline_a.frame_rate
    expected = torch.zeros_like(inside)
    expected[int(0.5 * fr):seconds_to_frames(1.0, fr)] = True
    expected[int(1.5 * fr):seconds_to_frames(1.7, fr)] = True
    assert torch.equal(inside, expected)
    assert torch.equal(res.codes[..., ~inside], prep.codes[..., ~inside])
    assert not torch.equal(res.codes[..., inside], prep.codes[..., inside])
    with pytest.raises(OptionError):
        modes.inpaint(pipeline_a, x, 44100, [(3.0, 4.0)])


def test_a_vamp_with_a_range_keeps_the_rest_as_inpainting_does(tiny_pipeline):
    """vamp --range 2-4 keeps every token outside the range, so there (away from the range's edges by the decoder's
    receptive field) its audio is the codec round trip of the input as closely as inpaint --start 2 --end 4's is.
    Both results are brought to the input's loudness as a whole, so the level of what was generated inside moves
    the kept part by one gain: with that gain fitted, both match the round trip to float precision."""
    pipe, x = tiny_pipeline, wav(6.0)
    prep = pipe.prepare(x, 44100)
    round_trip = audio.match_loudness(pipe.decode(prep.codes, prep.n_samples), pipe.sample_rate, prep.loudness)[0, 0]
    margin = (pipe.codec.config.decoder_context_frames() + 1) * pipe.codec.hop_length
    outside = torch.ones(prep.n_samples, dtype=torch.bool)
    outside[2 * pipe.sample_rate - margin:4 * pipe.sample_rate + margin] = False

    def snr(y, fit_gain=False):  # dB, outside the range
        ref, y = round_trip[outside], y[0, 0, :prep.n_samples][outside]
        gain = (y @ ref) / (y @ y) if fit_gain else 1.0
        return float(10 * torch.log10(ref.pow(2).sum() / (gain * y - ref).pow(2).sum()))

    vamp = pipe.vamp(x, 44100, prompt=PromptConfig(ranges_s=((2.0, 4.0),)), **FAST)
    inpainted = modes.inpaint(pipe, x, 44100, [(2.0, 4.0)], **FAST)
    frames = torch.ones(prep.codes.shape[-1], dtype=torch.bool)
    frames[int(2 * pipe.frame_rate):seconds_to_frames(4.0, pipe.frame_rate)] = False
    for result in (vamp, inpainted):
        assert not result.mask[..., frames].any() and torch.equal(result.codes[..., frames], prep.codes[..., frames])
        assert snr(result.audio, fit_gain=True) > 60
    assert snr(vamp.audio) > 15 and snr(vamp.audio) >= snr(inpainted.audio) - 3  # the gain is all that differs


@pytest.mark.parametrize("codebooks,period", [(1, 1), (4, 4), (2, 16)])
def test_compress_round_trips_header_and_kept_tokens_and_reports_the_file_bitrate(pipeline_a, tmp_path, codebooks, period):
    x = wav(2.0)
    info = modes.compress(pipeline_a, x, 44100, tmp_path / "c.vmpz", codebooks=codebooks, period=period)
    assert info.bytes == (tmp_path / "c.vmpz").stat().st_size
    assert info.real_kbps == pytest.approx(info.bytes * 8 / 2.0 / 1000, rel=1e-6)
    assert info.nominal_kbps == pytest.approx(10 * codebooks * pipeline_a.frame_rate / period / 1000)
    header, tokens = compressed.read_compressed(tmp_path / "c.vmpz")
    prep = pipeline_a.prepare(x, 44100)
    keep = compressed.kept_mask(prep.codes.shape, codebooks, period)
    assert np.array_equal(tokens, prep.codes[keep].numpy())
    assert header["codebooks"] == codebooks and header["period"] == period and header["n_samples"] == x.shape[-1]
    res = modes.decompress(pipeline_a, tmp_path / "c.vmpz", **FAST)
    assert torch.equal(res.codes[keep], prep.codes[keep])
    assert res.audio.shape[-1] == x.shape[-1]


def test_bad_or_truncated_compressed_files(pipeline_a, tmp_path):
    modes.compress(pipeline_a, wav(1.0), 44100, tmp_path / "c.vmpz", codebooks=2, period=2)
    data = (tmp_path / "c.vmpz").read_bytes()
    cases = {"truncated": data[:-10], "flipped": data[:40] + bytes([data[40] ^ 1]) + data[41:], "junk": b"hello",
             "empty": b""}
    for name, content in cases.items():
        (tmp_path / f"{name}.vmpz").write_bytes(content)
        with pytest.raises(CodesFileError):
            modes.decompress(pipeline_a, tmp_path / f"{name}.vmpz")
    with pytest.raises(CodesFileError):
        modes.decompress(pipeline_a, tmp_path / "missing.vmpz")


def test_bit_packing_round_trips():
    values = np.random.default_rng(0).integers(0, 1024, 1001)
    assert np.array_equal(compressed._unpack(compressed._pack(values, 10), 10, values.size), values)


def test_presets_exist_and_unknown_preset_is_an_error():
    assert modes.preset("subtle").periodic_prompt < modes.preset("variation").periodic_prompt < modes.preset("wild").periodic_prompt
    with pytest.raises(OptionError, match="unknown preset"):
        modes.preset("loud")


def test_stretch_repeats_frames_and_keeps_only_grid_frames(pipeline_a):
    x = wav(1.0)
    res = modes.stretch(pipeline_a, x, 44100, 2, **FAST)
    prep = pipeline_a.prepare(x, 44100)
    T = prep.codes.shape[-1]
    assert res.codes.shape[-1] == 2 * T and res.audio.shape[-1] == 2 * x.shape[-1]
    assert res.mask[..., 1::2].all()                       # frames between the original ones are generated
    kept = ~res.mask[..., ::2]
    assert kept.any() and torch.equal(res.codes[..., ::2][kept], prep.codes[kept])
    with pytest.raises(OptionError):
        modes.stretch(pipeline_a, x, 44100, 0)


def test_stretch_grid_of_a_whole_factor_is_the_repeated_frames():
    codes = torch.arange(2 * 3 * 5).view(2, 3, 5)
    grid, on_grid = modes.stretch_grid(codes, 3)
    assert torch.equal(grid, codes.repeat_interleave(3, dim=-1))
    assert torch.equal(on_grid, torch.arange(15) % 3 == 0)


def test_stretch_grid_places_source_frames_on_the_stretched_grid():
    codes = torch.arange(8).view(1, 1, 8)
    grid, on_grid = modes.stretch_grid(codes, 1.5)   # source frame i lands at output frame ceil(1.5 i)
    assert grid.shape[-1] == 12 and torch.equal(torch.nonzero(on_grid).flatten(), torch.tensor([0, 2, 3, 5, 6, 8, 9, 11]))
    assert torch.equal(grid[0, 0, on_grid], codes[0, 0])
    fast, on_grid = modes.stretch_grid(codes, 0.5)   # twice as fast: every other source frame, all on the grid
    assert torch.equal(fast[0, 0], torch.tensor([0, 2, 4, 6])) and on_grid.all()
    tenth, _ = modes.stretch_grid(torch.arange(10).view(1, 1, 10), 0.3)  # 10 * 0.3 is 2.9999... in floating point
    assert torch.equal(tenth[0, 0], torch.tensor([0, 3, 6]))


@pytest.mark.parametrize("factor", [0.5, 1.5, 0.25, 2.5])
def test_stretch_changes_the_duration_by_any_factor(pipeline_a, factor):
    x = wav(1.0)
    res = modes.stretch(pipeline_a, x, 44100, factor, **FAST)
    prep = pipeline_a.prepare(x, 44100)
    assert res.audio.shape[-1] == round(x.shape[-1] * factor)     # the codec rate is the input's here
    grid, on_grid = modes.stretch_grid(prep.codes, factor)
    n = grid.shape[-1]
    assert res.mask[..., :n][..., ~on_grid].all()                 # frames between the source's are generated
    kept = ~res.mask[..., :n]
    assert kept.any() and torch.equal(res.codes[..., :n][kept], grid[kept])  # kept tokens are the source's
    assert res.settings["factor"] == factor


@pytest.mark.parametrize("factor", [0.2, 4.5, float("nan"), "2"])
def test_stretch_refuses_factors_outside_its_range(pipeline_a, factor):
    with pytest.raises(OptionError, match="0.25 to 4"):
        modes.stretch(pipeline_a, wav(0.5), 44100, factor)


def test_inpaint_prompt_keeps_periodic_tokens_inside_the_range(pipeline_a):
    x = wav(2.0)
    res = modes.inpaint(pipeline_a, x, 44100, [(0.5, 1.5)], prompt=PromptConfig(periodic_prompt=4, upper_codebook_mask=None), **FAST)
    inside = res.mask[0, 0]
    kept_inside = (~res.mask[0, 0, int(0.5 * pipeline_a.frame_rate):int(1.5 * pipeline_a.frame_rate)]).sum()
    assert inside.any() and kept_inside > 0


def test_loop_region_by_bars_and_snapped_seconds():
    """A click track at 120 BPM with accented bar starts: 2 bars = 4 s from the first downbeat; 1.9 s snaps to 2 s
    when asked."""
    sr = 44100
    x = np.zeros(int(sr * 9.0), dtype=np.float32)
    for k in range(17):
        start = int((0.5 + 0.5 * k) * sr)
        amp = 1.0 if k % 4 == 0 else 0.4
        x[start:start + 600] += amp * np.hanning(1200)[600:].astype(np.float32) * np.sin(np.arange(600) * 0.7)
    start, length, how = modes.loop_region(x, sr, seconds=1.9, tracker="librosa", snap=True)
    assert start == 0.0 and abs(length - 2.0) < 0.05, how
    start, length, how = modes.loop_region(x, sr, bars=2, tracker="madmom")
    assert abs(length - 4.0) < 0.1 and "2 bars" in how, how
    with pytest.raises(OptionError):
        modes.loop_region(x, sr, bars=50, tracker="madmom")
