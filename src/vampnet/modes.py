"""Musical jobs built on the one pipeline, each a prompt plus a pipeline call: vamp presets, loops with variations
that loop seamlessly, continuation (outpainting, forwards or backwards), inpainting of time ranges, and
compression to a file that keeps only some tokens (decompression regenerates the rest)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import audio
from .beats import track_beats
from .compressed import encode_tokens, kept_mask, read_compressed, write_compressed
from .controls import Control
from .errors import CodesFileError, OptionError, VampNetError
from .pipeline import Pipeline, Progress, VampResult, new_seed
from .prompts import PromptConfig, seconds_to_frames, time_ranges
from .sampling import SamplingConfig, seeded_generator

PRESETS = {
    # keep every 3rd frame of all coarse codebooks: close to the input, new detail
    "subtle": PromptConfig(periodic_prompt=3, upper_codebook_mask=4),
    # the original app's default: every 7th frame of the lowest 3 codebooks
    "variation": PromptConfig(periodic_prompt=7, upper_codebook_mask=3),
    # every 13th frame of the lowest codebook only, a few of those dropped: loosely follows the input
    "wild": PromptConfig(periodic_prompt=13, upper_codebook_mask=1, dropout=0.2),
}

# The upstream app's presets (its page's preset menu): its periodic prompt, codebooks kept (n_mask_codebooks),
# dropout and beat mask in ms. In our terms the periodic prompt is rolled at random, as upstream's is, and a beat
# mask keeps from UPSTREAM_BEAT_BEFORE_S before each tracked beat to the milliseconds given after it.
UPSTREAM_BEAT_BEFORE_S = 0.1
_UPSTREAM_PRESETS = {  # our name: (upstream's name, periodic, codebooks kept, dropout, beat mask ms)
    "timbre-transfer": ("timbre transfer", 2, 1, 0.0, 0),
    "small-variation": ("small variation", 5, 4, 0.0, 0),
    "small-variation-beat": ("small variation (follow beat)", 7, 4, 0.0, 50),
    "medium-variation": ("medium variation", 7, 4, 0.0, 0),
    "medium-variation-beat": ("medium variation (follow beat)", 13, 4, 0.0, 50),
    "large-variation": ("large variation", 13, 4, 0.2, 0),
    "large-variation-beat": ("large variation (follow beat)", 0, 4, 0.0, 80),
    "unconditional": ("unconditional", 0, 1, 0.0, 0),
}
PRESETS.update({name: PromptConfig(periodic_prompt=period, upper_codebook_mask=kept, dropout=dropout, random_roll=True,
                                   **({"keep_before_s": UPSTREAM_BEAT_BEFORE_S, "keep_after_s": beat_ms / 1000}
                                      if beat_ms else {}))
                for name, (_, period, kept, dropout, beat_ms) in _UPSTREAM_PRESETS.items()})
BEAT_PRESETS = frozenset(name for name, row in _UPSTREAM_PRESETS.items() if row[4])  # they track the input's beats
UPSTREAM_PRESET_NAMES = {row[0]: name for name, row in _UPSTREAM_PRESETS.items()}


# the prompts of the modes that are not vamps, before any option the user gives
INPAINT_PROMPT = PromptConfig(periodic_prompt=0, upper_codebook_mask=None)  # every token inside the ranges
STRETCH_PROMPT = PromptConfig(periodic_prompt=1, upper_codebook_mask=3)     # every grid frame, as a variation


def preset_name(name: str) -> str:
    """A preset's name as PRESETS has it; the upstream app's spellings ("small variation (follow beat)") are taken."""
    name = UPSTREAM_PRESET_NAMES.get(str(name).strip().lower(), str(name).strip())
    if name not in PRESETS:
        raise OptionError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def preset(name: str, **changes) -> PromptConfig:
    """A named prompt preset, optionally with fields changed."""
    return replace(PRESETS[preset_name(name)], **changes)


def follows_beats(name: str | None) -> bool:
    """Whether the preset keeps the input's tracked beats (the upstream app's "follow beat" presets)."""
    return name is not None and preset_name(name) in BEAT_PRESETS


# --- continuation and inpainting -------------------------------------------------------------------------------

def continue_audio(pipeline: Pipeline, wav, sample_rate: int, *, seconds: float = 0.0, before: float = 0.0,
                   sampling: SamplingConfig | None = None, c2f_sampling: SamplingConfig | None = None,
                   seed: int | None = None, progress: Progress | None = None) -> VampResult:
    """Extend a clip by `seconds` after its end and/or `before` seconds ahead of its start. The input's tokens are
    kept; new ones are generated in windows, each conditioned on what precedes it, so any length works."""
    if seconds < 0 or before < 0 or seconds + before <= 0:
        raise OptionError("continue needs --seconds and/or --before greater than 0")
    seed = new_seed() if seed is None else seed
    prep = pipeline.prepare(wav, sample_rate, progress)
    n_before, n_after = (seconds_to_frames(s, pipeline.frame_rate) for s in (before, seconds))
    T = prep.codes.shape[-1]
    codes, mask = continuation_grid(prep.codes, n_before, n_after)
    return pipeline.render(codes, mask, n_samples=None, loudness=prep.loudness, sampling=sampling,
                           c2f_sampling=c2f_sampling, seed=seed, progress=progress, source=prep.source,
                           settings={"mode": "continue", "seed": seed, "seconds": seconds, "before": before,
                                     "input_frames": [n_before, n_before + T]})


def continuation_grid(codes: torch.Tensor, n_before: int, n_after: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The token grid of a continuation: `codes` with n_before/n_after empty frames around them, and its mask
    (True on the new frames only)."""
    B, K, T = codes.shape
    grid = torch.cat([codes.new_zeros(B, K, n_before), codes, codes.new_zeros(B, K, n_after)], -1)
    mask = torch.ones_like(grid, dtype=torch.bool)
    mask[..., n_before:n_before + T] = False
    return grid, mask


