#!/usr/bin/env python
"""How closely vamps follow a loudness envelope (issue 28), on the validation excerpts of a token dataset.

    python benchmarks/control_adherence.py DATASET --coarse COARSE.safetensors [--models small] [--excerpts 12]
                                           [--guidance 0,1,2,4] [--steps 24] [--seeds 1] [--json FILE] [--figure FILE]

DATASET is a `vampnet tokenize` folder (its index names each excerpt's source file, start and split; the audio is
read from those files); COARSE a coarse model with a loudness control input (`vampnet train coarse` with
`controls: [loudness]`, or `vampnet finetune --control loudness`); the codec and coarse-to-fine model are
`--models`'. For each validation excerpt the requested envelope is another validation excerpt's (the next one in
the index), stretched over the clip; every coarse token is generated (a free generation that only the control
steers; the fine tokens follow the coarse-to-fine model). Reported per guidance scale: the Pearson correlation of
the requested and the produced loudness (dB per frame, vampnet.controls), its mean over excerpts; and the same
measure without the control (the model unguided: what following by chance scores); and the Fréchet distance
(offline crepe embedding) of each set of generations to the real excerpts. A last row generates alike with the
`--models` coarse model, which has no control input (unless `--no-base`): the unconditioned reference of the
control's Fréchet distance, and of what a control fine-tune changed in unguided generation. With a few dozen
excerpts one set's Fréchet distance moves by several points from seed to seed: `--seeds N` generates each excerpt
N times and pools them (each seed's distance is reported too). `--figure` plots requested against
produced envelopes of a few excerpts."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import audio
from vampnet.controls import loudness_from_audio, pearson
from vampnet.eval.embeddings import CrepeEmbedding
from vampnet.eval.fad import embedding_distance
from vampnet.model import MaskedTransformer
from vampnet.pipeline import Pipeline
from vampnet.sampling import SamplingConfig
from vampnet.train.data import read_index


SEED_STRIDE = 1000  # seeds of an excerpt's further generations
BASE_LABEL = "base model (no control input)"  # the --models coarse model: what the control fine-tune started from


def validation_clips(dataset: Path, n: int) -> list[tuple[str, float, float]]:
    """(source file, start s, seconds) of up to `n` validation excerpts, spread over the index."""
    rows = [r for r in read_index(dataset) if r["split"] == "val"]
    step = max(1, len(rows) // n)
    return [(r["source"], float(r["start_s"]), float(r["frames"])) for r in rows[::step][:n]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--coarse", type=Path, required=True, help="a coarse model with a loudness control input")
    ap.add_argument("--audio-root", type=Path, default=Path("."),
                    help="the folder the index's source paths are relative to (where `vampnet tokenize` ran)")
    ap.add_argument("--models", default=None, help="codec and coarse-to-fine from this model (default: shipped)")
    ap.add_argument("--excerpts", type=int, default=12)
    ap.add_argument("--guidance", default="0,1,2,4")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0, help="excerpt i is generated with seed SEED + i")
    ap.add_argument("--seeds", type=int, default=1,
                    help="generations per excerpt (seed SEED + i + 1000 j), pooled into each row's Fréchet set")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--no-base", action="store_true",
                    help="skip the reference row of the --models coarse model (no control input) generating alike")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.excerpts < 1:
        ap.error("--seeds and --excerpts must be at least 1")
    base = Pipeline.from_pretrained(args.models, precision="fp32")
    coarse = MaskedTransformer.load(args.coarse, base.codec)
    if coarse.config.n_controls < 1:
        raise SystemExit(f"error: {args.coarse} has no control input")
    pipe = Pipeline(base.codec, coarse, base.c2f, precision="fp32")
    clips = validation_clips(args.dataset, args.excerpts)
    prepared, signals = [], []
    for source, start, frames in clips:
        wav, sr = audio.load(args.audio_root / source, max_seconds=frames / pipe.frame_rate, offset_s=start)
        prepared.append(pipe.prepare(wav, sr))
        signals.append((wav, sr))
    scales = [float(g) for g in args.guidance.split(",")]
    embed = CrepeEmbedding()
    real = np.concatenate([embed(audio.resample(audio.to_mono(w), r, pipe.sample_rate), pipe.sample_rate)
                           for w, r in signals])
    results, curves = {}, []
    runs = [("no control", None, pipe)] + [(f"guidance {g:g}", g, pipe) for g in scales]
    if not args.no_base:
        runs.append((BASE_LABEL, None, base))
    for label, guidance, runner in runs:
        scores, made = [], [[] for _ in range(args.seeds)]
        for j in range(args.seeds):
            for i, prep in enumerate(prepared):
                T = prep.codes.shape[-1]
                requested = loudness_from_audio(*signals[(i + 1) % len(signals)], pipe.codec, T)  # another excerpt's
                mask = torch.zeros_like(prep.codes, dtype=torch.bool)
                mask[:, : coarse.n_codebooks] = True
                out = runner.render(prep.codes, mask, n_samples=prep.n_samples, loudness=-24.0,
                                    seed=args.seed + i + SEED_STRIDE * j,
                                    sampling=SamplingConfig(steps=args.steps, guidance=guidance or 0.0),
                                    control=None if guidance is None else requested)
                produced = loudness_from_audio(out.audio, pipe.sample_rate, pipe.codec, T)
                made[j].append(embed(out.audio, pipe.sample_rate))
                scores.append(pearson(requested.values[:, 0], produced.values[:, 0]))
                if j == 0 and i < 3 and guidance == scales[len(scales) // 2]:
                    curves.append((requested.values[:, 0].numpy(), produced.values[:, 0].numpy()))
        scores = [s for s in scores if np.isfinite(s)]
        per_seed = [embedding_distance(real, np.concatenate(m)) for m in made]
        results[label] = {"pearson_mean": statistics.fmean(scores), "pearson_std": statistics.pstdev(scores),
                          "excerpts": len(prepared), "generations": len(scores),
                          "frechet": embedding_distance(real, np.concatenate([e for m in made for e in m])),
                          "frechet_per_seed": per_seed}
        spread_note = f" (per seed {', '.join(f'{f:.2f}' for f in per_seed)})" if args.seeds > 1 else ""
        print(f"{label}: Pearson {results[label]['pearson_mean']:.3f} ± {results[label]['pearson_std']:.3f} "
              f"({len(scores)} generations), Fréchet to the real excerpts {results[label]['frechet']:.2f}"
              f"{spread_note}", flush=True)
    if args.json:
        # a result file is committed: name the model as its owner would, without this machine's home folder
        where = str(args.coarse.resolve()).replace(str(Path.home()), "~", 1)
        args.json.write_text(json.dumps({"coarse": where, "steps": args.steps, "seeds": args.seeds,
                                         "results": results}, indent=2))
    if args.figure and curves:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(curves), 1, figsize=(8, 2.2 * len(curves)), sharex=True)
        for ax, (req, got) in zip(np.atleast_1d(axes), curves):
            t = np.arange(len(req)) / pipe.frame_rate
            ax.plot(t, req, label="requested", color="0.3")
            ax.plot(t, got, label="produced", color="tab:orange")
            ax.set_ylabel("dB")
        np.atleast_1d(axes)[0].legend(loc="upper right")
        np.atleast_1d(axes)[-1].set_xlabel("seconds")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
