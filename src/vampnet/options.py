"""The options every front end shares, and how they become prompts, sampling configs and seeds.

The CLI's flags, the studio's controls, HARP's controls and OSC's messages are translations of what is here: time
ranges are parsed, presets and beat prompts resolved, and the sampler configs built in one place, so the front
ends only map their own inputs onto these calls. The defaults front ends show are read from where they live
(`PromptConfig`, `SamplingConfig`, `PipelineConfig`, the modes' signatures) rather than written again."""
from __future__ import annotations

import inspect
from dataclasses import replace

from . import modes
from .beats import prompt_times
from .errors import OptionError
from .pipeline import DEFAULT_C2F_SAMPLING, PipelineConfig, new_seed
from .prompts import PromptConfig
from .sampling import SamplingConfig


def _defaults(fn, *names):
    parameters = inspect.signature(fn).parameters
    return tuple(parameters[name].default for name in names)


PROMPT = PromptConfig()      # a vamp's prompt when no option is given
SAMPLING = SamplingConfig()  # the coarse sampler's options when none is given
C2F_STEPS = DEFAULT_C2F_SAMPLING.steps
PIPELINE = PipelineConfig()  # how a pipeline runs when no option is given
WINDOW_S, OVERLAP_S, C2F_CHUNK_S = PIPELINE.coarse_window_s, PIPELINE.window_overlap_s, PIPELINE.c2f_chunk_s
LOOP_VARIATIONS, = _defaults(modes.loop, "variations")
COMPRESS_CODEBOOKS, COMPRESS_PERIOD = _defaults(modes.compress, "codebooks", "period")

# What `vampnet train coarse|c2f` sets under the run's config and --set: the codebooks each model makes and is
# conditioned on, and the window it learns on, which is the one the pipeline runs it on.
TRAIN_DEFAULTS = {
    "coarse": {"model": {"n_codebooks": 4, "n_conditioning_codebooks": 0}, "window_s": WINDOW_S},
    "c2f": {"model": {"n_codebooks": 14, "n_conditioning_codebooks": 4}, "window_s": C2F_CHUNK_S},
}

# the prompt options a preset leaves to the user (it sets which frames and codebooks are kept, not where)
KEPT_BY_PRESETS = ("prefix_s", "suffix_s", "ranges_s", "keep_codebooks", "keep_times_s", "keep_before_s",
                   "keep_after_s", "onset_times_s", "onset_width")
RANGES_USAGE = "ranges are START-END in seconds separated by commas (e.g. 1-2, 3.5-4)"


# --- time ranges ------------------------------------------------------------------------------------------------

def parse_range(text: str, usage: str) -> tuple[float, float]:
    """'1.5-3' -> (1.5, 3.0). Anything else is an OptionError saying `usage` and what was given."""
    try:
        start, end = (float(x) for x in str(text).split("-", 1))
    except ValueError:
        raise OptionError(f"{usage}, got {text!r}") from None
    return start, end


def parse_ranges(text: str) -> list[tuple[float, float]]:
    """'1-2, 3.5-4' (commas or semicolons between ranges) -> [(1.0, 2.0), (3.5, 4.0)]; at least one range."""
    parts = [part.strip() for part in str(text).replace(";", ",").split(",") if part.strip()]
    if not parts:
        raise OptionError("inpaint needs at least one range, e.g. 1-2")
    return [parse_range(part, RANGES_USAGE) for part in parts]


# --- prompts ----------------------------------------------------------------------------------------------------

def vamp_prompt(preset: str | None = None, *, wav=None, sample_rate: int | None = None, beats: bool = False,
                downbeats: bool = False, onsets: bool = False, every_k: int = 1, tracker: str = "auto",
                checkpoint=None, base: PromptConfig | None = None, **fields) -> tuple[PromptConfig, list[str]]:
    """The prompt of a vamp and the lines the beat trackers report (which ran, their licences).

    `fields` are PromptConfig's, the ones the user gave; without a preset they change `base` (the model's default
    prompt, `Pipeline.default_prompt`; default: the schema's); with a named `preset` they change the preset (which sets
    what it does not leave to the user, KEPT_BY_PRESETS). With beats, downbeats or onsets, the times tracked in
    `wav` are kept (with `keep_before_s`/`keep_after_s` around each; the "follow beat" presets track beats); with `onset_width` > 0, `onset_width` frames
    either side of every tracked onset (upstream's onset mask)."""
    times, lines = (), []
    beats = beats or modes.follows_beats(preset)
    if beats or downbeats or onsets:
        times, lines = prompt_times(wav, sample_rate, beats=beats, downbeats=downbeats, onsets=onsets,
                                    every_k=every_k, tracker=tracker, checkpoint=checkpoint)
    fields["keep_times_s"] = tuple(times)
    if fields.get("onset_width", 0) > 0 and "onset_times_s" not in fields and wav is not None:
        onset_times, found = prompt_times(wav, sample_rate, onsets=True, tracker=tracker, checkpoint=checkpoint)
        fields["onset_times_s"], lines = tuple(onset_times), lines + found
    if preset is None:
        return replace(base or PROMPT, **fields), lines
    base = modes.preset(preset, **{k: v for k, v in fields.items() if k in KEPT_BY_PRESETS})
    return with_changes(base, **{k: v for k, v in fields.items() if k not in KEPT_BY_PRESETS}), lines


def with_tracked_times(prompt: PromptConfig, wav, sample_rate: int, *, beat_before_s: float = 0.0,
                       beat_after_s: float = 0.0, onset_width: int = 0,
                       tracker: str = "auto") -> tuple[PromptConfig, list[str]]:
    """`prompt` also keeping what is tracked in `wav`: every beat from `beat_before_s` before it to `beat_after_s`
    after it (tracked when beat_after_s > 0), and `onset_width` frames either side of every onset (when > 0); with
    the lines the trackers report. (Upstream VampNet's beat and onset masks, as unloop asks for them.)"""
    changes, lines = {}, []
    if beat_after_s > 0:
        times, found = prompt_times(wav, sample_rate, beats=True, tracker=tracker)
        changes.update(keep_times_s=times, keep_before_s=beat_before_s, keep_after_s=beat_after_s)
        lines += found
    if onset_width > 0:
        times, found = prompt_times(wav, sample_rate, onsets=True, tracker=tracker)
        changes.update(onset_times_s=times, onset_width=onset_width)
        lines += found
    return (replace(prompt, **changes) if changes else prompt), lines


def with_changes(base: PromptConfig, **changes) -> PromptConfig:
    """`base` (a preset or a mode's prompt) with the options the user gave (not None) on top."""
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(base, **given) if given else base


# --- sampling and seeds -----------------------------------------------------------------------------------------

def sampling_configs(*, c2f_steps: int = C2F_STEPS, base: SamplingConfig | None = None,
                     **coarse) -> tuple[SamplingConfig, SamplingConfig]:
    """The coarse sampler's config: `base` (the model's defaults, `Pipeline.default_sampling`; default: the
    schema's) changed by `coarse` (SamplingConfig's fields, the ones given); and the coarse-to-fine sampler's: the
    pipeline's, with `c2f_steps` passes and the same way of drawing tokens."""
    config = replace(base or SAMPLING, **coarse)
    return config, replace(DEFAULT_C2F_SAMPLING, steps=c2f_steps, draw=config.draw)


def seed_or_new(seed: int | None) -> int:
    """The seed to use: the one given, or a fresh one for None or a negative number (the controls' "random")."""
    return seed if seed is not None and seed >= 0 else new_seed()
