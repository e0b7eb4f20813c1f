"""The commands that make audio: `vamp` and the musical modes (loop, continue, inpaint, stretch, compress,
decompress). Each turns its flags into the shared options' prompt and sampling configs and calls the pipeline or
a mode. The prompt and sampling flags are not written here: `schema_flags` adds every option the schema declares
(vampnet.schema), and `given_configs` reads the ones the user gave."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import audio, modes, options
from .. import mode_registry as registry
from ..errors import CodesFileError, OptionError
from .common import (AUDIO_OUT, BEAT_TRACKER, BIT_DEPTH, C2F_STEPS, CAPTURE, CHANNELS, DEVICE, FORMAT, LORA, MODELS,
                     PRECISION, QUIET, SAMPLE_RATE, SEED, AudioOutput, ProgressReporter, app, audio_output, check_input,
                     check_output, given_configs, given_effects, load_pipeline, parse_range_options, schema_flags)

from .common import VAMP_PANELS, help_panels

MODE_PROMPT = {"prompt": "the mode's prompt"}  # what a prompt flag left out of a mode command means
PRESETS_HELP = " | ".join(modes.PRESETS)  # upstream's spellings ("small variation (follow beat)") work too


@app.command()
@schema_flags("prompt", "sampling", "input")
@help_panels(VAMP_PANELS)
def vamp(
    input: Path = typer.Argument(..., help="audio file to vamp (wav/flac/ogg/mp3...)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)"),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    models: Optional[str] = MODELS,
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint (overrides the folder's)"),
    coarse: Optional[Path] = typer.Option(None, help="coarse checkpoint (overrides the folder's)"),
    c2f: Optional[Path] = typer.Option(None, help="coarse-to-fine checkpoint (overrides the folder's)"),
    lora: Optional[Path] = LORA,
    coarse_lora: Optional[Path] = typer.Option(None, "--coarse-lora", help="one coarse LoRA file (ours or the original's)"),
    c2f_lora: Optional[Path] = typer.Option(None, "--c2f-lora", help="one coarse-to-fine LoRA file"),
    seed: Optional[int] = SEED, c2f_steps: int = C2F_STEPS,
    preset_name: Optional[str] = typer.Option(None, "--preset", help=f"{PRESETS_HELP} (the prompt options you "
                                                                     "give change it)"),
    range_: List[str] = typer.Option([], "--range", help="generate only inside START-END seconds (repeatable); "
                                                         "outside, every token is kept"),
    beats: bool = typer.Option(False, "--beats", help="keep the tokens at every tracked beat (with --periodic 0: only those)"),
    downbeats: bool = typer.Option(False, "--downbeats", help="keep the tokens at tracked downbeats (--beats already includes them)"),
    every_k: int = typer.Option(1, "--every-k", min=1, help="keep only every k-th of the selected beats or downbeats"),
    onsets: bool = typer.Option(False, "--onsets", help="keep the tokens at detected onsets"),
    beat_tracker: str = BEAT_TRACKER,
    wavebeat: Optional[Path] = typer.Option(None, "--wavebeat", help="WaveBeat checkpoint for --beat-tracker wavebeat"),
    window: float = typer.Option(options.WINDOW_S, min=0.1, help="coarse context window in seconds (long audio is windowed)"),
    overlap: float = typer.Option(options.OVERLAP_S, min=0.0, help="overlap of coarse windows in seconds"),
    variations: int = typer.Option(1, min=1, max=registry.VARIATIONS.maximum,
                                   help="make N vamps in one batch (seeds SEED, SEED+1, ...); N > 1 writes NAME-1.wav "
                                        "... NAME-N.wav beside --output"),
    device: str = DEVICE, precision: str = PRECISION, capture: str = CAPTURE, quiet: bool = QUIET, **given,
):
    """Vamp a file: keep the prompt's tokens, generate the rest, write the result."""
    check_input(input)
    out = audio_output(output, file_type, sample_rate, channels, bit_depth, input)
    ranges = parse_range_options(range_)
    wav, sr = audio.load(input)
    wav = given_effects(wav, sr, given)  # e.g. --pitch-shift, before anything is tracked or encoded
    prompt_fields, sampling_fields = given_configs(given)
    prompt, lines = options.vamp_prompt(
        preset_name, wav=wav, sample_rate=sr, beats=beats, downbeats=downbeats, onsets=onsets, every_k=every_k,
        tracker=beat_tracker, checkpoint=wavebeat, ranges_s=ranges, **prompt_fields)
    for line in lines:
        typer.echo(line, err=True)  # which tracker ran, and its licence
    sampling, c2f_sampling = options.sampling_configs(c2f_steps=c2f_steps, **sampling_fields)
    pipeline = load_pipeline(models, codec, coarse, c2f, device, coarse_window_s=window, window_overlap_s=overlap,
                             lora=lora, coarse_lora=coarse_lora, c2f_lora=c2f_lora, precision=precision, capture=capture)
    with ProgressReporter(quiet) as progress:
        results = _run("vamp", pipeline, wav, sr, registry.VampOptions(), prompt=prompt, sampling=sampling,
                       c2f_sampling=c2f_sampling, seed=seed, variations=variations, progress=progress).results
    for i, result in enumerate(results, 1):
        path = out.save(result, out.path if variations == 1 else out.named(i))
        typer.echo(f"wrote {path} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']}, "
                   f"{100 * result.settings['generated_fraction']:.0f}% of tokens generated)", err=True)


