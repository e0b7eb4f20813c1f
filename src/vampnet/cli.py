"""The `vampnet` command: parse options, call the pipeline, report. No model logic lives here.

Every failure the user can cause ends with one line `error: ...` and exit status 1 (2 for bad usage)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="VampNet: vamp, inpaint, continue and compress music with masked acoustic token models.")

DRAW_HELP = "fast (one random number per token) | original (the original code's random stream: its tokens for a seed)"
MODELS_HELP = ("folder with codec/coarse/c2f checkpoints (ours or official .pth); 'official' = the downloaded official "
               "weights; a fine-tuned model's name ($VAMPNET_HOME/models); default: the small model shipped with vampnet")


def _home() -> Path:
    from .pretrained import home

    return home()


def _models_dir(models: Optional[str]) -> Path:
    """The model folder --models names (default: the shipped small model)."""
    from .pretrained import model_folder

    return model_folder(models)


def _load_pipeline(models, codec=None, coarse=None, c2f=None, device="cpu", need_generation=True, **options):
    """The one Pipeline every command drives, from --models and the per-file overrides."""
    from .errors import CheckpointError
    from .pipeline import Pipeline

    from .pretrained import resolve

    source = None if codec is not None and models is None else resolve(models)
    given = {k: v for k, v in {"codec": codec, "coarse": coarse, "c2f": c2f, **options}.items() if v is not None}
    tuned = source.load_options() if source is not None else {}  # a fine-tuned model's files, unless given here
    pipeline = Pipeline.load(source.base if source else None, device=device, **{**tuned, **given})
    if need_generation and pipeline.coarse is None:
        raise CheckpointError("the model folder has no coarse model (coarse.safetensors or coarse.pth)")
    if pipeline.precision_note:
        typer.echo(f"note: {pipeline.precision_note}", err=True)
    return pipeline


def _check_output(path: Path, suffixes) -> None:
    from .errors import OptionError

    if path.suffix.lower() not in suffixes:
        raise OptionError(f"output {path} must end in one of {', '.join(suffixes)}")
    if path.exists() and path.is_dir():
        raise OptionError(f"output {path} is a folder")


def _check_input(path: Path) -> None:
    from .errors import AudioError

    if not path.is_file():
        raise AudioError(f"input not found: {path}")


class _ProgressReporter:
    """Draws one rich progress bar per pipeline stage on stderr."""

    def __init__(self, quiet: bool):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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


def _parse_ranges(ranges: List[str]):
    from .errors import OptionError

    out = []
    for text in ranges:
        try:
            a, b = (float(x) for x in text.split("-", 1))
        except ValueError:
            raise OptionError(f"--range takes START-END in seconds (e.g. 1.5-3), got {text!r}") from None
        out.append((a, b))
    return tuple(out)


@app.command()
def vamp(
    input: Path = typer.Argument(..., help="audio file to vamp (wav/flac/ogg/mp3...)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint (overrides the folder's)"),
    coarse: Optional[Path] = typer.Option(None, help="coarse checkpoint (overrides the folder's)"),
    c2f: Optional[Path] = typer.Option(None, help="coarse-to-fine checkpoint (overrides the folder's)"),
    lora: Optional[Path] = typer.Option(None, "--lora", help="folder of fine-tuned adapters from 'vampnet finetune'"),
    coarse_lora: Optional[Path] = typer.Option(None, "--coarse-lora", help="one coarse LoRA file (ours or the original's)"),
    c2f_lora: Optional[Path] = typer.Option(None, "--c2f-lora", help="one coarse-to-fine LoRA file"),
    seed: Optional[int] = typer.Option(None, help="random seed; the same seed gives the same result"),
    steps: int = typer.Option(36, min=1, help="coarse sampling steps"),
    c2f_steps: int = typer.Option(2, "--c2f-steps", min=1, help="coarse-to-fine sampling steps"),
    temperature: float = typer.Option(1.0, min=0.0, help="sampling temperature"),
    mask_temperature: float = typer.Option(10.5, "--mask-temperature", min=0.0, help="randomness of which tokens stay masked"),
    sample_cutoff: float = typer.Option(1.0, "--sample-cutoff", help="fraction of steps that sample (later ones take the argmax)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="sample only among the k likeliest tokens"),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0, help="nucleus sampling mass"),
    typical: bool = typer.Option(False, "--typical/--no-typical", help="locally typical sampling"),
    typical_mass: float = typer.Option(0.15, "--typical-mass", min=0.0, max=1.0),
    typical_min_tokens: int = typer.Option(1, "--typical-min-tokens", min=1),
    draw: str = typer.Option("fast", "--draw", help=DRAW_HELP),
    preset_name: Optional[str] = typer.Option(None, "--preset", help="subtle | variation | wild (sets the prompt options below)"),
    periodic: int = typer.Option(7, min=0, help="keep every P-th frame as prompt (0: none)"),
    periodic_width: int = typer.Option(1, "--periodic-width", min=1, help="frames kept around each periodic anchor"),
    random_roll: bool = typer.Option(False, "--random-roll", help="shift the periodic pattern randomly"),
    upper_codebooks: int = typer.Option(3, "--upper-codebooks", min=0, help="generate every codebook from this index up"),
    keep_codebooks: int = typer.Option(0, "--keep-codebooks", min=0, help="keep the lowest N codebooks entirely"),
    prefix: float = typer.Option(0.0, min=0.0, help="seconds kept at the start"),
    suffix: float = typer.Option(0.0, min=0.0, help="seconds kept at the end"),
    range_: List[str] = typer.Option([], "--range", help="generate only inside START-END seconds (repeatable)"),
    dropout: float = typer.Option(0.0, min=0.0, max=1.0, help="probability of dropping a kept frame"),
    random_intensity: float = typer.Option(1.0, "--random-intensity", min=0.0, max=1.0, help="fraction of tokens the random mask generates"),
    beats: bool = typer.Option(False, "--beats", help="keep the tokens at every tracked beat (with --periodic 0: only those)"),
    downbeats: bool = typer.Option(False, "--downbeats", help="keep the tokens at tracked downbeats (--beats already includes them)"),
    every_k: int = typer.Option(1, "--every-k", min=1, help="keep only every k-th of the selected beats or downbeats"),
    beat_before: float = typer.Option(0.0, "--beat-before", min=0.0, help="seconds kept before each beat/downbeat/onset"),
    beat_after: float = typer.Option(0.02, "--beat-after", min=0.0, help="seconds kept after each beat/downbeat/onset"),
    onsets: bool = typer.Option(False, "--onsets", help="keep the tokens at detected onsets"),
    beat_tracker: str = typer.Option("auto", "--beat-tracker", help="auto | madmom (models CC BY-NC-SA) | librosa (ISC) | wavebeat"),
    wavebeat: Optional[Path] = typer.Option(None, "--wavebeat", help="WaveBeat checkpoint for --beat-tracker wavebeat"),
    window: float = typer.Option(10.0, min=0.1, help="coarse context window in seconds (long audio is windowed)"),
    overlap: float = typer.Option(2.5, min=0.0, help="overlap of coarse windows in seconds"),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, mps)"),
    precision: str = typer.Option("fp32", help="fp32 (exact) | bf16 | int8"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress bars"),
):
    """Vamp a file: keep the prompt's tokens, generate the rest, write the result."""
    from .prompts import PromptConfig
    from .sampling import SamplingConfig

    _check_input(input)
    _check_output(output, (".wav", ".flac", ".ogg"))
    keep_times = ()
    if beats or downbeats or onsets:
        from . import audio
        from .beats import prompt_times

        wav, sr = audio.load(input)
        keep_times, lines = prompt_times(wav, sr, beats=beats, downbeats=downbeats, onsets=onsets, every_k=every_k,
                                         tracker=beat_tracker, checkpoint=wavebeat)
        for line in lines:
            typer.echo(line, err=True)  # which tracker ran, and its licence
    beat_prompt = dict(keep_times_s=tuple(keep_times), keep_before_s=beat_before, keep_after_s=beat_after)
    prompt = PromptConfig(periodic_prompt=periodic, periodic_width=periodic_width, random_roll=random_roll,
                          prefix_s=prefix, suffix_s=suffix, ranges_s=_parse_ranges(range_), upper_codebook_mask=upper_codebooks,
                          keep_codebooks=keep_codebooks, dropout=dropout, random_intensity=random_intensity, **beat_prompt)
    if preset_name is not None:
        from .modes import preset

        prompt = preset(preset_name, prefix_s=prefix, suffix_s=suffix, ranges_s=prompt.ranges_s, keep_codebooks=keep_codebooks,
                        **beat_prompt)
    sampling = SamplingConfig(steps=steps, temperature=temperature, mask_temperature=mask_temperature,
                              sample_cutoff=sample_cutoff, top_k=top_k, top_p=top_p, typical_filtering=typical,
                              typical_mass=typical_mass, typical_min_tokens=typical_min_tokens, draw=draw)
    c2f_sampling = SamplingConfig(steps=c2f_steps, draw=draw)
    pipeline = _load_pipeline(models, codec, coarse, c2f, device, coarse_window_s=window, window_overlap_s=overlap,
                              lora=lora, coarse_lora=coarse_lora, c2f_lora=c2f_lora, precision=precision)
    with _ProgressReporter(quiet) as progress:
        result = pipeline.vamp_file(input, output, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling,
                                    seed=seed, progress=progress)
    typer.echo(f"wrote {output} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']}, "
               f"{100 * result.settings['generated_fraction']:.0f}% of tokens generated)", err=True)


