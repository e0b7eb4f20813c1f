"""The commands that make data and models: tokenize, pack-tokens, prepare-corpus, train, finetune."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import List, Optional

import typer

from ..checkpoints import find_model_files
from ..codec import Codec
from ..corpus import DEFAULT_SOURCES, prepare_corpus as run_prepare
from ..devices import check_device
from ..errors import OptionError
from ..options import TRAIN_DEFAULTS
from ..pretrained import is_valid_name, model_folder, models_home
from ..train.codec_trainer import load_codec_config, train_codec
from ..train.config import load_config
from ..train.data import TokenizeConfig, make_pack, read_manifest, tokenize as run_tokenize
from ..train.finetune import finetune as run_finetune
from ..train.masked import train as run_train
from ..threads import set_threads
from .common import DEVICE, QUIET, app, load_pipeline

# the defaults the commands show are the library's own (not written again here)
TOKENIZE = TokenizeConfig()
TOKENIZE_BATCH = inspect.signature(run_tokenize).parameters["batch_size"].default
FINETUNE = {name: p.default for name, p in inspect.signature(run_finetune).parameters.items()}


@app.command()
def tokenize(
    audio_dirs: List[Path] = typer.Argument(..., help="folders of audio files (searched recursively)"),
    output: Path = typer.Option(..., "-o", "--output", help="dataset folder (created, or resumed)"),
    codec: Optional[Path] = typer.Option(None, help="codec checkpoint"),
    models: Optional[str] = typer.Option(None, "--models", help="take the codec from this model folder"),
    excerpt: float = typer.Option(TOKENIZE.excerpt_s, min=0.1, help="excerpt length in seconds"),
    loudness_cutoff: float = typer.Option(TOKENIZE.loudness_cutoff, "--loudness-cutoff",
                                          help="skip excerpts quieter than this (LUFS)"),
    val_fraction: float = typer.Option(TOKENIZE.val_fraction, "--val-fraction", min=0.0, max=0.99,
                                       help="share of files for validation"),
    device: str = typer.Option("cpu", help="encode on this torch device (cpu, cuda, cuda:1, ...)"),
    batch_size: int = typer.Option(TOKENIZE_BATCH, "--batch-size", min=1, help="excerpts encoded together"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads for the encoder (default: torch's, one per core; 1 is "
                                               "faster on a busy machine, BENCHMARKS.md)"),
    quiet: bool = QUIET,
):
    """Encode audio folders into a token dataset for training (resumable; deterministic split by file)."""
    device = check_device(device)
    set_threads(threads)
    pipeline = load_pipeline(models, codec, need_generation=False)
    codec_path = codec or find_model_files(model_folder(models))["codec"]  # the shipped codec by default
    config = TokenizeConfig(excerpt_s=excerpt, min_excerpt_s=min(TOKENIZE.min_excerpt_s, excerpt),
                            loudness_cutoff=loudness_cutoff, val_fraction=val_fraction)
    pipeline.codec.to(device)
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
    quiet: bool = QUIET,
):
    """Build the training corpus from free music only: Debian game music and music21 scores rendered with FluidSynth."""
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


@app.command()
def train(
    kind: str = typer.Argument(..., help="coarse, c2f or codec"),
    config: Optional[Path] = typer.Option(None, "--config", help="run configuration (YAML)"),
    set_: List[str] = typer.Option([], "--set", help="override one option: key=value (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT/latest"),
    quiet: bool = QUIET,
):
    """Train a coarse or coarse-to-fine model on a token dataset, or the codec on audio (also under torchrun)."""
    if kind == "codec":
        metrics = train_codec(load_codec_config(config, set_), resume=resume, progress=not quiet)
    elif kind in TRAIN_DEFAULTS:
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
    steps: int = typer.Option(FINETUNE["steps"], min=1, help="training steps per model"),
    lora_rank: int = typer.Option(FINETUNE["lora_rank"], "--lora-rank", min=1, help="LoRA rank"),
    full: bool = typer.Option(FINETUNE["full"], "--full", help="fine-tune every weight instead of LoRA adapters"),
    batch_size: int = typer.Option(FINETUNE["batch_size"], "--batch-size", min=1, help="excerpts per training step"),
    excerpt: float = typer.Option(FINETUNE["excerpt_s"], min=1.0, help="excerpt length in seconds"),
    seed: int = typer.Option(FINETUNE["seed"], help="seed of the training's randomness (excerpts, masks): the same "
                                                    "seed, the same run"),
    control: Optional[str] = typer.Option(None, "--control",
                                          help="also teach the coarse model to follow this control: loudness"),
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Fine-tune a model on your own audio (LoRA by default); then vamp with --models NAME (or --models OUTPUT)."""
    if (name is None) == (output is None):
        raise OptionError("give --name NAME (saved in the models folder) or -o FOLDER, one of the two")
    if name is not None and not is_valid_name(name):
        raise OptionError(f"--name {name!r}: use letters, digits, '-', '_' or '.', and not small/official/default")
    target = models_home() / name if name is not None else output
    written = run_finetune(audio_dirs, base, target, steps=steps, lora_rank=lora_rank, full=full,
                           batch_size=batch_size, excerpt_s=excerpt, seed=seed, device=device, progress=not quiet,
                           control=control)
    for part, path in written.items():
        typer.echo(f"{part}: {path}", err=True)
    typer.echo(f"use it with --models {name if name is not None else target}", err=True)
