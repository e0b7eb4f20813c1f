#!/usr/bin/env python
"""The shipped model's numbers for MODEL_CARD.md, measured on the corpus's validation split.

    python benchmarks/model_metrics.py CORPUS [--models small] [--excerpts-per-file 6] [--vamp-excerpts 12]
                                       [--opus-kbps 6] [--json FILE] [--quick]

CORPUS is the folder `vampnet prepare-corpus` made; its validation files are the ones `split_of` puts in "val"
(the same rule training used, so none of them was trained on). The script reports:
  1. codec: the paper's multi-scale mel distance (eval.metrics) and SI-SDR of the codec round trip (all codebooks) on
     10 s excerpts (mono, codec rate, -24 LUFS), next to Opus (ffmpeg/libopus) at --opus-kbps; the bitrates;
  2. masked-token accuracy (top-1, top-25) of the coarse and the coarse-to-fine model on windows of those
     excerpts' tokens, mask ratios spread evenly over (0, 1) (train.masked.masked_accuracy);
  3. the mel distance of vamps with periodic prompts P = 4, 8, 16, 32 (every coarse codebook kept at each P-th
     frame, everything else generated) against their inputs; it should grow with P;
  4. the Fréchet distance (offline `crepe` embedding) to the real validation excerpts of: the codec round trip,
     vamps with the model's default settings (its card's), free generations (nothing kept) and decoded uniformly
     random tokens;
  5. whether the input's rhythm and key survive (eval.musical): tempo agreement and chroma similarity of the codec
     round trip, Opus, vamps at the model's defaults, with `--periodic 1` and `--periodic 3` (the model's other
     defaults) and at the schema's default prompt, and an unrelated excerpt;
  6. the time of a whole 10 s vamp (load excluded: encode, 36 coarse steps, coarse-to-fine, decode) per precision.
It prints a markdown table and writes everything as JSON. `--quick` uses 2 excerpts of 5 s (for tests).

    python benchmarks/model_metrics.py --compare v1.json v2.json [--labels v1 v2]

prints the tables of several such JSON files side by side (one column per model), then issue 26's acceptance
points for each (masked accuracy against the first file's model) and what each model's card says of its training."""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import audio
from vampnet.audio import find_audio
from vampnet import prompts
from vampnet.eval.embeddings import CrepeEmbedding
from vampnet.eval.fad import embedding_distance
from vampnet.eval.metrics import mel_distance, si_sdr
from vampnet.pipeline import Pipeline
from vampnet.prompts import PromptConfig
from vampnet.sampling import SamplingConfig
from vampnet.splits import split_of
from vampnet.train.masked import masked_accuracy, masked_token_loss

PERIODS = (4, 8, 16, 32)
CURVE_BINS = 10
FRECHET_VAMPS = "vamp (the model's defaults)"


def validation_excerpts(corpus: Path, sample_rate: int, seconds: float, per_file: int) -> list[torch.Tensor]:
    """Consecutive `seconds`-long excerpts of each validation file (mono, codec rate, -24 LUFS), silent ones
    skipped, at most `per_file` from each file."""
    out = []
    for path, rel in find_audio([corpus]):
        if split_of(rel, 0.05) != "val":
            continue
        wav, sr = audio.load(path, max_seconds=seconds * per_file * 2)
        wav = audio.resample(audio.to_mono(wav), sr, sample_rate)
        n, kept = int(seconds * sample_rate), 0
        for start in range(0, wav.shape[-1] - n + 1, n):
            x = wav[..., start:start + n]
            loud = audio.loudness(x, sample_rate)
            if not math.isfinite(loud) or loud < -40:
                continue
            out.append(audio.normalize_loudness(x, sample_rate, -24.0)[0])
            kept += 1
            if kept == per_file:
                break
    if not out:
        raise SystemExit(f"no validation audio under {corpus} (is it the folder `vampnet prepare-corpus` made?)")
    return out


