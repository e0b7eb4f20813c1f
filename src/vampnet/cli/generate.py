"""The commands that make audio: `vamp` and the musical modes (loop, continue, inpaint, stretch, compress,
decompress). Each turns its flags into the shared options' prompt and sampling configs and calls the pipeline or
a mode."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import audio, modes, options
from ..errors import CodesFileError, OptionError
from ..options import PROMPT, SAMPLING
from .common import (AUDIO_OUT, BEAT_TRACKER, C2F_STEPS, CAPTURE, DEVICE, DRAW, INTENSITY, LORA, MODELS, PERIODIC, PRECISION,
                     QUIET, SEED, STEPS, TEMPERATURE, TOP_P, UPPER, ProgressReporter, app, check_input, check_output,
                     load_pipeline, parse_range_options)
from .common import VAMP_PANELS, help_panels


@app.command()
@help_panels(VAMP_PANELS)
def vamp(
    input: Path = typer.Argument(..., help="audio file to vamp (wav/flac/ogg/mp3...)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    models: Optional[str] = MODELS,
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint (overrides the folder's)"),
    coarse: Optional[Path] = typer.Option(None, help="coarse checkpoint (overrides the folder's)"),
    c2f: Optional[Path] = typer.Option(None, help="coarse-to-fine checkpoint (overrides the folder's)"),
    lora: Optional[Path] = LORA,
    coarse_lora: Optional[Path] = typer.Option(None, "--coarse-lora", help="one coarse LoRA file (ours or the original's)"),
    c2f_lora: Optional[Path] = typer.Option(None, "--c2f-lora", help="one coarse-to-fine LoRA file"),
    seed: Optional[int] = SEED, steps: int = STEPS, c2f_steps: int = C2F_STEPS, temperature: float = TEMPERATURE,
    mask_temperature: float = typer.Option(SAMPLING.mask_temperature, "--mask-temperature", min=0.0,
                                           help="randomness of which tokens stay masked"),
    sample_cutoff: float = typer.Option(SAMPLING.sample_cutoff, "--sample-cutoff",
                                        help="fraction of steps that sample (later ones take the argmax)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="sample only among the k likeliest tokens"),
    top_p: Optional[float] = TOP_P,
    typical: bool = typer.Option(SAMPLING.typical_filtering, "--typical", help="locally typical sampling"),
    typical_mass: float = typer.Option(SAMPLING.typical_mass, "--typical-mass", min=0.0, max=1.0,
                                       help="with --typical: the probability mass of typical tokens kept"),
    typical_min_tokens: int = typer.Option(SAMPLING.typical_min_tokens, "--typical-min-tokens", min=1,
                                           help="with --typical: keep at least this many tokens"),
    draw: str = DRAW,
    preset_name: Optional[str] = typer.Option(None, "--preset", help="subtle | variation | wild (sets the prompt options below)"),
    periodic: int = typer.Option(PROMPT.periodic_prompt, min=0, help="keep every P-th frame as prompt (0: none)"),
    periodic_width: int = typer.Option(PROMPT.periodic_width, "--periodic-width", min=1,
                                       help="frames kept around each periodic anchor"),
    random_roll: bool = typer.Option(PROMPT.random_roll, "--random-roll", help="shift the periodic pattern randomly"),
    upper_codebooks: int = typer.Option(PROMPT.upper_codebook_mask, "--upper-codebooks", min=0,
                                        help="generate every codebook from this index up"),
    keep_codebooks: int = typer.Option(PROMPT.keep_codebooks, "--keep-codebooks", min=0,
                                       help="keep the lowest N codebooks entirely"),
    prefix: float = typer.Option(PROMPT.prefix_s, min=0.0, help="seconds kept at the start"),
    suffix: float = typer.Option(PROMPT.suffix_s, min=0.0, help="seconds kept at the end"),
    range_: List[str] = typer.Option([], "--range", help="generate only inside START-END seconds (repeatable)"),
    dropout: float = typer.Option(PROMPT.dropout, min=0.0, max=1.0, help="probability of dropping a kept frame"),
    random_intensity: float = typer.Option(PROMPT.random_intensity, "--random-intensity", min=0.0, max=1.0,
                                           help="fraction of tokens the random mask generates"),
    beats: bool = typer.Option(False, "--beats", help="keep the tokens at every tracked beat (with --periodic 0: only those)"),
    downbeats: bool = typer.Option(False, "--downbeats", help="keep the tokens at tracked downbeats (--beats already includes them)"),
    every_k: int = typer.Option(1, "--every-k", min=1, help="keep only every k-th of the selected beats or downbeats"),
    beat_before: float = typer.Option(PROMPT.keep_before_s, "--beat-before", min=0.0,
                                      help="seconds kept before each beat/downbeat/onset"),
    beat_after: float = typer.Option(PROMPT.keep_after_s, "--beat-after", min=0.0,
                                     help="seconds kept after each beat/downbeat/onset"),
    onsets: bool = typer.Option(False, "--onsets", help="keep the tokens at detected onsets"),
    beat_tracker: str = BEAT_TRACKER,
    wavebeat: Optional[Path] = typer.Option(None, "--wavebeat", help="WaveBeat checkpoint for --beat-tracker wavebeat"),
    window: float = typer.Option(options.WINDOW_S, min=0.1, help="coarse context window in seconds (long audio is windowed)"),
    overlap: float = typer.Option(options.OVERLAP_S, min=0.0, help="overlap of coarse windows in seconds"),
    variations: int = typer.Option(1, min=1, max=64, help="make N vamps in one batch (seeds SEED, SEED+1, ...); "
                                                          "N > 1 writes NAME-1.wav ... NAME-N.wav beside --output"),
    device: str = DEVICE, precision: str = PRECISION, capture: str = CAPTURE, quiet: bool = QUIET,
):
    """Vamp a file: keep the prompt's tokens, generate the rest, write the result."""
    check_input(input)
    check_output(output, AUDIO_OUT)
    ranges = parse_range_options(range_)
    wav, sr = audio.load(input)
    prompt, lines = options.vamp_prompt(
        preset_name, wav=wav, sample_rate=sr, beats=beats, downbeats=downbeats, onsets=onsets, every_k=every_k,
        tracker=beat_tracker, checkpoint=wavebeat, periodic_prompt=periodic, periodic_width=periodic_width,
        random_roll=random_roll, prefix_s=prefix, suffix_s=suffix, ranges_s=ranges, upper_codebook_mask=upper_codebooks,
        keep_codebooks=keep_codebooks, dropout=dropout, random_intensity=random_intensity, keep_before_s=beat_before,
        keep_after_s=beat_after)
    for line in lines:
        typer.echo(line, err=True)  # which tracker ran, and its licence
    sampling, c2f_sampling = options.sampling_configs(
        c2f_steps=c2f_steps, draw=draw, steps=steps, temperature=temperature, mask_temperature=mask_temperature,
        sample_cutoff=sample_cutoff, top_k=top_k, top_p=top_p, typical_filtering=typical, typical_mass=typical_mass,
        typical_min_tokens=typical_min_tokens)
    pipeline = load_pipeline(models, codec, coarse, c2f, device, coarse_window_s=window, window_overlap_s=overlap,
                             lora=lora, coarse_lora=coarse_lora, c2f_lora=c2f_lora, precision=precision, capture=capture)
    with ProgressReporter(quiet) as progress:
        results = pipeline.variations(wav, sr, variations, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling,
                                      seed=seed, progress=progress)
    for i, result in enumerate(results, 1):
        path = output if variations == 1 else output.with_name(f"{output.stem}-{i}{output.suffix}")
        result.save(path)
        typer.echo(f"wrote {path} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']}, "
                   f"{100 * result.settings['generated_fraction']:.0f}% of tokens generated)", err=True)