def inpaint_mask(like, ranges: list[tuple[float, float]], frame_rate: float, duration: float) -> torch.Tensor:
    """True inside the [start, end) second ranges of a `duration`-second clip; a range outside it is an error."""
    frames = []
    for a, b in ranges:
        if not 0 <= a < b or a >= duration:
            raise OptionError(f"range {a:g}-{b:g} s is empty or outside the clip (0-{duration:.2f} s)")
        frames.append((int(a * frame_rate), seconds_to_frames(min(b, duration), frame_rate)))
    return time_ranges(like, frames)


def inpaint(pipeline: Pipeline, wav, sample_rate: int, ranges: list[tuple[float, float]], *,
            prompt: PromptConfig | None = None, sampling: SamplingConfig | None = None,
            c2f_sampling: SamplingConfig | None = None, seed: int | None = None,
            progress: Progress | None = None, control: Control | None = None) -> VampResult:
    """Regenerate the given [start, end) time ranges (seconds), with the rest as context. By default every token
    inside the ranges is generated; a `prompt` (periodic, upper codebooks, beats...) keeps some of them too.
    `control`: what the regenerated tokens follow (vampnet.controls, over the clip's frames)."""
    if not ranges:
        raise OptionError("inpaint needs at least one range")
    seed = new_seed() if seed is None else seed
    prep = pipeline.prepare(wav, sample_rate, progress)
    duration = prep.n_samples / pipeline.sample_rate
    generator = seeded_generator(seed)
    mask = inpaint_mask(prep.codes, ranges, pipeline.frame_rate, duration)
    if prompt is not None:
        mask &= prompt.build(prep.codes, pipeline.frame_rate, generator)
    return pipeline.render(prep.codes, mask.to(prep.codes.device), n_samples=prep.n_samples, loudness=prep.loudness,
                           sampling=sampling, c2f_sampling=c2f_sampling, generator=generator, progress=progress,
                           source=prep.source, control=control, settings={"mode": "inpaint", "seed": seed, "ranges": [list(r) for r in ranges],
                                     "prompt": prompt.to_dict() if prompt else None})


# --- time stretch ----------------------------------------------------------------------------------------------

STRETCH_RANGE = (0.25, 4.0)  # beyond these, nearly every frame is invented (slower) or dropped (faster)


