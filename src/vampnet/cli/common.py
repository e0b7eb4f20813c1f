"""What every `vampnet` command shares: the typer app the commands register on, the options several commands
declare alike (`shared_flags`) and the schema's options as flags (`schema_flags`), loading the pipeline from
--models, checking input and output paths, and progress bars."""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import audio, effects, options
from ..control_options import ControlOptions
from ..effects import InputEffects
from ..errors import AudioError, CheckpointError, OptionError
from ..model_defaults import SECTIONS as CARD_SECTIONS, SOURCE_NOTE, of_source
from ..pipeline import Pipeline, PipelineConfig
from ..pretrained import resolve
from ..prompts import PromptConfig
from ..sampling import SamplingConfig
from ..schema import Option, config_values, options_of
from ..threads import THREADS_ENV, set_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="VampNet: vamp, inpaint, continue and compress music with masked acoustic token models.")

THREADS_HELP = (f"CPU threads for every stage (default: ${THREADS_ENV}, else one per core); whatever the count, idle "
                "threads sleep instead of spinning, so a busy machine slows vampnet about 2x, not 5-25x")


@app.callback()
def global_options(threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP)):
    """VampNet: vamp, inpaint, continue and compress music with masked acoustic token models."""
    set_threads(threads)


AUDIO_OUT = tuple(audio.WRITE_FORMATS)
MODELS_HELP = ("folder with codec/coarse/c2f checkpoints (ours or official .pth); 'official' = the downloaded official "
               "weights; a fine-tuned model's name ($VAMPNET_HOME/models); default: the small model shipped with vampnet")

# options declared alike by several commands (one definition, reused in each signature or added by shared_flags)
MODELS = typer.Option(None, "--models", help=MODELS_HELP)
LORA = typer.Option(None, "--lora", help="folder of fine-tuned adapters from 'vampnet finetune'")
SEED = typer.Option(None, help="random seed; the same seed gives the same result")
C2F_STEPS = typer.Option(options.C2F_STEPS, "--c2f-steps", min=1, help="coarse-to-fine sampling steps")
DEVICE = typer.Option("cpu", help="torch device (cpu, cuda, mps)")
QUIET = typer.Option(False, "-q", "--quiet", help="no progress bars")
BEAT_TRACKER = typer.Option("auto", "--beat-tracker", help="auto (librosa, or $VAMPNET_BEAT_TRACKER) | madmom (models CC "
                                                            "BY-NC-SA, non-commercial) | librosa (ISC) | wavebeat")
RANGE_USAGE = "--range takes START-END in seconds (e.g. 1.5-3)"
CODEC = typer.Option(None, help="codec checkpoint")
SHARED = {"models": (Optional[str], MODELS), "codec": (Optional[Path], CODEC), "lora": (Optional[Path], LORA),
          "seed": (Optional[int], SEED), "c2f_steps": (int, C2F_STEPS), "device": (str, DEVICE), "quiet": (bool, QUIET)}


@dataclass
class AudioOutput:
    """Where and how a command writes its results: the path, the user's format options and the input's format."""

    path: Path
    options: audio.OutputOptions
    source: audio.FileFormat | None = None  # None: the result's own (a token or compressed file's input)

    @property
    def rate(self) -> int | None:
        """The sample rate the results will be written at (None: each result's own)."""
        return self.options.sample_rate or (self.source.sample_rate if self.source else None)

    def named(self, tag) -> Path:
        """A sibling file NAME-tag.EXT (variations, loops)."""
        return self.path.with_name(f"{self.path.stem}-{tag}{self.path.suffix}")

    def save(self, result, path: Path | None = None) -> Path:
        return result.save(path or self.path, self.options, source=self.source)


