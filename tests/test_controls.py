"""Control features (issue 28): the loudness envelope is exact for synthetic signals, curves parse and
interpolate as documented, and envelopes fit a clip's frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from vampnet.controls import (FLOOR_DB, WINDOW_HOPS, Control, fit_frames, loudness_control, loudness_db,
                              loudness_from_curve, loudness_from_file, parse_curve, pearson)
from vampnet.errors import OptionError

SR, HOP = 22050, 64
WINDOW = WINDOW_HOPS * HOP


def sine(amplitude: float, periods_per_window: int, seconds: float = 0.5) -> np.ndarray:
    """A sine whose period divides the RMS window, so every window holds whole periods."""
    t = np.arange(int(SR * seconds))
    return amplitude * np.sin(2 * np.pi * periods_per_window * t / WINDOW + 0.3)


@pytest.mark.parametrize("amplitude", [1.0, 0.5, 0.01])
def test_a_sine_reads_its_known_level(amplitude):
    db = loudness_db(sine(amplitude, 8), HOP)
    expected = 20 * math.log10(amplitude / math.sqrt(2))  # RMS of a sine: A / sqrt(2)
    assert db.shape == (math.ceil(int(SR * 0.5) / HOP),)
    # whole windows (the interior) hold whole periods: exact; the cut windows at the ends nearly so
    inner = db[WINDOW_HOPS:-WINDOW_HOPS]
    np.testing.assert_allclose(inner, expected, atol=1e-4)
    np.testing.assert_allclose(db, expected, atol=0.5)


def test_silence_reads_the_floor_and_a_step_halves_the_level():
    x = np.concatenate([np.zeros(HOP * 40), sine(0.5, 8, 40 * HOP / SR)])
    db = loudness_db(x, HOP)
    assert np.all(db[:40 - WINDOW_HOPS // 2] == FLOOR_DB)
    np.testing.assert_allclose(db[40 + WINDOW_HOPS:-WINDOW_HOPS], 20 * math.log10(0.5 / math.sqrt(2)), atol=1e-4)
    assert loudness_db(np.zeros(1000), HOP, floor_db=-60).tolist() == [-60.0] * math.ceil(1000 / HOP)


def test_quantisation_and_smoothing():
    x = np.concatenate([sine(1.0, 8, 0.1), sine(0.1, 8, 0.1)])
    raw = loudness_db(x, HOP)
    stepped = loudness_db(x, HOP, step_db=6.0)
    assert np.all(np.abs(stepped / 6.0 - np.round(stepped / 6.0)) < 1e-6)
    assert np.all(np.abs(stepped - raw) <= 3.0 + 1e-5)
    smooth = loudness_db(x, HOP, smooth_frames=5)
    i = 10  # in the middle of the loud part: the average of five equal frames
    assert smooth[i] == pytest.approx(raw[i - 2:i + 3].mean(), abs=1e-5)
    assert np.abs(np.diff(smooth)).max() < np.abs(np.diff(raw)).max()


def test_curve_format_interpolates_at_frame_centres_and_leaves_the_rest_free():
    assert parse_curve("0:-40, 2.5:-18\n4 : -18") == [(0.0, -40.0), (2.5, -18.0), (4.0, -18.0)]
    frame_rate = 10.0  # frame t is centred at (t + 0.5) / 10 s
    control = loudness_from_curve("1:-40, 2:-20", 40, frame_rate)
    db, present = control.values[:, 0].numpy(), control.present.numpy()
    assert present.tolist() == [10 <= t <= 19 for t in range(40)]
    assert db[10] == pytest.approx(-40 + 20 * 0.05)   # 1.05 s
    assert db[15] == pytest.approx(-40 + 20 * 0.55)   # 1.55 s
    for bad in ["", "1:-40, 1:-20", "one:-3", "0:-200", "2:-1, 1:-2"]:
        with pytest.raises(OptionError):
            parse_curve(bad)
    with pytest.raises(OptionError, match="covers no frame"):
        loudness_from_curve("30:-20, 40:-20", 40, frame_rate)


def test_fit_stretches_or_aligns():
    db = np.array([-60.0, -40.0, -20.0], np.float32)
    stretched, present = fit_frames(db, 6)
    assert present.all() and stretched[0] == -60.0 and stretched[-1] == -20.0
    assert np.all(np.diff(stretched) >= 0)
    same, _ = fit_frames(db, 3)
    np.testing.assert_array_equal(same, db)
    aligned, present = fit_frames(db, 5, "align")
    assert aligned[:3].tolist() == db.tolist() and present.tolist() == [True, True, True, False, False]


def test_envelope_of_a_file_follows_its_shape_at_the_model_level(tmp_path, tiny_pipeline):
    codec = tiny_pipeline.codec
    t = np.arange(codec.sample_rate) / codec.sample_rate
    swell = (np.sin(2 * np.pi * 440 * t) * np.linspace(0.01, 0.8, t.size)).astype(np.float32)
    sf.write(tmp_path / "swell.wav", swell, codec.sample_rate)
    control = loudness_from_file(tmp_path / "swell.wav", 50, codec)
    assert control.n_frames == 50 and control.present.all()
    reference = 20 * np.log10(np.linspace(0.01, 0.8, 50))
    assert pearson(control.values[:, 0], reference) > 0.99
    louder = loudness_from_file(tmp_path / "swell.wav", 50, codec)
    sf.write(tmp_path / "quiet.wav", swell * 0.1, codec.sample_rate)
    quieter = loudness_from_file(tmp_path / "quiet.wav", 50, codec)  # normalised to -24 LUFS: the same levels
    torch.testing.assert_close(quieter.values, louder.values, atol=0.05, rtol=0)


def test_control_features_and_checks():
    control = loudness_control([-40.0, -20.0, -80.0], [True, True, False])
    assert control.features()[:, 0].tolist() == [0.0, 1.0, 0.0]
    assert control.frames(1, 3).n_frames == 2
    with pytest.raises(OptionError):
        Control(torch.zeros(3, 2), torch.ones(3, dtype=torch.bool))
    with pytest.raises(OptionError):
        loudness_control([float("nan")])


# --- the model's control input ------------------------------------------------------------------------------------
def tiny_transformer(n_controls: int = 0, seed: int = 0):
    from vampnet.model.transformer import MaskedTransformer, TransformerConfig

    torch.manual_seed(seed)
    cfg = TransformerConfig(n_codebooks=2, vocab_size=16, latent_dim=4, embedding_dim=16, n_heads=2, n_layers=1,
                            dropout=0.0, n_controls=n_controls)
    return MaskedTransformer(cfg).eval()


def test_a_control_free_model_is_the_original_layout(coarse_a):
    assert not any(k.startswith("control") for k in coarse_a.state_dict())
    assert "n_controls" not in coarse_a.config.to_dict()
    with pytest.raises(OptionError, match="no control"):
        coarse_a(torch.zeros(1, coarse_a.n_codebooks, 4, dtype=torch.long), torch.zeros(1, 4, 1))


def test_control_projection_starts_at_zero_and_acts_only_where_present(tmp_path):
    from vampnet.model.transformer import MaskedTransformer

    model = tiny_transformer(n_controls=1)
    codes = torch.randint(0, 16, (2, 2, 12))
    controls = torch.randn(2, 12, 1)
    with torch.no_grad():
        plain = model(codes)
        assert torch.equal(model(codes, controls), plain)  # zero-initialised: no change until trained
        model.control.proj.weight.fill_(0.5)
        present = torch.zeros(2, 12, dtype=torch.bool)
        present[:, 4:8] = True
        h_plain, h_ctrl = model.hidden(codes), model.hidden(codes, controls, present)
        assert torch.equal(model.hidden(codes, controls, torch.zeros_like(present)), h_plain)  # absent: nothing added
        assert not torch.allclose(h_ctrl[:, 4:8], h_plain[:, 4:8])
    model.save(tmp_path / "m.safetensors")
    loaded = MaskedTransformer.load(tmp_path / "m.safetensors")
    assert loaded.n_controls == 1
    with torch.no_grad():
        assert torch.equal(loaded(codes, controls, present), model(codes, controls, present))
    with pytest.raises(OptionError, match="controls must be shaped"):
        model(codes, torch.zeros(2, 11, 1))


def test_add_controls_keeps_outputs_until_trained():
    model = tiny_transformer()
    codes = torch.randint(0, 16, (1, 2, 8))
    with torch.no_grad():
        before = model(codes)
        model.add_controls(1)
        assert model.config.n_controls == 1
        assert torch.equal(model(codes, torch.randn(1, 8, 1)), before)


# --- sampling with a control: classifier-free guidance ---------------------------------------------------------------
class BakedControl(torch.nn.Module):
    """A model whose every pass reads a fixed control (conditioned), or mixes two separate passes (guided): the
    plain sampler run on it is what guidance must equal."""

    def __init__(self, model, controls, present, scale=None):
        super().__init__()
        self.model, self.controls, self.present, self.scale = model, controls, present, scale
        for name in ("n_codebooks", "n_conditioning_codebooks", "n_predict_codebooks", "vocab_size", "mask_token"):
            setattr(self, name, getattr(model, name))

    def hidden(self, codes):
        cond = self.model.hidden(codes, self.controls, self.present)
        if self.scale is None:
            return cond
        return cond + self.scale * (cond - self.model.hidden(codes))  # the unconditioned pass: no control at all

    def classify(self, h):
        return self.model.classify(h)


def controlled_job(seed=0):
    model = tiny_transformer(n_controls=1, seed=seed)
    with torch.no_grad():
        model.control.proj.weight.normal_(0, 2.0)
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (2, 2, 24), generator=gen)
    mask = torch.rand(2, 2, 24, generator=gen) < 0.7
    controls = torch.randn(2, 24, 1, generator=gen)
    present = torch.zeros(2, 24, dtype=torch.bool)
    present[:, 6:18] = True
    return model, codes, mask, controls, present


@pytest.mark.parametrize("draw", ["fast", "original"])
def test_guidance_zero_is_the_plain_sampler_on_the_conditioned_model(draw):
    from vampnet.sampling import SamplingConfig, generate_with_config

    model, codes, mask, controls, present = controlled_job()
    cfg = SamplingConfig(steps=6, guidance=0.0, draw=draw)
    guided = generate_with_config(model, codes, mask, cfg, seed=3, controls=controls, control_mask=present)
    plain = generate_with_config(BakedControl(model, controls, present), codes, mask, cfg, seed=3)
    assert torch.equal(guided, plain)


def test_guidance_mixes_conditioned_and_unconditioned_passes_and_is_seedable():
    from vampnet.sampling import SamplingConfig, generate_with_config

    model, codes, mask, controls, present = controlled_job()
    cfg = SamplingConfig(steps=6, guidance=2.0)
    run = lambda seed: generate_with_config(model, codes, mask, cfg, seed=seed, controls=controls, control_mask=present)
    guided = run(5)
    assert torch.equal(guided, run(5))
    reference = generate_with_config(BakedControl(model, controls, present, scale=2.0), codes, mask, cfg, seed=5)
    assert (guided == reference).float().mean() > 0.98  # one batch of 2B rows vs two passes: rounding only
    unguided = generate_with_config(model, codes, mask, SamplingConfig(steps=6, guidance=0.0), seed=5,
                                    controls=controls, control_mask=present)
    assert not torch.equal(guided, unguided)


def test_without_a_control_the_guidance_scale_changes_nothing():
    from vampnet.sampling import SamplingConfig, generate_with_config

    model, codes, mask, _, _ = controlled_job()
    outs = [generate_with_config(model, codes, mask, SamplingConfig(steps=6, guidance=g), seed=1) for g in (0.0, 1.0, 4.0)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    with pytest.raises(OptionError, match="no control"):
        generate_with_config(tiny_transformer(), codes, mask, SamplingConfig(steps=2), controls=torch.zeros(2, 24, 1))
    with pytest.raises(OptionError, match="guidance"):
        SamplingConfig(guidance=-1.0)


# --- the pipeline: a control over the clip's frames, sliced with the tokens by the coarse windows ----------------------
@pytest.fixture(scope="module")
def controlled_pipeline(tiny_pipeline):
    """The tiny pipeline whose coarse model gained a (non-zero) loudness projection, with 0.1 s coarse windows so
    a short clip is generated in several windows."""
    import copy

    from vampnet import Pipeline

    coarse = copy.deepcopy(tiny_pipeline.coarse)
    coarse.add_controls(1)
    with torch.no_grad():
        coarse.control.proj.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(0))
    return Pipeline(tiny_pipeline.codec, coarse, tiny_pipeline.c2f, coarse_window_s=0.1, window_overlap_s=0.03)


def test_pipeline_windows_slice_the_control_with_the_tokens(controlled_pipeline, monkeypatch):
    from vampnet import pipeline as pipeline_mod
    from vampnet.pipeline import window_starts
    from vampnet.sampling import SamplingConfig

    pipe = controlled_pipeline
    T = 120
    codes = torch.randint(0, 64, (2, 4, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(codes, dtype=torch.bool)
    control = loudness_from_curve("0.1:-40, 0.25:-10", T, pipe.frame_rate)  # a range only: the rest is free
    calls = []
    real = pipeline_mod.generate_with_config

    def spy(model, c, m, cfg, **kw):
        calls.append((model, c.shape[-1], kw.get("controls"), kw.get("control_mask")))
        return real(model, c, m, cfg, **kw)

    monkeypatch.setattr(pipeline_mod, "generate_with_config", spy)
    pipe.generate(codes, mask, SamplingConfig(steps=2, guidance=1.5), seed=0, control=control)
    coarse_calls = [c for c in calls if c[0] is pipe.coarse]
    starts = window_starts(T, pipe.coarse_window, pipe.window_overlap)
    assert len(starts) > 2 and len(coarse_calls) == len(starts)
    features = control.features()
    for start, (_, frames, feats, present) in zip(starts, coarse_calls):
        end = start + frames
        assert feats.shape == (2, frames, 1)
        assert torch.equal(feats[1], features[start:end]) and torch.equal(present[0], control.present[start:end])
    assert all(c[2] is None for c in calls if c[0] is pipe.c2f)  # the fine codebooks are not controlled


def test_render_with_a_control_records_it_and_bad_controls_are_refused(controlled_pipeline, tiny_pipeline):
    from vampnet.sampling import SamplingConfig

    pipe = controlled_pipeline
    codes = torch.randint(0, 64, (1, 4, 40), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(codes, dtype=torch.bool)
    control = loudness_control(np.linspace(-50, -10, 40))
    run = lambda g: pipe.render(codes, mask, n_samples=None, loudness=-20.0, seed=4, control=control,
                                sampling=SamplingConfig(steps=3, guidance=g))
    result = run(2.0)
    assert result.settings["control"] == {"names": ["loudness"], "guidance": 2.0, "present_frames": 40, "frames": 40}
    assert torch.equal(run(2.0).codes, result.codes)  # seedable
    assert not torch.equal(run(0.0).codes, result.codes)
    with pytest.raises(OptionError, match="not trained with controls"):
        tiny_pipeline.generate(codes, mask, seed=0, control=control)
    with pytest.raises(OptionError, match="frames"):
        pipe.generate(codes, mask, seed=0, control=loudness_control(np.zeros(39)))
