"""Properties of the iterative sampler: what it may and may not change, how many tokens each step fixes,
seeds, per-row counting in batches, and the filters."""
from __future__ import annotations

import math

import pytest
import torch

from vampnet import OptionError, generate
from vampnet.sampling import SamplingConfig, filter_logits, typical_filter


class CountingModel(torch.nn.Module):
    """Wraps a model and records how many MASK tokens each forward call sees, per batch row."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen: list[list[int]] = []
        self.train(model.training)  # a new Module starts in training mode; keep the wrapped model's mode

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def hidden(self, codes):  # every pass of the sampler starts here
        self.seen.append((codes == self.model.mask_token).flatten(1).sum(1).tolist())
        return self.model.hidden(codes)

    def forward(self, codes):
        return self.model.classify(self.hidden(codes)).permute(0, 2, 1, 3)


def random_case(model, T=30, p=0.6, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.vocab_size, (batch, model.n_codebooks, T), generator=g)
    mask = torch.rand(codes.shape, generator=g) < p
    return codes, mask


@pytest.mark.parametrize("part", ["coarse", "c2f"])
def test_unmasked_tokens_and_conditioning_codebooks_never_change(part, coarse_a, c2f_a):
    model = coarse_a if part == "coarse" else c2f_a
    codes, mask = random_case(model)
    out = generate(model, codes, mask, steps=5, seed=3)
    C = model.n_conditioning_codebooks
    keep = ~mask
    keep[:, :C] = True
    assert torch.equal(out[keep], codes[keep])
    assert (out < model.vocab_size).all() and out.min() >= 0
    assert out.shape == codes.shape and out.dtype == torch.long


def test_tokens_left_masked_follow_the_cosine_schedule(coarse_a):
    codes, mask = random_case(coarse_a, T=40)
    steps = 8
    spy = CountingModel(coarse_a)
    generate(spy, codes, mask, steps=steps, seed=1)
    n0 = int(mask.sum())
    expected = [n0]
    for i in range(steps - 1):
        r = torch.tensor((i + 1) / steps, dtype=torch.float32)
        n = int(torch.floor(torch.cos(r * math.pi / 2).clamp(1e-10, 1) * float(n0)))
        expected.append(max(1, min(expected[-1] - 1, n)))
    assert [s[0] for s in spy.seen] == expected
    assert len(spy.seen) == steps  # one forward pass per step, not per token


def test_same_seed_same_output_and_different_seed_differs(coarse_a):
    codes, mask = random_case(coarse_a, T=30)
    a = generate(coarse_a, codes, mask, steps=4, seed=7)
    b = generate(coarse_a, codes, mask, steps=4, seed=7)
    c = generate(coarse_a, codes, mask, steps=4, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_counts_are_per_batch_row(coarse_a):
    """Rows generated together equal rows generated alone (the original summed N0 over the batch)."""
    c1, m1 = random_case(coarse_a, T=24, p=0.9, seed=1)
    c2, m2 = random_case(coarse_a, T=24, p=0.2, seed=2)
    kw = dict(steps=5, mask_temperature=0.0, sample_cutoff=-1.0)
    together = generate(coarse_a, torch.cat([c1, c2]), torch.cat([m1, m2]), **kw)
    assert torch.equal(together[:1], generate(coarse_a, c1, m1, **kw))
    assert torch.equal(together[1:], generate(coarse_a, c2, m2, **kw))


def test_nothing_masked_returns_the_input(coarse_a):
    codes, _ = random_case(coarse_a)
    assert torch.equal(generate(coarse_a, codes, torch.zeros_like(codes, dtype=torch.bool), steps=3, seed=0), codes)


def test_one_step_fills_everything(coarse_a):
    codes, mask = random_case(coarse_a)
    out = generate(coarse_a, codes, torch.ones_like(mask), steps=1, seed=0)
    assert (out < coarse_a.vocab_size).all()


def test_bad_options_raise_option_errors(coarse_a):
    codes, mask = random_case(coarse_a)
    for kw in (dict(steps=0), dict(temperature=-1), dict(top_p=1.5), dict(top_k=0), dict(typical_mass=0)):
        with pytest.raises(OptionError):
            generate(coarse_a, codes, mask, **kw)
    with pytest.raises(OptionError):
        generate(coarse_a, codes, mask[:, :, :5])
    with pytest.raises(OptionError):
        generate(coarse_a, codes[:, :3], mask[:, :3])


def test_top_k_and_top_p_keep_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda cfg: torch.isfinite(filter_logits(logits, cfg)).int().tolist()[0]
    assert kept(SamplingConfig(top_k=2)) == [1, 1, 0, 0]
    assert kept(SamplingConfig(top_p=0.6)) == [1, 1, 0, 0]   # 0.5 < 0.6, the token crossing it is kept
    assert kept(SamplingConfig(top_p=0.45)) == [1, 0, 0, 0]
    assert kept(SamplingConfig(top_p=0.85)) == [1, 1, 1, 0]


def test_typical_filtering_really_filters():
    # entropy of [0.5, 0.3, 0.15, 0.05] is 1.14 nats; surprisals: 0.69, 1.20, 1.90, 3.00
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(typical_filter(logits, mass=0.2, min_tokens=1)).int().tolist()[0]
    assert kept == [0, 1, 0, 0]  # closest to the entropy, and 0.3 >= 0.2 of mass
    kept = torch.isfinite(typical_filter(logits, mass=0.7, min_tokens=1)).int().tolist()[0]
    assert kept == [1, 1, 0, 0]
    kept = torch.isfinite(typical_filter(logits, mass=0.2, min_tokens=3)).int().tolist()[0]
    assert kept == [1, 1, 1, 0]


def test_typical_filtering_changes_generation(coarse_a):
    codes, mask = random_case(coarse_a, T=20)
    plain = generate(coarse_a, codes, mask, steps=3, seed=5)
    typical = generate(coarse_a, codes, mask, steps=3, seed=5, typical_filtering=True, typical_mass=0.05)
    assert not torch.equal(plain, typical)


def test_fast_draw_follows_the_filtered_distribution():
    """One uniform per position through the inverse CDF: frequencies match the probabilities (chi-square)
    and filtered-out tokens are never drawn."""
    from vampnet.sampling import draw_fast

    probs = torch.tensor([0.4, 0.3, 0.0, 0.2, 0.1, 0.0])
    n = 40000
    logits = torch.log(probs).expand(n, -1).clone()
    cfg = SamplingConfig(top_k=3)  # keeps 0.4, 0.3, 0.2: renormalised to 4/9, 3/9, 2/9
    token, p = draw_fast(logits, cfg, torch.rand(n, 1, generator=torch.Generator().manual_seed(0)))
    counts = torch.bincount(token, minlength=6).double()
    expected = torch.tensor([4 / 9, 3 / 9, 0, 2 / 9, 0, 0], dtype=torch.float64) * n
    assert counts[[2, 4, 5]].sum() == 0
    kept = expected > 0
    chi2 = (((counts - expected)[kept] ** 2) / expected[kept]).sum()
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    assert torch.allclose(p[token == 0], torch.tensor(4 / 9))


def test_fast_and_original_draws_agree_when_nothing_is_random(coarse_a):
    codes, mask = random_case(coarse_a, T=30)
    kw = dict(steps=4, mask_temperature=0.0, sample_cutoff=-1.0, seed=0)
    assert torch.equal(generate(coarse_a, codes, mask, draw="fast", **kw), generate(coarse_a, codes, mask, draw="original", **kw))


def test_classifier_on_needed_frames_only_keeps_the_original_stream(coarse_a, monkeypatch):
    """Skipping the classifier on decided frames must not change what draw="original" consumes or returns."""
    import vampnet.sampling as sampling

    codes, mask = random_case(coarse_a, T=30)
    mask[..., 10:20] = False  # whole frames with nothing to choose
    out = generate(coarse_a, codes, mask, steps=5, seed=4, draw="original")

    def full(model, codes, needed, control=None):
        B, T = codes.shape[0], codes.shape[-1]
        return model.classify(model.hidden(codes)).reshape(B, T * model.n_predict_codebooks, -1).float()

    monkeypatch.setattr(sampling, "_logits_where_needed", full)
    assert torch.equal(out, generate(coarse_a, codes, mask, steps=5, seed=4, draw="original"))
    with pytest.raises(OptionError):
        generate(coarse_a, codes, mask, draw="gumbel")


def test_sample_cutoff_decides_which_passes_draw_at_random(coarse_a):
    """With the order fixed (mask temperature 0), the seed reaches the tokens only through the passes that draw
    (pass i draws while i / steps <= cutoff): none (a cutoff below 0) gives the same tokens for every seed."""
    codes, mask = random_case(coarse_a, T=30)
    run = lambda cutoff, seed: generate(coarse_a, codes, mask, steps=4, seed=seed, mask_temperature=0.0,
                                        sample_cutoff=cutoff)
    assert torch.equal(run(-1.0, 1), run(-1.0, 2))
    assert not torch.equal(run(1.0, 1), run(1.0, 2))
    assert not torch.equal(run(-1.0, 1), run(0.5, 1))  # the first passes drawn: tokens differ from the likeliest
