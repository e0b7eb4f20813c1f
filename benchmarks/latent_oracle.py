#!/usr/bin/env python
"""How near the true codes must generated coarse frames land for a vamp to keep the input's rhythm, and how near a
coarse model's predictions land (issue 26: `--periodic 3` vamps lose the tempo that `--periodic 1` ones keep).

    python benchmarks/latent_oracle.py --corpus CORPUS [--coarse LABEL=FILE|MODEL ...] [--models small | --codec FILE]
        [--periodic 3] [--codebooks 2] [--near 4 32 128] [--excerpts 24] [--seconds 10] [--seed 0] [--json FILE]

Each validation excerpt (model_metrics.validation_excerpts, spread as sweep_defaults') is encoded; in its first
`--codebooks` codebooks the frames a `--periodic P` prompt hides (all but one in P) get other codes, and only those
codebooks are decoded, so nothing else carries the rhythm. Rows:
  - truth: the codes themselves (the ceiling at that number of codebooks);
  - near-K: each hidden code replaced by a random one of the K - 1 codes nearest it (by cosine, as the codec picks
    codes; itself excluded);
  - uniform: random codes; hold: the last kept frame repeated;
  - per `--coarse` model: its prediction for the hidden codes in one pass (every coarse codebook from
    `--codebooks` up masked everywhere, as `--upper-codebooks` does): `sample` (temperature 1), `argmax`, and
    `expected` (the code nearest the probability-weighted mean of the normalised codebook vectors).
Each row reports tempo kept (octave-tolerant, 4 %), onset and chroma agreement, SI-SDR, and where its hidden codes
fall among the true code's nearest (share within 4, 32 and 128: a self-check for the near-K rows)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_metrics import spread, validation_excerpts  # noqa: E402
from prompt_rhythm import coarse_specs  # noqa: E402
from sweep_defaults import EXCERPTS_PER_FILE, cpu_name, portable, score  # noqa: E402

from vampnet.checkpoints import find_model_files  # noqa: E402
from vampnet.codec import Codec  # noqa: E402
from vampnet.model import MaskedTransformer  # noqa: E402
from vampnet.pretrained import resolve  # noqa: E402
from vampnet.train.masked import codebook_cosines  # noqa: E402

RANKS = (4, 32, 128)  # reported: share of hidden codes within this many nearest codes of the truth (itself included)


def neighbour_ranks(codec, n_codebooks: int) -> torch.Tensor:
    """(K, V, V): [k, v, j] is code j's rank among code v's nearest in codebook k by cosine (v itself: 0)."""
    books = torch.stack([q.codebook.weight for q in codec.quantizer.quantizers[:n_codebooks]])
    return codebook_cosines(books).argsort(-1, descending=True).argsort(-1)


def hidden_frames(n_frames: int, periodic: int) -> torch.Tensor:
    """The frames a periodic prompt hides: all but every `periodic`-th, counted from the first."""
    return torch.arange(n_frames) % periodic != 0


def oracle_fill(codes: torch.Tensor, hidden: torch.Tensor, how: str, ranks: torch.Tensor, gen: torch.Generator):
    """(K, T) codes with the hidden frames replaced by `how` (truth, near-K, uniform, hold)."""
    K, T = codes.shape
    vocab = ranks.shape[-1]
    if how == "truth":
        return codes.clone()
    if how.startswith("near-"):
        n = int(how[5:])
        order = ranks.argsort(-1)  # [k, v, r]: the code of rank r around v
        pick = torch.randint(1, n, (K, T), generator=gen) if n > 1 else torch.zeros(K, T, dtype=torch.long)
        new = order[torch.arange(K)[:, None], codes, pick]
    elif how == "uniform":
        new = torch.randint(0, vocab, (K, T), generator=gen)
    elif how == "hold":
        kept = torch.where(~hidden, torch.arange(T), torch.zeros(T, dtype=torch.long)).cummax(0).values
        new = codes[:, kept]
    else:
        raise ValueError(how)
    return torch.where(hidden[None], new, codes)


def model_fills(model: MaskedTransformer, codes: torch.Tensor, hidden: torch.Tensor, n_keep: int,
                gen: torch.Generator) -> dict:
    """The coarse model's sample / argmax / expected codes for the hidden frames of the first n_keep codebooks of
    (K, T) codes (every coarse codebook from n_keep up masked everywhere)."""
    K = model.n_codebooks
    grid = codes[:K].clone()
    masked = torch.zeros_like(grid, dtype=torch.bool)
    masked[n_keep:] = True
    masked[:n_keep, hidden] = True
    with torch.inference_mode():
        logits = model(torch.where(masked, model.mask_token, grid)[None]).float()[0]  # (P, T, V), P = K here
    out = {name: codes[:n_keep].clone() for name in ("sample", "argmax", "expected")}
    for k in range(n_keep):
        p = logits[k, hidden].softmax(-1)
        book = F.normalize(model.embedding.codebooks[k].float(), dim=-1)
        out["sample"][k, hidden] = torch.multinomial(p, 1, generator=gen)[:, 0]
        out["argmax"][k, hidden] = p.argmax(-1)
        out["expected"][k, hidden] = (F.normalize(p @ book, dim=-1) @ book.T).argmax(-1)
    return out


def summarise(scores: list[dict], rank_list: list[torch.Tensor]) -> dict:
    ranks = torch.cat(rank_list).float()
    mean = lambda key: statistics.fmean(float(s[key]) for s in scores)
    return {"tempo_kept": sum(bool(s["tempo_kept"]) for s in scores), "vamps": len(scores),
            "onset_correlation": mean("onset_correlation"), "chroma_similarity": mean("chroma_similarity"),
            "si_sdr_db": mean("si_sdr"), "median_rank": float(ranks.median()) if ranks.numel() else 0.0,
            **{f"within_{n}": float((ranks < n).float().mean()) if ranks.numel() else 1.0 for n in RANKS}}


def markdown(result: dict) -> str:
    lines = [f"{result['excerpts']} excerpts; codebooks 0-{result['codebooks'] - 1} decoded; every {result['periodic']} "
             "frames 1 kept, the rest filled as the row says.", "",
             "| hidden codes | tempo kept | onset corr. | chroma | SI-SDR (dB) | median rank | "
             + " | ".join(f"within {n}" for n in RANKS) + " |", "|---|" + "---:|" * (5 + len(RANKS))]
    for label, r in result["rows"].items():
        lines.append(f"| {label} | {r['tempo_kept']}/{r['vamps']} | {r['onset_correlation']:.3f} | "
                     f"{r['chroma_similarity']:.3f} | {r['si_sdr_db']:.1f} | {r['median_rank']:.0f} | "
                     + " | ".join(f"{r[f'within_{n}']:.2f}" for n in RANKS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="the folder `vampnet prepare-corpus` made")
    ap.add_argument("--coarse", nargs="*", default=[], help="LABEL=FILE|MODEL, coarse models whose predictions to score")
    ap.add_argument("--models", default="small", help="the model whose codec encodes and decodes (default: small)")
    ap.add_argument("--codec", type=Path, default=None, help="a codec file instead (e.g. a codec training run's)")
    ap.add_argument("--periodic", type=int, default=3, help="one frame kept in this many")
    ap.add_argument("--codebooks", type=int, default=2, help="codebooks decoded and filled (the default prompt's 2)")
    ap.add_argument("--near", type=int, nargs="+", default=[4, 32, 128], help="K of the near-K rows")
    ap.add_argument("--excerpts", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0, help="excerpt length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.periodic < 2 or args.codebooks < 1:
        raise SystemExit("error: --periodic must be >= 2 (1 hides nothing) and --codebooks >= 1")
    specs = coarse_specs(args.coarse)
    codec = Codec.load(args.codec or find_model_files(resolve(args.models).base)["codec"]).eval()
    sr = codec.sample_rate
    vocab = codec.config.codebook_size
    if args.codebooks > codec.config.n_codebooks or any(not 1 <= n <= vocab for n in args.near):
        raise SystemExit(f"error: --codebooks must be <= {codec.config.n_codebooks} and --near in 1..{vocab}")
    models = {label: MaskedTransformer.load(path, codec).eval() for label, path, _ in specs}
    for label, model in models.items():
        if model.n_conditioning_codebooks or model.n_codebooks < args.codebooks:
            raise SystemExit(f"error: {label} is not a coarse model with at least {args.codebooks} codebooks")
    ranks = neighbour_ranks(codec, args.codebooks)
    excerpts = spread(validation_excerpts(args.corpus, sr, args.seconds, EXCERPTS_PER_FILE), args.excerpts)
    labels = ["truth", *(f"near-{n}" for n in args.near), "uniform", "hold"]
    labels += [f"{m} {how}" for m in models for how in ("sample", "argmax", "expected")]
    scores = {label: [] for label in labels}
    hidden_ranks = {label: [] for label in labels}
    # a generator per row, so a row's draws do not depend on which other rows run
    gens = {label: torch.Generator().manual_seed(zlib.crc32(label.encode()) + args.seed) for label in labels}
    for i, x in enumerate(excerpts):
        x = x.reshape(1, 1, -1)
        with torch.inference_mode():
            codes = codec.encode(x)[0]
        hidden = hidden_frames(codes.shape[-1], args.periodic)
        kept_codes = codes[:args.codebooks]
        fills = {how: oracle_fill(kept_codes, hidden, how, ranks, gens[how]) for how in labels[:len(args.near) + 3]}
        for name, model in models.items():
            made = model_fills(model, codes, hidden, args.codebooks, gens[f"{name} sample"])
            fills |= {f"{name} {how}": c for how, c in made.items()}
        for label, filled in fills.items():
            with torch.inference_mode():
                y = codec.decode(filled[None])
            scores[label].append(score(x, y, sr))
            k = torch.arange(args.codebooks)[:, None].expand(-1, int(hidden.sum()))
            hidden_ranks[label].append(ranks[k, kept_codes[:, hidden], filled[:, hidden]].flatten())
        print(f"excerpt {i + 1}/{len(excerpts)}", file=sys.stderr, flush=True)
    result = {"machine": {"cpu": cpu_name(), "torch": torch.__version__},
              "excerpts": len(excerpts), "periodic": args.periodic, "codebooks": args.codebooks, "seed": args.seed,
              "codec": portable(args.codec) if args.codec else args.models,
              "coarse": {label: portable(what) for label, _, what in specs},
              "rows": {label: summarise(scores[label], hidden_ranks[label]) for label in labels}}
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
