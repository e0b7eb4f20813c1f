"""The commands that make audio: `vamp` and the musical modes (loop, continue, inpaint, stretch, compress,
decompress). Each turns its flags into the shared options' prompt and sampling configs and calls the pipeline or
a mode. Only each command's own flags are written here: `schema_flags` adds every option the schema declares
(vampnet.schema: prompt, sampling, input effects, the pipeline and the output file), `shared_flags` the ones
several commands take alike (--models, --seed, ...), and `given_configs` reads the ones the user gave."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from .. import audio, modes, options
from .. import mode_registry as registry
from ..control_options import ControlOptions, clip_control
from ..controls import Control
from ..errors import CodesFileError, OptionError
from ..pipeline import Pipeline
from ..sampling import SamplingConfig
from .common import (BEAT_TRACKER, VAMP_PANELS, AudioOutput, ProgressReporter, app, audio_output, check_input,
                     check_output, given_configs, given_effects, given_pipeline, help_panels, in_panel_order,
                     load_pipeline, parse_range_options, schema_flags, shared_flags)

MODE_PROMPT = {"prompt": "the mode's prompt"}  # what a prompt flag left out of a mode command means
PRESETS_HELP = " | ".join(modes.PRESETS)  # upstream's spellings ("small variation (follow beat)") work too
INPUT = typer.Argument(..., help="audio file")
OUTPUT = typer.Option(..., "-o", "--output", help="where to write the result (.wav/.flac/.ogg/.mp3)")


def mode_command(name: str | None, *sections: str, base: dict[str, str] | None = None, panels=None):
    """A command that makes audio: registered on the app as `name`, taking the schema options of `sections` plus
    the pipeline's and the output file's, and the shared --models, --lora, --seed, --c2f-steps, --device, -q."""
    def decorate(fn):
        fn = shared_flags("models", "lora", "seed", "c2f_steps", "device", "quiet")(fn)
        fn = help_panels(panels)(fn) if panels else fn
        controlled = ("control",) if registry.MODES[name or fn.__name__].takes_control else ()
        return app.command(name)(in_panel_order(schema_flags(*sections, *controlled, "pipeline", "output",
                                                             base=base)(fn)))
    return decorate


@dataclass
class ModeJob:
    """What a mode command has checked and loaded before it runs: where its results go, the pipeline, the input
    (input effects applied), the samplers' configs, the seed, whether progress is shown, and the loudness control
    the control flags give (None: none)."""

    out: AudioOutput
    pipeline: Pipeline
    wav: object
    sample_rate: int | None
    sampling: SamplingConfig
    c2f_sampling: SamplingConfig
    seed: int | None
    quiet: bool
    control: Control | None = None

    @classmethod
    def setup(cls, input: Path | None, output: Path, given: dict, **files) -> "ModeJob":
        """Checked paths, then the pipeline (with `files`: codec/coarse/c2f/LoRA files that override --models) and
        the input audio. `input` None: a job without input audio (decompress)."""
        if input is not None:
            check_input(input)
        out = audio_output(output, given, input)
        pipeline = load_pipeline(given["models"], device=given["device"], lora=given["lora"],
                                 config=given_pipeline(given), **files)
        wav, sr = audio.load(input) if input is not None else (None, None)
        wav = given_effects(wav, sr, given) if wav is not None else None  # e.g. --pitch-shift, before encoding
        sampling = options.sampling_configs(c2f_steps=given["c2f_steps"], base=pipeline.default_sampling(),
                                            **given_configs(given)[1])  # flags not given: the model's defaults
        control = clip_control(pipeline, wav, sr, ControlOptions.from_values(given)) if wav is not None else None
        return cls(out, pipeline, wav, sr, *sampling, given["seed"], given["quiet"], control)

    def run(self, name: str, mode_options, **job) -> registry.Outcome:
        """Run the registered mode `name` under progress bars (its options: `mode_options`; the rest: registry.Job's
        fields)."""
        mode = registry.mode(name)
        mode.check_control(self.control)
        with ProgressReporter(self.quiet) as progress:
            return mode.run(registry.Job(
                self.pipeline, self.wav, self.sample_rate, mode_options, sampling=self.sampling,
                c2f_sampling=self.c2f_sampling, seed=self.seed, progress=progress, control=self.control, **job))

    def run_and_save(self, name: str, mode_options, **job) -> None:
        """Run the registered mode `name` once, write its audio and report it."""
        result = self.run(name, mode_options, **job).results[0]
        output = self.out.save(result)
        typer.echo(f"wrote {output} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']})",
                   err=True)


def _prompt(base, given):
    """A mode's prompt or preset with the prompt options given on the command line."""
    return options.with_changes(base, **given_configs(given)[0])


