"""The mode registry: each musical mode declared once, as one `Mode` entry in `MODES`: its own options (a dataclass
of schema options, so the studio's controls and API follow from them), the mask it generates (what a preview
draws), and its run, including how it makes variations. The studio and the CLI's mode commands look a mode up here
and call its `run` or `mask`; nothing else branches on a mode's name. A new mode is its job in vampnet.modes plus
one entry here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import modes
from .controls import Control
from .errors import OptionError
from .options import COMPRESS_CODEBOOKS, COMPRESS_PERIOD, parse_ranges
from .pipeline import Pipeline, Progress, VampResult, new_seed
from .prompts import PromptConfig, seconds_to_frames
from .sampling import SamplingConfig
from .schema import config_values, option, options_of

# --- each mode's own options (schema options: the studio's controls are made from them) ----------------------


@dataclass(frozen=True)
class VampOptions:
    """A vamp has no options of its own: its prompt says everything."""


@dataclass(frozen=True)
class LoopOptions:
    seconds: float = option(0.0, "how long each loop is, exact to the sample (0: the whole clip)",
                            name="loop_seconds", label="loop length", unit="s", minimum=0, slider=(0.0, 30.0),
                            step=0.1)
    start_s: float = 0.0  # where the loop starts (bars choose it from the first downbeat)
    feedback: int = option(0, "vamp each loop again this many more times, each pass from the one before (the "
                           "upstream app's feedback steps, less one)", name="loop_feedback", label="feedback passes",
                           minimum=0, slider=(0, 8), step=1)
    repeats: int = 1      # times each variation plays in the chain
    bars: int = option(0, "loop this many bars from the first downbeat, as the tracked beats give them (0: use the "
                       "length in seconds)", name="loop_bars", label="loop length in bars", minimum=0,
                       slider=(0, 16), step=1)
    snap: bool = False    # move the end of `seconds` to the nearest tracked beat
    tracker: str = "auto"  # the beat tracker that finds bars and beats (vampnet.beats)


@dataclass(frozen=True)
class ContinueOptions:
    seconds: float = option(5.0, "how much new music comes after the clip's end", name="continue_seconds",
                            label="music to add", unit="s", minimum=0, slider=(0.0, 60.0), step=0.5)
    before: float = option(0.0, "how much new music comes before the clip's start", name="continue_before",
                           label="music to add before", unit="s", minimum=0, slider=(0.0, 60.0), step=0.5)


@dataclass(frozen=True)
class InpaintOptions:
    ranges: str = option("1.0-2.0", "the parts to make new, each START-END in seconds, separated by commas: "
                         "1-2, 3.5-4", name="ranges", label="parts to redo (seconds)")

    def spans(self) -> list[tuple[float, float]]:
        """The ranges as (start, end) seconds (given as text, or already as pairs by the CLI)."""
        return parse_ranges(self.ranges) if isinstance(self.ranges, str) else list(self.ranges)


@dataclass(frozen=True)
class StretchOptions:
    factor: float = option(2.0, "how much longer the result is (0.5: twice as fast); the model fills the new frames",
                           name="stretch_factor", label="stretch by", minimum=modes.STRETCH_RANGE[0],
                           maximum=modes.STRETCH_RANGE[1], step=0.05)


@dataclass(frozen=True)
class CompressOptions:
    codebooks: int = option(COMPRESS_CODEBOOKS, "how many sound layers (codebooks) the compressed file keeps: more "
                            "sounds closer to the input and makes a bigger file", name="compress_codebooks",
                            label="layers kept", minimum=1, maximum=14, step=1, model_max="codebooks")
    period: int = option(COMPRESS_PERIOD, "the file keeps one frame in every N; the model makes up the rest",
                         name="compress_period", label="keep one frame in every", unit="frames", minimum=1, maximum=32,
                         step=1)


@dataclass(frozen=True)
class DecompressOptions:
    path: str = ""  # the compressed file


# --- what a run takes and gives ------------------------------------------------------------------------------

@dataclass
class Job:
    """What a mode runs on. `options`: an instance of the mode's options class; `prompt`: None for the mode's
    own; `output_rate`: the rate written (loops are made at it, exact to the sample); `new_file(stem, suffix)`: where
    a mode writes a file of its own (the compressed file); `control`: what the new music follows (vampnet.controls,
    spanning the input's frames), for the modes that take one (`Mode.takes_control`)."""

    pipeline: Pipeline
    wav: torch.Tensor | None
    sample_rate: int | None
    options: object
    prompt: PromptConfig | None = None
    sampling: SamplingConfig | None = None
    c2f_sampling: SamplingConfig | None = None
    seed: int | None = None
    variations: int = option(1, "how many different results to make at once (their seeds count up from the seed)",
                             label="variations", minimum=1, maximum=64, slider=(1, 16), step=1)
    progress: Progress | None = None
    output_rate: int | None = None
    new_file: Callable[[str, str], Path] | None = None
    control: Control | None = None


@dataclass
class Outcome:
    """What a run made: one result per variation, files it wrote besides them, a loop's chain (modes.LoopResult,
    to save beside the results), the compressed file's report (modes.CompressedInfo) and lines that say how it
    chose what it did (a loop's region)."""

    results: list[VampResult]
    files: list[Path] = field(default_factory=list)
    chain: modes.LoopResult | None = None
    info: modes.CompressedInfo | None = None
    notes: list[str] = field(default_factory=list)  # lines saying how the run chose what it did (a loop's region)


def _sampled(job: Job) -> dict:
    return dict(sampling=job.sampling, c2f_sampling=job.c2f_sampling, progress=job.progress)


def _each_seed(job: Job, make) -> Outcome:
    """Variations as separate runs with seeds SEED, SEED + 1, ..."""
    seed = new_seed() if job.seed is None else job.seed
    return Outcome([make(seed + i) for i in range(job.variations)])


# --- the runs ------------------------------------------------------------------------------------------------

def _run_vamp(job: Job) -> Outcome:  # the variations as one batch: each still equals a vamp with its own seed
    return Outcome(job.pipeline.variations(job.wav, job.sample_rate, job.variations, prompt=job.prompt,
                                           seed=job.seed, control=job.control, **_sampled(job)))


def _run_loop(job: Job) -> Outcome:
    """Bars, a snapped length, a length from the start or the whole clip choose the region (modes.loop_region),
    unless the options give where it starts."""
    o = job.options
    if o.start_s and not (o.bars or o.snap):
        start_s, seconds, how = o.start_s, o.seconds or None, f"loop: from {o.start_s:g} s"
    else:
        start_s, seconds, how = modes.loop_region(job.wav, job.sample_rate, seconds=o.seconds or None,
                                                  bars=o.bars or None, tracker=o.tracker, snap=o.snap)
    result = modes.loop(job.pipeline, job.wav, job.sample_rate, variations=job.variations, seconds=seconds,
                        start_s=start_s, prompt=job.prompt, feedback=o.feedback, repeats=o.repeats,
                        output_rate=job.output_rate, seed=job.seed, **_sampled(job))
    return Outcome(result.variations, chain=result, notes=[how])


def _run_continue(job: Job) -> Outcome:
    o = job.options
    return _each_seed(job, lambda seed: modes.continue_audio(job.pipeline, job.wav, job.sample_rate, seconds=o.seconds,
                                                             before=o.before, seed=seed, **_sampled(job)))


def _run_inpaint(job: Job) -> Outcome:
    spans = job.options.spans()
    return _each_seed(job, lambda seed: modes.inpaint(job.pipeline, job.wav, job.sample_rate, spans,
                                                      prompt=job.prompt, seed=seed, control=job.control,
                                                      **_sampled(job)))


def _run_stretch(job: Job) -> Outcome:
    return _each_seed(job, lambda seed: modes.stretch(job.pipeline, job.wav, job.sample_rate, job.options.factor,
                                                      prompt=job.prompt, seed=seed, **_sampled(job)))


def _run_compress(job: Job) -> Outcome:
    """Write the compressed file, then decompress it once per variation (none: the file alone)."""
    path = job.new_file("compressed", ".vmpz")
    info = modes.compress(job.pipeline, job.wav, job.sample_rate, path, codebooks=job.options.codebooks,
                          period=job.options.period, progress=job.progress)
    out = _each_seed(job, lambda seed: modes.decompress(job.pipeline, path, seed=seed, **_sampled(job)))
    for r in out.results:
        r.settings.update(real_kbps=round(info.real_kbps, 3), nominal_kbps=round(info.nominal_kbps, 3))
    out.files, out.info = [path], info
    return out


def _run_decompress(job: Job) -> Outcome:
    return _each_seed(job, lambda seed: modes.decompress(job.pipeline, job.options.path, seed=seed, **_sampled(job)))


# --- the masks (over a clip's token grid, without running the mode) -------------------------------------------

def _prompted(prompt, like, frame_rate, generator):
    return prompt.build(like, frame_rate, generator)


def _continue_mask(o, like, frame_rate, prompt, generator):
    return modes.continuation_grid(like, seconds_to_frames(o.before, frame_rate),
                                   seconds_to_frames(o.seconds, frame_rate))[1]


def _inpaint_mask(o, like, frame_rate, prompt, generator):
    mask = modes.inpaint_mask(like, o.spans(), frame_rate, like.shape[-1] / frame_rate)
    return mask & prompt.build(like, frame_rate, generator) if prompt is not None else mask


def _stretch_mask(o, like, frame_rate, prompt, generator):
    grid, on_grid = modes.stretch_grid(like, o.factor)
    return (prompt or modes.STRETCH_PROMPT).build(grid, frame_rate, generator) | ~on_grid.view(1, 1, -1)


# --- the registry --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    """One musical mode. `options`: its options class; `run(job) -> Outcome`; `mask(options, like, frame_rate,
    prompt, generator)`: what it generates over a grid shaped like `like` (None: nothing to preview);
    `prompt`: the prompt it uses when none is given (None: it takes none); `studio_prompt`: the studio's prompt
    controls shape it; `in_studio`: the studio offers it; `title(options)`: the preview's title (None: the share
    of tokens generated); `help`: what it does, in a line for musicians; `takes_control`: it can follow a control
    over the input's frames (a loudness envelope)."""

    name: str
    options: type
    run: Callable[[Job], Outcome]
    mask: Callable | None = None
    prompt: PromptConfig | None = None
    studio_prompt: bool = False
    in_studio: bool = True
    title: Callable | None = None
    help: str = ""
    takes_control: bool = False

    def check_control(self, control) -> None:
        """OptionError where a control is given to a mode that cannot follow one."""
        if control is not None and not self.takes_control:
            able = ", ".join(m.name for m in _MODES if m.takes_control)
            raise OptionError(f"{self.name} cannot follow a loudness envelope ({able} can)")

    def options_from(self, values: dict):
        """The mode's options from user-facing values by name (checked by the schema; unknown names ignored)."""
        return self.options(**config_values(self.options, values))

    def preview(self, options, like, frame_rate: float, prompt: PromptConfig | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, str]:
        """(The mask this mode generates over a grid shaped like `like`, a title saying what it is)."""
        if self.mask is None:
            raise OptionError(f"{self.name} has no mask to preview")
        mask = self.mask(options, like, frame_rate, prompt or self.prompt, generator)
        title = self.title(options) if self.title else f"{self.name}: {100 * mask.float().mean():.0f}% of tokens generated"
        return mask, title


_MODES = (
    Mode("vamp", VampOptions, _run_vamp, lambda o, like, rate, p, g: _prompted(p, like, rate, g), PromptConfig(),
         studio_prompt=True, help="a new take on the clip", takes_control=True),
    Mode("loop", LoopOptions, _run_loop, lambda o, like, rate, p, g: _prompted(p, like, rate, g),
         modes.PRESETS["variation"], studio_prompt=True, help="new takes that each loop seamlessly, and all of them chained"),
    Mode("continue", ContinueOptions, _run_continue, _continue_mask,
         title=lambda o: f"continue: {o.seconds:g} s after the clip", help="more music after the clip's end"),
    Mode("inpaint", InpaintOptions, _run_inpaint, _inpaint_mask, title=lambda o: f"inpaint {o.ranges}",
         help="redo some parts of the clip, keeping the rest", takes_control=True),
    Mode("compress", CompressOptions, _run_compress,
         lambda o, like, rate, p, g: ~modes.kept_mask(like.shape, o.codebooks, o.period),
         title=lambda o: f"compress: keep {o.codebooks} codebooks every {o.period} frame(s)",
         help="squeeze the clip into a tiny file, then let the model fill it back in"),
    Mode("stretch", StretchOptions, _run_stretch, _stretch_mask, modes.STRETCH_PROMPT,
         title=lambda o: f"stretch by {o.factor:g}", help="the clip slower or faster, same pitch: the model fills the "
                                                          "new frames"),
    Mode("decompress", DecompressOptions, _run_decompress, in_studio=False),
)
MODES = {m.name: m for m in _MODES}
STUDIO_MODES = tuple(m.name for m in _MODES if m.in_studio)
OPTIONS = tuple(opt for m in _MODES for opt in options_of(m.options, m.name))  # every mode's user-facing options
# how many variations one run makes, for every front end (the studio shows the slider's range and takes the rest)
VARIATIONS = options_of(Job, "run")[0]


def mode(name: str) -> Mode:
    """The registered mode called `name`; OptionError naming the modes otherwise."""
    if name not in MODES:
        raise OptionError(f"unknown mode {name!r}; choose one of {', '.join(MODES)}")
    return MODES[name]
