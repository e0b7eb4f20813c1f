#!/usr/bin/env python
"""Training throughput: coarse training steps from a tokenised dataset versus encoding audio on the fly with the
same codec (what the original training loop does), measured side by side in one run.

    python benchmarks/bench_train.py [--steps 4] [--batch 4] [--window 10] [--quick] [--output FILE]

Both variants run the identical optimisation step (same model, masks, loss, optimiser); they differ only in where
the tokens come from: memory-mapped token files, or audio files read, resampled, loudness-normalised and encoded
by the codec for every batch. The codec is the full-size official architecture (random weights, encoder only
matters); the coarse model is configurable (default 8 layers x 512)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import Codec, CodecConfig, prompts
from vampnet import audio as A
from vampnet.train.config import TrainConfig
from vampnet.train.data import TokenDataset, TokenizeConfig, tokenize
from vampnet.train.masked import build_model, codec_codebooks, masked_token_loss


def make_audio(folder: Path, files: int, seconds: float, sr: int = 44100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(files):
        x = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 2000, 4)) * (0.6 + 0.4 * np.sin(2 * np.pi * t))
        paths.append(folder / f"f{i}.wav")
        sf.write(paths[-1], (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32), sr)
    return paths


def step(model, opt, codes, generator, cfg):
    B, K, T = codes.shape
    mask = prompts.training_mask((B, K, T), torch.rand(B, generator=generator), 0, generator)
    loss, n, _, _ = masked_token_loss(model, codes, mask, cfg.label_smoothing)
    (loss / n).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--window", type=float, default=10.0, help="seconds per training window")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--quick", action="store_true", help="tiny codec and model, for a smoke test")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    if args.quick:
        ccfg = CodecConfig(encoder_dim=4, encoder_rates=(2, 4, 4, 4), decoder_dim=16, decoder_rates=(4, 4, 4, 2),
                           n_codebooks=4, codebook_size=64, codebook_dim=4)
        args.layers, args.width, args.window, args.steps, args.batch = 1, 32, 1.0, 2, 2
    else:
        ccfg = CodecConfig(encoder_dim=64, encoder_rates=(2, 4, 8, 12), decoder_dim=64, decoder_rates=(12, 8, 4, 2),
                           n_codebooks=14, codebook_size=1024, codebook_dim=8)
    codec = Codec(ccfg).eval()
    tmp = Path(tempfile.mkdtemp(prefix="vampnet-bench-train-"))
    files = make_audio(tmp / "audio", files=6, seconds=args.window * 2)
    codec.save(tmp / "codec.safetensors")
    t0 = time.perf_counter()
    tokenize([tmp / "audio"], tmp / "ds", codec, TokenizeConfig(excerpt_s=args.window, val_fraction=0.0),
             codec_path=str(tmp / "codec.safetensors"), progress=False)
    tokenize_s = time.perf_counter() - t0
    cfg = TrainConfig(dataset=str(tmp / "ds"), output=str(tmp / "run"), window_s=args.window,
                      model=dict(n_codebooks=4, embedding_dim=args.width, n_heads=max(1, args.width // 64),
                                 n_layers=args.layers, dropout=0.0))
    frames = int(np.ceil(args.window * codec.frame_rate))
    data = TokenDataset(cfg.dataset, "train", frames, 4)
    results = {}
    for variant in ("tokenised dataset", "encode on the fly"):
        model = build_model(cfg, codec_codebooks(codec))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        times = []
        for i in range(args.steps + 1):  # the first step warms up and is not counted
            start = time.perf_counter()
            if variant == "tokenised dataset":
                codes = data.batch(data.sample_indices(gen, args.batch))
            else:
                batch = []
                for _ in range(args.batch):
                    path = files[int(torch.randint(0, len(files), (1,), generator=gen))]
                    info = sf.info(str(path))
                    offset = int(torch.randint(0, info.frames - int(args.window * info.samplerate) + 1, (1,), generator=gen))
                    x, sr = sf.read(str(path), start=offset, frames=int(args.window * info.samplerate), dtype="float32")
                    w = A.resample(torch.from_numpy(x).view(1, 1, -1), sr, codec.sample_rate)
                    batch.append(A.normalize_loudness(w, codec.sample_rate)[0])
                with torch.inference_mode():
                    codes = codec.encode(torch.cat(batch))[:, :4, :frames].clone()
            step(model, opt, codes, gen, cfg)
            if i:
                times.append(time.perf_counter() - start)
        per_step = float(np.median(times))
        results[variant] = {"s_per_step": per_step, "steps_per_s": 1 / per_step,
                            "tokens_per_s": args.batch * 4 * frames / per_step}
    base = results["encode on the fly"]["s_per_step"]
    lines = [f"### Training throughput: coarse {args.layers} x {args.width}, batch {args.batch} x {args.window:g} s "
             f"({frames} frames x 4 codebooks), codec {'tiny' if args.quick else 'full-size LAC (hop 768, 14 x 1024)'}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads",
             "", f"Tokenising the {len(files)} files ({len(files) * 2 * args.window:g} s of audio) once took {tokenize_s:.1f} s.", "",
             "| tokens from | s / step | steps / s | tokens / s | speed-up |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['s_per_step']:.3f} | {r['steps_per_s']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{base / r['s_per_step']:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