@mode_command(None, "prompt", "sampling", "input", panels=VAMP_PANELS)
def vamp(
    input: Path = typer.Argument(..., help="audio file to vamp (wav/flac/ogg/mp3...)"),
    output: Path = OUTPUT,
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint (overrides the folder's)"),
    coarse: Optional[Path] = typer.Option(None, help="coarse checkpoint (overrides the folder's)"),
    c2f: Optional[Path] = typer.Option(None, help="coarse-to-fine checkpoint (overrides the folder's)"),
    coarse_lora: Optional[Path] = typer.Option(None, "--coarse-lora", help="one coarse LoRA file (ours or the original's)"),
    c2f_lora: Optional[Path] = typer.Option(None, "--c2f-lora", help="one coarse-to-fine LoRA file"),
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
    variations: int = typer.Option(1, min=1, max=registry.VARIATIONS.maximum, help="make N vamps in one batch (seeds SEED, SEED+1, ...); "
                                                          "N > 1 writes NAME-1.wav ... NAME-N.wav beside --output"),
    **given,
):
    """Vamp a file: keep the prompt's tokens, generate the rest, write the result."""
    ranges = parse_range_options(range_)
    job = ModeJob.setup(input, output, given, codec=codec, coarse=coarse, c2f=c2f, coarse_lora=coarse_lora,
                        c2f_lora=c2f_lora)
    prompt, lines = options.vamp_prompt(
        preset_name, wav=job.wav, sample_rate=job.sample_rate, beats=beats, downbeats=downbeats, onsets=onsets,
        every_k=every_k, tracker=beat_tracker, checkpoint=wavebeat, ranges_s=ranges,
        base=job.pipeline.default_prompt(), **given_configs(given)[0])
    for line in lines:
        typer.echo(line, err=True)  # which tracker ran, and its licence
    results = job.run("vamp", registry.VampOptions(), prompt=prompt, variations=variations).results
    for i, result in enumerate(results, 1):
        path = job.out.save(result, job.out.path if variations == 1 else job.out.named(i))
        typer.echo(f"wrote {path} ({result.audio.shape[-1] / result.sample_rate:.2f} s, seed {result.settings['seed']}, "
                   f"{100 * result.settings['generated_fraction']:.0f}% of tokens generated)", err=True)


@mode_command(None, "prompt", "sampling", "input")
def loop(
    input: Path = INPUT,
    output: Path = typer.Option(..., "-o", "--output", help="the chain of all variations; variations go beside it as NAME-1.wav ..."),
    variations: int = typer.Option(options.LOOP_VARIATIONS, min=1, max=registry.VARIATIONS.maximum,
                                   help="number of variations"),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="loop length in seconds, exact to the sample (default: the whole clip)"),
    bars: Optional[int] = typer.Option(None, min=1, help="loop this many bars from the first tracked downbeat"),
    snap: bool = typer.Option(False, "--snap", help="move the end of --seconds to the nearest tracked beat"),
    beat_tracker: str = typer.Option("auto", "--beat-tracker", help="auto | madmom | librosa (for --bars and snapping)"),
    preset_name: Optional[str] = typer.Option(None, "--preset", help=f"{PRESETS_HELP} (default: the model's prompt, "
                                                                     "variation's unless its card sets another)"),
    feedback: int = typer.Option(0, min=0, help="re-vamp each variation this many more times"),
    repeats: int = typer.Option(2, min=1, help="times each variation plays in the chain"),
    **given,
):
    """Turn a clip into N variations that each loop seamlessly, plus a file that chains them."""
    job = ModeJob.setup(input, output, given)
    prompt, _ = options.vamp_prompt(preset_name, wav=job.wav, sample_rate=job.sample_rate, tracker=beat_tracker,
                                    base=job.pipeline.default_prompt(),
                                    **given_configs(given)[0])  # a "follow beat" preset tracks beats
    loop_options = registry.LoopOptions(seconds=seconds or 0.0, bars=bars or 0, snap=snap, tracker=beat_tracker,
                                        feedback=feedback, repeats=repeats)
    out = job.out
    outcome = job.run("loop", loop_options, prompt=prompt, variations=variations,
                      output_rate=out.rate)  # made at the rate written: exact
    result = outcome.chain
    for line in outcome.notes:
        typer.echo(line, err=True)  # how the loop's region was chosen
    for i, v in enumerate(result.variations, 1):
        out.save(v, out.named(i))
    output = result.save_chain(out.path, out.options, source=out.source)
    typer.echo(f"wrote {output} and {len(result.variations)} loops ({output.stem}-1{output.suffix} ...), "
               f"seed {result.variations[0].settings['seed']}", err=True)


