"""Mask builders against hand-written expectations."""
from __future__ import annotations

import pytest
import torch

from vampnet import OptionError, PromptConfig
from vampnet import prompts as P


def kept_frames(mask, b=0, k=0):
    return (~mask[b, k]).nonzero().flatten().tolist()


def test_periodic_keeps_every_pth_frame_with_width():
    assert kept_frames(P.periodic((1, 2, 12), 4)) == [0, 4, 8]
    assert kept_frames(P.periodic((1, 2, 12), 4, width=3)) == [0, 1, 3, 4, 5, 7, 8, 9]
    assert P.periodic((1, 2, 12), 0).all()
    m = P.periodic((1, 3, 12), 5)
    assert torch.equal(m[:, 0], m[:, 2])  # same in every codebook


def test_periodic_random_roll_shifts_the_pattern(generator):
    m = P.periodic((4, 1, 20), 5, random_roll=True, generator=generator)
    for b in range(4):
        frames = kept_frames(m, b)
        assert len(frames) == 4 and all((f - frames[0]) % 5 == 0 for f in frames)


def test_prefix_suffix_and_ranges():
    assert kept_frames(P.prefix_suffix((1, 1, 10), 2, 3)) == [0, 1, 7, 8, 9]
    m = P.time_ranges((1, 2, 10), [(2, 4), (7, 9)])
    assert m[0, 1].int().tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 0]


def test_codebook_mask_and_unmask():
    base = P.empty((1, 5, 4))
    assert P.codebook_mask(base, 3)[0, :, 0].tolist() == [False, False, False, True, True]
    assert P.codebook_unmask(P.full((1, 5, 4)), 2)[0, :, 0].tolist() == [False, False, True, True, True]


def test_dropout_extremes_and_rate(generator):
    base = P.empty((1, 2, 4000))
    assert not P.dropout(base, 0.0).any()
    assert P.dropout(base, 1.0).all()
    d = P.dropout(base, 0.25, generator)
    assert torch.equal(d[:, 0], d[:, 1])  # whole frames
    assert abs(d.float().mean().item() - 0.25) < 0.03


def test_composition_with_and_or():
    a = P.periodic((1, 1, 8), 4)          # keeps 0, 4
    b = P.prefix_suffix((1, 1, 8), 2, 0)  # keeps 0, 1
    assert kept_frames(a & b) == [0, 1, 4]   # keep what either keeps
    assert kept_frames(a | b) == [0]         # keep only what both keep


def test_training_mask_rate_follows_cosine(generator):
    m = P.training_mask((2000, 2, 50), torch.full((2000,), 1 / 3), n_conditioning=1, generator=generator)
    assert not m[:, 0].any()
    assert abs(m[:, 1].float().mean().item() - 0.8660) < 0.01  # cos(pi/6)


def test_structured_share_zero_draws_the_plain_training_mask():
    r = torch.rand(64, generator=torch.Generator().manual_seed(5))
    plain = P.training_mask((64, 4, 50), r, 1, torch.Generator().manual_seed(9))
    assert torch.equal(P.training_mask((64, 4, 50), r, 1, torch.Generator().manual_seed(9), structured=0.0), plain)


def test_prompt_shaped_masks_hide_whole_frames_below_an_upper_codebook_mask():
    B, K, T = 3000, 4, 60
    masks = P.prompt_shaped((B, K, T), torch.Generator().manual_seed(0))
    uppers = []
    for m in masks:
        # the codebooks from some u up are hidden everywhere; those below u share one pattern of hidden frames
        full = m.all(-1).tolist()
        u = next((k for k in range(K) if all(full[k:])), K)
        assert (m[:u] == m[:1]).all() if u else True
        uppers.append(u)
    assert set(uppers) == set(range(K + 1))
    frames = masks[:, 0]  # hidden frames of codebook 0 (all hidden when u = 0)
    partial = frames[~frames.all(-1)]
    runs = (partial[:, 1:] & ~partial[:, :-1]).sum(-1) + partial[:, 0]  # runs of hidden frames per item
    one_span = (runs == 1).float().mean().item()
    assert 0.28 < one_span < 0.45, one_span  # the span kind: a third of the items (0.35 measured)
    assert frames.float().mean().item() > 0.5  # vamps hide most frames


