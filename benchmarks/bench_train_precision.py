#!/usr/bin/env python
"""Training steps per second in float32 and in bfloat16 autocast, side by side in one run, for the shipped coarse
model's architecture and a 6 x 512 one (what `vampnet train` picks with `bf16: auto` depends on the CPU: bf16
where it has AVX512-BF16 or AMX, float32 where bf16 would be emulated).

    python benchmarks/bench_train_precision.py [--steps 6] [--batch 8] [--quick] [--output FILE] [--json FILE]

Each step is the training step of `vampnet train coarse`: a random training mask, the masked-token loss (under
autocast in bf16), backward, gradient clipping and AdamW, on random tokens of 10 s windows (575 frames x 4
codebooks, vocabulary 1024). The first step of each variant warms up and is not counted; the median is reported,
with the variants taking turns so a drift of the machine's speed spreads over all of them."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import prompts
from vampnet.train.config import TrainConfig
from vampnet.train.loop import bf16_autocast_wanted
from vampnet.train.masked import build_model, masked_token_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402

MODELS = {  # name -> (layers, width, heads)
    "shipped coarse (2 x 192)": (2, 192, 3),
    "6 x 512": (6, 512, 8),
}


def make_step(layers, width, heads, batch, frames, bf16: bool):
    cfg = TrainConfig(model=dict(n_codebooks=4, embedding_dim=width, n_heads=heads, n_layers=layers, dropout=0.0),
                      batch_size=batch)
    torch.manual_seed(0)
    model = build_model(cfg, torch.randn(4, 1024, 8)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (batch, 4, frames), generator=gen)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None

    def step() -> float:
        start = time.perf_counter()
        mask = prompts.training_mask(codes.shape, torch.rand(batch, generator=gen), 0, gen)
        kwargs = {"autocast": autocast} if autocast else {}
        loss, n, _, _ = masked_token_loss(model, codes, mask, cfg.label_smoothing, **kwargs)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def run(args) -> dict:
    steps, batch, frames = (2, 2, 64) if args.quick else (args.steps, args.batch, 575)
    models = {"tiny (1 x 64)": (1, 64, 2)} if args.quick else MODELS
    res = {"machine": core.machine_info(), "batch": batch, "frames": frames, "steps": steps,
           "auto_picks_bf16": bf16_autocast_wanted("auto", "cpu"), "rows": []}
    for name, (layers, width, heads) in models.items():
        variants = {p: make_step(layers, width, heads, batch, frames, p == "bf16") for p in ("fp32", "bf16")}
        times = {p: [] for p in variants}
        for p, step in variants.items():
            step()  # warm-up
        for _ in range(steps):
            for p, step in variants.items():
                times[p].append(step())
        row = {"model": name}
        for p in variants:
            median = statistics.median(times[p])
            row[p] = {"s_per_step": median, "steps_per_s": 1 / median, "times": times[p]}
        row["bf16_speedup"] = row["fp32"]["s_per_step"] / row["bf16"]["s_per_step"]
        res["rows"].append(row)
        if not args.silent:
            print(f"{name}: fp32 {row['fp32']['steps_per_s']:.2f} steps/s, bf16 {row['bf16']['steps_per_s']:.2f} "
                  f"steps/s ({row['bf16_speedup']:.2f}x)", flush=True)
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def markdown(res: dict) -> str:
    lines = [core.machine_line(res["machine"]),
             f"- batch {res['batch']} x {res['frames']} frames x 4 codebooks; median of {res['steps']} steps; "
             f"`bf16: auto` picks {'bf16' if res['auto_picks_bf16'] else 'fp32'} on this CPU", "",
             "| model | fp32 steps/s | bf16 steps/s | bf16 speed-up |", "|---|---:|---:|---:|"]
    for row in res["rows"]:
        lines.append(f"| {row['model']} | {row['fp32']['steps_per_s']:.2f} | {row['bf16']['steps_per_s']:.2f} | "
                     f"{row['bf16_speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a tiny model, 2 steps (for tests)")
    parser.add_argument("--silent", action="store_true")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    res = run(args)
    core.report(args, res, markdown(res))


if __name__ == "__main__":
    main()
