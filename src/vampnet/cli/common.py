"""What every `vampnet` command shares: the typer app the commands register on, the options several commands
declare alike, loading the pipeline from --models, checking input and output paths, and progress bars."""
from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import options
from ..errors import AudioError, CheckpointError, OptionError
from ..pipeline import Pipeline
from ..pretrained import resolve
from ..threads import THREADS_ENV, set_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="VampNet: vamp, inpaint, continue and compress music with masked acoustic token models.")

THREADS_HELP = (f"CPU threads for every stage (default: ${THREADS_ENV}, else one per core); whatever the count, idle "
                "threads sleep instead of spinning, so a busy machine slows vampnet about 2x, not 5-25x")


@app.callback()
def global_options(threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP)):
    """VampNet: vamp, inpaint, continue and compress music with masked acoustic token models."""
    set_threads(threads)


AUDIO_OUT = (".wav", ".flac", ".ogg")
DRAW_HELP = "fast (one random number per token) | original (the original code's random stream: its tokens for a seed)"
MODELS_HELP = ("folder with codec/coarse/c2f checkpoints (ours or official .pth); 'official' = the downloaded official "
               "weights; a fine-tuned model's name ($VAMPNET_HOME/models); default: the small model shipped with vampnet")

# options declared alike by several commands (one definition, reused in each signature)
MODELS = typer.Option(None, "--models", help=MODELS_HELP)
LORA = typer.Option(None, "--lora", help="folder of fine-tuned adapters from 'vampnet finetune'")
SEED = typer.Option(None, help="random seed; the same seed gives the same result")
STEPS = typer.Option(options.SAMPLING.steps, min=1, help="coarse sampling steps")
C2F_STEPS = typer.Option(options.C2F_STEPS, "--c2f-steps", min=1, help="coarse-to-fine sampling steps")
TEMPERATURE = typer.Option(options.SAMPLING.temperature, min=0.0, help="sampling temperature")
TOP_P = typer.Option(None, "--top-p", min=0.0, max=1.0, help="nucleus sampling mass")
DRAW = typer.Option(options.SAMPLING.draw, "--draw", help=DRAW_HELP)
DEVICE = typer.Option("cpu", help="torch device (cpu, cuda, mps)")
PRECISION = typer.Option("fp32", help="fp32 (exact) | bf16 | int8")
CAPTURE = typer.Option("off", help="sampler: off (eager, fastest on a CPU) | static | compile (torch.compile) | "
                                   "graph (CUDA graphs, CUDA only); all give the same tokens for a seed in fp32")
QUIET = typer.Option(False, "-q", "--quiet", help="no progress bars")
BEAT_TRACKER = typer.Option("auto", "--beat-tracker", help="auto (librosa, or $VAMPNET_BEAT_TRACKER) | madmom (models CC "
                                                            "BY-NC-SA, non-commercial) | librosa (ISC) | wavebeat")
# the prompt options of the musical modes: each changes the mode's prompt or preset when given
PERIODIC = typer.Option(None, "--periodic", min=0, help="keep every P-th frame as prompt (overrides the preset)")
UPPER = typer.Option(None, "--upper-codebooks", min=0, help="generate every codebook from this index up (overrides the preset)")
INTENSITY = typer.Option(None, "--random-intensity", min=0.0, max=1.0, help="fraction of tokens a random mask generates")
RANGE_USAGE = "--range takes START-END in seconds (e.g. 1.5-3)"


# `vamp --help` groups its ~55 options in these panels (each panel's table sizes its own columns, so a long option
# name or range in one group does not squeeze the help text of all the others into a narrow column)
VAMP_PANELS = {
    "Model": ("models", "codec", "coarse", "c2f", "lora", "coarse_lora", "c2f_lora"),
    "Sampling": ("seed", "steps", "c2f_steps", "temperature", "mask_temperature", "sample_cutoff", "top_k", "top_p",
                 "typical", "typical_mass", "typical_min_tokens", "draw"),
    "Prompt": ("preset_name", "periodic", "periodic_width", "random_roll", "upper_codebooks", "keep_codebooks",
               "prefix", "suffix", "range_", "dropout", "random_intensity"),
    "Beats and onsets": ("beats", "downbeats", "every_k", "beat_before", "beat_after", "onsets", "beat_tracker",
                         "wavebeat"),
    "Long audio and speed": ("window", "overlap", "device", "precision", "capture"),
}


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
    pipeline = Pipeline.load(source.base if source else None, device=device, **{**tuned, **given})
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