# options shared by the musical-mode commands (one definition, reused in each signature)
_MODELS = typer.Option(None, "--models", help=MODELS_HELP)
_LORA = typer.Option(None, "--lora", help="folder of fine-tuned adapters")
_SEED = typer.Option(None, help="random seed; the same seed gives the same result")
_STEPS = typer.Option(36, min=1, help="coarse sampling steps")
_C2F_STEPS = typer.Option(2, "--c2f-steps", min=1, help="coarse-to-fine sampling steps")
_TEMPERATURE = typer.Option(1.0, min=0.0, help="sampling temperature")
_TOP_P = typer.Option(None, "--top-p", min=0.0, max=1.0, help="nucleus sampling mass")
_DRAW = typer.Option("fast", "--draw", help=DRAW_HELP)
_DEVICE = typer.Option("cpu", help="torch device")
_PRECISION = typer.Option("fp32", help="fp32 (exact) | bf16 | int8")
_QUIET = typer.Option(False, "-q", "--quiet", help="no progress bars")
_AUDIO_OUT = (".wav", ".flac", ".ogg")
_PERIODIC = typer.Option(None, "--periodic", min=0, help="keep every P-th frame as prompt (overrides the preset)")
_UPPER = typer.Option(None, "--upper-codebooks", min=0, help="generate every codebook from this index up (overrides the preset)")
_INTENSITY = typer.Option(None, "--random-intensity", min=0.0, max=1.0, help="fraction of tokens a random mask generates")


