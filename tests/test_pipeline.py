"""The pipeline end to end on the fixture models: lengths, kept tokens, windowing over long audio, batched
coarse-to-fine, seeds, preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from dataclasses import replace

from conftest import SET_A, sine_mix
from vampnet import OptionError, Pipeline, PipelineConfig, PromptConfig, SamplingConfig
from vampnet import audio as A
from vampnet.pipeline import window_starts


def wav(seconds, sr=44100):
    return torch.from_numpy(sine_mix(seconds, sr)).view(1, 1, -1)


def test_vamp_keeps_duration_and_prompt_tokens(pipeline_a):
    x = wav(2.0)
    res = pipeline_a.vamp(x, 44100, prompt=PromptConfig(periodic_prompt=3, upper_codebook_mask=2),
                          sampling=SamplingConfig(steps=4), seed=0)
    assert res.audio.shape == (1, 1, x.shape[-1]) and torch.isfinite(res.audio).all()
    codes = pipeline_a.encode(pipeline_a.preprocess(x, 44100)[0])
    keep = ~res.mask
    assert keep.any() and torch.equal(res.codes[keep], codes[keep])
    assert res.mask[:, 2:].all() and (res.codes < 1024).all()


def test_vamp_is_reproducible_with_a_seed(pipeline_a):
    x = wav(1.0)
    kw = dict(sampling=SamplingConfig(steps=3), seed=11)
    a, b = pipeline_a.vamp(x, 44100, **kw), pipeline_a.vamp(x, 44100, **kw)
    c = pipeline_a.vamp(x, 44100, sampling=SamplingConfig(steps=3), seed=12)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.codes, c.codes)


def test_a_pipeline_config_and_the_keywords_named_as_its_fields_make_the_same_pipeline(codec_a, coarse_a, c2f_a):
    """`config=PipelineConfig(...)` and the older keywords (coarse_window_s=..., precision=...) say the same, in the
    constructor and in `load`; keywords given beside a config change it; `with_config` runs the same models under
    other windows, and refuses another precision (the models were converted to theirs)."""
    config = PipelineConfig(coarse_window_s=1.0, window_overlap_s=0.3, c2f_chunk_s=0.5, c2f_batch_size=2)
    by_keywords = Pipeline(codec_a, coarse_a, c2f_a, coarse_window_s=1.0, window_overlap_s=0.3, c2f_chunk_s=0.5,
                           c2f_batch_size=2)
    by_config = Pipeline(codec_a, coarse_a, c2f_a, config=config)
    assert by_keywords.config == by_config.config == config
    shape = lambda p: (p.coarse_window, p.window_overlap, p.c2f_chunk, p.c2f_batch_size)  # noqa: E731
    assert shape(by_keywords) == shape(by_config) != shape(Pipeline(codec_a, coarse_a, c2f_a))
    assert Pipeline(codec_a, coarse_a, c2f_a, config=config, c2f_batch_size=4).config == replace(config, c2f_batch_size=4)
    assert Pipeline.load(SET_A, config=config).config == Pipeline.load(SET_A, coarse_window_s=1.0, window_overlap_s=0.3,
                                                                       c2f_chunk_s=0.5, c2f_batch_size=2).config == config
    wider = by_config.with_config(replace(config, coarse_window_s=2.0))
    assert wider.coarse is by_config.coarse and wider.coarse_window > by_config.coarse_window
    assert by_config.with_config(config) is by_config
    with pytest.raises(OptionError, match="load them again for bf16"):
        by_config.with_config(replace(config, precision="bf16"))
    with pytest.raises(OptionError, match="overlap shorter than the window"):
        Pipeline(codec_a, coarse_a, c2f_a, coarse_window_s=1.0)  # the default overlap, 2.5 s


def test_window_starts_cover_everything_and_overlap():
    assert window_starts(50, 100, 10) == [0]
    starts = window_starts(1000, 100, 20)
    assert starts[0] == 0 and starts[-1] == 900
    assert all(b - a <= 80 for a, b in zip(starts, starts[1:]))


def test_long_audio_is_windowed_and_each_window_sees_the_previous(codec_a, coarse_a, c2f_a):
    """With a 1 s window, a 3.5 s vamp runs several windows; kept tokens survive and no MASK remains.
    A window's left context is what earlier windows generated: regenerating with a different earlier
    window changes what follows it."""
    pipe = Pipeline(codec_a, coarse_a, c2f_a, coarse_window_s=1.0, window_overlap_s=0.3)
    x = wav(3.5)
    calls = []
    res = pipe.vamp(x, 44100, sampling=SamplingConfig(steps=3), seed=0, progress=lambda s, d, t: calls.append((s, d, t)))
    n_windows = len(window_starts(res.codes.shape[-1], pipe.coarse_window, pipe.window_overlap))
    assert n_windows >= 4
    assert [c for c in calls if c[0] == "coarse"][-1] == ("coarse", 3 * n_windows, 3 * n_windows)
    assert res.audio.shape[-1] == x.shape[-1] and (res.codes < 1024).all()
    codes = pipe.encode(pipe.preprocess(x, 44100)[0])
    assert torch.equal(res.codes[~res.mask], codes[~res.mask])


def test_windows_condition_on_committed_tokens(codec_a, coarse_a):
    pipe = Pipeline(codec_a, coarse_a, None, coarse_window_s=0.5, window_overlap_s=0.2)
    T = 100
    codes = torch.randint(0, 1024, (1, 4, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(codes, dtype=torch.bool)
    sampling = SamplingConfig(steps=2, mask_temperature=0.0, sample_cutoff=-1.0)  # deterministic
    out = pipe.generate(codes, mask, sampling, seed=0)
    W, O = pipe.coarse_window, pipe.window_overlap
    # the second window, regenerated alone with the first window's committed tokens as its prompt, matches
    s1 = window_starts(T, W, O)[1]
    commit0 = W - O // 2
    window_codes = out[..., s1:s1 + W].clone()
    window_mask = torch.ones_like(window_codes, dtype=torch.bool)
    window_mask[..., : commit0 - s1] = False
    from vampnet.sampling import generate_with_config
    again = generate_with_config(coarse_a, window_codes, window_mask, sampling, seed=0)
    end1 = s1 + W - O // 2
    assert torch.equal(again[..., : end1 - s1], out[..., s1:end1])


def test_coarse_to_fine_chunks_in_one_batch_equal_chunks_one_by_one(codec_a, coarse_a, c2f_a):
    pipe = Pipeline(codec_a, coarse_a, c2f_a, c2f_chunk_s=0.3)
    T = 50
    codes = torch.randint(0, 1024, (1, 6, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(codes, dtype=torch.bool)
    det = SamplingConfig(steps=2, mask_temperature=0.0, sample_cutoff=-1.0)
    out = pipe._coarse_to_fine(codes, mask, det, torch.Generator().manual_seed(0), None)
    L = pipe.c2f_chunk
    from vampnet.sampling import generate_with_config
    for start in range(0, T, L):
        chunk = torch.nn.functional.pad(codes[..., start:start + L], (0, max(0, start + L - T)))
        cmask = torch.nn.functional.pad(mask[..., start:start + L], (0, max(0, start + L - T)), value=True)
        alone = generate_with_config(c2f_a, chunk, cmask, det, seed=0)
        n = min(L, T - start)
        assert torch.equal(out[..., start:start + n], alone[..., :n])
    assert torch.equal(out[:, :4], codes[:, :4])


def test_preprocess_mono_resample_loudness_and_restore(pipeline_a):
    stereo = torch.from_numpy(np.stack([sine_mix(1.5, 48000), sine_mix(1.5, 48000, seed=1)])).unsqueeze(0) * 0.2
    x, loud = pipeline_a.preprocess(stereo, 48000)
    assert x.shape == (1, 1, round(1.5 * 44100))
    assert abs(A.loudness(x, 44100) - (-24.0)) < 0.5 and x.abs().max() <= 1.0
    mono = A.resample(A.to_mono(stereo), 48000, 44100)  # loudness is that of the mono signal the models see
    assert abs(loud - A.loudness(mono, 44100)) < 1e-6
    res = pipeline_a.vamp(stereo, 48000, sampling=SamplingConfig(steps=2), seed=0)
    # the result gets the loudness of the input as given (both channels at 48 kHz), not its mono mix's
    assert abs(A.loudness(res.audio, 44100) - A.loudness(stereo, 48000)) < 0.1


def test_codes_file_round_trip(pipeline_a, wav_file, tmp_path):
    codes = pipeline_a.encode_file(wav_file, tmp_path / "c.npz")
    from vampnet.tokens import load_codes
    again, meta = load_codes(tmp_path / "c.npz")
    assert torch.equal(again, codes) and meta["n_samples"] == sf.info(str(wav_file)).frames
    pipeline_a.decode_file(tmp_path / "c.npz", tmp_path / "out.wav")
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(wav_file)).frames


def test_silence_and_tiny_inputs_do_not_crash(pipeline_a):
    res = pipeline_a.vamp(torch.zeros(1, 1, 44100), 44100, sampling=SamplingConfig(steps=2), seed=0)
    assert torch.isfinite(res.audio).all()
    res = pipeline_a.vamp(wav(0.01), 44100, sampling=SamplingConfig(steps=2), seed=0)
    assert res.audio.shape[-1] == 441


def test_bad_pipeline_inputs(pipeline_a):
    with pytest.raises(OptionError):
        pipeline_a.preprocess(torch.zeros(1, 1, 0), 44100)
    with pytest.raises(OptionError):
        pipeline_a.generate(torch.zeros(1, 3, 5, dtype=torch.long), torch.ones(1, 3, 5, dtype=torch.bool))