def stretch_grid(codes: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The token grid of a clip stretched `factor` times, and which of its frames lie on the source's grid.
    Output frame j shows source frame floor(j / factor); it is on the grid when it is the first frame to show it
    (slowing down: one frame in `factor`; speeding up: every frame, the source's frames in between dropped).
    Returns (grid (B, K, T_out), on_grid (T_out,) bool). For a whole factor this is repeat_interleave."""
    T = codes.shape[-1]
    t_out = max(1, round(T * factor))
    # the small epsilon keeps j / factor from landing just under a whole number (0.3 * 10 = 2.9999...)
    source = torch.floor(torch.arange(t_out, dtype=torch.float64) / factor + 1e-9).long().clamp_(max=T - 1)
    on_grid = torch.ones(t_out, dtype=torch.bool)
    on_grid[1:] = source[1:] != source[:-1]
    return codes[..., source.to(codes.device)], on_grid.to(codes.device)


def stretch(pipeline: Pipeline, wav, sample_rate: int, factor: float, *, prompt: PromptConfig | None = None,
            sampling: SamplingConfig | None = None, c2f_sampling: SamplingConfig | None = None,
            seed: int | None = None, progress: Progress | None = None) -> VampResult:
    """Change a clip's tempo `factor` times by vamping, pitch untouched (2: twice as long, 0.5: twice as fast;
    STRETCH_RANGE): the source's frames are placed on the stretched grid (`stretch_grid`) and only those may be
    kept as prompt; the model writes the frames between them (slowing down) or smooths over the frames dropped
    (speeding up). `prompt` chooses which grid frames are kept (default: STRETCH_PROMPT, all of them, upper
    codebooks generated as in the variation preset). Whole factors give the original app's time-stretch prompt."""
    low, high = STRETCH_RANGE
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not low <= factor <= high:
        raise OptionError(f"the stretch factor must be a number from {low:g} to {high:g}, got {factor!r}")
    prompt = prompt or STRETCH_PROMPT
    seed = new_seed() if seed is None else seed
    generator = seeded_generator(seed)
    prep = pipeline.prepare(wav, sample_rate, progress)
    n_samples = round(prep.n_samples * factor)
    codes, on_grid = stretch_grid(prep.codes, factor)
    if codes.shape[-1] * pipeline.codec.hop_length < n_samples:  # rounding left the grid a frame short
        codes, on_grid = torch.cat([codes, codes[..., -1:]], -1), torch.cat([on_grid, on_grid.new_zeros(1)])
    mask = prompt.build(codes, pipeline.frame_rate, generator).to(codes.device) | ~on_grid.view(1, 1, -1)
    factor = int(factor) if float(factor).is_integer() else float(factor)
    return pipeline.render(codes, mask, n_samples=n_samples, loudness=prep.loudness, sampling=sampling,
                           c2f_sampling=c2f_sampling, generator=generator, progress=progress, source=prep.source,
                           settings={"mode": "stretch", "seed": seed, "factor": factor, "prompt": prompt.to_dict()})


# --- loops -----------------------------------------------------------------------------------------------------
#
# Loop lengths are exact to the sample. The codec works on a grid of whole frames (hop samples at its rate) and a
# loop of P seconds rarely spans whole frames, so the loop region is taken from the input at its own rate
# (round(P x rate) samples), and its one period is resampled onto T = round(P x frame rate) whole frames at the
# codec rate (band-limited, by FFT: a time warp of at most half a frame over the loop, under 0.9 % for loops of a
# second at the official 57 Hz frame rate). On that grid the loop is periodic in tokens: it is encoded with its
# own end before it and start after it, vamped, its seam (end -> start) regenerated in context, and decoded with
# wrap-around context. The decoded period is then resampled, again by FFT, to exactly round(P x output rate)
# samples, which undoes the warp, keeps the kept content where it was in the input, and stays seamless: a
# periodic signal resampled in the frequency domain is periodic. There is no padding and no trimming, so no
# partial frame at the seam.

@dataclass
class LoopResult:
    """Variations of a loop (each loops seamlessly; all exactly the loop's length) and one signal that chains them
    (variations x repeats x that length, a loop too), all at `sample_rate`."""

    variations: list[VampResult]
    chain: torch.Tensor  # (1, 1, samples)
    sample_rate: int
    source: audio.FileFormat | None = None

    def save_chain(self, path, options: audio.OutputOptions | None = None, *,
                   source: audio.FileFormat | None = None) -> Path:
        """Write the chain as `VampResult.save` writes a result (by default at the input's rate)."""
        fmt = audio.output_format(path, source or self.source or audio.FileFormat(self.sample_rate), options)
        return audio.save(path, self.chain, self.sample_rate, fmt=fmt, circular=True)


def loop_region(wav, sample_rate: int, *, seconds: float | None = None, bars: int | None = None,
                tracker: str = "auto", snap: bool = False) -> tuple[float, float | None, str]:
    """(start, length in seconds, a line saying how they were chosen) of the part of a clip to loop.

    `bars`: from the first tracked downbeat, that many bars (downbeat to downbeat). `seconds`: that long from the
    start (with `snap`, the end snapped to the nearest tracked beat when a tracker is available). Neither: the
    whole clip."""
    if bars is None and seconds is None:
        return 0.0, None, "loop: the whole clip"
    if bars is None and not snap:
        return 0.0, seconds, f"loop: {seconds:g} s from the start"
    try:
        found = track_beats(wav, sample_rate, tracker)
    except VampNetError as e:
        if bars is not None:
            raise
        return 0.0, seconds, f"loop: {seconds:g} s (not snapped to beats: {e})"
    if bars is not None:
        down = found.downbeats
        if bars < 1 or len(down) <= bars:
            raise OptionError(f"--bars {bars}: the tracker found {len(down)} downbeats, so at most {max(0, len(down) - 1)} bars")
        return float(down[0]), float(down[bars] - down[0]), f"loop: {bars} bars from the downbeat at {down[0]:.2f} s ({found.tracker})"
    beats = found.times[found.times > 0.5]
    if not len(beats):
        return 0.0, seconds, f"loop: {seconds:g} s (no beats found to snap to)"
    end = float(beats[abs(beats - seconds).argmin()])
    return 0.0, end, f"loop: {end:.2f} s, snapped from {seconds:g} s to the nearest beat ({found.tracker})"


def loop_samples(seconds: float, rate: int) -> int:
    """The exact length of a loop of `seconds` at `rate`: round(seconds x rate), halves rounded up."""
    return math.floor(seconds * rate + 0.5)


def loop(pipeline: Pipeline, wav, sample_rate: int, *, variations: int = 4, seconds: float | None = None,
         start_s: float = 0.0, prompt: PromptConfig | None = None, feedback: int = 0, seam_s: float = 0.25, repeats: int = 1,
         output_rate: int | None = None, sampling: SamplingConfig | None = None,
         c2f_sampling: SamplingConfig | None = None, seed: int | None = None,
         progress: Progress | None = None) -> LoopResult:
    """Turn `seconds` of a clip from `start_s` (all of it by default) into `variations` loops.

    Each variation is a vamp of the loop (re-vamped `feedback` more times); then the joint where its end meets
    its start is regenerated with the end before it and the start after it as context, and the audio is decoded
    with wrap-around context, so it loops without a seam. Each variation is exactly round(seconds x output_rate)
    samples long (the clip's own length when the loop is the whole clip; see the notes above); `chain` plays the
    variations one after another (`repeats` times each), decoded as one signal, exactly variations x repeats x
    that long. `output_rate` defaults to the codec's rate, as every result's. The results have the loudness the
    loop region had in the clip."""
    if variations < 1 or feedback < 0 or repeats < 1 or seam_s <= 0:
        raise OptionError("loop needs variations >= 1, feedback >= 0, repeats >= 1 and a positive seam")
    prompt = prompt or pipeline.default_prompt()  # the model's (without a card: the variation preset's)
    seed = new_seed() if seed is None else seed
    out_rate = int(output_rate or pipeline.sample_rate)
    region, loudness, n_out, source = _loop_input(pipeline, wav, sample_rate, seconds, start_s, out_rate)
    if progress:
        progress("encode", 0, 1)
    hop = pipeline.codec.hop_length
    codes = _wrapped(pipeline.encode, region, pipeline.codec.config.encoder_context_frames() * hop, 1 / hop)
    if progress:
        progress("encode", 1, 1)
    T = codes.shape[-1]
    seam = min(max(1, seconds_to_frames(seam_s, pipeline.frame_rate)), T // 4)
    # the variations are one batch, each row drawing from its own seed's generator (as if made one at a time)
    generators = [seeded_generator(seed + i) for i in range(variations)]
    batch = codes.expand(variations, -1, -1)
    for _ in range(1 + feedback):
        mask = torch.cat([prompt.build(batch[i:i + 1], pipeline.frame_rate, g) for i, g in enumerate(generators)])
        batch = pipeline.generate(batch, mask.to(batch.device), sampling, c2f_sampling, generator=generators,
                                  progress=progress)
    batch = _close_seam(pipeline, batch, seam, sampling, c2f_sampling, generators, progress)
    results, grids = [], []
    for i in range(variations):
        v = batch[i:i + 1]
        wav_i = audio.match_loudness(_decode_looped(pipeline, v, n_out), out_rate, loudness, circular=True)
        results.append(VampResult(wav_i, out_rate, v.cpu(), torch.ones_like(v, dtype=torch.bool).cpu(),
                                  {"mode": "loop", "seed": seed + i, "variation": i + 1, "feedback": feedback,
                                   "prompt": prompt.to_dict(), "loop_frames": T, "loop_samples": n_out,
                                   "loop_start_s": start_s, "loop_seconds": n_out / out_rate}, source, circular=True))
        grids += [v] * repeats
    chain = _decode_looped(pipeline, torch.cat(grids, -1), len(grids) * n_out)
    return LoopResult(results, audio.match_loudness(chain, out_rate, loudness, circular=True), out_rate, source)


def _loop_input(pipeline, wav, sample_rate, seconds, start_s, out_rate):
    """The loop region of a clip, mono and warped onto whole codec frames at -24 LUFS (1, 1, T x hop); the loudness
    a meter reads on the region as given (all its channels, at its rate); the loop's exact length in samples at
    `out_rate`; and the input's format (rate, channels), which the results' files default to."""
    wav = wav.unsqueeze(0) if wav.dim() == 2 else wav
    if wav.dim() != 3 or wav.shape[0] != 1 or wav.shape[-1] == 0:
        raise OptionError(f"expected one non-empty signal shaped (1, channels, samples), got {tuple(wav.shape)}")
    mono = audio.to_mono(wav.float())
    N, start = mono.shape[-1], round(start_s * sample_rate)
    if seconds is None:  # the whole clip (from start_s): its own length, converted exactly when the rates differ
        n_in = N - start
        n_out = (2 * n_in * out_rate + sample_rate) // (2 * sample_rate)
    else:
        n_in, n_out = loop_samples(seconds, sample_rate), loop_samples(seconds, out_rate)
    T = round(n_in / sample_rate * pipeline.frame_rate)
    if start < 0 or n_in < 1 or start + n_in > N or T < 4:
        raise OptionError(f"the loop must be between 4 frames ({4 / pipeline.frame_rate:.2f} s) and the clip's "
                          f"length ({N / sample_rate:.2f} s) from its start")
    region = audio.resample_periodic(mono[..., start:start + n_in], T * pipeline.codec.hop_length)
    region, mono_loudness = audio.normalize_loudness(region, pipeline.sample_rate)
    channels = wav.shape[1]
    loudness = mono_loudness if channels == 1 or channels > len(audio.CHANNEL_WEIGHTS) else \
        audio.loudness(wav[..., start:start + n_in].float(), sample_rate)
    return region, loudness, n_out, audio.FileFormat(int(sample_rate), channels)


def _wrapped(run, x, pad: int, per: float):
    """`run` (the codec's encode or decode) over a loop (B, C, L) laid between `pad` units of its own end and start
    (copied round as often as a short loop needs): the middle of the output, one period of the endless loop.
    `per`: output units per input unit (1 / hop to encode samples into frames, hop to decode)."""
    L = x.shape[-1]
    reps = -(-pad // L)
    tiled = x.repeat(1, 1, 2 * reps + 1)[..., reps * L - pad:(reps + 1) * L + pad]
    out = run(tiled)
    return out[..., round(pad * per):round((pad + L) * per)]


def _close_seam(pipeline, v, seam, sampling, c2f_sampling, generator, progress):
    """Regenerate the last and first `seam` frames of loops (B, K, T) with each loop's end and start around them
    (`generator`: one, or one per loop)."""
    T = v.shape[-1]
    ctx = min(T - seam, max(seam, (pipeline.coarse_window - 2 * seam) // 2))
    joint = torch.cat([v[..., T - seam - ctx:], v[..., :seam + ctx]], -1)  # end | start
    mask = torch.zeros_like(joint, dtype=torch.bool)
    mask[..., ctx:ctx + 2 * seam] = True
    out = pipeline.generate(joint, mask, sampling, c2f_sampling, generator=generator, progress=progress)
    v = v.clone()
    v[..., T - seam:] = out[..., ctx:ctx + seam]
    v[..., :seam] = out[..., ctx + seam:ctx + 2 * seam]
    return v


def _decode_looped(pipeline, v, n_samples):
    """A loop's tokens (1, K, T) decoded as one period of the endless loop (wrap-around context), resampled to
    exactly `n_samples` by FFT (periodic, so still seamless)."""
    hop = pipeline.codec.hop_length
    period = _wrapped(pipeline.decode, v, pipeline.codec.config.decoder_context_frames(), hop)
    return audio.resample_periodic(period, n_samples)


# --- compression -----------------------------------------------------------------------------------------------

@dataclass
class CompressedInfo:
    """What `compress` wrote: sizes and bitrates (nominal from the token budget, real from the file size)."""

    path: Path
    bytes: int
    seconds: float
    kept_tokens: int
    nominal_kbps: float
    real_kbps: float


def compress(pipeline: Pipeline, wav, sample_rate: int, path, *, codebooks: int = 4, period: int = 1,
             progress: Progress | None = None) -> CompressedInfo:
    """Encode a clip and write only the kept tokens (bit-packed, entropy-coded) with a small versioned header."""
    if not 1 <= codebooks <= pipeline.n_codebooks:
        raise OptionError(f"--codebooks must be in 1..{pipeline.n_codebooks}")
    if period < 1:
        raise OptionError("--period must be >= 1")
    prep = pipeline.prepare(wav, sample_rate, progress)
    keep = kept_mask(prep.codes.shape, codebooks, period)
    tokens = prep.codes.cpu()[keep].numpy()
    bits = max(1, math.ceil(math.log2(pipeline.codec.codebook_size)))
    method, payload = encode_tokens(tokens, bits)
    header = {"codec": pipeline.codec.fingerprint(), "sample_rate": pipeline.sample_rate,
              "hop_length": pipeline.codec.hop_length, "codebook_size": pipeline.codec.codebook_size,
              "n_codebooks": pipeline.n_codebooks, "frames": prep.codes.shape[-1], "n_samples": prep.n_samples,
              "loudness": prep.loudness if math.isfinite(prep.loudness) else None, "codebooks": codebooks,
              "period": period, "bits": bits, "count": int(tokens.size), "method": method,
              "source": {"sample_rate": prep.source.sample_rate, "channels": prep.source.channels}}
    path = Path(path)
    size = write_compressed(path, header, payload)
    seconds = prep.n_samples / pipeline.sample_rate
    nominal = bits * codebooks * pipeline.frame_rate / period / 1000
    return CompressedInfo(path, size, seconds, int(tokens.size), nominal, size * 8 / seconds / 1000)


def decompress(pipeline: Pipeline, path, *, sampling: SamplingConfig | None = None,
               c2f_sampling: SamplingConfig | None = None, seed: int | None = None,
               progress: Progress | None = None) -> VampResult:
    """Regenerate a compressed clip: the kept tokens in place, VampNet fills the rest."""
    header, tokens = read_compressed(path)
    if header["codec"] != pipeline.codec.fingerprint() or header["n_codebooks"] != pipeline.n_codebooks:
        raise CodesFileError(f"{path} was compressed with another model (codec {header['codec']})")
    shape = (1, header["n_codebooks"], header["frames"])
    keep = kept_mask(shape, header["codebooks"], header["period"])
    if int(keep.sum()) != tokens.size or (tokens.size and tokens.max() >= header["codebook_size"]):
        raise CodesFileError(f"{path} holds {tokens.size} tokens where its header implies {int(keep.sum())}")
    codes = torch.zeros(shape, dtype=torch.long)
    codes[keep] = torch.from_numpy(tokens.astype(np.int64))
    seed = new_seed() if seed is None else seed
    loudness = header["loudness"] if header["loudness"] is not None else -math.inf
    return pipeline.render(codes.to(pipeline.device), (~keep).to(pipeline.device), n_samples=header["n_samples"],
                           loudness=loudness, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
                           progress=progress, settings={"mode": "decompress", "seed": seed,
                                                        "codebooks": header["codebooks"], "period": header["period"]},
                           source=_source(header.get("source"), path))


def _source(found, path) -> audio.FileFormat | None:
    """The input's format a compressed file's header names (files from before it did: None)."""
    try:
        return audio.FileFormat(int(found["sample_rate"]), int(found["channels"])) if found else None
    except (TypeError, KeyError, ValueError):
        raise CodesFileError(f"{path} names its input's format wrongly") from None