def _mode_prompt(base, periodic, upper, intensity):
    """The preset (or base prompt) with any prompt option the user gave on top."""
    from dataclasses import replace

    changes = {k: v for k, v in (("periodic_prompt", periodic), ("upper_codebook_mask", upper),
                                 ("random_intensity", intensity)) if v is not None}
    return replace(base, **changes) if changes else base


def _mode_setup(input: Path, output: Path, models, lora, device, precision="fp32", suffixes=_AUDIO_OUT):
    _check_input(input)
    _check_output(output, suffixes)
    from . import audio

    pipeline = _load_pipeline(models, device=device, lora=lora, precision=precision)
    wav, sr = audio.load(input)
    return pipeline, wav, sr


def _sampling(steps, temperature, top_p, c2f_steps, draw):
    from .sampling import SamplingConfig

    return (SamplingConfig(steps=steps, temperature=temperature, top_p=top_p, draw=draw),
            SamplingConfig(steps=c2f_steps, draw=draw))


def _run_and_save(output: Path, quiet: bool, job) -> None:
    """Run a mode `job(progress) -> VampResult` under progress bars, write its audio and report it."""
    with _ProgressReporter(quiet) as progress:
        result = job(progress)
    result.save(output)
    typer.echo(f"wrote {output} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']})", err=True)