def audio_output(output: Path, given: dict, input: Path | None = None) -> AudioOutput:
    """The result file's options the user gave (the output section's flags among `given`), checked before any work:
    --format adds its extension to a name without one (and must agree with one that has it), and the format must
    hold the rate, channels and bit depth asked for."""
    file_type = given.get("format")
    if file_type is not None:
        file_type = file_type.lower().lstrip(".")
        if file_type not in audio.writable_formats():
            raise OptionError(f"--format must be one of {', '.join(audio.writable_formats())}, got {file_type!r}")
        if not output.suffix:
            output = output.with_name(f"{output.name}.{file_type}")
    check_output(output, AUDIO_OUT)
    options = audio.OutputOptions(**config_values(audio.OutputOptions, {**given, "format": file_type}))
    out = AudioOutput(output, options, audio.file_format(input) if input is not None else None)
    audio.output_format(output, out.source or audio.FileFormat(options.sample_rate or 44100), options)
    return out


# --- the schema's options as flags -------------------------------------------------------------------------------
# Each command gets every option the schema declares (vampnet.schema) on the configs of the sections it names, as
# flags named after them; none is written out here. A flag left out is "not given" (None), so the command's own
# base (its preset, its mode's prompt, the configs' defaults) applies.
SCHEMA_SECTIONS = {"prompt": (PromptConfig, "Prompt: what is kept"), "sampling": (SamplingConfig, "Sampling"),
                   "input": (InputEffects, "Input: before encoding"),
                   "pipeline": (PipelineConfig, "Long audio and speed"), "output": (audio.OutputOptions, "Output file"),
                   "control": (ControlOptions, "Follow a loudness envelope")}
_PY_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _flag(opt: Option, base: str) -> typer.Option:
    # an option that is off by default is a plain flag that turns it on (absent: None, not given)
    decls = (f"{opt.flag}/--no-{opt.flag[2:]}",) if opt.kind == "bool" and opt.default else (opt.flag,)
    unit = f" {opt.unit}" if opt.unit and base == "defaults" else ""
    # an option whose default is None (the output file's) says what the default is in its help; a model's card
    # may set the prompt's and the sampler's (vampnet.model_defaults), which the help says too
    card = f", {SOURCE_NOTE}" if opt.section in CARD_SECTIONS else ""
    default = ("" if opt.default in (None, "") else f" (default: {opt.default}{unit}{card})" if base == "defaults"
               else f" (default: {base})")
    choices = f"{' | '.join(opt.choices)}: " if opt.choices else ""  # checked by the schema, like every range
    return typer.Option(None, *decls, help=f"{choices}{opt.help}{default}",
                        show_default=False, min=opt.minimum, max=opt.maximum,
                        rich_help_panel=SCHEMA_SECTIONS[opt.section][1])


def schema_flags(*sections: str, base: dict[str, str] | None = None, only: tuple[str, ...] = ()):
    """Decorator: the command also takes every schema option of these sections (SCHEMA_SECTIONS; `only`: just these
    option names) as a flag, and receives them in its **given keyword arguments (None: not given). `base` says, per
    section, what applies to an option not given (default: the config's default, shown in the help)."""
    return _keywords([(opt.name, Optional[_PY_TYPES[opt.kind]], _flag(opt, (base or {}).get(section, "defaults")))
                      for section in sections for opt in options_of(SCHEMA_SECTIONS[section][0], section)
                      if not only or opt.name in only])


def shared_flags(*names: str):
    """Decorator: the command also takes these options of SHARED (--models, --seed, ...), declared once there, and
    receives them in its **given keyword arguments."""
    return _keywords([(name, *SHARED[name]) for name in names])


def _keywords(added: list[tuple[str, object, object]]):
    """A decorator adding keyword-only parameters (name, annotation, typer option) to a command's signature; the
    command receives them in its **kwargs."""
    def decorate(fn):
        signature = inspect.signature(fn)
        fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = signature.replace(parameters=fixed + [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, annotation, default in added])
        return fn
    return decorate


def given_configs(given: dict) -> tuple[dict, dict]:
    """The PromptConfig and SamplingConfig fields the user gave (schema flags) among a command's keyword arguments."""
    return config_values(PromptConfig, given), config_values(SamplingConfig, given)


def given_pipeline(given: dict) -> PipelineConfig:
    """How the pipeline runs, from the pipeline flags the user gave (--window, --precision, ...)."""
    return PipelineConfig(**config_values(PipelineConfig, given))


def given_effects(wav, sample_rate: int, given: dict):
    """The input audio with the input effects the user gave (schema flags, e.g. --pitch-shift) applied."""
    return effects.apply(InputEffects.from_values(given), wav, sample_rate)


