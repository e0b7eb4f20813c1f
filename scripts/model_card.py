#!/usr/bin/env python
"""Write the card.json of a model folder assembled from a training run (scripts/train_background.sh's runs/v3):
what each part is, how many steps it trained, how many hours of audio those steps drew and how large its training
split was, what it started from, and the default settings it carries (the base card's until a sweep picks its own).

    python scripts/model_card.py RUN_DIR MODEL_DIR [--base-card src/vampnet/weights/small/card.json] [--version V]

RUN_DIR holds the stages' run folders (codec/, coarse/, c2f/, each with best/ or latest/ and config.yaml) and
tokens/ (the dataset the transformers trained on); MODEL_DIR gets card.json. A part whose checkpoint came from a run
that itself started from another run's checkpoint (the v3 coarse model from runs/v3/coarse_pre) says so, with that
run's steps and hours. `benchmarks/model_metrics.py --compare` prints these beside the acceptance table."""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

import yaml

PARTS = ("codec", "coarse", "c2f")


def checkpoint_folder(run: Path) -> Path | None:
    """The checkpoint a model folder takes from a run: best/ when it validated, else latest/."""
    for name in ("best", "latest"):
        if (run / name / "trainer.json").is_file():
            return run / name
    return None


def run_summary(run: Path, part: str) -> dict:
    """Steps of the picked checkpoint and hours of audio its steps drew (batch x excerpt length each step), and
    what the run started from: another run (summarised the same way) or a model folder's weights (its card's
    steps for that part)."""
    folder = checkpoint_folder(run)
    if folder is None:
        raise SystemExit(f"error: {run} has no best/ or latest/ checkpoint")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    steps = int(json.loads((folder / "trainer.json").read_text())["step"])
    seconds = cfg.get("window_s") or cfg.get("excerpt_s") or 0.0
    per_step = cfg.get("batch_size", 0) * cfg.get("grad_accum", 1) * seconds
    out = {"steps": steps, "hours_seen": round(steps * per_step / 3600, 1)}
    init = cfg.get("init")
    if init:
        origin, folder_card = Path(init).parent.parent, Path(init).parent / "card.json"  # RUN/best/model -> RUN
        if (origin / "config.yaml").is_file() and checkpoint_folder(origin) is not None:
            out["started_from"] = {"run": origin.name, **run_summary(origin, part)}
        elif folder_card.is_file():
            card = json.loads(folder_card.read_text())
            out["started_from"] = {"model": f"{card.get('name', '?')} {card.get('version', '')}".strip(),
                                   **{k: v for k, v in card.get("parts", {}).get(part, {}).items()
                                      if k in ("steps", "hours_seen", "train_hours")}}
        else:
            out["started_from"] = {"weights": Path(init).name}
    return out


def train_hours(tokens: Path) -> float:
    """Hours of the token dataset's training split (frames x hop / sample rate)."""
    manifest = json.loads((tokens / "manifest.json").read_text())
    frames = 0
    with open(tokens / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "train":
                frames += int(row["frames"])
    return round(frames * manifest["hop_length"] / manifest["sample_rate"] / 3600, 2)


def architecture(run: Path, part: str) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    if part == "codec":
        return {k: cfg[k] for k in ("sample_rate", "n_codebooks", "codebook_size") if k in cfg}
    model = cfg.get("model") or {}
    return {"n_codebooks": model.get("n_codebooks"), "n_conditioning_codebooks": model.get("n_conditioning_codebooks"),
            "layers": model.get("n_layers"), "width": model.get("embedding_dim"), "heads": model.get("n_heads"),
            "token_tables": bool(model.get("token_tables"))}


def make_card(run_dir: Path, base: dict, version: str) -> dict:
    tokens_hours = train_hours(run_dir / "tokens") if (run_dir / "tokens" / "index.csv").is_file() else None
    parts = {}
    for part in PARTS:
        run = run_dir / part
        parts[part] = {**architecture(run, part), **run_summary(run, part)}
        if part != "codec" and tokens_hours is not None:
            parts[part]["train_hours"] = tokens_hours
    card = {k: v for k, v in base.items() if k in ("name", "licence", "card", "defaults", "defaults_source")}
    card.update(version=version, parts=parts,
                description=f"vampnet-small {version}: coarse {parts['coarse']['layers']} x {parts['coarse']['width']}"
                            f"{' with token tables' if parts['coarse']['token_tables'] else ''}, coarse-to-fine "
                            f"{parts['c2f']['layers']} x {parts['c2f']['width']}, trained on free music only",
                training_data=("vampnet prepare-corpus (Debian game music, music21 / openttd MIDI rendered with "
                               "FluidSynth); " + (f"transformers on the tokens of its {tokens_hours} h training split; "
                                                  if tokens_hours is not None else "")
                               + "validation split never trained on"))
    if "defaults" in card:
        card["defaults_source"] = "the base model's card (" + str(base.get("version", "?")) + "), until a sweep picks this model's own"
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--base-card", type=Path,
                    default=Path(__file__).resolve().parents[1] / "src" / "vampnet" / "weights" / "small" / "card.json")
    ap.add_argument("--version", default=datetime.date.today().isoformat())
    args = ap.parse_args(argv)
    for part in PARTS:
        if not (args.run_dir / part / "config.yaml").is_file():
            print(f"error: {args.run_dir / part} is not a training run (no config.yaml)", file=sys.stderr)
            return 2
    base = json.loads(args.base_card.read_text()) if args.base_card.is_file() else {}
    args.model_dir.mkdir(parents=True, exist_ok=True)
    card = make_card(args.run_dir, base, args.version)
    (args.model_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.model_dir / 'card.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