def _mode_setup(input: Path, output: Path, models, lora, device, precision="fp32", suffixes=AUDIO_OUT):
    check_input(input)
    check_output(output, suffixes)
    pipeline = load_pipeline(models, device=device, lora=lora, precision=precision)
    wav, sr = audio.load(input)
    return pipeline, wav, sr


def _sampling(steps, temperature, top_p, c2f_steps, draw):
    return options.sampling_configs(c2f_steps=c2f_steps, draw=draw, steps=steps, temperature=temperature, top_p=top_p)


def _mode_job(input, output, models, lora, device, precision, steps, temperature, top_p, c2f_steps, draw):
    """A mode command's pipeline, input audio and sampler configs."""
    return (*_mode_setup(input, output, models, lora, device, precision),
            *_sampling(steps, temperature, top_p, c2f_steps, draw))


def _prompt(base, periodic, upper_codebooks, random_intensity):
    """A mode's prompt or preset with the prompt options given on the command line."""
    return options.with_changes(base, periodic_prompt=periodic, upper_codebook_mask=upper_codebooks,
                                random_intensity=random_intensity)


def _run_and_save(output: Path, quiet: bool, job) -> None:
    """Run a mode `job(progress) -> VampResult` under progress bars, write its audio and report it."""
    with ProgressReporter(quiet) as progress:
        result = job(progress)
    result.save(output)
    typer.echo(f"wrote {output} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']})", err=True)