def test_structured_items_hide_a_share_of_a_prompts_tokens_at_the_schedules_rate():
    B, K, T = 4000, 4, 50
    r = torch.full((B,), 1 / 3)  # gamma = cos(pi / 6) = 0.866
    g = torch.Generator().manual_seed(3)
    mask = P.training_mask((B, K, T), r, 0, g, structured=1.0)
    g = torch.Generator().manual_seed(3)
    P.linear_random((B, K, T), P.mask_schedule(r), g)  # the same draws, in the same order
    torch.rand(B, generator=g)
    shaped = P.prompt_shaped((B, K, T), g)
    assert not (mask & ~shaped).any()  # only tokens the prompt hides
    assert abs(mask.sum().item() / shaped.sum().item() - 0.866) < 0.01
    with pytest.raises(OptionError):
        P.training_mask((2, 4, 10), torch.rand(2), 0, None, structured=1.5)


def test_linear_random_rate(generator):
    assert abs(P.linear_random((1, 4, 5000), 0.3, generator).float().mean().item() - 0.3) < 0.02


def test_prompt_config_builds_in_seconds():
    rate = 10.0  # frames per second
    m = PromptConfig(periodic_prompt=0, prefix_s=0.5, suffix_s=0.2, upper_codebook_mask=2).build((1, 4, 30), rate)
    assert kept_frames(m, k=0) == [0, 1, 2, 3, 4, 28, 29]
    assert m[:, 2:].all()
    m = PromptConfig(periodic_prompt=0, ranges_s=((1.0, 1.5),), upper_codebook_mask=None).build((1, 2, 30), rate)
    assert m[0, 0].nonzero().flatten().tolist() == [10, 11, 12, 13, 14]


def test_bad_prompt_values_raise():
    for kw in (dict(periodic_prompt=-1), dict(dropout=2.0), dict(prefix_s=-1), dict(ranges_s=((2.0, 1.0),))):
        with pytest.raises(OptionError):
            PromptConfig(**kw)


def test_around_times_keeps_frames_near_each_time():
    rate = 10.0
    m = P.around_times((1, 2, 30), [1.0, 2.05], rate, before_s=0.1, after_s=0.2)
    assert kept_frames(m) == [9, 10, 11, 19, 20, 21, 22]
    m = P.around_times((1, 2, 30), [0.55], rate, 0.0, 0.0)
    assert kept_frames(m) == [5]  # the beat's own frame at least
    assert P.around_times((1, 2, 30), [], rate).all()
    assert kept_frames(P.around_times((1, 1, 10), [0.95], rate, 0.0, 1.0)) == [9]  # clipped at the end


def test_ranges_keep_every_token_outside_them_in_every_codebook(generator):
    """With ranges (vamp --range), the upper-codebook mask, the periodic prompt and dropout apply only inside them:
    outside, every token of every codebook is kept."""
    rate = 10.0  # frames per second
    inside = torch.zeros(30, dtype=torch.bool)
    inside[10:15] = inside[20:22] = True
    ranges = ((1.0, 1.5), (2.0, 2.2))
    m = PromptConfig(periodic_prompt=3, ranges_s=ranges, upper_codebook_mask=1, dropout=0.5).build((2, 4, 30), rate,
                                                                                                    generator)
    assert not m[..., ~inside].any()
    assert m[:, 1:, inside].all()  # inside, the upper codebooks are still generated
    m = PromptConfig(periodic_prompt=3, ranges_s=ranges, upper_codebook_mask=1).build((1, 4, 30), rate)
    assert not m[..., ~inside].any()
    assert kept_frames(m, k=0) == [f for f in range(30) if not inside[f] or f % 3 == 0]  # the prompt, inside only


def test_onset_width_keeps_that_many_frames_either_side_of_each_onset():
    # frames at 10 per second: an onset at 0.55 s lies in frame 5, kept with 2 frames either side -> [3, 7)
    config = PromptConfig(periodic_prompt=0, upper_codebook_mask=None, onset_times_s=(0.55, 0.0), onset_width=2)
    mask = config.build((1, 3, 20), frame_rate=10)
    assert kept_frames(mask) == [0, 1, 3, 4, 5, 6] and kept_frames(mask, k=2) == [0, 1, 3, 4, 5, 6]
    # width 0 (unloop's "off") or no onsets keeps nothing more than the rest of the prompt
    assert PromptConfig(periodic_prompt=0, upper_codebook_mask=None, onset_times_s=(0.55,)).build((1, 3, 20), 10).all()
    assert kept_frames(P.around_frames((1, 1, 8), [0.75], 10, 3)) == [4, 5, 6, 7]  # clamped to the clip
    with pytest.raises(OptionError, match="onsets"):
        PromptConfig(onset_width=-1)


def test_prompt_records_name_the_onset_fields_only_when_they_are_used():
    assert "onset_width" not in PromptConfig().to_dict()  # results recorded before onsets existed read the same
    used = PromptConfig(onset_times_s=(0.5,), onset_width=2).to_dict()
    assert (used["onset_times_s"], used["onset_width"]) == ((0.5,), 2)
