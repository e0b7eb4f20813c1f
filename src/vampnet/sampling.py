"""Confidence-based parallel iterative decoding (the paper's sampler; the original code's `VampNet.generate`).

Start with every masked token set to MASK. At each of `steps` passes the model predicts all masked tokens at
once; a token is drawn for each; the least confident draws (confidence = log p + annealed Gumbel noise) are
masked again, so that after step i only floor(cos(pi/2 * (i+1)/steps) * N0) remain masked. The last pass fixes
every token. Differences from the original, on purpose: typical filtering really filters, the masked-token
count N0 is per batch row (the original sums it over the batch), and randomness comes from one generator seeded
by `seed`, so a seed reproduces the output.

Two ways to draw the tokens, from the same distribution: `draw="original"` consumes random numbers exactly as the
original does (torch.multinomial over every position: one exponential variate per vocabulary entry and position),
so a seed gives the original implementation's tokens; `draw="fast"` (the default) draws one uniform per token
still to be chosen and inverts its cumulative distribution, which on a small model removes most of a pass's
sampling time. On a CPU the classifier runs only on frames that still have a token to choose, in both modes.

The fast draw takes all of a job's random numbers and per-pass counts from a SamplingPlan made before its first
pass, so its loop needs nothing from the host; `vampnet.capture` runs the same arithmetic with static shapes (for
torch.compile and CUDA graphs), and a batch may draw from one generator per row (`Pipeline.variations`).

A model with controls (vampnet.controls; `n_controls` > 0) may be given per-frame control features and where they
are present. With `guidance` s > 0 each pass runs a conditioned and an unconditioned copy of the batch (control
absent everywhere) as one batch of 2B rows and follows

    logits = cond + s * (cond - uncond)

(classifier-free guidance; s = 0 is the conditioned model alone, with no second pass). The classifier is affine,
so the mix is taken on the final hidden states, which gives the same logits with one classifier pass. Guidance
draws no random numbers: a seed gives the same tokens with or without it, up to what the logits change. Without
a control nothing changes: the guidance scale is then unused."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from .errors import OptionError
from .prompts import mask_schedule
from .schema import option


DRAWS = ("fast", "original")


@dataclass(frozen=True)
class SamplingConfig:
    """Options of `generate`; the defaults are the original interface's (36 steps, temperature 1, mask temp 10.5)."""

    steps: int = option(36, "how many passes the model takes to write the sound: more is slower, often cleaner",
                        label="steps", minimum=1, slider=(1, 72), step=1)
    temperature: float = option(1.0, "how adventurous each choice is (the temperature): higher is wilder, lower "
                                "is safer", label="wildness", minimum=0.0, slider=(0.0, 2.0), step=0.05)
    mask_temperature: float = option(10.5, "how randomly the model picks which parts to write first",
                                     label="order randomness", minimum=0.0, slider=(0.0, 20.0), step=0.5)
    sample_cutoff: float = option(1.0, "share of the passes that choose at random; the passes after it take the "
                                  "model's likeliest choice", label="random passes", slider=(0.0, 1.0), step=0.05)
    top_k: int | None = option(0, "allow only the k likeliest choices at each step (top-k; 0: any)",
                               config_default=None, off=0, label="only the top choices", minimum=0, slider=(0, 1024), step=1)
    top_p: float | None = option(0.0, "allow only the likeliest choices that together hold this share of the "
                                 "probability (top-p; 0: any)", config_default=None, off=0.0,
                                 label="only the likeliest share", minimum=0.0, maximum=1.0, step=0.01)
    typical_filtering: bool = option(False, "leave out choices far more or less surprising than usual (typical "
                                     "sampling)", name="typical", label="skip unusual choices")
    typical_mass: float = option(0.15, "with unusual choices skipped: the share of probability kept",
                                 label="usual share kept", minimum=0.01, maximum=1.0, step=0.01)
    typical_min_tokens: int = option(1, "with unusual choices skipped: how many choices always stay",
                                     label="choices always kept", minimum=1, slider=(1, 64), step=1)
    draw: str = option("fast", "fast: our quicker random numbers; original: the original VampNet code's, which "
                       "gives its exact results for a seed", label="random numbers", choices=DRAWS)
    guidance: float = option(1.0, "how closely the music follows a control you give (a loudness envelope): "
                             "classifier-free guidance; 0: the control alone, higher: more closely; unused without "
                             "a control", label="follow the control", minimum=0.0, maximum=10.0, slider=(0.0, 5.0),
                             step=0.1)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise OptionError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("temperature", "mask_temperature", "sample_cutoff", "typical_mass", "guidance"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OptionError(f"{name} must be a finite number, got {value!r}")
        if self.temperature < 0 or self.mask_temperature < 0:
            raise OptionError("temperature and mask_temperature must be >= 0")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise OptionError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise OptionError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")
        if not 0 < self.typical_mass <= 1:
            raise OptionError(f"typical_mass must be in (0, 1], got {self.typical_mass!r}")
        if not isinstance(self.typical_min_tokens, int) or self.typical_min_tokens < 1:
            raise OptionError(f"typical_min_tokens must be a positive integer, got {self.typical_min_tokens!r}")
        if not 0 <= self.guidance <= 10:
            raise OptionError(f"guidance must be in [0, 10], got {self.guidance!r}")
        if self.draw not in DRAWS:
            raise OptionError(f"draw must be one of {', '.join(DRAWS)}, got {self.draw!r}")

    def to_dict(self) -> dict:
        """The options a result records. Guidance is left out: without a control it changes nothing, and a result
        made with a control records it beside the control (the pipeline's settings["control"])."""
        d = asdict(self)
        del d["guidance"]
        return d


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Typical, top-k and top-p filtering of (..., V) logits: removed tokens get -inf."""
    if cfg.typical_filtering:
        logits = typical_filter(logits, cfg.typical_mass, cfg.typical_min_tokens)
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = logits.topk(cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, idx = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative > cfg.top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the first token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


def typical_filter(logits: torch.Tensor, mass: float, min_tokens: int) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022): keep the tokens whose surprisal is closest to the entropy,
    the smallest such set holding `mass` of the probability (at least `min_tokens` tokens)."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    entropy = -(p * logp.nan_to_num(neginf=0.0)).sum(-1, keepdim=True)
    deviation = (-logp - entropy).abs()
    sorted_dev, idx = deviation.sort(dim=-1)
    cumulative = p.gather(-1, idx).cumsum(-1)
    n_keep = (cumulative < mass).sum(-1, keepdim=True) + 1  # include the token that reaches the mass
    n_keep = n_keep.clamp(min=min(min_tokens, logits.shape[-1]))
    ranks = torch.arange(logits.shape[-1], device=logits.device)
    remove_sorted = ranks >= n_keep
    remove = remove_sorted.scatter(-1, idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def generate(model, codes: torch.Tensor, mask: torch.Tensor, *, steps: int = 36, temperature: float = 1.0,
             mask_temperature: float = 10.5, sample_cutoff: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, typical_filtering: bool = False, typical_mass: float = 0.15,
             typical_min_tokens: int = 1, draw: str = "fast", seed: int | None = None,
             generator: torch.Generator | None = None, progress=None) -> torch.Tensor:
    """Fill the masked tokens of `codes` (B, K, T) where `mask` (bool, same shape) is True.

    Conditioning codebooks and unmasked tokens are returned unchanged; no MASK remains. `sample_cutoff < 0`
    takes the argmax at every step; otherwise steps with i/steps <= sample_cutoff draw from the distribution.
    `draw="original"` reproduces the original implementation's tokens for a seed (see the module docstring). `seed` (or an explicit `generator`) makes the result reproducible. `progress(i, steps)` is called per step."""
    cfg = SamplingConfig(steps=steps, temperature=temperature, mask_temperature=mask_temperature,
                         sample_cutoff=sample_cutoff, top_k=top_k, top_p=top_p, typical_filtering=typical_filtering,
                         typical_mass=typical_mass, typical_min_tokens=typical_min_tokens, draw=draw)
    return generate_with_config(model, codes, mask, cfg, seed=seed, generator=generator, progress=progress)


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with `seed` (or randomly when None): all of a job's randomness comes from it."""
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def generate_with_config(model, codes, mask, cfg: SamplingConfig, *, seed=None, generator=None, progress=None,
                         controls: torch.Tensor | None = None, control_mask: torch.Tensor | None = None):
    """`generate` with the options gathered in a SamplingConfig (what the pipeline calls). `generator` may also be
    a list of (generator, rows) streams covering the batch (see SamplingPlan). `controls` (B, T, C) control
    features of a model with controls, `control_mask` (B, T) the frames where they are present (all if None),
    followed with `cfg.guidance` (module docstring)."""
    codes, mask = check_inputs(model, codes, mask)
    if not mask.any():  # nothing to generate: no forward pass needed
        if progress is not None:
            progress(cfg.steps, cfg.steps)
        return codes.clone()
    param = next(model.parameters())
    device = param.device
    if generator is None:
        generator = seeded_generator(seed)
    elif not isinstance(generator, torch.Generator) and len(generator) == 1:
        generator = generator[0][0]  # one stream for the whole batch is a plain generator
    if not isinstance(generator, torch.Generator) and cfg.draw == "original":
        raise OptionError('per-row random streams need draw="fast" (the original draw shares one generator)')
    control = None if controls is None else Guidance.make(model, codes, controls, control_mask, cfg.guidance, device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _decode(model, codes.to(device), mask.to(device), cfg, generator, progress, control)
    finally:
        model.train(was_training)


def check_inputs(model, codes, mask):
    """Validated (codes as int64, mask as bool with the conditioning codebooks never generated)."""
    K, C = model.n_codebooks, model.n_conditioning_codebooks
    if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.dtype.is_floating_point:
        raise OptionError("codes must be an integer tensor shaped (batch, codebooks, frames)")
    if codes.shape[1] != K:
        raise OptionError(f"the model takes {K} codebooks, codes have {codes.shape[1]}")
    if not isinstance(mask, torch.Tensor) or mask.shape != codes.shape:
        raise OptionError(f"mask must have the shape of codes {tuple(codes.shape)}, got "
                          f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    mask = mask.bool().clone()
    mask[:, :C] = False  # conditioning codebooks are never generated
    keep = ~mask
    if keep.any() and (codes[keep].min() < 0 or codes[keep].max() >= model.vocab_size):
        raise OptionError(f"unmasked codes must lie in [0, {model.vocab_size})")
    return codes.long(), mask


@dataclass
class Guidance:
    """A sampling job's control: features (B, T, C), present (B, T) and the guidance scale."""

    controls: torch.Tensor
    present: torch.Tensor
    scale: float

    @classmethod
    def make(cls, model, codes, controls, present, scale: float, device) -> "Guidance":
        B, _, T = codes.shape
        if not getattr(model, "n_controls", 0):
            raise OptionError("this model takes no control (it was trained without controls)")
        if not isinstance(controls, torch.Tensor) or tuple(controls.shape) != (B, T, model.n_controls):
            raise OptionError(f"controls must be shaped (batch, frames, {model.n_controls}) = {(B, T, model.n_controls)}")
        present = torch.ones(B, T, dtype=torch.bool) if present is None else present
        if tuple(present.shape) != (B, T):
            raise OptionError(f"the control mask must be shaped (batch, frames) = {(B, T)}")
        return cls(controls.float().to(device), present.bool().to(device), float(scale))

    def hidden(self, model, codes: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, D) for codes, conditioned, or mixed with an unconditioned pass (s > 0)."""
        if self.scale == 0:
            return model.hidden(codes, self.controls, self.present)
        B = codes.shape[0]
        h = model.hidden(torch.cat([codes, codes]), torch.cat([self.controls, self.controls]),
                         torch.cat([self.present, torch.zeros_like(self.present)]))
        cond, uncond = h[:B], h[B:]
        return cond + self.scale * (cond - uncond)


def _decode(model, codes, mask, cfg: SamplingConfig, generator, progress, control=None):
    if cfg.draw == "fast":
        return _decode_fast(model, codes, mask, cfg, generator, progress, control)
    return _decode_original(model, codes, mask, cfg, generator, progress, control)


def _decode_fast(model, codes, mask, cfg: SamplingConfig, generator, progress, control=None):
    """The fast draw: every random number of the job is drawn before the first pass (`SamplingPlan`) and the
    number of tokens each pass leaves masked is fixed in advance (`remask_counts`); the static-shape sampler
    (`vampnet.capture`) runs the same arithmetic and gives the same tokens."""
    B, K, T = codes.shape
    C, P, MASK = model.n_conditioning_codebooks, model.n_predict_codebooks, model.mask_token
    cond = codes[:, :C]
    unflat = lambda x: x.view(B, T, P).transpose(1, 2)
    z = flatten_codebooks(torch.where(mask, MASK, codes)[:, C:])
    plan = SamplingPlan.make(cfg, (z == MASK).sum(-1).cpu(), T * P, generator, z.device)
    sampled = z
    for i in range(cfg.steps):
        still_masked = z == MASK
        logits, frames = _classify_needed_frames(model, torch.cat([cond, unflat(z)], 1), still_masked, control)  # (F, P, V)
        u = position_uniforms(plan.u_draw[i], still_masked)[still_masked].unsqueeze(-1) if plan.draws[i] else None
        chosen, p_chosen = draw_fast(logits[still_masked.view(B, T, P)[frames]], cfg, u)
        token = torch.zeros_like(z).masked_scatter_(still_masked, chosen)
        p_token = torch.ones(B, T * P, device=z.device).masked_scatter_(still_masked, p_chosen)
        z, sampled = remask_step(z, token, p_token, plan.u_gumbel[i], plan.r[i], plan.n_mask[i], cfg.mask_temperature, MASK)
        if progress is not None:
            progress(i + 1, cfg.steps)
    return torch.cat([cond, unflat(sampled)], 1)


def flatten_codebooks(x: torch.Tensor) -> torch.Tensor:
    """(B, P, T) -> (B, T*P), index t*P + c: the sampler's order of positions (and of its random numbers)."""
    B, P, T = x.shape
    return x.transpose(1, 2).reshape(B, T * P)


def position_uniforms(u_draw: torch.Tensor, still_masked: torch.Tensor) -> torch.Tensor:
    """A pass's draw uniforms (B, N), row b's first entries for its still-masked positions, placed at those
    positions (the k-th still-masked position of a row takes the row's k-th number; other positions get junk)."""
    return u_draw.gather(-1, (still_masked.cumsum(-1) - 1).clamp(min=0))


def remask_step(z, token, p_token, u_gumbel, r, n_mask, mask_temperature: float, mask_token: int):
    """One pass's end: keep the drawn tokens of the positions still masked, then mask again the plan's number of
    least confident ones (confidence = log p + annealed Gumbel noise). Ranking by a stable sort fixes the count
    even when confidences tie, so the counts, and with them every later random number, are known in advance.
    -> (tokens for the next pass, this pass's complete draw)."""
    still_masked = z == mask_token
    sampled = torch.where(still_masked, token, z)
    confidence_p = torch.where(still_masked, p_token, torch.full_like(p_token, math.inf))
    gumbel = -torch.log(-torch.log(u_gumbel))
    confidence = torch.log(confidence_p) + mask_temperature * (1 - r) * gumbel
    order = confidence.argsort(dim=-1, stable=True)
    ranks = torch.arange(z.shape[-1], device=z.device).expand_as(order)
    remask = torch.zeros_like(still_masked).scatter_(-1, order, ranks < n_mask) & still_masked
    return torch.where(remask, mask_token, sampled), sampled


def _decode_original(model, codes, mask, cfg: SamplingConfig, generator: torch.Generator, progress, control=None):
    """The original implementation's sampler, random numbers drawn as it draws them."""
    B, K, T = codes.shape
    C, P, V, MASK = model.n_conditioning_codebooks, model.n_predict_codebooks, model.vocab_size, model.mask_token
    cond = codes[:, :C]
    unflat = lambda x: x.view(B, T, P).transpose(1, 2)         # (B, T*P) -> (B, P, T)
    z = flatten_codebooks(torch.where(mask, MASK, codes)[:, C:])  # (B, T*P): current tokens, MASK where unknown
    n_total = (z == MASK).sum(-1, keepdim=True)                # N0 per batch row (B, 1)
    sampled = z
    for i in range(cfg.steps):
        r = torch.full((B, 1), (i + 1) / cfg.steps, dtype=torch.float32, device=z.device)
        still_masked = z == MASK
        draw = i / cfg.steps <= cfg.sample_cutoff
        x = torch.cat([cond, unflat(z)], 1)
        logits = filter_logits(_logits_where_needed(model, x, still_masked, control), cfg)  # (B, T*P, V)
        probs = (logits / cfg.temperature if cfg.temperature > 0 else logits).softmax(-1)
        if draw:
            token = torch.multinomial(probs.view(-1, V).cpu(), 1, generator=generator).to(z.device).view(B, T * P)
        else:
            token = logits.argmax(-1)
        p_token = probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)

        sampled = torch.where(still_masked, token, z)
        confidence_p = torch.where(still_masked, p_token, torch.full_like(p_token, math.inf))

        # how many stay masked after this step; float32 like the original so the counts match it exactly
        n_mask = torch.floor(mask_schedule(r) * n_total.float()).long()
        if i < cfg.steps - 1:
            n_mask = torch.maximum(torch.ones_like(n_mask), torch.minimum(still_masked.sum(-1, keepdim=True) - 1, n_mask))
        n_mask = n_mask.clamp(max=T * P - 1)

        u = torch.empty(B, T * P).uniform_(1e-20, 1, generator=generator).to(z.device)
        gumbel = -torch.log(-torch.log(u))
        confidence = torch.log(confidence_p) + cfg.mask_temperature * (1 - r) * gumbel
        cutoff = confidence.sort(-1).values.gather(-1, n_mask)
        remask = confidence < cutoff
        z = torch.where(remask, MASK, sampled)
        if progress is not None:
            progress(i + 1, cfg.steps)
    return torch.cat([cond, unflat(sampled)], 1)


Streams = Sequence[tuple[torch.Generator, int]]


@dataclass
class SamplingPlan:
    """What a sampling job needs besides the model's output, fixed before its first pass: per pass i the progress
    r[i], whether it draws (or takes the argmax), how many positions it leaves masked per row (n_mask[i]) and its
    random numbers: u_draw[i] (B, N) holds row b's draw uniforms in its first still[i, b] entries (one per position
    still masked, in position order), u_gumbel[i] (B, N) one uniform per position for the confidence noise.

    The random numbers are drawn from each stream's generator in the order the fast sampler always consumed them
    (per pass: the draw uniforms of the block's still-masked positions, then the block's Gumbel uniforms), so the
    same seed gives the same tokens as before this plan existed. A stream is (generator, rows): consecutive batch
    rows whose numbers come from one generator, as one job would draw them; a block with nothing masked draws
    nothing (as a job with nothing masked). Per-row streams make a batch of variations equal to the same
    variations made one at a time."""

    r: torch.Tensor        # (steps, 1, 1) float32
    draws: list[bool]
    n_mask: torch.Tensor   # (steps, B, 1) int64
    still: torch.Tensor    # (steps, B) int64, positions masked before each pass (host)
    u_draw: torch.Tensor   # (steps, B, N) float32
    u_gumbel: torch.Tensor  # (steps, B, N) float32

    @classmethod
    def make(cls, cfg: SamplingConfig, n_total: torch.Tensor, n_positions: int, generator, device) -> "SamplingPlan":
        """`n_total` (B,) masked positions per row; `generator` a torch.Generator (all rows one stream) or streams."""
        B, steps, N = n_total.shape[0], cfg.steps, n_positions
        streams = [(generator, B)] if isinstance(generator, torch.Generator) else list(generator)
        if sum(rows for _, rows in streams) != B:
            raise OptionError(f"the random streams cover {sum(rows for _, rows in streams)} rows, the batch has {B}")
        n_mask, still = remask_counts(n_total, steps, N)
        draws = [i / steps <= cfg.sample_cutoff for i in range(steps)]
        u_draw, u_gumbel = torch.zeros(steps, B, N), torch.zeros(steps, B, N)
        first = 0
        positions = torch.arange(N)
        for g, rows in streams:
            block = slice(first, first + rows)
            first += rows
            if still[0, block].sum() == 0:
                continue
            for i in range(steps):
                if draws[i]:
                    counts = still[i, block]
                    values = torch.rand(int(counts.sum()), 1, generator=g)
                    u_draw[i, block] = torch.zeros(rows, N).masked_scatter_(positions < counts[:, None], values)
                u_gumbel[i, block] = torch.empty(rows, N).uniform_(1e-20, 1, generator=g)
        r = torch.tensor([(i + 1) / steps for i in range(steps)], dtype=torch.float32).view(steps, 1, 1)
        return cls(r.to(device), draws, n_mask.unsqueeze(-1).to(device), still, u_draw.to(device), u_gumbel.to(device))


def remask_counts(n_total: torch.Tensor, steps: int, n_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) masked positions per row -> (positions masked again after each pass, positions masked before it), both
    (steps, B): after pass i, floor(gamma((i+1)/steps) * N0) stay masked, at least one and at most all but one of
    those still masked until the last pass, which fixes them all. float32 like the original, so the counts are its."""
    n_total = n_total.long().cpu()
    still, n_masks, stills = n_total, [], []
    for i in range(steps):
        r = torch.full(n_total.shape, (i + 1) / steps, dtype=torch.float32)
        n = torch.floor(mask_schedule(r) * n_total.float()).long()
        if i < steps - 1:
            n = torch.maximum(torch.ones_like(n), torch.minimum(still - 1, n))
        n = n.clamp(max=n_positions - 1)
        stills.append(still)
        n_masks.append(n)
        still = torch.minimum(n, still)
    return torch.stack(n_masks), torch.stack(stills)


def _classify_needed_frames(model, codes: torch.Tensor, needed: torch.Tensor, control: Guidance | None = None):
    """The classifier (a large share of a small model's pass) runs only on frames with a token still to choose.
    `needed` (B, T*P), index t*P + c. Returns float32 logits (F, P, V) of those frames and their (B, T) mask.

    On a GPU it runs on every frame: the saving is small there, and the matrix product then has the static
    sampler's shape, so both pick the same kernel and give the same tokens (a library may sum in another order
    for another row count)."""
    h = model.hidden(codes) if control is None else control.hidden(model, codes)  # (B, T, D)
    B, T = h.shape[:2]
    frames = needed.view(B, T, -1).any(-1)
    if h.is_cuda:
        return model.classify(h).float()[frames], frames
    return model.classify(h[frames]).float(), frames


def _logits_where_needed(model, codes: torch.Tensor, needed: torch.Tensor, control: Guidance | None = None) -> torch.Tensor:
    """(B, T*P, V) logits; rows of frames with nothing to choose are zeros, which nothing downstream uses
    (`draw="original"` still spends its random numbers on them, as the original does)."""
    logits, frames = _classify_needed_frames(model, codes, needed, control)
    B, T = frames.shape
    full = torch.zeros(B, T, *logits.shape[1:], dtype=logits.dtype, device=logits.device)
    full[frames] = logits
    return full.view(B, T * logits.shape[1], -1)


def draw_fast(rows: torch.Tensor, cfg: SamplingConfig, u: torch.Tensor | None):
    """(n, V) logits of the positions still masked -> their tokens and probabilities. A draw inverts the
    cumulative distribution at the position's uniform variate u (n, 1); u=None takes the argmax."""
    rows = filter_logits(rows, cfg)
    probs = (rows / cfg.temperature if cfg.temperature > 0 else rows).softmax(-1)
    if u is not None:
        cdf = probs.cumsum(-1)
        total = cdf[:, -1:]
        # searchsorted(right) returns the first index whose cdf exceeds u, never a zero-probability token;
        # the clamp only guards u rounding up to the total
        chosen = torch.searchsorted(cdf, torch.minimum(u * total, total.nextafter(torch.zeros_like(total))), right=True)
        chosen = chosen.clamp(max=rows.shape[-1] - 1).squeeze(-1)
    else:
        chosen = rows.argmax(-1)
    return chosen, probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
