"""The commands that handle model and token files: encode, decode, convert, info, download."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..checkpoints import (OFFICIAL_LICENCE, OFFICIAL_REPO, convert as convert_file, convert_folder, describe,
                           download_official)
from ..errors import CheckpointError, CodesFileError, OptionError
from ..model_defaults import of_source
from ..pretrained import home, resolve
from .common import app, audio_output, check_input, check_output, load_pipeline, schema_flags, shared_flags


@app.command()
@shared_flags("models", "codec", "device")
def encode(
    input: Path = typer.Argument(..., help="audio file"),
    output: Path = typer.Option(..., "-o", "--output", help="token file (.npz)"),
    **given,
):
    """Encode audio to codec tokens (.npz)."""
    check_input(input)
    check_output(output, (".npz",))
    codes = _codec_pipeline(given).encode_file(input, output)
    typer.echo(f"wrote {output}: {codes.shape[1]} codebooks x {codes.shape[2]} frames", err=True)


@app.command()
@schema_flags("output")
@shared_flags("models", "codec", "device")
def decode(
    input: Path = typer.Argument(..., help="token file (.npz) from 'vampnet encode'"),
    output: Path = typer.Option(..., "-o", "--output", help="audio file (.wav/.flac/.ogg/.mp3)"),
    **given,
):
    """Decode codec tokens (.npz) back to audio (by default at the encoded file's rate and loudness)."""
    if not input.is_file():
        raise CodesFileError(f"token file not found: {input}")
    out = audio_output(output, given)
    _codec_pipeline(given).decode_file(input, out.path, out.options)
    typer.echo(f"wrote {out.path}", err=True)


def _codec_pipeline(given: dict):
    """The pipeline of --models or --codec, for jobs of the codec alone."""
    return load_pipeline(given["models"], given["codec"], device=given["device"], need_generation=False)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="official .pth file, or a folder of codec/coarse/c2f .pth files"),
    output: Path = typer.Option(..., "-o", "--output", help="output .safetensors file (or folder for a folder)"),
    codec: Optional[Path] = typer.Option(None, help="the codec, needed to convert a transformer file"),
):
    """Convert official checkpoints to vampnet's safetensors format (same outputs, no pickle)."""
    if source.is_dir():
        for part, path in convert_folder(source, output).items():
            typer.echo(f"{part}: {path}", err=True)
        return
    if output.suffix != ".safetensors":
        raise OptionError("the output of a file conversion must end in .safetensors")
    convert_file(source, output, codec)
    typer.echo(f"wrote {output}", err=True)


@app.command()
def info(checkpoint: Path = typer.Argument(..., help="checkpoint file (.pth or .safetensors), or a model (small, "
                                                     "official, a fine-tuned model's name, a folder): its defaults")):
    """Describe a checkpoint: format, kind, configuration, parameters, and any missing or unexpected keys
    (exit status 1 when the file lacks keys its kind needs, so scripts can check model files). Given a model
    instead: its folders and the prompt and sampling defaults its card sets."""
    if not checkpoint.is_file() and checkpoint.suffix not in (".pth", ".safetensors"):
        source = resolve(str(checkpoint))
        defaults = of_source(source)
        typer.echo(json.dumps({"model": source.name, "folder": str(source.base), "fine_tuned": source.tuned_folder,
                               "defaults": defaults.values, "cards": defaults.cards}, indent=2, default=str))
        return
    description = describe(checkpoint)
    typer.echo(json.dumps(description, indent=2, default=str))
    if description.get("complete") is False:
        counts = ", ".join(f"{len(description[k])} {k}" for k in ("missing", "unexpected", "misshapen") if k in description)
        first = next(description[k][0] for k in ("missing", "unexpected", "misshapen") if k in description)
        raise CheckpointError(f"{checkpoint} is an incomplete {description['kind']} checkpoint ({counts} keys; first: {first})")


@app.command()
def download(
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder (default: $VAMPNET_HOME/official)"),
    repo: str = typer.Option(OFFICIAL_REPO, help="Hugging Face repository"),
    revision: Optional[str] = typer.Option(None, help="branch, tag or commit"),
):
    """Download the official VampNet weights (CC BY-NC-SA 4.0) from the Hugging Face hub."""
    dest = output or home() / "official"
    for part, path in download_official(dest, repo_id=repo, revision=revision).items():
        typer.echo(f"{part}: {path}", err=True)
    typer.echo(f"licence: {OFFICIAL_LICENCE}. Use them with --models {dest}", err=True)