def spread(items: list, n: int) -> list:
    """`n` items evenly spaced through `items` (validation excerpts come file by file, so the first n would
    all be from one or two files)."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "n": len(values)}


def codec_metrics(pipeline: Pipeline, excerpts, opus_kbps: float) -> tuple[dict, list[torch.Tensor]]:
    from vampnet.eval.opus import opus_roundtrip

    sr, codec = pipeline.sample_rate, pipeline.codec
    ours_mel, ours_sdr, opus_mel, opus_sdr, opus_real, all_codes = [], [], [], [], [], []
    for x in excerpts:
        with torch.inference_mode():
            codes = codec.encode(x)
            y = codec.decode(codes)
        all_codes.append(codes.cpu())
        ours_mel.append(mel_distance(x, y, sr))
        ours_sdr.append(si_sdr(x, y))
        z, real = opus_roundtrip(x, sr, opus_kbps)
        opus_mel.append(mel_distance(x, z, sr))
        opus_sdr.append(si_sdr(x, z))
        opus_real.append(real)
    bitrate = codec.n_codebooks * math.log2(codec.codebook_size) * codec.frame_rate / 1000
    return {
        "codec": {"mel_distance": mean_std(ours_mel), "si_sdr_db": mean_std(ours_sdr), "kbps": bitrate},
        "opus": {"mel_distance": mean_std(opus_mel), "si_sdr_db": mean_std(opus_sdr), "nominal_kbps": opus_kbps,
                 "real_kbps": statistics.fmean(opus_real)},
    }, all_codes


class _CodesWindows:
    """Fixed windows of in-memory token grids, shaped like a TokenDataset for masked_accuracy."""

    def __init__(self, codes: list[torch.Tensor], window: int, n_codebooks: int):
        self.window = window
        self.items = [c[0, :n_codebooks, s:s + window] for c in codes
                      for s in range(0, c.shape[-1] - window + 1, window)]

    def fixed_indices(self, limit=None) -> list[int]:
        return list(range(len(self.items)))[:limit]

    def batch(self, indices) -> torch.Tensor:
        return torch.stack([self.items[i] for i in indices]).long()


def accuracy_metrics(pipeline: Pipeline, codes: list[torch.Tensor], windows: int) -> dict:
    out = {}
    for name, model, seconds in (("coarse", pipeline.coarse, 10.0), ("c2f", pipeline.c2f, 3.0)):
        if model is None:
            continue
        frames = min(int(round(seconds * pipeline.codec.frame_rate)), codes[0].shape[-1])
        data = _CodesWindows(codes, frames, model.config.n_codebooks)
        out[name] = masked_accuracy(model, data, n_windows=windows, seed=0)
        out[name].update(accuracy_curve(model, data, windows))
    return out


@torch.no_grad()
def accuracy_curve(model, data, n_windows: int, bins: int = CURVE_BINS, seed: int = 0) -> dict:
    """Masked-token top-1/top-25 per mask-ratio bin and top-1 per predicted codebook at r < 0.5, on the same
    windows and masks as masked_accuracy (so the curve's totals agree with its numbers)."""
    model.eval()
    idx = data.fixed_indices(n_windows)
    idx = (idx * n_windows)[:n_windows]
    n = len(idx)
    r_all = (torch.arange(n) + 0.5) / n  # a token is masked with probability cos(pi r / 2): r < 0.5 is > 71 % masked
    n_cond = model.config.n_conditioning_codebooks
    masks = prompts.training_mask((n, model.config.n_codebooks, data.window), r_all,
                                  n_cond, torch.Generator().manual_seed(seed))
    # the frequency baseline: each codebook's most frequent codes in these windows (an oracle of the marginals)
    P, V = model.config.n_codebooks - n_cond, model.config.vocab_size
    every = torch.cat([data.batch([i])[0, n_cond:] for i in sorted(set(idx))], -1)  # (P, frames)
    freq_top = torch.stack([torch.bincount(row, minlength=V).topk(25).indices for row in every])  # (P, 25)
    baseline = torch.zeros(2, 3)  # lo/hi: tokens, top-1 hits, top-25 hits
    per_bin = torch.zeros(bins, 3)  # tokens, top-1 hits, top-25 hits
    per_book = torch.zeros(model.config.n_codebooks - n_cond, 2)  # r < 0.5: tokens, top-1 hits
    for i in range(n):
        codes, mask = data.batch([idx[i]]), masks[i:i + 1]
        _, count, logits, target = masked_token_loss(model, codes, mask, 0.0)
        top = logits.topk(min(25, logits.shape[-1]), -1).indices
        hit1, hit25 = top[:, 0] == target, (top == target[:, None]).any(-1)
        book = mask[0, n_cond:].nonzero()[:, 0]  # predicted codebook of each masked token, in logits' order
        base_top = freq_top[book]
        baseline[int(r_all[i] >= 0.5)] += torch.tensor([float(count), float((base_top[:, 0] == target).sum()),
                                                         float((base_top == target[:, None]).any(-1).sum())])
        b = min(int(r_all[i] * bins), bins - 1)
        per_bin[b] += torch.tensor([float(count), float(hit1.sum()), float(hit25.sum())])
        if r_all[i] < 0.5:
            per_book[:, 0] += torch.bincount(book, minlength=per_book.shape[0]).float()
            per_book[:, 1] += torch.bincount(book[hit1], minlength=per_book.shape[0]).float()
    ratio = lambda a, b: float(a / b) if b > 0 else float("nan")
    return {"curve": [{"r": (b + 0.5) / bins, "tokens": int(t), "acc1": ratio(h1, t), "acc25": ratio(h25, t)}
                      for b, (t, h1, h25) in enumerate(per_bin.tolist())],
            "acc1_lo_per_codebook": [ratio(h, t) for t, h in per_book.tolist()],
            "frequency_baseline": {"acc1_lo": ratio(baseline[0, 1], baseline[0, 0]),
                                   "acc25_lo": ratio(baseline[0, 2], baseline[0, 0]),
                                   "acc1_hi": ratio(baseline[1, 1], baseline[1, 0]),
                                   "acc25_hi": ratio(baseline[1, 2], baseline[1, 0])}}


def frechet_metrics(pipeline: Pipeline, excerpts, codes: list[torch.Tensor], n: int, seed: int = 0) -> dict:
    """Fréchet distance (crepe embedding) between the real validation excerpts and `n` excerpts of each of: the
    codec round trip, vamps (the model's default settings), free generations (every token masked) and uniformly
    random tokens."""
    sr, codec, embed = pipeline.sample_rate, pipeline.codec, CrepeEmbedding()
    real = np.concatenate([embed(x, sr) for x in excerpts])
    gen = torch.Generator().manual_seed(seed)
    made = {"codec round trip": [], FRECHET_VAMPS: [], "free generation (nothing kept)": [], "random tokens": []}
    for i, (x, c) in enumerate(zip(spread(excerpts, n), spread(codes, n))):
        with torch.inference_mode():
            made["codec round trip"].append(codec.decode(c))
            random_codes = torch.randint(0, codec.codebook_size, c.shape, generator=gen)
            made["random tokens"].append(codec.decode(random_codes))
        if pipeline.coarse is None:
            continue
        made[FRECHET_VAMPS].append(pipeline.vamp(x, sr, seed=seed + i).audio)
        free = pipeline.generate(c, torch.ones_like(c, dtype=torch.bool), seed=seed + i)
        with torch.inference_mode():
            made["free generation (nothing kept)"].append(codec.decode(free))
    return {name: {"frechet": embedding_distance(real, np.concatenate([embed(y[..., : x.shape[-1]], sr) for y in ys])),
                   "excerpts": len(ys)}
            for name, ys in made.items() if ys} | {"_reference": {"excerpts": len(excerpts), "embedding": embed.name}}


def card_training(pipeline: Pipeline) -> dict:
    """What the model's card says of its training: each part's steps (and hours of audio seen, where the card
    has them) and its training data, for the comparison's training table."""
    card = {}
    for path in pipeline.defaults.cards:  # the model's own card last, so it wins over its base model's
        try:
            card.update(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    parts = {name: {k: v for k, v in part.items() if k in ("steps", "hours_seen", "train_hours", "started_from")}
             for name, part in card.get("parts", {}).items()}
    return {"name": card.get("name"), "version": card.get("version"), "training_data": card.get("training_data"),
            "parts": parts}


def periodic_metrics(pipeline: Pipeline, excerpts, seed: int = 0) -> dict:
    sr = pipeline.sample_rate
    out = {}
    for period in PERIODS:
        prompt = PromptConfig(periodic_prompt=period, upper_codebook_mask=None)
        values = [mel_distance(x, pipeline.vamp(x, sr, prompt=prompt, seed=seed + i).audio, sr)
                  for i, x in enumerate(excerpts)]
        out[f"P={period}"] = mean_std(values)
    return out


DEFAULTS_VAMP = "vamp, the model's defaults"
PERIODIC_1, PERIODIC_3 = "vamp, --periodic 1 (other settings the model's)", "vamp, --periodic 3 (other settings the model's)"


def rhythm_prompts(pipeline: Pipeline) -> dict[str, PromptConfig]:
    """The prompts of the rhythm and key table: what a user gets with no options (the model's card defaults), with
    `--periodic 1` and `--periodic 3` (issue 26 compares the two) and the schema's own default prompt (periodic 7,
    codebooks 0-2 of each kept frame)."""
    own = pipeline.default_prompt()
    return {DEFAULTS_VAMP: own, PERIODIC_1: replace(own, periodic_prompt=1), PERIODIC_3: replace(own, periodic_prompt=3),
            "vamp, periodic 7 / upper codebooks 3 (the schema's defaults)": PromptConfig()}


def rhythm_metrics(pipeline: Pipeline, excerpts, opus_kbps: float = 8.0, seed: int = 0, seeds: int = 1) -> dict:
    """Per condition, how many excerpts keep their tempo (octave-tolerant, 4 %), the mean chroma similarity to the
    input, the SI-SDR to it (new music stays below 10 dB) and the share of tokens generated: the codec round trip,
    Opus, vamps with rhythm_prompts and the schema's default prompt plus every tracked beat, and an unrelated
    excerpt (the floor: what no relation to the input scores). Vamps sample with the model's defaults, `seeds`
    times each (seed + i, then + 1000, + 2000 ...: a vamp's tempo count moves by about ±3 of 24 from seed to seed),
    so a vamp row counts len(excerpts) x seeds outputs and the deterministic rows len(excerpts)."""
    from vampnet import options
    from vampnet.eval import musical
    from vampnet.eval.opus import opus_roundtrip

    sr, n = pipeline.sample_rate, len(excerpts)
    made: dict[str, list] = {}
    inputs: dict[str, list] = {}  # the input each output is scored against
    for i, x in enumerate(excerpts):
        def add(name, output):
            made.setdefault(name, []).append(output)
            inputs.setdefault(name, []).append(x)

        with torch.inference_mode():
            add("codec round trip", (pipeline.codec.decode(pipeline.codec.encode(x)), 0.0))
        add(f"Opus {opus_kbps:g} kbit/s", (opus_roundtrip(x, sr, opus_kbps)[0], 0.0))
        if pipeline.coarse is not None:
            beats, _ = options.vamp_prompt(None, wav=x, sample_rate=sr, beats=True)
            for j in range(seeds):
                done: list[tuple[PromptConfig, tuple]] = []  # (a model whose default is periodic 1 vamps it once)
                for name, prompt in {**rhythm_prompts(pipeline), "vamp, the schema's defaults + every tracked beat": beats}.items():
                    made_before = next((out for p, out in done if p == prompt), None)
                    if made_before is None:
                        result = pipeline.vamp(x, sr, prompt=prompt, seed=seed + i + 1000 * j)
                        made_before = (result.audio, result.mask.float().mean().item())
                        done.append((prompt, made_before))
                    add(name, made_before)
        if n > 1:
            add("an unrelated excerpt", (excerpts[(i + n // 2) % n], 1.0))
    out = {}
    for name, outputs in made.items():
        scores = [musical.keeps_rhythm_and_key(x, y[..., : x.shape[-1]], sr) | {"si_sdr": si_sdr(x, y), "generated": g}
                  for x, (y, g) in zip(inputs[name], outputs)]
        out[name] = {"tempo_kept": sum(s["tempo_kept"] for s in scores), "excerpts": len(scores),
                     "chroma_similarity": mean_std([s["chroma_similarity"] for s in scores]),
                     "onset_correlation": mean_std([s["onset_correlation"] for s in scores]),
                     "si_sdr_db": mean_std([s["si_sdr"] for s in scores]),
                     "generated": statistics.fmean(s["generated"] for s in scores)}
    return out


def vamp_timing(models, seconds: float = 10.0, repeats: int = 2, precisions=("fp32", "bf16", "int8")) -> dict:
    """Seconds for one whole vamp of a `seconds` clip (best of `repeats` after a warm-up), per precision."""
    from vampnet.errors import VampNetError

    out = {}
    for precision in precisions:
        try:
            pipeline = Pipeline.from_pretrained(models, precision=precision)
        except VampNetError as e:
            out[precision] = {"error": str(e)}
            continue
        x = torch.randn(1, 1, int(seconds * pipeline.sample_rate), generator=torch.Generator().manual_seed(0)) * 0.05
        pipeline.vamp(x[..., : pipeline.sample_rate], pipeline.sample_rate, seed=0)  # warm-up
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            pipeline.vamp(x, pipeline.sample_rate, seed=i, sampling=SamplingConfig(steps=36))
            times.append(time.perf_counter() - t)
        out[precision] = {"seconds": min(times), "all": times}
    return out


def spectrogram_figure(pipeline: Pipeline, x: torch.Tensor, opus_kbps: float, path: Path, seed: int = 0) -> None:
    """Log-mel spectrograms of one validation excerpt: input, codec round trip, Opus, vamps with P = 8 and 32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vampnet.eval.opus import opus_roundtrip
    from vampnet.spectral import mel_spectrogram

    sr = pipeline.sample_rate
    with torch.inference_mode():
        recon = pipeline.codec.decode(pipeline.codec.encode(x))
    panels = [("input", x), (f"our codec ({pipeline.codec.n_codebooks} codebooks)", recon),
              (f"Opus {opus_kbps:g} kbit/s", opus_roundtrip(x, sr, opus_kbps)[0])]
    for period in (8, 32):
        prompt = PromptConfig(periodic_prompt=period, upper_codebook_mask=None)
        panels.append((f"vamp, periodic prompt P={period}", pipeline.vamp(x, sr, prompt=prompt, seed=seed).audio))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.0 * len(panels)), sharex=True)
    for ax, (title, y) in zip(axes, panels):
        mel = mel_spectrogram(y[..., : x.shape[-1]].float(), sr, 1024, 80, 256)[0, 0]
        ax.imshow(torch.log10(mel.clamp(min=1e-5)).numpy(), origin="lower", aspect="auto", cmap="magma",
                  extent=(0, x.shape[-1] / sr, 0, 80))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(results: dict) -> str:
    lines = []
    if "codec" in results:
        c, o = results["codec"], results["opus"]
        lines += ["| | bitrate (kbit/s) | mel distance ↓ | SI-SDR (dB) ↑ |", "|---|---|---|---|",
                  f"| our codec (all codebooks) | {c['kbps']:.2f} | {c['mel_distance']['mean']:.3f} ± "
                  f"{c['mel_distance']['std']:.3f} | {c['si_sdr_db']['mean']:.2f} ± {c['si_sdr_db']['std']:.2f} |",
                  f"| Opus (libopus, {o['nominal_kbps']:g} kbit/s target) | {o['real_kbps']:.2f} | "
                  f"{o['mel_distance']['mean']:.3f} ± {o['mel_distance']['std']:.3f} | "
                  f"{o['si_sdr_db']['mean']:.2f} ± {o['si_sdr_db']['std']:.2f} |", ""]
    if results.get("accuracy"):
        lines += ["| model | top-1 (all r) | top-1 (r < 0.5) | top-25 (r < 0.5) | top-1 (r ≥ 0.5) | top-25 (r ≥ 0.5) | loss |",
                  "|---|---|---|---|---|---|---|"]
        for name, a in results["accuracy"].items():
            lines.append(f"| {name} | {a['val_acc1']:.3f} | {a['val_acc1_lo']:.3f} | {a['val_acc25_lo']:.3f} | "
                         f"{a['val_acc1_hi']:.3f} | {a['val_acc25_hi']:.3f} | {a['val_loss']:.3f} |")
        lines.append("")
    if results.get("periodic"):
        lines += ["| periodic prompt | " + " | ".join(results["periodic"]) + " |",
                  "|---|" + "---|" * len(results["periodic"]),
                  "| mel distance to input | " + " | ".join(f"{v['mean']:.3f} ± {v['std']:.3f}"
                                                       for v in results["periodic"].values()) + " |", ""]
    if results.get("rhythm"):
        lines += ["| what is generated | tempo kept | onset correlation | chroma similarity | SI-SDR to input (dB) | "
                  "tokens generated |", "|---|---|---|---|---|---|"]
        for k, v in results["rhythm"].items():
            lines.append(f"| {k} | {v['tempo_kept']}/{v['excerpts']} | {_fmt(v['onset_correlation'])} | "
                         f"{_fmt(v['chroma_similarity'])} | "
                         f"{_fmt(v['si_sdr_db'], 1)} | {v['generated']:.0%} |")
        lines.append("")
    if results.get("frechet"):
        lines += ["| set (crepe embedding) | Fréchet distance to real validation music ↓ | excerpts |", "|---|---|---|"]
        for k, v in results["frechet"].items():
            if not k.startswith("_"):
                lines.append(f"| {k} | {v['frechet']:.2f} | {v['excerpts']} |")
        lines.append("")
    if results.get("timing"):
        lines += ["| precision | whole 10 s vamp (s) |", "|---|---|"]
        for k, v in results["timing"].items():
            lines.append(f"| {k} | {v['seconds']:.2f} |" if "seconds" in v else f"| {k} | {v['error']} |")
    return "\n".join(lines)


def _fmt(v, digits=3) -> str:
    if isinstance(v, dict):
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def compare_markdown(runs: dict[str, dict]) -> str:
    """Tables of several model_metrics JSON files side by side: one column per model."""
    labels = list(runs)
    head = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]

    def row(name, get, digits=3):
        values = []
        for r in runs.values():
            try:
                values.append(_fmt(get(r), digits))
            except (KeyError, TypeError, IndexError):
                values.append("n/a")
        return f"| {name} | " + " | ".join(values) + " |"

    lines = ["**Codec** (validation excerpts)", ""] + head + [
        row("codec mel distance ↓", lambda r: r["codec"]["mel_distance"]),
        row("codec SI-SDR (dB) ↑", lambda r: r["codec"]["si_sdr_db"], 2),
        row("Opus mel distance ↓", lambda r: r["opus"]["mel_distance"]),
        row("Opus bitrate (kbit/s, measured)", lambda r: r["opus"]["real_kbps"], 2), ""]
    lines += ["**Masked-token accuracy** (r < 0.5: more than 71 % of tokens masked; r ≥ 0.5: fewer. Chance: top-1 0.001, "
              "top-25 0.024; the frequency baseline always predicts each codebook's most frequent codes)", ""] + head
    for part in ("coarse", "c2f"):
        lines += [row(f"{part} top-1, r < 0.5", lambda r, p=part: r["accuracy"][p]["val_acc1_lo"]),
                  row(f"{part} top-25, r < 0.5", lambda r, p=part: r["accuracy"][p]["val_acc25_lo"]),
                  row(f"{part} top-1, r ≥ 0.5", lambda r, p=part: r["accuracy"][p]["val_acc1_hi"]),
                  row(f"{part} top-25, r ≥ 0.5", lambda r, p=part: r["accuracy"][p]["val_acc25_hi"]),
                  row(f"{part} validation loss", lambda r, p=part: r["accuracy"][p]["val_loss"])]
        for key, name in (("acc1_lo", "top-1, r < 0.5"), ("acc25_lo", "top-25, r < 0.5"), ("acc1_hi", "top-1, r ≥ 0.5"),
                          ("acc25_hi", "top-25, r ≥ 0.5")):
            lines.append(row(f"{part} frequency baseline {name}",
                             lambda r, p=part, k=key: r["accuracy"][p]["frequency_baseline"][k]))
    n_books = max((len(r.get("accuracy", {}).get("coarse", {}).get("acc1_lo_per_codebook", [])) for r in runs.values()),
                  default=0)
    lines += [row(f"coarse top-1 r < 0.5, codebook {k}", lambda r, k=k: r["accuracy"]["coarse"]["acc1_lo_per_codebook"][k])
              for k in range(n_books)] + [""]
    periods = next((list(r["periodic"]) for r in runs.values() if r.get("periodic")), [])
    lines += ["**Periodic prompt ladder** (mel distance of the vamp to its input)", ""] + head
    lines += [row(p, lambda r, p=p: r["periodic"][p]) for p in periods] + [""]
    conditions = next((list(r["rhythm"]) for r in runs.values() if r.get("rhythm")), [])
    if conditions:
        lines += ["**Rhythm and key** (tempo kept: octave-tolerant, 4 %; chroma: time-averaged key profile)", ""] + head
        lines += [row(f"{k}: tempo kept (share)", lambda r, k=k: r["rhythm"][k]["tempo_kept"] / r["rhythm"][k]["excerpts"], 2)
                  for k in conditions]
        lines += [row(f"{k}: onset correlation", lambda r, k=k: r["rhythm"][k]["onset_correlation"]) for k in conditions]
        lines += [row(f"{k}: chroma similarity", lambda r, k=k: r["rhythm"][k]["chroma_similarity"]) for k in conditions]
        lines.append("")
    sets = next((list(k for k in r["frechet"] if not k.startswith("_")) for r in runs.values() if r.get("frechet")), [])
    lines += ["**Fréchet distance to real validation music** (crepe embedding) ↓", ""] + head
    lines += [row(k, lambda r, k=k: r["frechet"][k]["frechet"], 2) for k in sets] + [""]
    precisions = next((list(r["timing"]) for r in runs.values() if r.get("timing")), [])
    if precisions:  # runs made with --no-timing have none
        lines += ["**Whole 10 s vamp** (seconds, load excluded)", ""] + head
        lines += [row(p, lambda r, p=p: r["timing"][p]["seconds"], 2) for p in precisions]
    return "\n".join(lines)


def _share(rhythm: dict, name: str) -> float:
    return rhythm[name]["tempo_kept"] / rhythm[name]["excerpts"]


def _bins_above(r: dict, base: dict) -> tuple[int, int]:
    """(bins where this run's coarse top-1 and top-25 both beat the baseline's, bins with tokens in both)."""
    mine, theirs = r["accuracy"]["coarse"]["curve"], base["accuracy"]["coarse"]["curve"]
    pairs = [(a, b) for a, b in zip(mine, theirs) if a["tokens"] and b["tokens"]]
    return sum(a["acc1"] > b["acc1"] and a["acc25"] > b["acc25"] for a, b in pairs), len(pairs)


# issue 26's acceptance, as (criterion, value of one run given the first run, test of the value, digits)
ACCEPTANCE = [
    ("codec round trip keeps the tempo (share of excerpts, ≥ 0.90)",
     lambda r, base: _share(r["rhythm"], "codec round trip"), lambda v: v >= 0.9, 2),
    ("vamps with the model's defaults keep it, as a share of what the round trip keeps (≥ 0.90)",
     lambda r, base: _share(r["rhythm"], DEFAULTS_VAMP) / _share(r["rhythm"], "codec round trip"), lambda v: v >= 0.9, 2),
    ("`--periodic 3` tempo kept against `--periodic 1` (≥ 0.95: within 5 %)",
     lambda r, base: _share(r["rhythm"], PERIODIC_3) / _share(r["rhythm"], PERIODIC_1), lambda v: v >= 0.95, 2),
    ("mean chroma similarity of the vamps (≥ 0.93)",
     lambda r, base: r["rhythm"][DEFAULTS_VAMP]["chroma_similarity"]["mean"], lambda v: v >= 0.93, 3),
    ("the vamps are new: mean SI-SDR to the input (< 10 dB)",
     lambda r, base: r["rhythm"][DEFAULTS_VAMP]["si_sdr_db"]["mean"], lambda v: v < 10, 1),
    ("Fréchet distance of the vamps / of the codec round trip (≤ 1.3)",
     lambda r, base: (r["frechet"].get(FRECHET_VAMPS) or r["frechet"]["vamp (default prompt)"])["frechet"]
     / r["frechet"]["codec round trip"]["frechet"], lambda v: v <= 1.3, 2),
]


def acceptance_markdown(runs: dict[str, dict]) -> str:
    """Issue 26's acceptance points for each model (✓ met, ✗ missed), and masked accuracy against the first model
    at every masking level; then what each model's card says of its training."""
    labels = list(runs)
    base = runs[labels[0]]
    lines = ["**Acceptance (issue 26)**", "", "| criterion | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, value, test, digits in ACCEPTANCE:
        cells = []
        for r in runs.values():
            try:
                v = value(r, base)
                cells.append(f"{v:.{digits}f} {'✓' if test(v) else '✗'}")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = ["(baseline)"]
    for r in list(runs.values())[1:]:
        try:
            above, n = _bins_above(r, base)
            cells.append(f"{above}/{n} {'✓' if n and above == n else '✗'}")
        except (KeyError, TypeError):
            cells.append("n/a")
    lines.append(f"| coarse masked accuracy (top-1 and top-25) above {labels[0]}'s, mask-ratio bins | " + " | ".join(cells) + " |")
    lines += ["", "**Training** (from each model's card)", "", "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    trainings = [r.get("setup", {}).get("training") or {} for r in runs.values()]
    for part in ("codec", "coarse", "c2f"):
        def cell(t, part=part):
            info = t.get("parts", {}).get(part)
            if not info:
                return "n/a"
            text = f"{info['steps']} steps" if "steps" in info else ""
            if "hours_seen" in info:
                text += f", {info['hours_seen']:.0f} h of audio seen"
            if "train_hours" in info:
                text += f" (training split {info['train_hours']:.1f} h)"
            origin = info.get("started_from")
            if origin:
                name = origin.get("run") or origin.get("model") or origin.get("weights")
                text += f"; from {name}" + (f" ({origin['steps']} steps)" if "steps" in origin else "")
            return text or "n/a"
        lines.append(f"| {part} | " + " | ".join(cell(t) for t in trainings) + " |")
    lines.append("| training data | " + " | ".join(str(t.get("training_data") or "n/a") for t in trainings) + " |")
    defaults = [r.get("setup", {}).get("defaults") for r in runs.values()]
    lines.append("| card defaults | " + " | ".join(", ".join(f"{k} {v}" for k, v in d.items()) if d else "n/a"
                                               for d in defaults) + " |")
    return "\n".join(lines)


def curve_figure(runs: dict[str, dict], path: Path) -> None:
    """Coarse masked-token accuracy against mask ratio, one line per model (top-1 and top-25)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, r in runs.items():
        curve = r.get("accuracy", {}).get("coarse", {}).get("curve")
        if not curve:
            continue
        xs = [c["r"] for c in curve]
        axes[0].plot(xs, [c["acc1"] for c in curve], marker="o", label=label)
        axes[1].plot(xs, [c["acc25"] for c in curve], marker="o", label=label)
    for ax, title, chance in zip(axes, ("top-1", "top-25"), (1 / 1024, 25 / 1024)):
        ax.axhline(chance, color="gray", linestyle=":", label="chance")
        ax.set_title(f"coarse model, masked-token {title}", fontsize=10)
        ax.set_xlabel("mask ratio r")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def compare_main(files: list[Path], labels: list[str] | None, figure: Path | None) -> int:
    if labels and len(labels) != len(files):
        raise SystemExit("--labels needs one label per --compare file")
    runs = {}
    for i, f in enumerate(files):
        try:
            runs[labels[i] if labels else f.stem] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"cannot read {f}: {e}") from None
    print(compare_markdown(runs))
    print()
    print(acceptance_markdown(runs))
    if figure:
        curve_figure(runs, figure)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="?")
    ap.add_argument("--compare", type=Path, nargs="+", default=None, help="JSON files of earlier runs: side-by-side tables")
    ap.add_argument("--labels", nargs="+", default=None, help="column names for --compare (default: file names)")
    ap.add_argument("--curve-figure", type=Path, default=None, help="with --compare: PNG of accuracy against mask ratio")
    ap.add_argument("--frechet-excerpts", type=int, default=12, help="excerpts generated per Fréchet set")
    ap.add_argument("--models", default=None, help="model folder, 'small' (default) or 'official'")
    ap.add_argument("--excerpts-per-file", type=int, default=6)
    ap.add_argument("--vamp-excerpts", type=int, default=12, help="excerpts vamped per periodic prompt")
    ap.add_argument("--rhythm-seeds", type=int, default=1,
                    help="vamps per excerpt and prompt in the rhythm-and-key table (pooled; 3 for issue 26's counts)")
    ap.add_argument("--windows", type=int, default=64, help="token windows for masked accuracy")
    ap.add_argument("--opus-kbps", type=float, default=None, help="default: our bitrate, at least 6")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-codec", action="store_true",
                    help="skip the codec-vs-Opus part (e.g. when comparing transformers that share one codec)")
    ap.add_argument("--quick", action="store_true", help="2 excerpts of 5 s, 1 vamp per prompt, no timing")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None, help="PNG of spectrograms of one validation excerpt")
    args = ap.parse_args(argv)
    if args.compare:
        return compare_main(args.compare, args.labels, args.curve_figure)
    if args.corpus is None:
        ap.error("give the corpus folder (or --compare JSON files)")
    if args.rhythm_seeds < 1:
        ap.error("--rhythm-seeds must be >= 1")
    torch.manual_seed(0)

    pipeline = Pipeline.from_pretrained(args.models)
    per_file = 1 if args.quick else args.excerpts_per_file
    excerpt_s = 5.0 if args.quick else 10.0
    excerpts = validation_excerpts(args.corpus, pipeline.sample_rate, excerpt_s, per_file)
    if args.quick:
        excerpts = excerpts[:2]
    codec = pipeline.codec
    bitrate = codec.n_codebooks * math.log2(codec.codebook_size) * codec.frame_rate / 1000
    opus_kbps = args.opus_kbps or max(6.0, round(bitrate, 1))
    t0 = time.time()
    if args.no_codec:
        with torch.inference_mode():
            results, codes = {}, [codec.encode(x).cpu() for x in excerpts]
    else:
        results, codes = codec_metrics(pipeline, excerpts, opus_kbps)
    results["accuracy"] = accuracy_metrics(pipeline, codes, 8 if args.quick else args.windows)
    vamp_set = spread(excerpts, 1 if args.quick else args.vamp_excerpts)
    results["periodic"] = periodic_metrics(pipeline, vamp_set) if pipeline.coarse is not None else {}
    results["rhythm"] = rhythm_metrics(pipeline, vamp_set, seeds=args.rhythm_seeds)
    results["frechet"] = frechet_metrics(pipeline, excerpts, codes, 1 if args.quick else args.frechet_excerpts)
    if not (args.quick or args.no_timing):
        results["timing"] = vamp_timing(args.models)
    results["setup"] = {"models": args.models or "small", "defaults": pipeline.defaults.by_name(),
                        "training": card_training(pipeline), "excerpts": len(excerpts), "vamp_excerpts": len(vamp_set),
                        "rhythm_seeds": args.rhythm_seeds,
                        "excerpt_s": excerpt_s, "sample_rate": pipeline.sample_rate, "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                        "seconds": round(time.time() - t0, 1)}
    if args.figure:
        spectrogram_figure(pipeline, excerpts[0], opus_kbps, args.figure)
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