# `vamp --help` groups its ~55 options in these panels (each panel's table sizes its own columns, so a long option
# name or range in one group does not squeeze the help text of all the others into a narrow column)
VAMP_PANELS = {  # the schema's flags join the panels of their sections' names (schema_flags, SCHEMA_SECTIONS)
    "Model": ("models", "codec", "coarse", "c2f", "lora", "coarse_lora", "c2f_lora"),
    "Sampling": ("seed", "c2f_steps", "variations"),
    "Prompt: what is kept": ("preset_name", "range_"),
    "Beats and onsets": ("beats", "downbeats", "every_k", "onsets", "beat_tracker", "wavebeat"),
    "Long audio and speed": ("device",),
}


PANEL_ORDER = ("Output file", "Model", "Sampling", "Prompt: what is kept", "Beats and onsets", "Long audio and speed",
               "Input: before encoding", "Follow a loudness envelope")


def in_panel_order(fn):
    """A command whose `--help` shows its panels in PANEL_ORDER (the options in no panel first), whatever order
    the decorators added their options in; within a panel, the options keep their order. (Typer passes every
    option by name, so the parameters may all be keyword-only.)"""
    signature = inspect.signature(fn)
    rank = {panel: i for i, panel in enumerate(PANEL_ORDER, 1)}
    params = sorted(signature.parameters.values(), key=lambda p: rank.get(getattr(p.default, "rich_help_panel", None), 0))
    fn.__signature__ = signature.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
    return fn


def help_panels(panels: dict[str, tuple[str, ...]]):
    """A decorator that shows a command's options in `--help` under the named panels ({panel: parameter names}).
    The options declared in common (shared by several commands) are copied, not changed."""
    def decorate(func):
        signature = inspect.signature(func, eval_str=True)  # typer reads the evaluated annotations
        panel_of = {name: panel for panel, names in panels.items() for name in names}
        unknown = set(panel_of) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{func.__name__} has no parameters {sorted(unknown)}")
        params = []
        for name, param in signature.parameters.items():
            if name in panel_of:
                option = copy.copy(param.default)
                option.rich_help_panel = panel_of[name]
                param = param.replace(default=option)
            params.append(param)
        func.__signature__ = signature.replace(parameters=params)
        return func
    return decorate


def load_pipeline(models, codec=None, coarse=None, c2f=None, device="cpu", need_generation=True, **settings) -> Pipeline:
    """The one Pipeline every command drives, from --models and the per-file overrides."""
    source = None if codec is not None and models is None else resolve(models)
    given = {k: v for k, v in {"codec": codec, "coarse": coarse, "c2f": c2f, **settings}.items() if v is not None}
    tuned = source.load_options() if source is not None else {}  # a fine-tuned model's files, unless given here
    defaults = {"defaults": of_source(source)} if source is not None else {}  # its card's (a fine-tune's: over its base's)
    pipeline = Pipeline.load(source.base if source else None, device=device, **{**defaults, **tuned, **given})
    if need_generation and pipeline.coarse is None:
        raise CheckpointError("the model folder has no coarse model (coarse.safetensors or coarse.pth)")
    if pipeline.precision_note:
        typer.echo(f"note: {pipeline.precision_note}", err=True)
    return pipeline


def check_output(path: Path, suffixes) -> None:
    if path.suffix.lower() not in suffixes:
        raise OptionError(f"output {path} must end in one of {', '.join(suffixes)}")
    if path.exists() and path.is_dir():
        raise OptionError(f"output {path} is a folder")


def check_input(path: Path) -> None:
    if not path.is_file():
        raise AudioError(f"input not found: {path}")


def parse_range_options(texts) -> tuple[tuple[float, float], ...]:
    """The --range options' START-END texts as (start, end) seconds."""
    return tuple(options.parse_range(text, RANGE_USAGE) for text in texts)


class ProgressReporter:
    """Draws one rich progress bar per pipeline stage on stderr."""

    def __init__(self, quiet: bool):
        self.progress = Progress(TextColumn("{task.description:>15}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), console=Console(stderr=True), disable=quiet, transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int):
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)
