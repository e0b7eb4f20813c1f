"""The options layer every front end translates into: range parsing and its messages, presets and the options they
leave to the user, prompt changes, the sampler configs, seeds, the defaults front ends show, and each mode's mask."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vampnet import OptionError, compressed, modes, options
from vampnet import mode_registry as registry
from vampnet.pipeline import DEFAULT_C2F_SAMPLING
from vampnet.prompts import PromptConfig, seconds_to_frames


def test_ranges_parse_and_bad_ones_say_what_was_given():
    assert options.parse_range("1.5-3", "usage") == (1.5, 3.0)
    with pytest.raises(OptionError, match=r"^--range takes START-END, got 'abc'$"):
        options.parse_range("abc", "--range takes START-END")
    assert options.parse_ranges("1-2, 3.5-4; 5-6") == [(1.0, 2.0), (3.5, 4.0), (5.0, 6.0)]
    with pytest.raises(OptionError, match="START-END.*'2-x'"):
        options.parse_ranges("1-2, 2-x")
    with pytest.raises(OptionError, match="at least one range"):
        options.parse_ranges(" , ")


def test_a_preset_sets_what_is_kept_and_the_options_given_change_it():
    prompt, lines = options.vamp_prompt("wild", prefix_s=0.5, ranges_s=((1.0, 2.0),), keep_after_s=0.1)
    assert lines == []
    assert prompt == modes.preset("wild", prefix_s=0.5, ranges_s=((1.0, 2.0),), keep_after_s=0.1)
    changed, _ = options.vamp_prompt("wild", periodic_prompt=3, prefix_s=0.5)
    assert changed == replace(modes.preset("wild", prefix_s=0.5), periodic_prompt=3)  # --preset wild --periodic 3
    custom, _ = options.vamp_prompt(None, periodic_prompt=3, prefix_s=0.5)
    assert custom == PromptConfig(periodic_prompt=3, prefix_s=0.5)
    with pytest.raises(OptionError, match="unknown preset"):
        options.vamp_prompt("loud")


def test_prompt_changes_apply_only_what_was_given():
    base = modes.INPAINT_PROMPT
    assert options.with_changes(base, periodic_prompt=None, upper_codebook_mask=None) is base
    changed = options.with_changes(base, periodic_prompt=4, upper_codebook_mask=None, random_intensity=0.5)
    assert (changed.periodic_prompt, changed.upper_codebook_mask, changed.random_intensity) == (4, None, 0.5)


def test_sampler_configs_share_the_draw_and_keep_the_pipelines_fine_settings():
    coarse, fine = options.sampling_configs(steps=5, temperature=0.5, draw="original", c2f_steps=3)
    assert (coarse.steps, coarse.temperature, coarse.draw) == (5, 0.5, "original")
    assert (fine.steps, fine.draw) == (3, "original")
    assert fine.temperature == DEFAULT_C2F_SAMPLING.temperature
    assert options.sampling_configs()[1] == DEFAULT_C2F_SAMPLING


def test_seeds_negative_means_a_fresh_one():
    assert options.seed_or_new(5) == 5 and options.seed_or_new(0) == 0
    for seed in (options.seed_or_new(-1), options.seed_or_new(None)):
        assert isinstance(seed, int) and 0 <= seed < 2**31 - 1


def test_training_windows_are_the_windows_the_pipeline_runs_the_models_on(tiny_pipeline):
    rate = tiny_pipeline.frame_rate
    assert seconds_to_frames(options.TRAIN_DEFAULTS["coarse"]["window_s"], rate) == tiny_pipeline.coarse_window
    assert seconds_to_frames(options.TRAIN_DEFAULTS["c2f"]["window_s"], rate) == tiny_pipeline.c2f_chunk


def test_each_modes_mask_is_the_one_it_generates():
    grid, rate = torch.zeros(1, 4, 40, dtype=torch.long), 10.0

    def mask(name, options, prompt=None):
        return registry.mode(name).preview(options, grid, rate, prompt)[0]

    assert torch.equal(mask("compress", registry.CompressOptions(2, 4)), ~compressed.kept_mask(grid.shape, 2, 4))
    grown = mask("continue", registry.ContinueOptions(1.0))
    assert grown.shape[-1] == 50 and not grown[..., :40].any() and grown[..., 40:].all()
    both = mask("continue", registry.ContinueOptions(1.0, before=0.5))
    assert both.shape[-1] == 55 and both[..., :5].all() and not both[..., 5:45].any() and both[..., 45:].all()
    inside = mask("inpaint", registry.InpaintOptions("1-2"))
    assert inside[..., 10:20].all() and not inside[..., :10].any() and not inside[..., 20:].any()
    vamp = mask("vamp", registry.VampOptions(), PromptConfig(periodic_prompt=4, upper_codebook_mask=None))
    assert not vamp[..., ::4].any() and vamp[..., 1::4].all()
    slower = mask("stretch", registry.StretchOptions(2.0), PromptConfig(periodic_prompt=1, upper_codebook_mask=None))
    assert slower.shape[-1] == 80 and not slower[..., ::2].any() and slower[..., 1::2].all()  # the frames between: new
    with pytest.raises(OptionError, match="unknown mode"):
        registry.mode("remix")


def test_mode_options_come_from_the_schema_by_their_studio_names():
    assert registry.mode("continue").options_from({"continue_seconds": 2, "ranges": "ignored"}) == \
        registry.ContinueOptions(seconds=2.0)
    assert registry.mode("compress").options_from({}) == registry.CompressOptions(
        options.COMPRESS_CODEBOOKS, options.COMPRESS_PERIOD)  # the defaults compress itself has
    with pytest.raises(OptionError, match="continue_seconds"):
        registry.mode("continue").options_from({"continue_seconds": -1})
    with pytest.raises(OptionError, match="compress_period"):
        registry.mode("compress").options_from({"compress_period": 40})


def test_tracked_beats_and_onsets_become_kept_times_with_their_widths(monkeypatch):
    calls = []

    def fake_times(wav, sample_rate, *, beats=False, onsets=False, tracker="auto"):
        calls.append("beats" if beats else "onsets")
        return ((0.5, 1.0), ["beats: fake"]) if beats else ((0.25,), ["onsets: fake"])

    monkeypatch.setattr(options, "prompt_times", fake_times)
    base = PromptConfig(periodic_prompt=0, upper_codebook_mask=None)
    prompt, lines = options.with_tracked_times(base, torch.zeros(1, 1, 100), 100, beat_before_s=0.1,
                                               beat_after_s=0.05, onset_width=1)
    assert calls == ["beats", "onsets"] and lines == ["beats: fake", "onsets: fake"]
    assert (prompt.keep_times_s, prompt.keep_before_s, prompt.keep_after_s) == ((0.5, 1.0), 0.1, 0.05)
    assert (prompt.onset_times_s, prompt.onset_width) == ((0.25,), 1)
    # at 20 frames per second: beats keep [floor(20 (t - 0.1)), ceil(20 (t + 0.05))), the onset frame 5 +- 1
    kept = (~prompt.build((1, 1, 30), 20)[0, 0]).nonzero().flatten().tolist()
    assert kept == [4, 5] + [8, 9, 10] + [18, 19, 20]
    calls.clear()
    assert options.with_tracked_times(base, None, 100) == (base, []) and calls == []  # both off: nothing tracked


UPSTREAM_MENU = {  # the upstream app's preset menu: (periodic, codebooks kept, dropout, beat mask ms)
    "timbre transfer": (2, 1, 0.0, 0), "small variation": (5, 4, 0.0, 0), "small variation (follow beat)": (7, 4, 0.0, 50),
    "medium variation": (7, 4, 0.0, 0), "medium variation (follow beat)": (13, 4, 0.0, 50),
    "large variation": (13, 4, 0.2, 0), "large variation (follow beat)": (0, 4, 0.0, 80), "unconditional": (0, 1, 0.0, 0),
}


@pytest.mark.parametrize("upstream_name", UPSTREAM_MENU)
def test_the_upstream_apps_presets_keep_what_its_menu_keeps(upstream_name):
    period, kept_codebooks, dropout, beat_ms = UPSTREAM_MENU[upstream_name]
    ours = modes.preset_name(upstream_name)
    assert ours in modes.PRESETS and modes.preset(ours) == modes.preset(upstream_name)
    assert modes.follows_beats(upstream_name) == (beat_ms > 0)
    frames = 130
    mask = modes.preset(upstream_name).build(torch.zeros(1, 4, frames, dtype=torch.long), 86.13,
                                             torch.Generator().manual_seed(1))[0]  # True: generated
    assert mask[kept_codebooks:].all()  # every codebook from n_mask_codebooks up is generated
    kept = ~mask[:kept_codebooks]
    assert (kept == kept[0]).all()      # the codebooks kept share their frames
    frames_kept = int(kept[0].sum())
    periodic_frames = 0 if period == 0 else len(range(0, frames, period))  # rolled at random: the count is fixed
    if dropout:
        assert 0 < frames_kept < periodic_frames
    else:
        assert frames_kept in (periodic_frames, periodic_frames - 1 if period else 0)


def test_a_follow_beat_preset_keeps_the_tracked_beats_with_upstreams_context():
    sr, bpm = 22050, 120
    wav = torch.zeros(1, 1, 4 * sr)
    beats_s = [0.5 + i * 60 / bpm for i in range(6)]
    for t in beats_s:
        k = int(t * sr)
        wav[0, 0, k:k + 200] = torch.sin(torch.arange(200) * 0.3) * torch.exp(-torch.arange(200) / 40.0)
    prompt, _ = options.vamp_prompt("medium variation (follow beat)", wav=wav, sample_rate=sr, tracker="librosa")
    assert (prompt.keep_before_s, prompt.keep_after_s, prompt.periodic_prompt) == (0.1, 0.05, 13)
    assert len(prompt.keep_times_s) >= 4
    assert all(min(abs(t - b) for b in beats_s) < 0.05 for t in prompt.keep_times_s)
    given, _ = options.vamp_prompt("medium-variation-beat", wav=wav, sample_rate=sr, tracker="librosa",
                                   keep_after_s=0.2)  # --beat-after 0.2 changes the preset's
    assert given.keep_after_s == 0.2 and given.keep_times_s == prompt.keep_times_s
    plain, _ = options.vamp_prompt("medium variation", wav=wav, sample_rate=sr)
    assert plain.keep_times_s == ()