def _mode_setup(input: Path, output: Path, models, lora, device, precision="fp32", suffixes=AUDIO_OUT):
    check_input(input)
    check_output(output, suffixes)
    pipeline = load_pipeline(models, device=device, lora=lora, precision=precision)
    wav, sr = audio.load(input)
    return pipeline, wav, sr


def _mode_job(input, output, file_options, models, lora, device, precision, c2f_steps, given):
    """A mode command's checked output (from `file_options`: format, sample rate, channels, bit depth), pipeline,
    input audio and sampler configs."""
    check_input(input)
    out = audio_output(output, *file_options, input)
    pipeline, wav, sr = _mode_setup(input, out.path, models, lora, device, precision)
    return (out, pipeline, given_effects(wav, sr, given), sr,
            *options.sampling_configs(c2f_steps=c2f_steps, **given_configs(given)[1]))


def _prompt(base, given):
    """A mode's prompt or preset with the prompt options given on the command line."""
    return options.with_changes(base, **given_configs(given)[0])


def _run(name: str, pipeline, wav, sr, mode_options, **job) -> registry.Outcome:
    """Run the registered mode `name` (its options: `mode_options`; the rest: registry.Job's fields)."""
    return registry.mode(name).run(registry.Job(pipeline, wav, sr, mode_options, **job))


def _run_and_save(out: AudioOutput, quiet: bool, name: str, pipeline, wav, sr, mode_options, **job) -> None:
    """Run the registered mode `name` once under progress bars, write its audio and report it."""
    with ProgressReporter(quiet) as progress:
        result = _run(name, pipeline, wav, sr, mode_options, progress=progress, **job).results[0]
    output = out.save(result)
    typer.echo(f"wrote {output} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']})", err=True)


@app.command()
@schema_flags("prompt", "sampling", "input", base={"prompt": "the preset's"})
def loop(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="the chain of all variations; variations go beside it as NAME-1.wav ..."),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    variations: int = typer.Option(options.LOOP_VARIATIONS, min=1, max=registry.VARIATIONS.maximum,
                                   help="number of variations"),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="loop length in seconds, exact to the sample (default: the whole clip)"),
    bars: Optional[int] = typer.Option(None, min=1, help="loop this many bars from the first tracked downbeat"),
    snap: bool = typer.Option(False, "--snap", help="move the end of --seconds to the nearest tracked beat"),
    beat_tracker: str = typer.Option("auto", "--beat-tracker", help="auto | madmom | librosa (for --bars and snapping)"),
    preset_name: str = typer.Option("variation", "--preset", help=PRESETS_HELP),
    feedback: int = typer.Option(0, min=0, help="re-vamp each variation this many more times"),
    repeats: int = typer.Option(2, min=1, help="times each variation plays in the chain"),
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED,
    c2f_steps: int = C2F_STEPS, device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET, **given,
):
    """Turn a clip into N variations that each loop seamlessly, plus a file that chains them."""
    out, pipeline, wav, sr, sampling, c2f_sampling = _mode_job(
        input, output, (file_type, sample_rate, channels, bit_depth), models, lora, device, precision, c2f_steps, given)
    loop_options = registry.LoopOptions(seconds=seconds or 0.0, bars=bars or 0, snap=snap, tracker=beat_tracker,
                                        feedback=feedback, repeats=repeats)
    with ProgressReporter(quiet) as progress:
        prompt, _ = options.vamp_prompt(preset_name, wav=wav, sample_rate=sr, tracker=beat_tracker,
                                        **given_configs(given)[0])  # a "follow beat" preset tracks beats
        outcome = _run("loop", pipeline, wav, sr, loop_options, prompt=prompt,
                       sampling=sampling, c2f_sampling=c2f_sampling, seed=seed, variations=variations,
                       progress=progress, output_rate=out.rate)  # made at the rate written: exact
    result = outcome.chain
    for line in outcome.notes:
        typer.echo(line, err=True)  # how the loop's region was chosen
    for i, v in enumerate(result.variations, 1):
        out.save(v, out.named(i))
    output = result.save_chain(out.path, out.options, source=out.source)
    typer.echo(f"wrote {output} and {len(result.variations)} loops ({output.stem}-1{output.suffix} ...), "
               f"seed {result.variations[0].settings['seed']}", err=True)


