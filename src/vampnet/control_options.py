"""The loudness control as people give it (issue 28, "using it"): `ControlOptions`, the schema section every front
end offers (the CLI's --loudness-from/--loudness flags, the studio's envelope section and its API, HARP, OSC), and
`clip_control`, the one function that turns what was given and a clip into the pipeline's `Control`.

A control is taken from one of two sources, never both: an audio file whose loudness envelope the new music
follows (stretched over the clip, or aligned from its start: past the file's end the music is free), or a curve of
`time_s:dB` points (vampnet.controls documents the format). `loudness_range` limits the control to START-END
seconds of the clip: outside it the control is absent and the music free. How closely the music follows is the
sampler's `guidance` (SamplingConfig)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .controls import FITS, Control, loudness_from_curve, loudness_from_file
from .errors import OptionError
from .options import parse_range
from .pipeline import Pipeline
from .schema import config_values, option

CURVE_FORMAT = "time_s:dB points separated by commas, e.g. 0:-40, 2.5:-18, 6:-60"
RANGE_USAGE = "--loudness-range takes START-END in seconds (e.g. 1.5-3)"
NO_CONTROL_INPUT = ("this model has no control input, so it cannot follow a loudness envelope; use the bundled "
                    "--models small-loudness, or make one with `vampnet finetune --control loudness` (see the README)")


@dataclass(frozen=True)
class ControlOptions:
    """What the new music should follow besides its prompt: a loudness envelope from a file or a curve, fitted and
    limited to part of the clip. Empty text means "not given"; with neither source there is no control."""

    loudness_from: str = option("", "an audio file whose loudness envelope (its swells and drops) the new music "
                                "follows; empty: none", label="follow the loudness of (audio file)")
    loudness: str = option("", f"a loudness curve the new music follows: {CURVE_FORMAT} (dB of the clip "
                           "normalised to -24 LUFS; before the first point and after the last the music is free)",
                           label="loudness curve (time_s:dB)")
    loudness_fit: str = option("stretch", "how the file's envelope meets the clip: stretch it over the whole clip, "
                               "or align it from the start (past its end the music is free)",
                               label="fit the file's envelope", choices=FITS)
    loudness_range: str = option("", "START-END seconds of the clip where the loudness is followed; outside it the "
                                 "music is free (empty: the whole clip)", label="follow it only within (s)")

    @property
    def given(self) -> bool:
        """Whether a loudness source (file or curve) was given."""
        return bool(self.loudness_from.strip() or self.loudness.strip())

    @classmethod
    def from_values(cls, values: dict) -> "ControlOptions":
        """From user-facing values by option name (None or missing: the default; other names are ignored)."""
        return cls(**config_values(cls, values))


CONTROL_OPTION_NAMES = tuple(f.name for f in fields(ControlOptions))


def clip_frames(pipeline: Pipeline, wav: torch.Tensor, sample_rate: int) -> int:
    """How many token frames the pipeline makes of this clip (what a control must span)."""
    x, _ = pipeline.preprocess(wav, sample_rate)
    return math.ceil(x.shape[-1] / pipeline.codec.hop_length)


def check_takes_control(pipeline: Pipeline) -> None:
    """OptionError saying how to get a model with a control input, where `pipeline`'s coarse model has none."""
    if pipeline.coarse is None or not getattr(pipeline.coarse, "n_controls", 0):
        raise OptionError(NO_CONTROL_INPUT)


def clip_control(pipeline: Pipeline, wav: torch.Tensor, sample_rate: int, options: ControlOptions | None = None,
                 **values) -> Control | None:
    """The loudness Control for a clip (wav (channels, samples) or (1, channels, samples) at `sample_rate`), from
    `options` or from ControlOptions' fields by name (loudness_from="drums.wav", loudness="0:-40, 2:-10",
    loudness_fit="align", loudness_range="1-3"); None when neither a file nor a curve is given. One-line
    OptionErrors for both sources at once, a curve not in the format, a bad range, and a model without a control
    input; an AudioError for a file that cannot be read."""
    options = options or ControlOptions(**{k: v for k, v in values.items() if v is not None})
    if not options.given:
        return None
    if options.loudness_from.strip() and options.loudness.strip():
        raise OptionError("give a loudness file (--loudness-from) or a loudness curve (--loudness), not both")
    check_takes_control(pipeline)
    n_frames = clip_frames(pipeline, wav, sample_rate)
    if options.loudness_from.strip():
        control = loudness_from_file(options.loudness_from.strip(), n_frames, pipeline.codec, options.loudness_fit)
    else:
        try:
            control = loudness_from_curve(options.loudness, n_frames, pipeline.frame_rate)
        except OptionError as e:  # every curve error quotes the format
            message = str(e) if CURVE_FORMAT in str(e) else f"{e}; the format is {CURVE_FORMAT}"
            raise OptionError(message) from None
    return within(control, options.loudness_range, pipeline.frame_rate)


def within(control: Control, range_text: str, frame_rate: float) -> Control:
    """`control` present only in the frames whose centres lie in START-END seconds (empty text: unchanged)."""
    if not range_text.strip():
        return control
    start, end = parse_range(range_text.strip(), RANGE_USAGE)
    if not 0 <= start < end:
        raise OptionError(f"{RANGE_USAGE}, with 0 <= START < END; got {range_text!r}")
    centres = (torch.arange(control.n_frames) + 0.5) / frame_rate
    present = control.present & (centres >= start) & (centres < end)
    if not present.any():
        raise OptionError(f"the loudness range {start:g}-{end:g} s controls no frame of this "
                          f"{control.n_frames / frame_rate:.2f} s clip")
    return Control(control.values, present, control.names)
