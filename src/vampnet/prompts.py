"""Mask builders ("prompts"): which tokens of a (B, K, T) grid to generate (True) and which to keep (False).

Every builder returns a fresh bool tensor; combine them with `&` (generate only where both do, i.e. keep what
either keeps) and `|` (generate where either does). All are vectorised; randomness takes a torch.Generator."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .errors import OptionError
from .schema import option

Shape = tuple[int, int, int]


def _shape(like) -> Shape:
    shape = tuple(like.shape) if isinstance(like, torch.Tensor) else tuple(like)
    if len(shape) != 3:
        raise OptionError(f"masks are shaped (batch, codebooks, frames); got {shape}")
    return shape  # type: ignore[return-value]


def seconds_to_frames(seconds: float, frame_rate: float) -> int:
    """Frames covering `seconds` (rounded up, as the original's s2t)."""
    if seconds < 0 or not math.isfinite(seconds):
        raise OptionError(f"a duration in seconds must be >= 0, got {seconds}")
    return math.ceil(round(seconds * frame_rate, 6))


def full(like) -> torch.Tensor:
    """Generate everything."""
    return torch.ones(_shape(like), dtype=torch.bool)


def empty(like) -> torch.Tensor:
    """Generate nothing (keep everything)."""
    return torch.zeros(_shape(like), dtype=torch.bool)


def periodic(like, period: int, width: int = 1, random_roll: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep every `period`-th frame (and width // 2 frames each side) in all codebooks; generate the rest.

    period 0 keeps nothing. With random_roll the pattern is shifted by a random offset in [0, period)."""
    B, K, T = _shape(like)
    if period < 0 or width < 1:
        raise OptionError(f"periodic prompt needs period >= 0 and width >= 1, got period={period}, width={width}")
    if period == 0:
        return full(like)
    t = torch.arange(T)
    half = width // 2
    phase = t % period
    # kept: within width // 2 of an anchor frame (a multiple of period that lies inside the clip)
    base = (phase <= half) | ((period - phase <= half) & (t + period - phase < T))
    if random_roll:
        shift = torch.randint(0, period, (B, 1), generator=generator)
        near = base[(t[None, :] - shift) % T]                  # circular shift per batch item, like torch.roll
    else:
        near = base.unsqueeze(0).expand(B, T)
    keep = near.unsqueeze(1).expand(B, K, T)
    return ~keep


def prefix_suffix(like, n_prefix: int, n_suffix: int) -> torch.Tensor:
    """Keep the first n_prefix and last n_suffix frames; generate the middle ("inpaint" in the original)."""
    B, K, T = _shape(like)
    if n_prefix < 0 or n_suffix < 0:
        raise OptionError("prefix and suffix lengths must be >= 0")
    t = torch.arange(T)
    keep = (t < n_prefix) | (t >= T - n_suffix)
    return (~keep).view(1, 1, T).expand(B, K, T).clone()


def time_ranges(like, ranges) -> torch.Tensor:
    """Generate only inside the given [start, end) frame ranges; keep everything else."""
    B, K, T = _shape(like)
    t = torch.arange(T)
    gen = torch.zeros(T, dtype=torch.bool)
    for start, end in ranges:
        if start < 0 or end < start:
            raise OptionError(f"a time range needs 0 <= start <= end, got ({start}, {end})")
        gen |= (t >= start) & (t < end)
    return gen.view(1, 1, T).expand(B, K, T).clone()


def around_times(like, times_s, frame_rate: float, before_s: float = 0.0, after_s: float = 0.02) -> torch.Tensor:
    """Keep the frames from `before_s` before to `after_s` after each time (beats, downbeats, onsets); generate
    the rest. A time at t seconds lies in frame floor(t * frame_rate); at least that frame is kept."""
    B, K, T = _shape(like)
    if before_s < 0 or after_s < 0:
        raise OptionError("the context around beats/onsets must be >= 0 seconds")
    times = torch.as_tensor(list(times_s), dtype=torch.float64)
    keep = torch.zeros(T, dtype=torch.bool)
    if times.numel():
        start = torch.floor((times - before_s) * frame_rate).long().clamp(0, T)
        end = torch.maximum(torch.ceil((times + after_s) * frame_rate).long(), torch.floor(times * frame_rate).long() + 1)
        t = torch.arange(T)
        keep = ((t[None, :] >= start[:, None]) & (t[None, :] < end.clamp(max=T)[:, None])).any(0)
    return (~keep).view(1, 1, T).expand(B, K, T).clone()


def around_frames(like, times_s, frame_rate: float, width: int) -> torch.Tensor:
    """Keep `width` frames either side of each time's frame f, i.e. frames [f - width, f + width) (upstream VampNet's
    onset mask, whose width unloop sends); generate the rest. f = floor(t * frame_rate), clamped into the clip."""
    B, K, T = _shape(like)
    if width < 0:
        raise OptionError(f"the width kept around onsets must be >= 0 frames, got {width}")
    times = torch.as_tensor(list(times_s), dtype=torch.float64)
    keep = torch.zeros(T, dtype=torch.bool)
    if times.numel() and width > 0:
        f = torch.floor(times * frame_rate).long().clamp(0, T - 1)
        t = torch.arange(T)
        keep = ((t[None, :] >= f[:, None] - width) & (t[None, :] < f[:, None] + width)).any(0)
    return (~keep).view(1, 1, T).expand(B, K, T).clone()


def codebook_mask(mask: torch.Tensor, first: int) -> torch.Tensor:
    """Generate every codebook from index `first` up ("upper codebook mask"): only lower ones can be kept."""
    if first < 0:
        raise OptionError(f"upper codebook mask needs an index >= 0, got {first}")
    out = mask.clone()
    out[:, first:] = True
    return out


def codebook_unmask(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Keep the first n codebooks entirely (they condition the rest)."""
    if n < 0:
        raise OptionError(f"the number of kept codebooks must be >= 0, got {n}")
    out = mask.clone()
    out[:, :n] = False
    return out


def dropout(mask: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each kept frame (in all codebooks) with probability p, so it is generated after all."""
    if not 0 <= p <= 1:
        raise OptionError(f"dropout must be in [0, 1], got {p}")
    if p == 0:
        return mask.clone()
    B, K, T = mask.shape
    drop = torch.rand(B, 1, T, generator=generator) < p
    return mask | drop.expand(B, K, T)


def linear_random(like, r, generator: torch.Generator | None = None) -> torch.Tensor:
    """Generate each token with probability r (a scalar or one value per batch item)."""
    B, K, T = _shape(like)
    r = torch.as_tensor(r, dtype=torch.float32).reshape(-1, 1, 1).expand(B, 1, 1)
    if (r < 0).any() or (r > 1).any():
        raise OptionError("random mask intensity must be in [0, 1]")
    return torch.rand(B, K, T, generator=generator) < r


def mask_schedule(r: torch.Tensor) -> torch.Tensor:
    """gamma(r) = cos(pi r / 2) clamped to [1e-10, 1]: the fraction of tokens still masked at progress r, both in
    training masks and after each pass of the sampler."""
    return torch.cos(r * math.pi / 2).clamp(1e-10, 1.0)


def training_mask(like, r, n_conditioning: int = 0, generator: torch.Generator | None = None,
                  structured: float = 0.0) -> torch.Tensor:
    """The training-time mask: per item, each token is generated with probability gamma(r) = cos(pi r / 2) for
    that item's masking progress r in [0, 1] (mask_schedule), the conditioning codebooks always kept.

    With probability `structured` an item instead hides only the tokens a prompt would hide (`prompt_shaped`) and,
    of those, each with probability gamma(r): the states the sampler passes through when it vamps with such a
    prompt. Items drawn the plain way get the same tokens as with structured = 0."""
    r = torch.as_tensor(r, dtype=torch.float32).reshape(-1)
    mask = linear_random(like, mask_schedule(r), generator)
    if not 0 <= structured <= 1:
        raise OptionError(f"structured must be in [0, 1], got {structured}")
    if structured > 0:
        B, K, T = _shape(like)
        chosen = torch.rand(B, generator=generator) < structured
        mask = torch.where(chosen[:, None, None], mask & prompt_shaped((B, K, T), generator), mask)
    return codebook_unmask(mask, n_conditioning)


def prompt_shaped(like, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, K, T) masks shaped like the prompts vamps use, drawn per item: the frames kept are periodic (one run of
    1-3 frames every 2-16, at a random phase), a random share of frames (kept with probability 0.05-0.7), or
    everything but one span (a quarter to all of the window, at a random place: inpainting, continuation); every
    codebook from a random one u in [0, K] up is hidden in the kept frames too (the upper-codebook mask). Whole frames
    hidden together are what the plain training mask, token by token, almost never shows: a coarse model trained on
    it alone learns to lean on a frame's other codebooks and loses the rhythm once whole frames are generated."""
    B, K, T = _shape(like)
    g = generator
    t = torch.arange(T)
    kind = torch.randint(0, 3, (B, 1), generator=g)
    period = torch.randint(2, 17, (B, 1), generator=g)
    width = torch.minimum(torch.randint(1, 4, (B, 1), generator=g), period - 1)
    phase = (torch.rand(B, 1, generator=g) * period).long()
    periodic_kept = (t[None] - phase) % period < width
    share = 0.05 + 0.65 * torch.rand(B, 1, generator=g)
    random_kept = torch.rand(B, T, generator=g) < share
    length = (T * (0.25 + 0.75 * torch.rand(B, 1, generator=g))).long().clamp(1, T)
    start = (torch.rand(B, 1, generator=g) * (T - length + 1)).long()
    span_kept = (t[None] < start) | (t[None] >= start + length)
    kept = torch.where(kind == 0, periodic_kept, torch.where(kind == 1, random_kept, span_kept))  # (B, T)
    upper = torch.randint(0, K + 1, (B, 1, 1), generator=g)
    return ~kept[:, None, :] | (torch.arange(K)[None, :, None] >= upper)


@dataclass(frozen=True)
class PromptConfig:
    """A prompt described by musical options; `build` turns it into a mask (combined as the original's build_mask).
    With `ranges_s`, the prompt applies only inside those [start, end) second ranges: outside them every token of
    every codebook is kept (the upper-codebook mask, periodic prompt and dropout included)."""

    periodic_prompt: int = option(7, "how much of the input stays: one frame kept in every N (0: none kept); small "
                                  "numbers stay close to the input, large ones wander off", name="periodic",
                                  label="keep one frame in every", unit="frames", minimum=0, slider=(0, 32), step=1)
    periodic_width: int = option(1, "how many frames in a row are kept each time", label="frames kept each time",
                                 unit="frames", minimum=1, slider=(1, 8), step=1)
    random_roll: bool = option(False, "start the kept frames at a random place instead of the first frame",
                               label="shift the kept frames at random")
    prefix_s: float = option(0.0, "this much of the beginning stays exactly as it is", name="prefix",
                             label="keep the start", unit="s", minimum=0.0, slider=(0.0, 30.0), step=0.1)
    suffix_s: float = option(0.0, "this much of the ending stays exactly as it is", name="suffix", label="keep the end",
                             unit="s", minimum=0.0, slider=(0.0, 30.0), step=0.1)
    ranges_s: tuple[tuple[float, float], ...] = field(default_factory=tuple)  # generate only inside (front ends parse)
    upper_codebook_mask: int | None = option(3, "the sound is coded in layers (codebooks), from its broad shape "
                                             "(layer 0) to fine detail; every layer from this one up is made new, so "
                                             "lower keeps less of the input's sound", name="upper_codebooks",
                                             label="make new from layer", minimum=0, slider=(0, 14), step=1,
                                             model_max="codebooks")
    keep_codebooks: int = option(0, "keep this many of the broadest layers (codebooks) all the way through",
                                 label="keep the lowest layers", minimum=0, slider=(0, 14), step=1,
                                 model_max="codebooks")
    dropout: float = option(0.0, "forget this share of the kept frames at random: higher strays further",
                            label="forget kept frames", minimum=0.0, maximum=1.0, step=0.05)
    random_intensity: float = option(1.0, "share of the rest that is made new, chosen at random (1: all of it; "
                                     "lower keeps more of the input)", label="share made new", minimum=0.0,
                                     maximum=1.0, step=0.05)
    keep_times_s: tuple[float, ...] = field(default_factory=tuple)  # beats/downbeats/onsets kept (seconds)
    keep_before_s: float = option(0.0, "sound kept just before each beat or note start", name="beat_before",
                                  label="keep before each beat", unit="s", minimum=0.0, slider=(0.0, 1.0), step=0.01)
    keep_after_s: float = option(0.02, "sound kept just after each beat or note start", name="beat_after",
                                 label="keep after each beat", unit="s", minimum=0.0, slider=(0.0, 1.0), step=0.01)
    onset_times_s: tuple[float, ...] = field(default_factory=tuple)  # onsets kept `onset_width` frames either side
    onset_width: int = option(0, "keep this many frames either side of each detected note start (0: off)",
                              label="keep around note starts", unit="frames", minimum=0, slider=(0, 16), step=1)

    def __post_init__(self):
        if self.onset_width < 0:
            raise OptionError("the width kept around onsets must be >= 0 frames")
        if self.keep_before_s < 0 or self.keep_after_s < 0:
            raise OptionError("the context kept around beats/onsets must be >= 0 seconds")
        if self.periodic_prompt < 0 or self.periodic_width < 1:
            raise OptionError("periodic prompt must be >= 0 and its width >= 1")
        if self.prefix_s < 0 or self.suffix_s < 0:
            raise OptionError("prefix and suffix must be >= 0 seconds")
        if not 0 <= self.dropout <= 1 or not 0 <= self.random_intensity <= 1:
            raise OptionError("dropout and random intensity must be in [0, 1]")
        if self.upper_codebook_mask is not None and self.upper_codebook_mask < 0:
            raise OptionError("upper codebook mask must be >= 0")
        for a, b in self.ranges_s:
            if a < 0 or b <= a:
                raise OptionError(f"a time range needs 0 <= start < end, got {a}-{b}")

    def to_dict(self) -> dict:
        """The fields; the onset ones only when an onset width is set, so the settings recorded with results
        made without them read as they did before those fields existed."""
        out = asdict(self)
        if not self.onset_width:
            del out["onset_times_s"], out["onset_width"]
        return out

    def build(self, like, frame_rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask for a grid shaped like `like`, frames at `frame_rate` per second."""
        mask = full(like)
        if self.random_intensity < 1:
            mask &= linear_random(like, self.random_intensity, generator)
        mask &= prefix_suffix(like, seconds_to_frames(self.prefix_s, frame_rate), seconds_to_frames(self.suffix_s, frame_rate))
        mask &= periodic(like, self.periodic_prompt, self.periodic_width, self.random_roll, generator)
        if self.keep_times_s:
            mask &= around_times(like, self.keep_times_s, frame_rate, self.keep_before_s, self.keep_after_s)
        if self.onset_times_s and self.onset_width:
            mask &= around_frames(like, self.onset_times_s, frame_rate, self.onset_width)
        mask = dropout(mask, self.dropout, generator)
        mask = codebook_unmask(mask, self.keep_codebooks)
        if self.upper_codebook_mask is not None:
            mask = codebook_mask(mask, self.upper_codebook_mask)
        if self.ranges_s:  # last: outside the ranges every token is kept, whatever the options above generate
            mask &= time_ranges(like, [(int(a * frame_rate), seconds_to_frames(b, frame_rate)) for a, b in self.ranges_s])
        return mask