@app.command()
def loop(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="the chain of all variations; variations go beside it as NAME-1.wav ..."),
    variations: int = typer.Option(4, min=1, help="number of variations"),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="loop length, snapped to the nearest beat (default: the whole clip)"),
    bars: Optional[int] = typer.Option(None, min=1, help="loop this many bars from the first tracked downbeat"),
    beat_tracker: str = typer.Option("auto", "--beat-tracker", help="auto | madmom | librosa (for --bars and snapping)"),
    preset_name: str = typer.Option("variation", "--preset", help="subtle | variation | wild"),
    feedback: int = typer.Option(0, min=0, help="re-vamp each variation this many more times"),
    repeats: int = typer.Option(2, min=1, help="times each variation plays in the chain"),
    periodic: Optional[int] = _PERIODIC, upper_codebooks: Optional[int] = _UPPER, random_intensity: Optional[float] = _INTENSITY,
    models: Optional[str] = _MODELS, lora: Optional[Path] = _LORA, seed: Optional[int] = _SEED, steps: int = _STEPS,
    c2f_steps: int = _C2F_STEPS, temperature: float = _TEMPERATURE, top_p: Optional[float] = _TOP_P, draw: str = _DRAW,
    device: str = _DEVICE, precision: str = _PRECISION, quiet: bool = _QUIET,
):
    """Turn a clip into N variations that each loop seamlessly, plus a file that chains them."""
    from . import audio, modes

    pipeline, wav, sr = _mode_setup(input, output, models, lora, device, precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    with _ProgressReporter(quiet) as progress:
        prompt = _mode_prompt(modes.preset(preset_name), periodic, upper_codebooks, random_intensity)
        start_s, seconds, how = modes.loop_region(wav, sr, seconds=seconds, bars=bars, tracker=beat_tracker)
        typer.echo(how, err=True)
        result = modes.loop(pipeline, wav, sr, variations=variations, seconds=seconds, start_s=start_s, prompt=prompt,
                            feedback=feedback, repeats=repeats, sampling=sampling, c2f_sampling=c2f_sampling,
                            seed=seed, progress=progress)
    for i, v in enumerate(result.variations, 1):
        v.save(output.with_name(f"{output.stem}-{i}{output.suffix}"))
    audio.save(output, result.chain, result.sample_rate)
    typer.echo(f"wrote {output} and {len(result.variations)} loops ({output.stem}-1{output.suffix} ...), "
               f"seed {result.variations[0].settings['seed']}", err=True)


@app.command("continue")
def continue_(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output"),
    seconds: float = typer.Option(0.0, min=0.0, help="seconds to add after the end"),
    before: float = typer.Option(0.0, min=0.0, help="seconds to add before the start"),
    models: Optional[str] = _MODELS, lora: Optional[Path] = _LORA, seed: Optional[int] = _SEED, steps: int = _STEPS,
    c2f_steps: int = _C2F_STEPS, temperature: float = _TEMPERATURE, top_p: Optional[float] = _TOP_P, draw: str = _DRAW,
    device: str = _DEVICE, precision: str = _PRECISION, quiet: bool = _QUIET,
):
    """Extend a clip forwards (--seconds) and/or backwards (--before); the input's tokens are kept."""
    from . import modes

    from .errors import OptionError

    if seconds <= 0 and before <= 0:
        raise OptionError("give --seconds and/or --before")
    pipeline, wav, sr = _mode_setup(input, output, models, lora, device, precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    _run_and_save(output, quiet, lambda progress: modes.continue_audio(
        pipeline, wav, sr, seconds=seconds, before=before, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def inpaint(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output"),
    start: Optional[float] = typer.Option(None, min=0.0, help="start of the range to regenerate (seconds)"),
    end: Optional[float] = typer.Option(None, min=0.0, help="end of the range to regenerate (seconds)"),
    range_: List[str] = typer.Option([], "--range", help="more ranges START-END (repeatable)"),
    periodic: Optional[int] = _PERIODIC, upper_codebooks: Optional[int] = _UPPER, random_intensity: Optional[float] = _INTENSITY,
    models: Optional[str] = _MODELS, lora: Optional[Path] = _LORA, seed: Optional[int] = _SEED, steps: int = _STEPS,
    c2f_steps: int = _C2F_STEPS, temperature: float = _TEMPERATURE, top_p: Optional[float] = _TOP_P, draw: str = _DRAW,
    device: str = _DEVICE, precision: str = _PRECISION, quiet: bool = _QUIET,
):
    """Regenerate one or more time ranges, with the rest of the clip as context."""
    from . import modes
    from .errors import OptionError

    ranges = list(_parse_ranges(range_))
    if (start is None) != (end is None):
        raise OptionError("give both --start and --end")
    if start is not None:
        ranges.insert(0, (start, end))
    if not ranges:
        raise OptionError("give --start/--end or --range")
    pipeline, wav, sr = _mode_setup(input, output, models, lora, device, precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    from .prompts import PromptConfig

    inside = _mode_prompt(PromptConfig(periodic_prompt=0, upper_codebook_mask=None), periodic, upper_codebooks,
                          random_intensity)
    _run_and_save(output, quiet, lambda progress: modes.inpaint(
        pipeline, wav, sr, ranges, prompt=inside, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def stretch(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output"),
    factor: int = typer.Option(2, min=1, help="slow down this many times (frames repeated; the model fills in)"),
    periodic: Optional[int] = _PERIODIC, upper_codebooks: Optional[int] = _UPPER, random_intensity: Optional[float] = _INTENSITY,
    models: Optional[str] = _MODELS, lora: Optional[Path] = _LORA, seed: Optional[int] = _SEED, steps: int = _STEPS,
    c2f_steps: int = _C2F_STEPS, temperature: float = _TEMPERATURE, top_p: Optional[float] = _TOP_P, draw: str = _DRAW,
    device: str = _DEVICE, precision: str = _PRECISION, quiet: bool = _QUIET,
):
    """Time-stretch by vamping: the clip, slowed down FACTOR times, with the frames in between generated."""
    from . import modes
    from .prompts import PromptConfig

    pipeline, wav, sr = _mode_setup(input, output, models, lora, device, precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    prompt = _mode_prompt(PromptConfig(periodic_prompt=1, upper_codebook_mask=3), periodic, upper_codebooks, random_intensity)
    _run_and_save(output, quiet, lambda progress: modes.stretch(
        pipeline, wav, sr, factor, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def compress(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="compressed file (.vmpz)"),
    codebooks: int = typer.Option(4, "--codebooks", min=1, help="codebooks kept (Nk)"),
    period: int = typer.Option(1, min=1, help="keep every P-th frame"),
    models: Optional[str] = _MODELS, device: str = _DEVICE, precision: str = _PRECISION,
):
    """Keep only some tokens (Nk codebooks at every P-th frame) in a small file; prints the bitrate."""
    from . import modes

    pipeline, wav, sr = _mode_setup(input, output, models, None, device, precision, suffixes=(".vmpz",))
    info = modes.compress(pipeline, wav, sr, output, codebooks=codebooks, period=period)
    typer.echo(f"wrote {output}: {info.bytes} bytes for {info.seconds:.2f} s, {info.kept_tokens} tokens; "
               f"bitrate {info.real_kbps:.3f} kbps from the file size (nominal {info.nominal_kbps:.3f} kbps)")


@app.command()
def decompress(
    input: Path = typer.Argument(..., help="compressed file from 'vampnet compress'"),
    output: Path = typer.Option(..., "-o", "--output"),
    models: Optional[str] = _MODELS, seed: Optional[int] = _SEED, steps: int = _STEPS, c2f_steps: int = _C2F_STEPS,
    temperature: float = _TEMPERATURE, top_p: Optional[float] = _TOP_P, draw: str = _DRAW, device: str = _DEVICE,
    precision: str = _PRECISION, quiet: bool = _QUIET,
):
    """Regenerate audio from a compressed file: VampNet fills the tokens that were not kept."""
    from . import modes
    from .errors import CodesFileError

    if not input.is_file():
        raise CodesFileError(f"compressed file not found: {input}")
    _check_output(output, _AUDIO_OUT)
    pipeline = _load_pipeline(models, device=device, precision=precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    _run_and_save(output, quiet, lambda progress: modes.decompress(
        pipeline, input, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed, progress=progress))


@app.command()
def encode(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="token file (.npz)"),
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint"),
    device: str = typer.Option("cpu"),
):
    """Encode audio to codec tokens (.npz)."""
    _check_input(input)
    _check_output(output, (".npz",))
    codes = _load_pipeline(models, codec, device=device, need_generation=False).encode_file(input, output)
    typer.echo(f"wrote {output}: {codes.shape[1]} codebooks x {codes.shape[2]} frames", err=True)


@app.command()
def decode(
    input: Path = typer.Argument(..., help="token file (.npz) from 'vampnet encode'"),
    output: Path = typer.Option(..., "-o", "--output", help="audio file (.wav/.flac/.ogg)"),
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint"),
    device: str = typer.Option("cpu"),
):
    """Decode codec tokens (.npz) back to audio."""
    from .errors import CodesFileError

    if not input.is_file():
        raise CodesFileError(f"token file not found: {input}")
    _check_output(output, (".wav", ".flac", ".ogg"))
    _load_pipeline(models, codec, device=device, need_generation=False).decode_file(input, output)
    typer.echo(f"wrote {output}", err=True)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="official .pth file, or a folder of codec/coarse/c2f .pth files"),
    output: Path = typer.Option(..., "-o", "--output", help="output .safetensors file (or folder for a folder)"),
    codec: Optional[Path] = typer.Option(None, help="the codec, needed to convert a transformer file"),
):
    """Convert official checkpoints to vampnet's safetensors format (same outputs, no pickle)."""
    from .checkpoints import convert as convert_file, convert_folder
    from .errors import OptionError

    if source.is_dir():
        for part, path in convert_folder(source, output).items():
            typer.echo(f"{part}: {path}", err=True)
        return
    if output.suffix != ".safetensors":
        raise OptionError("the output of a file conversion must end in .safetensors")
    convert_file(source, output, codec)
    typer.echo(f"wrote {output}", err=True)


@app.command()
def info(checkpoint: Path = typer.Argument(..., help="checkpoint file (.pth or .safetensors)")):
    """Describe a checkpoint: format, kind, configuration, parameters, and any missing or unexpected keys
    (exit status 1 when the file lacks keys its kind needs, so scripts can check model files)."""
    from .checkpoints import describe
    from .errors import CheckpointError

    description = describe(checkpoint)
    typer.echo(json.dumps(description, indent=2, default=str))
    if description.get("complete") is False:
        counts = ", ".join(f"{len(description[k])} {k}" for k in ("missing", "unexpected", "misshapen") if k in description)
        first = next(description[k][0] for k in ("missing", "unexpected", "misshapen") if k in description)
        raise CheckpointError(f"{checkpoint} is an incomplete {description['kind']} checkpoint ({counts} keys; first: {first})")


@app.command()
def download(
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder (default: $VAMPNET_HOME/official)"),
    repo: str = typer.Option("hugggof/vampnet", help="Hugging Face repository"),
    revision: Optional[str] = typer.Option(None, help="branch, tag or commit"),
):
    """Download the official VampNet weights (CC BY-NC-SA 4.0) from the Hugging Face hub."""
    from .checkpoints import OFFICIAL_LICENCE, download_official

    dest = output or _home() / "official"
    for part, path in download_official(dest, repo_id=repo, revision=revision).items():
        typer.echo(f"{part}: {path}", err=True)
    typer.echo(f"licence: {OFFICIAL_LICENCE}. Use them with --models {dest}", err=True)


@app.command()
def tokenize(
    audio_dirs: List[Path] = typer.Argument(..., help="folders of audio files (searched recursively)"),
    output: Path = typer.Option(..., "-o", "--output", help="dataset folder (created, or resumed)"),
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint"),
    models: Optional[str] = typer.Option(None, "--models", help="take the codec from this model folder"),
    excerpt: float = typer.Option(10.0, min=0.1, help="excerpt length in seconds"),
    loudness_cutoff: float = typer.Option(-40.0, "--loudness-cutoff", help="skip excerpts quieter than this (LUFS)"),
    val_fraction: float = typer.Option(0.05, "--val-fraction", min=0.0, max=0.99, help="share of files for validation"),
    device: str = typer.Option("cpu", help="encode on this torch device (cpu, cuda, cuda:1, ...)"),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="excerpts encoded together"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads for the encoder (default: torch's, one per core; 1 is "
                                               "faster on a busy machine, BENCHMARKS.md)"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Encode audio folders into a token dataset for training (resumable; deterministic split by file)."""
    from .errors import OptionError, first_line
    from .train.data import TokenizeConfig, tokenize as run_tokenize

    from .checkpoints import find_model_files

    if threads:
        import torch

        torch.set_num_threads(threads)
    pipeline = _load_pipeline(models, codec, need_generation=False)
    codec_path = codec or find_model_files(_models_dir(models))["codec"]  # the shipped codec by default
    config = TokenizeConfig(excerpt_s=excerpt, min_excerpt_s=min(1.0, excerpt), loudness_cutoff=loudness_cutoff,
                            val_fraction=val_fraction)
    try:
        pipeline.codec.to(device)
    except (RuntimeError, AssertionError) as e:
        raise OptionError(f"device {device!r} is not usable here: {first_line(e)}") from None
    stats = run_tokenize(audio_dirs, output, pipeline.codec, config, codec_path=str(Path(codec_path).resolve()),
                         batch_size=batch_size, progress=not quiet)
    typer.echo(json.dumps(stats), err=True)


@app.command("pack-tokens")
def pack_tokens(
    dataset: Path = typer.Argument(..., help="a token dataset folder (vampnet tokenize)"),
    output: Path = typer.Option(..., "-o", "--output", help="the pack file to write (e.g. tokens.vpack)"),
    codebooks: Optional[int] = typer.Option(None, "--codebooks", min=1,
                                            help="keep the first N codebooks (4 serves a coarse run; default: all)"),
    max_train_hours: Optional[float] = typer.Option(None, "--max-train-hours", min=0.001,
                                                    help="keep only this much training audio (whole files; validation stays whole)"),
    codec: Optional[Path] = typer.Option(None, help="the codec that made the dataset (default: the one its manifest names)"),
):
    """Pack a token dataset into one compact file (bit-packed codes) that `vampnet train` reads as its dataset."""
    from .codec import Codec
    from .errors import OptionError
    from .train.data import make_pack, read_manifest

    codec_path = codec or read_manifest(dataset).get("codec_path")
    if not codec_path or not Path(codec_path).is_file():
        raise OptionError(f"the codec that made {dataset} is not at {codec_path}; pass --codec PATH")
    summary = make_pack(dataset, output, Codec.load(codec_path), n_codebooks=codebooks, max_train_hours=max_train_hours)
    typer.echo(json.dumps(summary), err=True)


@app.command("prepare-corpus")
def prepare_corpus(
    output: Path = typer.Argument(..., help="corpus folder (created, or resumed); keep it outside the repository"),
    source: List[str] = typer.Option([], "--source", help="a Debian package or 'music21' (repeatable; default: all)"),
    music21_pieces: int = typer.Option(300, "--music21-pieces", min=0, help="music21 scores to render"),
    seed: int = typer.Option(0, help="chooses the scores, instruments, tempi and soundfonts"),
    install: bool = typer.Option(False, "--install", help="apt-get install missing tools: fluidsynth, soundfonts, "
                                                          "ffmpeg (needs root)"),
    package_cache: Optional[Path] = typer.Option(None, "--package-cache",
                                                 help="where downloaded .deb files are kept (default ~/.cache/vampnet/debs)"),
    val_fraction: float = typer.Option(0.05, "--val-fraction", min=0.0, max=0.99,
                                       help="share of files for validation (pass the same to tokenize)"),
    max_render: float = typer.Option(180.0, "--max-render", min=1.0, help="longest render in seconds (cut at a bar line)"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Build the training corpus from free music only: Debian game music and music21 scores rendered with FluidSynth."""
    from .corpus import DEFAULT_SOURCES, prepare_corpus as run_prepare

    report = run_prepare(output, sources=tuple(source) or DEFAULT_SOURCES, max_music21_pieces=music21_pieces, seed=seed,
                         install=install, val_fraction=val_fraction, max_render_s=max_render,
                         package_cache=package_cache, progress=not quiet)
    for name, entry in report["sources"].items():
        if entry.get("unavailable"):
            typer.echo(f"{name}: left out: {entry['unavailable']}", err=True)
            continue
        typer.echo(f"{name}: {entry['files']} files, {entry['hours']:.2f} h ({entry['val']['files']} for validation), "
                   f"{len(entry.get('dropped', []))} dropped, licence {entry['licence']['short']}", err=True)
    typer.echo(f"total: {report['total']['files']} files, {report['total']['hours']:.2f} h; sources and licences in "
               f"{output / 'SOURCES.md'}", err=True)


TRAIN_DEFAULTS = {
    "coarse": {"n_codebooks": 4, "n_conditioning_codebooks": 0, "window_s": 10.0},
    "c2f": {"n_codebooks": 14, "n_conditioning_codebooks": 4, "window_s": 3.0},
}


@app.command()
def train(
    kind: str = typer.Argument(..., help="coarse, c2f or codec"),
    config: Optional[Path] = typer.Option(None, "--config", help="run configuration (YAML)"),
    set_: List[str] = typer.Option([], "--set", help="override one option: key=value (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT/latest"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Train a coarse or coarse-to-fine model on a token dataset, or the codec on audio (also under torchrun)."""
    from .errors import OptionError

    if kind == "codec":
        from .train.codec_trainer import load_codec_config, train_codec

        metrics = train_codec(load_codec_config(config, set_), resume=resume, progress=not quiet)
    elif kind in TRAIN_DEFAULTS:
        from .train.config import load_config
        from .train.masked import train as run_train

        metrics = run_train(load_config(config, set_, **TRAIN_DEFAULTS[kind]), resume=resume, progress=not quiet)
    else:
        raise OptionError(f"train takes 'coarse', 'c2f' or 'codec', got {kind!r}")
    typer.echo(json.dumps(metrics, default=float), err=True)


@app.command()
def finetune(
    audio_dirs: List[Path] = typer.Argument(..., help="folders of your audio"),
    base: str = typer.Option("small", "--base", help="base model: small (shipped), official (downloaded) or a folder"),
    name: Optional[str] = typer.Option(None, "--name", help="save as this model in $VAMPNET_HOME/models (then --models NAME)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="or: this output folder (dataset, runs, adapters)"),
    steps: int = typer.Option(500, min=1, help="training steps per model"),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank"),
    full: bool = typer.Option(False, "--full", help="fine-tune every weight instead of LoRA adapters"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    excerpt: float = typer.Option(10.0, min=1.0, help="excerpt length in seconds"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Fine-tune a model on your own audio (LoRA by default); then vamp with --models NAME (or --models OUTPUT)."""
    from .errors import OptionError
    from .pretrained import is_valid_name, models_home
    from .train.finetune import finetune as run_finetune

    if (name is None) == (output is None):
        raise OptionError("give --name NAME (saved in the models folder) or -o FOLDER, one of the two")
    if name is not None and not is_valid_name(name):
        raise OptionError(f"--name {name!r}: use letters, digits, '-', '_' or '.', and not small/official/default")
    target = models_home() / name if name is not None else output
    written = run_finetune(audio_dirs, base, target, steps=steps, lora_rank=lora_rank, full=full,
                           batch_size=batch_size, excerpt_s=excerpt, seed=seed, device=device, progress=not quiet)
    for part, path in written.items():
        typer.echo(f"{part}: {path}", err=True)
    typer.echo(f"use it with --models {name if name is not None else target}", err=True)


@app.command()
def ui(
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    host: str = typer.Option("127.0.0.1", help="address to serve on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(7860, min=1, max=65535, help="port to serve on"),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, mps)"),
    concurrency: int = typer.Option(1, min=1, help="jobs that run at once (the rest wait in the queue)"),
    max_seconds: float = typer.Option(120.0, "--max-seconds", min=1.0, help="longest clip accepted"),
    max_file_mb: float = typer.Option(50.0, "--max-file-mb", min=1.0, help="largest upload accepted"),
    keep_minutes: float = typer.Option(60.0, "--keep-minutes", min=0.02,
                                       help="results stay downloadable this long, then they are deleted"),
    harp: bool = typer.Option(False, "--harp", help="also serve the HARP endpoint (paste the address into HARP)"),
):
    """Start the web studio (gradio) on the shipped model, or --models; also serves the gradio API."""
    from .ui import launch

    extensions = []
    if harp:
        from .harp import add_endpoint

        extensions.append(add_endpoint)
    typer.echo(f"vampnet studio on http://{host}:{port} (Ctrl+C stops it)", err=True)
    if harp:
        typer.echo(f"HARP endpoint: paste http://{'localhost' if host == '127.0.0.1' else host}:{port} into HARP", err=True)
    launch(models, host=host, port=port, device=device, concurrency=concurrency, max_seconds=max_seconds,
           max_file_mb=max_file_mb, keep_s=keep_minutes * 60, extensions=extensions)


@app.command()
def osc(
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: from other machines too)"),
    port: int = typer.Option(57130, min=1, max=65535, help="UDP port the looper sends to"),
    reply_port: Optional[int] = typer.Option(None, "--reply-port", min=1, max=65535,
                                             help="send replies to this port (default: the port each message came from)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the variations (default: $VAMPNET_HOME/osc)"),
    ahead: int = typer.Option(1, min=0, max=8, help="variations kept ready ahead"),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, mps)"),
    max_seconds: float = typer.Option(60.0, "--max-seconds", min=1.0, help="longest loop accepted"),
):
    """OSC bridge for live looping: /vampnet/loop PATH, /vampnet/next; replies /vampnet/result OUT (see README)."""
    from .osc import serve

    serve(models, out, host=host, port=port, reply_port=reply_port, ahead=ahead, device=device, max_seconds=max_seconds,
          on_ready=lambda address: typer.echo(f"vampnet OSC bridge on udp://{address[0]}:{address[1]} "
                                              "(Ctrl+C stops it)", err=True))


eval_app = typer.Typer(no_args_is_help=True, help="The paper's experiments: write audio per condition, then score it.")
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def eval_run(
    data: List[Path] = typer.Option(..., "--data", help="folder of audio to take 10 s excerpts from (repeatable)"),
    experiment: str = typer.Option(..., "--experiment", help="sampling-steps, gen-compression or musical-sampling"),
    output: Path = typer.Option(..., "-o", "--output", help="experiment folder (created, or resumed)"),
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    max_excerpts: int = typer.Option(50, "--max-excerpts", min=1, help="excerpts to evaluate"),
    seed: int = typer.Option(0, help="chooses the excerpts and seeds every generation"),
    excerpt: float = typer.Option(10.0, "--excerpt", help="excerpt length in seconds (the paper: 10)"),
    device: str = typer.Option("cpu"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Write the baseline and every condition of one experiment as audio (resumable: finished files are kept)."""
    from .errors import AudioError
    from .eval.experiments import run as run_experiment

    for folder in data:
        if not folder.is_dir():
            raise AudioError(f"data folder not found: {folder}")
    pipeline = _load_pipeline(models, device=device)
    stats = run_experiment(pipeline, data, experiment, output, max_excerpts=max_excerpts, seed=seed, excerpt_s=excerpt,
                           models_name=models or "small", progress=not quiet)
    typer.echo(json.dumps(stats), err=True)


@eval_app.command("score")
def eval_score(
    folder: Path = typer.Argument(..., help="a folder `vampnet eval run` wrote"),
    embedding: str = typer.Option("crepe", "--embedding",
                                  help="FAD embedding: crepe (offline, shipped) | vggish (needs --embedding-weights) | none"),
    embedding_weights: Optional[Path] = typer.Option(None, "--embedding-weights", help="VGGish port weights (.pth)"),
    vggish_pca: Optional[Path] = typer.Option(None, "--vggish-pca", help="VGGish PCA parameters (.pth), optional"),
):
    """Score every condition against the baseline: stats-*.csv, metrics-all.csv, results.md and a PNG plot."""
    from .eval.scoring import markdown, score

    if not (folder / "experiment.json").is_file():  # before loading an embedding model
        from .errors import OptionError
        raise OptionError(f"{folder} is not an experiment folder (no experiment.json; run `vampnet eval run` first)")
    embed = None
    if embedding != "none":
        from .eval.embeddings import get_embedding
        embed = get_embedding(embedding, embedding_weights, vggish_pca)
    rows = score(folder, embed, embed.name if embed else "")
    typer.echo(markdown(json.loads((folder / "experiment.json").read_text()), rows))


def main(argv=None) -> int:
    """Entry point: run the app, turning our errors into one line and a non-zero exit."""
    from .errors import VampNetError

    try:
        app(args=argv, standalone_mode=False)
    except VampNetError as e:
        typer.echo(f"error: {e}", err=True)
        return 1
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors and anything unexpected: one line, no traceback
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # typer/click usage errors print their own message
            e.show()
            return e.exit_code
        if os.environ.get("VAMPNET_DEBUG"):
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {e} (set VAMPNET_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
