#!/usr/bin/env python
"""Training steps with and without `compile: true`, side by side in one run: the codec's step (`vampnet train
codec`, its discriminator's wide layers as convolutions or as matrix products) and a transformer's step (`vampnet
train coarse` with a config's architecture).

    python benchmarks/bench_train_compile.py [--codec-config configs/small/codec.yaml] [--codec-batch 16]
        [--model-config configs/small/coarse_v3.yaml] [--steps 3] [--threads 1] [--output FILE] [--json FILE]

The codec runs the real `CodecTrainer` on synthetic audio the script writes (tones in noise; the speed does not
depend on the music), the transformer `masked_token_loss` + backward + AdamW on random tokens of 10 s windows, both
in the precision `bf16: auto` picks on this CPU. torch.compile needs a C++ compiler; its first step (compiling,
reported apart) is not counted. Variants take turns step by step, so a drift of the machine's speed spreads over
all of them; the median is reported."""
from __future__ import annotations

import argparse
import os
import statistics
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

from vampnet import prompts
from vampnet.train import discriminators
from vampnet.train.codec_trainer import CodecTrainer, load_codec_config
from vampnet.train.config import load_config
from vampnet.train.loop import bf16_autocast_wanted
from vampnet.train.masked import build_model, masked_token_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402


def write_audio(folder: Path, sr: int, seconds: float = 6.0, n: int = 4) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * (110 * (i + 2)) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        sf.write(folder / f"tone{i}.wav", (x + 0.05 * rng.standard_normal(t.size)).astype(np.float32), sr)


class MatmulFrom:
    """Sets the discriminator's MATMUL_MIN_CHANNELS for the duration of a step."""

    def __init__(self, value: int):
        self.value = value

    def __enter__(self):
        self.saved, discriminators.MATMUL_MIN_CHANNELS = discriminators.MATMUL_MIN_CHANNELS, self.value

    def __exit__(self, *exc):
        discriminators.MATMUL_MIN_CHANNELS = self.saved


def codec_steps(config: Path, batch: int, bf16: bool, workdir: Path) -> dict:
    """name -> a function running one codec training step (seconds)."""
    sr = load_codec_config(config).sample_rate
    audio = workdir / "audio"
    audio.mkdir()
    write_audio(audio, sr)
    variants = {"eager, convolutions": (False, 10**9), "eager, matrix products": (False, None),
                "compiled, matrix products": (True, None)}
    steps = {}
    for name, (compiled, matmul_from) in variants.items():
        cfg = load_codec_config(config, [f"audio={audio}", f"output={workdir / name.replace(', ', '_')}",
                                         f"batch_size={batch}", f"bf16={str(bf16).lower()}", "num_workers=0",
                                         "val_excerpts=1", "val_excerpt_s=1", "preload=false",
                                         f"compile={str(compiled).lower()}"])
        trainer = CodecTrainer(cfg, progress=False)
        trainer.step, trainer._batches = 1, trainer.batches(1)
        limit = discriminators.MATMUL_MIN_CHANNELS if matmul_from is None else matmul_from

        def step(trainer=trainer, limit=limit) -> float:
            with MatmulFrom(limit):
                start = time.perf_counter()
                trainer.train_step()
                trainer.step += 1
                return time.perf_counter() - start

        steps[name] = step
    return steps


def model_steps(config: Path, batch: int, bf16: bool) -> dict:
    """name -> a function running one masked-token training step (seconds), eager and compiled."""
    cfg = load_config(config, [f"batch_size={batch}"])
    frames = 575
    steps = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(cfg, torch.randn(cfg.model.n_codebooks, 1024, 8)).train()
        forward = torch.compile(model) if name == "compiled" else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        codes = torch.randint(0, 1024, (batch, cfg.model.n_codebooks, frames), generator=gen)
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None

        def step(forward=forward, model=model, opt=opt, gen=gen, codes=codes, autocast=autocast) -> float:
            start = time.perf_counter()
            mask = prompts.training_mask(codes.shape, torch.rand(batch, generator=gen), 0, gen, cfg.structured_masks)
            kwargs = {"autocast": autocast} if autocast else {}
            loss, n, _, _ = masked_token_loss(forward, codes, mask, cfg.label_smoothing, **kwargs)
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - start

        steps[name] = step
    return steps


def measure(variants: dict, steps: int) -> dict:
    first = {name: step() for name, step in variants.items()}  # compiles (and warms up)
    times = {name: [] for name in variants}
    for _ in range(steps):
        for name, step in variants.items():
            times[name].append(step())
    return {name: {"first_step_s": first[name], "s_per_step": statistics.median(times[name]), "times": times[name]}
            for name in variants}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    bf16 = bf16_autocast_wanted("auto", "cpu")
    res = {"machine": core.machine_info(), "bf16": bf16, "steps": args.steps, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("VAMPNET_HOME", str(Path(tmp) / "home"))  # (a cold kernel cache: compile times honest)
        res["codec"] = {"config": str(args.codec_config), "batch": args.codec_batch,
                        "variants": measure(codec_steps(args.codec_config, args.codec_batch, bf16, Path(tmp)),
                                            args.steps)}
        res["model"] = {"config": str(args.model_config), "batch": args.model_batch,
                        "variants": measure(model_steps(args.model_config, args.model_batch, bf16), args.steps)}
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def markdown(res: dict) -> str:
    lines = [core.machine_line(res["machine"]),
             f"- precision: {'bf16 autocast' if res['bf16'] else 'float32'} (what `bf16: auto` picks here); median "
             f"of {res['steps']} steps after a first one (the compile, for compiled variants)", "",
             "| step | variant | s a step | vs. first variant | first step s |", "|---|---|---:|---:|---:|"]
    for part, label in (("codec", "codec, batch {batch}"), ("model", "{config}, batch {batch}")):
        variants = res[part]["variants"]
        base = next(iter(variants.values()))["s_per_step"]
        for name, v in variants.items():
            lines.append(f"| {label.format(**res[part])} | {name} | {v['s_per_step']:.2f} | "
                         f"{base / v['s_per_step']:.2f}x | {v['first_step_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec-config", type=Path, default=Path("configs/small/codec.yaml"))
    parser.add_argument("--codec-batch", type=int, default=16)
    parser.add_argument("--model-config", type=Path, default=Path("configs/small/coarse_v3.yaml"))
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--silent", action="store_true")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    res = run(args)
    core.report(args, res, markdown(res))


if __name__ == "__main__":
    main()
