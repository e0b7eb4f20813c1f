#!/usr/bin/env python
"""Plot training runs' validation curves from their log.csv files into one PNG.

    python benchmarks/plot_training.py RUN_OR_LOG ... -o curves.png

Each argument is a run folder (holding log.csv) or a log.csv. Codec runs plot `val_mel_distance`; transformer
runs plot validation loss and masked-token top-1 accuracy (all r), each against the step."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_log(path: Path) -> tuple[str, list[dict]]:
    path = path / "log.csv" if path.is_dir() else path
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return path.parent.name, rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [s for s, _ in pts], [v for _, v in pts]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [read_log(p) for p in args.runs]
    is_codec = lambda rows: bool(rows) and "val_mel_distance" in rows[0]
    panels = []  # (title, key, runs): only the panels some run has data for
    if any(is_codec(rows) for _, rows in logs):
        panels.append(("codec: validation mel distance ↓", "val_mel_distance", True))
    if any(not is_codec(rows) for _, rows in logs):
        panels += [("transformers: validation loss ↓", "val_loss", False),
                   ("transformers: masked top-1 accuracy ↑", "val_acc1", False)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (title, key, codec_panel) in zip(axes[0], panels):
        for name, rows in logs:
            if is_codec(rows) == codec_panel:
                ax.plot(*series(rows, key), marker="o" if codec_panel else ".", label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
