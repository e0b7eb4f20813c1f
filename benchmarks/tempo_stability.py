#!/usr/bin/env python
"""How far the evaluation's tempo agreement can be trusted: the share of validation excerpts whose tempo it counts
as kept through changes that keep the music's tempo (a gain, faint noise, a delay, Opus at two bitrates), through
the shipped codec's round trip, and for an unrelated excerpt (the floor), with the tracker's onset envelope at the
hop the evaluation uses (vampnet.eval.musical.TEMPO_HOP_S) and at librosa's default 512 samples.

    python benchmarks/tempo_stability.py --corpus CORPUS [--models small | --codec FILE] [--excerpts 24] [--json FILE]

A measure that counts a 10 ms delay as a lost tempo caps what any codec or vamp can score on it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_metrics import spread, validation_excerpts  # noqa: E402
from sweep_defaults import EXCERPTS_PER_FILE  # noqa: E402  (the sweep's excerpts)

from vampnet.eval import musical  # noqa: E402
from vampnet.eval.opus import opus_roundtrip  # noqa: E402
from vampnet.pipeline import Pipeline  # noqa: E402

# onset hops in samples: the evaluation's (None: musical.TEMPO_HOP_S), and librosa's default
HOPS = {"evaluation": None, "librosa default (512 samples)": 512}


def changes(codec, sample_rate: int, seed: int = 0) -> dict:
    """{name: function of one excerpt} of the changes measured (the codec round trip among them)."""
    noise = torch.Generator().manual_seed(seed)
    delay = lambda s: (lambda x: torch.nn.functional.pad(x, (round(s * sample_rate), 0))[..., : x.shape[-1]])
    return {
        "gain -1 dB": lambda x: x * 10 ** (-1 / 20),
        "white noise 50 dB below": lambda x: x + torch.randn(x.shape, generator=noise) * x.pow(2).mean().sqrt() * 10 ** (-50 / 20),
        "delay 10 ms": delay(0.01),
        "delay 50 ms": delay(0.05),
        "Opus 32 kbit/s": lambda x: opus_roundtrip(x, sample_rate, 32)[0],
        "Opus 8 kbit/s": lambda x: opus_roundtrip(x, sample_rate, 8)[0],
        "codec round trip": lambda x: codec.decode(codec.encode(x)),
    }


def measure(excerpts: list[torch.Tensor], sample_rate: int, codec) -> dict:
    """{hop name: {change: {"kept", "excerpts", "lost": [[input BPM, output BPM], ...]}}}."""
    with torch.inference_mode():
        outputs = {name: [f(x)[..., : x.shape[-1]] for x in excerpts] for name, f in changes(codec, sample_rate).items()}
    n = len(excerpts)
    outputs["an unrelated excerpt"] = [excerpts[(i + n // 2) % n] for i in range(n)] if n > 1 else []
    out = {}
    for hop_name, hop in HOPS.items():
        before = [musical.tempo(x, sample_rate, hop) for x in excerpts]
        rows = {}
        for name, ys in outputs.items():
            after = [musical.tempo(y, sample_rate, hop) for y in ys]
            kept = [musical.tempo_agrees(a, b) for a, b in zip(before, after)]
            rows[name] = {"kept": sum(kept), "excerpts": len(kept),
                          "lost": [[round(a, 1), round(b, 1)] for a, b, k in zip(before, after, kept) if not k]}
        out[hop_name] = rows
    return out


def markdown(results: dict) -> str:
    hops = list(results)
    names = list(results[hops[0]])
    lines = ["| change | " + " | ".join(f"tempo kept, {h} hop" for h in hops) + " |",
             "|---|" + "---:|" * len(hops)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{results[h][name]['kept']}/{results[h][name]['excerpts']}"
                                                 for h in hops) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="the folder `vampnet prepare-corpus` made")
    ap.add_argument("--models", default=None, help="the codec of this model (default: the shipped one)")
    ap.add_argument("--codec", type=Path, default=None,
                    help="a codec file instead (e.g. a training run's latest/model.safetensors)")
    ap.add_argument("--excerpts", type=int, default=24, help="10 s validation excerpts, spread over the files")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.excerpts < 1:
        ap.error("--excerpts must be at least 1")
    pipeline = (Pipeline.load(codec=args.codec, precision="fp32") if args.codec is not None
                else Pipeline.from_pretrained(args.models, precision="fp32"))
    excerpts = spread(validation_excerpts(args.corpus, pipeline.sample_rate, args.seconds, EXCERPTS_PER_FILE), args.excerpts)
    results = measure(excerpts, pipeline.sample_rate, pipeline.codec)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps({"excerpts": len(excerpts), "excerpt_s": args.seconds,
                                         "evaluation_hop_s": musical.TEMPO_HOP_S, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