@mode_command("continue", "sampling", "input")
def continue_(
    input: Path = INPUT, output: Path = OUTPUT,
    seconds: float = typer.Option(0.0, min=0.0, help="seconds to add after the end"),
    before: float = typer.Option(0.0, min=0.0, help="seconds to add before the start"),
    **given,
):
    """Extend a clip forwards (--seconds) and/or backwards (--before); the input's tokens are kept."""
    if seconds <= 0 and before <= 0:
        raise OptionError("give --seconds and/or --before")
    ModeJob.setup(input, output, given).run_and_save("continue", registry.ContinueOptions(seconds, before))


@mode_command(None, "prompt", "sampling", "input", base=MODE_PROMPT)
def inpaint(
    input: Path = INPUT, output: Path = OUTPUT,
    start: Optional[float] = typer.Option(None, min=0.0, help="start of the range to regenerate (seconds)"),
    end: Optional[float] = typer.Option(None, min=0.0, help="end of the range to regenerate (seconds)"),
    range_: List[str] = typer.Option([], "--range", help="more ranges START-END (repeatable)"),
    **given,
):
    """Regenerate one or more time ranges, with the rest of the clip as context."""
    ranges = list(parse_range_options(range_))
    if (start is None) != (end is None):
        raise OptionError("give both --start and --end")
    if start is not None:
        ranges.insert(0, (start, end))
    if not ranges:
        raise OptionError("give --start/--end or --range")
    ModeJob.setup(input, output, given).run_and_save("inpaint", registry.InpaintOptions(ranges),
                                                     prompt=_prompt(modes.INPAINT_PROMPT, given))


@mode_command(None, "prompt", "sampling", "input", base=MODE_PROMPT)
def stretch(
    input: Path = INPUT, output: Path = OUTPUT,
    factor: float = typer.Option(2.0, min=modes.STRETCH_RANGE[0], max=modes.STRETCH_RANGE[1],
                                 help="length change: 2 = twice as long (slower), 0.5 = twice as fast; 0.25-4"),
    **given,
):
    """Time-stretch by vamping: the clip FACTOR times as long (slower) or short (faster), pitch kept; the model
    writes the frames between the kept ones."""
    ModeJob.setup(input, output, given).run_and_save("stretch", registry.StretchOptions(factor),
                                                     prompt=_prompt(modes.STRETCH_PROMPT, given))


@app.command()
@schema_flags("pipeline", only=("precision",))  # it encodes only: windows and the sampler play no part
@shared_flags("models", "device")
def compress(
    input: Path = INPUT,
    output: Path = typer.Option(..., "-o", "--output", help="compressed file (.vmpz)"),
    codebooks: int = typer.Option(options.COMPRESS_CODEBOOKS, "--codebooks", min=1, help="codebooks kept (Nk)"),
    period: int = typer.Option(options.COMPRESS_PERIOD, min=1, help="keep every P-th frame"),
    **given,
):
    """Keep only some tokens (Nk codebooks at every P-th frame) in a small file; prints the bitrate."""
    check_input(input)
    check_output(output, (".vmpz",))
    pipeline = load_pipeline(given["models"], device=given["device"], config=given_pipeline(given))
    wav, sr = audio.load(input)
    info = registry.mode("compress").run(registry.Job(
        pipeline, wav, sr, registry.CompressOptions(codebooks, period), variations=0,
        new_file=lambda stem, suffix: output)).info  # the file alone: no decompressed variation
    typer.echo(f"wrote {output}: {info.bytes} bytes for {info.seconds:.2f} s, {info.kept_tokens} tokens; "
               f"bitrate {info.real_kbps:.3f} kbps from the file size (nominal {info.nominal_kbps:.3f} kbps)")


@mode_command(None, "sampling")
def decompress(
    input: Path = typer.Argument(..., help="compressed file from 'vampnet compress'"),
    output: Path = OUTPUT,
    **given,
):
    """Regenerate audio from a compressed file: VampNet fills the tokens that were not kept."""
    if not input.is_file():
        raise CodesFileError(f"compressed file not found: {input}")
    ModeJob.setup(None, output, given).run_and_save("decompress", registry.DecompressOptions(input))
