"""Scores of an experiment folder (eval.experiments.run): per condition against the baseline, as CSV, markdown
and plots in the style of the paper's figures.

Per file: the paper's multi-scale mel distance (inpainting conditions with their context trimmed from both ends)
and, for the compression conditions, SI-SDR. Per condition: mean, std and count of each, the bitrate (token
conditions: nominal; Opus: measured from its packets) and, when an embedding is given, the Fréchet distance
between the condition's and the baseline's embeddings."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Callable

import numpy as np

from .. import audio
from ..errors import OptionError
from ..serialization import atomic_path
from .experiments import BASELINE, MANIFEST
from .fad import embedding_distance, frechet_caveat
from .metrics import mel_distance, si_sdr

SISDR_KINDS = ("reconstructed", "coarse2fine", "kept", "noise", "opus")
Embedding = Callable[["object", int], np.ndarray]  # (1, 1, N) audio, sample rate -> (frames, D) embeddings


def score(folder, embedding: Embedding | None = None, embedding_name: str = "") -> list[dict]:
    """Score every condition in `folder`; writes the CSVs, results.md and PNGs there and returns the rows."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise OptionError(f"{folder} is not an experiment folder (no {MANIFEST}; run `vampnet eval run` first)")
    manifest = json.loads(manifest_path.read_text())
    sr = manifest["sample_rate"]
    names = sorted(p.name for p in (folder / BASELINE).glob("*.wav"))
    if not names:
        raise OptionError(f"{folder / BASELINE} holds no audio")
    base = {n: audio.load(folder / BASELINE / n)[0] for n in names}
    base_emb = np.concatenate([embedding(base[n], sr) for n in names]) if embedding else None
    rows = []
    for cond in manifest["conditions"]:
        cdir = folder / cond["name"]
        files = [n for n in names if (cdir / n).is_file()]
        mel, sdr, emb = [], [], []
        for n in files:
            y = audio.load(cdir / n)[0]
            x, y_cut = _trim(base[n], sr, cond["trim_s"]), _trim(y, sr, cond["trim_s"])
            mel.append(mel_distance(x, y_cut, sr))
            if cond["kind"] in SISDR_KINDS:
                sdr.append(si_sdr(x, y_cut))
            if embedding:
                emb.append(embedding(y, sr))
        row = {"condition": cond["name"], "kind": cond["kind"], "count": len(files), "params": cond["params"],
               "kbps": _bitrate(manifest, cond, cdir), **_stats("mel", mel), **_stats("sisdr", sdr)}
        if embedding and emb:
            cond_emb = np.concatenate(emb)
            row["frechet"] = embedding_distance(base_emb, cond_emb)
            row["embedding"] = embedding_name
            caveat = frechet_caveat(min(len(names), len(files)), min(len(base_emb), len(cond_emb)), base_emb.shape[1])
            if caveat:
                row["frechet_warning"] = caveat
        rows.append(row)
    _write_outputs(folder, manifest, rows)
    return rows


def _trim(x, sr: int, seconds: float):
    n = int(round(seconds * sr))
    return x[..., n: x.shape[-1] - n] if n > 0 else x


def _stats(prefix: str, values: list[float]) -> dict:
    if not values:
        return {f"{prefix}_mean": math.nan, f"{prefix}_std": math.nan}
    return {f"{prefix}_mean": statistics.fmean(values), f"{prefix}_std": statistics.pstdev(values)}


def _bitrate(manifest: dict, cond: dict, cdir: Path) -> float | None:
    if cond["kind"] == "opus":
        real = cdir / "bitrates.json"
        if real.is_file():
            values = list(json.loads(real.read_text()).values())
            return statistics.fmean(values) if values else None
    return manifest.get("bitrates", {}).get(cond["name"])