@app.command()
def loop(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="the chain of all variations; variations go beside it as NAME-1.wav ..."),
    variations: int = typer.Option(options.LOOP_VARIATIONS, min=1, help="number of variations"),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="loop length in seconds, exact to the sample (default: the whole clip)"),
    bars: Optional[int] = typer.Option(None, min=1, help="loop this many bars from the first tracked downbeat"),
    snap: bool = typer.Option(False, "--snap", help="move the end of --seconds to the nearest tracked beat"),
    beat_tracker: str = typer.Option("auto", "--beat-tracker", help="auto | madmom | librosa (for --bars and snapping)"),
    preset_name: str = typer.Option("variation", "--preset", help="subtle | variation | wild"),
    feedback: int = typer.Option(0, min=0, help="re-vamp each variation this many more times"),
    repeats: int = typer.Option(2, min=1, help="times each variation plays in the chain"),
    periodic: Optional[int] = PERIODIC, upper_codebooks: Optional[int] = UPPER, random_intensity: Optional[float] = INTENSITY,
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED, steps: int = STEPS,
    c2f_steps: int = C2F_STEPS, temperature: float = TEMPERATURE, top_p: Optional[float] = TOP_P, draw: str = DRAW,
    device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET,
):
    """Turn a clip into N variations that each loop seamlessly, plus a file that chains them."""
    pipeline, wav, sr, sampling, c2f_sampling = _mode_job(input, output, models, lora, device, precision, steps,
                                                          temperature, top_p, c2f_steps, draw)
    with ProgressReporter(quiet) as progress:
        prompt = _prompt(modes.preset(preset_name), periodic, upper_codebooks, random_intensity)
        start_s, seconds, how = modes.loop_region(wav, sr, seconds=seconds, bars=bars, tracker=beat_tracker, snap=snap)
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
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    seconds: float = typer.Option(0.0, min=0.0, help="seconds to add after the end"),
    before: float = typer.Option(0.0, min=0.0, help="seconds to add before the start"),
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED, steps: int = STEPS,
    c2f_steps: int = C2F_STEPS, temperature: float = TEMPERATURE, top_p: Optional[float] = TOP_P, draw: str = DRAW,
    device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET,
):
    """Extend a clip forwards (--seconds) and/or backwards (--before); the input's tokens are kept."""
    if seconds <= 0 and before <= 0:
        raise OptionError("give --seconds and/or --before")
    pipeline, wav, sr, sampling, c2f_sampling = _mode_job(input, output, models, lora, device, precision, steps,
                                                          temperature, top_p, c2f_steps, draw)
    _run_and_save(output, quiet, lambda progress: modes.continue_audio(
        pipeline, wav, sr, seconds=seconds, before=before, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def inpaint(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    start: Optional[float] = typer.Option(None, min=0.0, help="start of the range to regenerate (seconds)"),
    end: Optional[float] = typer.Option(None, min=0.0, help="end of the range to regenerate (seconds)"),
    range_: List[str] = typer.Option([], "--range", help="more ranges START-END (repeatable)"),
    periodic: Optional[int] = PERIODIC, upper_codebooks: Optional[int] = UPPER, random_intensity: Optional[float] = INTENSITY,
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED, steps: int = STEPS,
    c2f_steps: int = C2F_STEPS, temperature: float = TEMPERATURE, top_p: Optional[float] = TOP_P, draw: str = DRAW,
    device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET,
):
    """Regenerate one or more time ranges, with the rest of the clip as context."""
    ranges = list(parse_range_options(range_))
    if (start is None) != (end is None):
        raise OptionError("give both --start and --end")
    if start is not None:
        ranges.insert(0, (start, end))
    if not ranges:
        raise OptionError("give --start/--end or --range")
    pipeline, wav, sr, sampling, c2f_sampling = _mode_job(input, output, models, lora, device, precision, steps,
                                                          temperature, top_p, c2f_steps, draw)
    inside = _prompt(modes.INPAINT_PROMPT, periodic, upper_codebooks, random_intensity)
    _run_and_save(output, quiet, lambda progress: modes.inpaint(
        pipeline, wav, sr, ranges, prompt=inside, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def stretch(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    factor: float = typer.Option(2.0, min=modes.STRETCH_RANGE[0], max=modes.STRETCH_RANGE[1],
                                 help="length change: 2 = twice as long (slower), 0.5 = twice as fast; 0.25-4"),
    periodic: Optional[int] = PERIODIC, upper_codebooks: Optional[int] = UPPER, random_intensity: Optional[float] = INTENSITY,
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED, steps: int = STEPS,
    c2f_steps: int = C2F_STEPS, temperature: float = TEMPERATURE, top_p: Optional[float] = TOP_P, draw: str = DRAW,
    device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET,
):
    """Time-stretch by vamping: the clip FACTOR times as long (slower) or short (faster), pitch kept; the model
    writes the frames between the kept ones."""
    pipeline, wav, sr, sampling, c2f_sampling = _mode_job(input, output, models, lora, device, precision, steps,
                                                          temperature, top_p, c2f_steps, draw)
    prompt = _prompt(modes.STRETCH_PROMPT, periodic, upper_codebooks, random_intensity)
    _run_and_save(output, quiet, lambda progress: modes.stretch(
        pipeline, wav, sr, factor, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
        progress=progress))


@app.command()
def compress(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="compressed file (.vmpz)"),
    codebooks: int = typer.Option(options.COMPRESS_CODEBOOKS, "--codebooks", min=1, help="codebooks kept (Nk)"),
    period: int = typer.Option(options.COMPRESS_PERIOD, min=1, help="keep every P-th frame"),
    models: Optional[str] = MODELS, device: str = DEVICE, precision: str = PRECISION,
):
    """Keep only some tokens (Nk codebooks at every P-th frame) in a small file; prints the bitrate."""
    pipeline, wav, sr = _mode_setup(input, output, models, None, device, precision, suffixes=(".vmpz",))
    info = modes.compress(pipeline, wav, sr, output, codebooks=codebooks, period=period)
    typer.echo(f"wrote {output}: {info.bytes} bytes for {info.seconds:.2f} s, {info.kept_tokens} tokens; "
               f"bitrate {info.real_kbps:.3f} kbps from the file size (nominal {info.nominal_kbps:.3f} kbps)")


@app.command()
def decompress(
    input: Path = typer.Argument(..., help="compressed file from 'vampnet compress'"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg)"),
    models: Optional[str] = MODELS, seed: Optional[int] = SEED, steps: int = STEPS, c2f_steps: int = C2F_STEPS,
    temperature: float = TEMPERATURE, top_p: Optional[float] = TOP_P, draw: str = DRAW, device: str = DEVICE,
    precision: str = PRECISION, quiet: bool = QUIET,
):
    """Regenerate audio from a compressed file: VampNet fills the tokens that were not kept."""
    if not input.is_file():
        raise CodesFileError(f"compressed file not found: {input}")
    check_output(output, AUDIO_OUT)
    pipeline = load_pipeline(models, device=device, precision=precision)
    sampling, c2f_sampling = _sampling(steps, temperature, top_p, c2f_steps, draw)
    _run_and_save(output, quiet, lambda progress: modes.decompress(
        pipeline, input, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed, progress=progress))
