#!/usr/bin/env python
"""Does a coarse model keep the input's rhythm as more of it is generated? Several coarse models side by side,
each vamping the corpus's validation excerpts under prompts that generate more and more (issue 26: `--periodic
3` vamps should keep the tempo within 5 % of the `--periodic 1` ones).

    python benchmarks/prompt_rhythm.py --corpus CORPUS --coarse v2=small tuned=RUN/latest/model.safetensors \
        [--prompts 1:2 3:2 3:3 7:3] [--seeds 0] [--excerpts 24] [--seconds 10] [--models small] [--json FILE]

`--coarse LABEL=WHAT`: WHAT is a coarse checkpoint file (a training run's) or a model name or folder, whose coarse
model is used. Every other part (codec, coarse-to-fine, the card's sampling defaults) comes from `--models`, so
the rows differ only in the coarse model. A prompt `P:U` keeps one frame in P and, in the kept frames, codebooks
below U (`--periodic P --upper-codebooks U`). Scores per vamp against its input are sweep_defaults' (tempo kept,
octave-tolerant within 4 %; chroma similarity; SI-SDR; share of coarse tokens generated); the excerpts are
sweep_defaults' too (model_metrics.validation_excerpts, spread over the validation files)."""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_metrics import spread, validation_excerpts  # noqa: E402
from sweep_defaults import EXCERPTS_PER_FILE, Sweep  # noqa: E402

from vampnet.pipeline import Pipeline  # noqa: E402
from vampnet.checkpoints import find_model_files  # noqa: E402
from vampnet.pretrained import resolve  # noqa: E402


def coarse_file(what: str) -> Path:
    """A coarse checkpoint: the file itself, or the coarse part of a model name or folder."""
    path = Path(what).expanduser()
    if path.is_file():
        return path
    source = resolve(what)
    return Path(source.coarse or find_model_files(source.base)["coarse"])


def coarse_specs(items: list[str]) -> list[tuple[str, Path, str]]:
    """`--coarse LABEL=FILE|MODEL` items as (label, coarse checkpoint, what was given)."""
    specs = []
    for item in items:
        label, sep, what = item.partition("=")
        if not sep or not label or not what:
            raise SystemExit(f"error: --coarse takes LABEL=FILE|MODEL, got {item!r}")
        specs.append((label, coarse_file(what), what))
    return specs


def parse_prompt(text: str) -> dict:
    try:
        periodic, upper = (int(v) for v in text.split(":"))
    except ValueError:
        raise SystemExit(f"error: a prompt is PERIODIC:UPPER_CODEBOOKS (e.g. 3:2), got {text!r}") from None
    return {"periodic": periodic, "upper_codebooks": upper}


def markdown(result: dict) -> str:
    prompts = result["prompts"]
    lines = [f"Codec round trip: tempo kept {result['codec']['tempo_kept']}/{result['codec']['vamps']}, chroma "
             f"{result['codec']['chroma_similarity']:.3f}. {result['excerpts']} excerpts x seeds {result['seeds']}; "
             f"sampling {result['sampling']}.", "",
             "| coarse model | " + " | ".join(f"periodic {p['periodic']}, upper {p['upper_codebooks']}" for p in prompts)
             + " | first prompt's tempo share kept by the second |",
             "|---|" + "---:|" * (len(prompts) + 1)]
    for label, rows in result["models"].items():
        cells = [f"{r['tempo_kept']}/{r['vamps']} ({r['chroma_similarity']:.3f}, {r['si_sdr_db']:.1f} dB, "
                 f"{r['generated']:.0%} gen.)" for r in rows]
        ratio = rows[1]["tempo_kept"] / max(rows[0]["tempo_kept"], 1) if len(rows) > 1 else float("nan")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio:.0%} |")
    lines += ["", "Cells: tempo kept / vamps (chroma similarity, SI-SDR to the input, share of coarse tokens generated)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="the folder `vampnet prepare-corpus` made")
    ap.add_argument("--coarse", nargs="+", required=True, help="LABEL=FILE|MODEL, one per coarse model compared")
    ap.add_argument("--models", default="small", help="codec, coarse-to-fine and card defaults (default: small)")
    ap.add_argument("--prompts", nargs="+", default=["1:2", "3:2"], help="PERIODIC:UPPER_CODEBOOKS each")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="vamp seeds (excerpt i uses seed + i)")
    ap.add_argument("--excerpts", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0, help="excerpt length")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    specs = coarse_specs(args.coarse)
    prompts = [parse_prompt(p) for p in args.prompts]
    codec_cache: dict = {}
    first = Pipeline.from_pretrained(args.models, codec_cache=codec_cache)
    sampling = {"temperature": first.default_sampling().temperature, "steps": first.default_sampling().steps}
    excerpts = spread(validation_excerpts(args.corpus, first.sample_rate, args.seconds, EXCERPTS_PER_FILE), args.excerpts)
    codec_row = None
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
              "excerpts": len(excerpts), "seeds": args.seeds, "sampling": sampling, "prompts": prompts, "models": {}}
    for label, path, what in specs:
        pipeline = Pipeline.from_pretrained(args.models, coarse=path, codec_cache=codec_cache)
        sweep = Sweep(pipeline, excerpts, args.seeds, log=lambda s, label=label: print(f"[{label}] {s}", flush=True),
                      codec=codec_row)
        codec_row = sweep.codec
        result["models"][label] = [sweep.run(p, False, sampling, "sampling") | {"coarse": what} for p in prompts]
    result["codec"] = codec_row
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
