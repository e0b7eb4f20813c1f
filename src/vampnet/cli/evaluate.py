"""`vampnet eval`: the paper's experiments, written as audio per condition and then scored."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import AudioError, OptionError
from ..eval.embeddings import get_embedding
from ..eval.experiments import run as run_experiment
from ..eval.scoring import frechet_warnings, markdown, score
from .common import DEVICE, MODELS_HELP, QUIET, app, load_pipeline

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
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Write the baseline and every condition of one experiment as audio (resumable: finished files are kept)."""
    for folder in data:
        if not folder.is_dir():
            raise AudioError(f"data folder not found: {folder}")
    pipeline = load_pipeline(models, device=device)
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
    if not (folder / "experiment.json").is_file():  # before loading an embedding model
        raise OptionError(f"{folder} is not an experiment folder (no experiment.json; run `vampnet eval run` first)")
    embed = get_embedding(embedding, embedding_weights, vggish_pca) if embedding != "none" else None
    rows = score(folder, embed, embed.name if embed else "")
    for warning in frechet_warnings(rows):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(markdown(json.loads((folder / "experiment.json").read_text()), rows))