@app.command("continue")
@schema_flags("sampling", "input")
def continue_(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)"),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    seconds: float = typer.Option(0.0, min=0.0, help="seconds to add after the end"),
    before: float = typer.Option(0.0, min=0.0, help="seconds to add before the start"),
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED,
    c2f_steps: int = C2F_STEPS, device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET, **given,
):
    """Extend a clip forwards (--seconds) and/or backwards (--before); the input's tokens are kept."""
    if seconds <= 0 and before <= 0:
        raise OptionError("give --seconds and/or --before")
    out, pipeline, wav, sr, sampling, c2f_sampling = _mode_job(
        input, output, (file_type, sample_rate, channels, bit_depth), models, lora, device, precision, c2f_steps, given)
    _run_and_save(out, quiet, "continue", pipeline, wav, sr, registry.ContinueOptions(seconds, before),
                  sampling=sampling, c2f_sampling=c2f_sampling, seed=seed)


@app.command()
@schema_flags("prompt", "sampling", "input", base=MODE_PROMPT)
def inpaint(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)"),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    start: Optional[float] = typer.Option(None, min=0.0, help="start of the range to regenerate (seconds)"),
    end: Optional[float] = typer.Option(None, min=0.0, help="end of the range to regenerate (seconds)"),
    range_: List[str] = typer.Option([], "--range", help="more ranges START-END (repeatable)"),
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED,
    c2f_steps: int = C2F_STEPS, device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET, **given,
):
    """Regenerate one or more time ranges, with the rest of the clip as context."""
    ranges = list(parse_range_options(range_))
    if (start is None) != (end is None):
        raise OptionError("give both --start and --end")
    if start is not None:
        ranges.insert(0, (start, end))
    if not ranges:
        raise OptionError("give --start/--end or --range")
    out, pipeline, wav, sr, sampling, c2f_sampling = _mode_job(
        input, output, (file_type, sample_rate, channels, bit_depth), models, lora, device, precision, c2f_steps, given)
    inside = _prompt(modes.INPAINT_PROMPT, given)
    _run_and_save(out, quiet, "inpaint", pipeline, wav, sr, registry.InpaintOptions(ranges), prompt=inside,
                  sampling=sampling, c2f_sampling=c2f_sampling, seed=seed)


@app.command()
@schema_flags("prompt", "sampling", "input", base=MODE_PROMPT)
def stretch(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)"),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    factor: float = typer.Option(2.0, min=modes.STRETCH_RANGE[0], max=modes.STRETCH_RANGE[1],
                                 help="length change: 2 = twice as long (slower), 0.5 = twice as fast; 0.25-4"),
    models: Optional[str] = MODELS, lora: Optional[Path] = LORA, seed: Optional[int] = SEED,
    c2f_steps: int = C2F_STEPS, device: str = DEVICE, precision: str = PRECISION, quiet: bool = QUIET, **given,
):
    """Time-stretch by vamping: the clip FACTOR times as long (slower) or short (faster), pitch kept; the model
    writes the frames between the kept ones."""
    out, pipeline, wav, sr, sampling, c2f_sampling = _mode_job(
        input, output, (file_type, sample_rate, channels, bit_depth), models, lora, device, precision, c2f_steps, given)
    prompt = _prompt(modes.STRETCH_PROMPT, given)
    _run_and_save(out, quiet, "stretch", pipeline, wav, sr, registry.StretchOptions(factor), prompt=prompt,
                  sampling=sampling, c2f_sampling=c2f_sampling, seed=seed)


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
    info = _run("compress", pipeline, wav, sr, registry.CompressOptions(codebooks, period), variations=0,
                new_file=lambda stem, suffix: output).info  # the file alone: no decompressed variation
    typer.echo(f"wrote {output}: {info.bytes} bytes for {info.seconds:.2f} s, {info.kept_tokens} tokens; "
               f"bitrate {info.real_kbps:.3f} kbps from the file size (nominal {info.nominal_kbps:.3f} kbps)")


@app.command()
@schema_flags("sampling")
def decompress(
    input: Path = typer.Argument(..., help="compressed file from 'vampnet compress'"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)"),
    sample_rate: Optional[int] = SAMPLE_RATE, channels: Optional[int] = CHANNELS, file_type: Optional[str] = FORMAT,
    bit_depth: Optional[int] = BIT_DEPTH,
    models: Optional[str] = MODELS, seed: Optional[int] = SEED, c2f_steps: int = C2F_STEPS, device: str = DEVICE,
    precision: str = PRECISION, quiet: bool = QUIET, **given,
):
    """Regenerate audio from a compressed file: VampNet fills the tokens that were not kept."""
    if not input.is_file():
        raise CodesFileError(f"compressed file not found: {input}")
    out = audio_output(output, file_type, sample_rate, channels, bit_depth)
    pipeline = load_pipeline(models, device=device, precision=precision)
    sampling, c2f_sampling = options.sampling_configs(c2f_steps=c2f_steps, **given_configs(given)[1])
    _run_and_save(out, quiet, "decompress", pipeline, None, None, registry.DecompressOptions(input),
                  sampling=sampling, c2f_sampling=c2f_sampling, seed=seed)