# --- outputs -------------------------------------------------------------------------------------------------------
def _write_outputs(folder: Path, manifest: dict, rows: list[dict]) -> None:
    for metric, key in (("mel", "mel"), ("sisdr", "sisdr")):
        _write_csv(folder / f"stats-{metric}.csv", ["condition", "mean", "std", "count"],
                   [[r["condition"], r[f"{key}_mean"], r[f"{key}_std"], r["count"]] for r in rows])
    if any("frechet" in r for r in rows):
        _write_csv(folder / "stats-frechet.csv", ["condition", "frechet", "embedding", "count"],
                   [[r["condition"], r.get("frechet"), r.get("embedding"), r["count"]] for r in rows])
    fields = ["condition", "kind", "count", "kbps", "mel_mean", "mel_std", "sisdr_mean", "sisdr_std", "frechet", "embedding"]
    _write_csv(folder / "metrics-all.csv", fields, [[r.get(f) for f in fields] for r in rows])
    with atomic_path(folder / "results.md") as tmp:
        tmp.write_text(markdown(manifest, rows))
    plot(folder / f"plot-{manifest['experiment']}.png", manifest["experiment"], rows)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([["" if v is None or (isinstance(v, float) and math.isnan(v)) else
                          (round(v, 6) if isinstance(v, float) else v) for v in row] for row in rows])


def markdown(manifest: dict, rows: list[dict]) -> str:
    """The results table of one experiment folder."""
    has_fad = any("frechet" in r for r in rows)
    head = "| condition | kbit/s | mel distance ↓ | SI-SDR (dB) ↑ |" + (" Fréchet ↓ |" if has_fad else "")
    lines = [f"### {manifest['experiment']} ({rows[0]['count'] if rows else 0} excerpts of {manifest.get('excerpt_s', 10):g} s, models "
             f"{manifest.get('models') or '?'}, seed {manifest['seed']})", "", head,
             "|---|---|---|---|" + ("---|" if has_fad else "")]
    fmt = lambda m, s: "" if m is None or (isinstance(m, float) and math.isnan(m)) else f"{m:.3f} ± {s:.3f}"
    for r in rows:
        kbps = "" if r["kbps"] is None else f"{r['kbps']:.3g}"
        line = f"| {r['condition']} | {kbps} | {fmt(r['mel_mean'], r['mel_std'])} | {fmt(r['sisdr_mean'], r['sisdr_std'])} |"
        if has_fad:
            line += f" {r['frechet']:.3f} |" if "frechet" in r else " |"
        lines.append(line)
    if has_fad:
        lines += ["", f"Fréchet distances use the {next(r['embedding'] for r in rows if 'embedding' in r)} embedding."]
        lines += [f"**Warning:** {w}." for w in frechet_warnings(rows)]
    return "\n".join(lines) + "\n"


def frechet_warnings(rows: list[dict]) -> list[str]:
    """The distinct caveats of the rows' Fréchet distances (see fad.frechet_caveat), in row order."""
    return list(dict.fromkeys(r["frechet_warning"] for r in rows if r.get("frechet_warning")))


def plot(path: Path, experiment: str, rows: list[dict]) -> None:
    """The paper-style figure: metric vs steps, metric vs bitrate (with the noise baselines), or bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("mel", "mel distance ↓")] + ([("frechet", "Fréchet distance ↓")] if any("frechet" in r for r in rows) else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        value = lambda r: r.get(f"{key}_mean", r.get(key, math.nan))
        err = lambda r: r.get(f"{key}_std", 0.0) if key == "mel" else 0.0
        if experiment == "sampling-steps":
            pts = sorted((r["params"]["steps"], value(r), err(r)) for r in rows)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3)
            ax.set_xscale("log")
            ax.set_xlabel("coarse sampling steps")
        elif experiment == "gen-compression":
            for kind, style in (("kept", "o-"), ("opus", "s--"), ("reconstructed", "^"), ("coarse2fine", "v")):
                pts = sorted((r["kbps"], value(r)) for r in rows if r["kind"] == kind and r["kbps"])
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=kind)
            for r in rows:
                if r["kind"] == "noise":
                    ax.axhline(value(r), color="grey", lw=0.8, ls=":")
                    ax.annotate(r["condition"], (ax.get_xlim()[0], value(r)), fontsize=7, color="grey")
            ax.set_xscale("log")
            ax.set_xlabel("bitrate (kbit/s)")
            ax.legend(fontsize=8)
        else:
            ax.bar([r["condition"] for r in rows], [value(r) for r in rows], yerr=[err(r) for r in rows], capsize=3)
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.set_ylabel(label)
        ax.set_title(experiment, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
