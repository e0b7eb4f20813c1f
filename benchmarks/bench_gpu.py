#!/usr/bin/env python
"""GPU benchmark of issue 17: one vamp of the full-size architecture per precision and sampler mode, against the
arithmetic floor of its generation.

    python benchmarks/bench_gpu.py [--device cuda] [--models full] [--precisions fp32,bf16] [--modes off,graph,compile]
                                   [--seconds 10] [--steps 36] [--c2f-steps 2] [--variations 8] [--reps 3]
                                   [--output report.md] [--json raw.json] [--quick]

The models are the official full-size architecture (codec 14 x 1024 at 44.1 kHz, coarse 20 x 1280, coarse-to-
fine 16 x 1280) with random weights, built in memory (`--models shipped`: the model shipped in the package, e.g.
to measure the modes on a CPU); every (precision, mode) gets fresh copies. Modes are the
pipeline's `capture` values: off = the eager sampler, static = the static-shape sampler uncaptured, compile =
torch.compile of its pass, graph = its pass recorded as CUDA graphs. Per (precision, mode):
  - first call: a whole vamp on a fresh pipeline (compiling or recording included), seconds;
  - warm, best of --reps: encode (preprocess included), coarse generation, coarse-to-fine (generation minus
    coarse), decode, and the whole vamp, each timed alone between device synchronisations;
  - the tokens of the whole vamp against those of the eager sampler (off) and of the uncaptured static pass in
    the same precision (fraction equal: 1 expected in fp32 for static and graph, which run the same kernels;
    torch.compile fuses operations, so its rounding, and in bf16 every mode's, may differ);
  - --variations vamps as one batch (`Pipeline.variations`): seconds, and variations per second;
  - peak device memory (torch.cuda.max_memory_allocated) over the whole run of that mode.
The floor is the generation's matrix FLOPs (36 coarse forwards of the window + the coarse-to-fine forwards of
its chunks, bench_core.transformer_flops) at the rate of a large matrix product in the same precision timed in
the same run; the ratio is warm generation time / floor. `--quick` runs tiny models on the CPU (tests)."""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent / "src"))

import bench_core as core  # noqa: E402  (configurations, FLOP counts, the synthetic input)
from vampnet import Codec, CodecConfig, MaskedTransformer, Pipeline, SamplingConfig, TransformerConfig  # noqa: E402
from vampnet.pipeline import window_starts  # noqa: E402
from vampnet.sampling import seeded_generator  # noqa: E402
from vampnet.serialization import atomic_path  # noqa: E402

PROMPT = core.PROMPT
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_models(spec: dict) -> tuple:
    """The codec and both transformers with random weights (fixed seed), on the CPU in float32."""
    torch.manual_seed(0)
    codec = Codec(CodecConfig.from_dict(spec["codec"])).eval()
    models = []
    for part in ("coarse", "c2f"):
        model = MaskedTransformer(TransformerConfig(**spec[part])).eval()
        with torch.no_grad():
            k = model.n_codebooks
            model.embedding.codebooks.copy_(torch.stack([q.codebook.weight for q in codec.quantizer.quantizers[:k]]))
        models.append(model)
    return codec, *models


def shipped_models() -> tuple:
    """The shipped model's codec and transformers (float32, CPU), loaded as `Pipeline.from_pretrained()` does."""
    pipe = Pipeline.from_pretrained()
    return pipe.codec, pipe.coarse, pipe.c2f


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> tuple[float, object]:
    synchronize(device)
    t = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - t, out


def matmul_rate(precision: str, device: torch.device, n: int) -> float:
    """FLOP/s of an n x n x n product in the precision's dtype (best of a few; TF32 stays off for fp32)."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    best = min(timed(lambda: a @ b, device)[0] for _ in range(6))
    return 2 * n ** 3 / best


def generation_flops(pipe: Pipeline, frames: int) -> float:
    """Matrix FLOPs of one vamp's generation: every coarse window's passes and the coarse-to-fine chunks' passes."""
    coarse = sum(core.transformer_flops(pipe.coarse.config, min(frames - s, pipe.coarse_window))["total"]
                 for s in window_starts(frames, pipe.coarse_window, pipe.window_overlap))
    chunks = math.ceil(frames / pipe.c2f_chunk)
    c2f = core.transformer_flops(pipe.c2f.config, pipe.c2f_chunk, B=chunks)["total"]
    return coarse, c2f


def bench_mode(models, spec, args, precision: str, mode: str, wav, references: dict) -> dict:
    device = torch.device(args.device)
    codec, coarse, c2f = (copy.deepcopy(m) for m in models)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    pipe = Pipeline(codec, coarse, c2f, device=device, precision=precision, capture=mode, **spec["pipeline"])
    sampling, c2f_sampling = SamplingConfig(steps=args.steps), SamplingConfig(steps=args.c2f_steps)
    vamp = lambda: pipe.vamp(wav, core.INPUT_SR, prompt=PROMPT, sampling=sampling, c2f_sampling=c2f_sampling, seed=0)
    first_s, result = timed(vamp, device)
    stages = {name: math.inf for name in ("encode", "coarse", "c2f", "decode", "total")}
    for _ in range(args.reps):
        t_encode, prepared = timed(lambda: pipe.prepare(wav, core.INPUT_SR), device)
        mask = PROMPT.build(prepared.codes, pipe.frame_rate).to(device)
        t_coarse, _ = timed(lambda: pipe.generate(prepared.codes, mask, sampling, c2f_sampling, seed=0, coarse_only=True), device)
        t_generate, out = timed(lambda: pipe.generate(prepared.codes, mask, sampling, c2f_sampling, seed=0), device)
        t_decode, _ = timed(lambda: pipe.decode(out, prepared.n_samples), device)
        t_total, result = timed(vamp, device)
        for name, t in (("encode", t_encode), ("coarse", t_coarse), ("c2f", t_generate - t_coarse),
                        ("decode", t_decode), ("total", t_total)):
            stages[name] = min(stages[name], t)
    n = args.variations
    run_variations = lambda: pipe.variations(wav, core.INPUT_SR, n, prompt=PROMPT, sampling=sampling,
                                             c2f_sampling=c2f_sampling, seed=0)
    run_variations()  # the batch's shapes are compiled or recorded here
    variations_s, _ = timed(run_variations, device)
    frames = result.codes.shape[-1]
    coarse_flops, c2f_flops = generation_flops(pipe, frames)
    res = {"precision": precision, "mode": mode, "first_s": first_s, "warm": stages, "frames": frames,
           "generation_s": stages["coarse"] + stages["c2f"], "flops": {"coarse": coarse_flops, "c2f": c2f_flops},
           "variations": {"n": n, "s": variations_s, "per_s": n / variations_s},
           "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
           "codes": result.codes}
    for name, codes in references.items():  # the eager sampler's tokens, and the uncaptured static pass's
        res[f"tokens_equal_{name}"] = float((result.codes == codes).float().mean())
    return res


def run(args) -> dict:
    spec = core.QUICK if args.quick else core.FULL
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: CUDA is not available here (use --device cpu, or --quick)")
    models = shipped_models() if args.models == "shipped" and not args.quick else build_models(spec)
    wav = core.synthetic_input(args.seconds)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "models": "quick" if args.quick else args.models,
           "torch": torch.__version__, "seconds": args.seconds, "steps": args.steps, "c2f_steps": args.c2f_steps,
           "runs": []}
    for precision in args.precisions:
        rate = matmul_rate(precision, device, 256 if args.quick else 8192 if device.type == "cuda" else 2048)
        references = {}
        for mode in args.modes:
            if mode == "graph" and device.type != "cuda":
                args.log("[bench_gpu] graph: CUDA graphs need a CUDA device, skipped")
                continue
            args.log(f"[bench_gpu] {precision} {mode} ...")
            res = bench_mode(models, spec, args, precision, mode, wav, references)
            if mode in ("off", "static"):
                references[mode] = res["codes"]
            res["matmul_flops"] = rate
            res["floor_s"] = (res["flops"]["coarse"] * args.steps + res["flops"]["c2f"] * args.c2f_steps) / rate
            res["ratio"] = res["generation_s"] / res["floor_s"]
            res.pop("codes")
            out["runs"].append(res)
            args.log(f"[bench_gpu]   warm vamp {res['warm']['total']:.3f} s, generation {res['generation_s']:.3f} s "
                     f"= {res['ratio']:.1f} x floor, first call {res['first_s']:.2f} s")
    return out


def markdown(res: dict) -> str:
    models = {"full": "full-size architecture, random weights", "shipped": "the shipped model",
              "quick": "tiny random models"}[res.get("models", "full")]
    lines = [f"{res['device']}, torch {res['torch']}, {models}; {res['seconds']:g} s of 48 kHz stereo, {res['steps']} coarse + "
             f"{res['c2f_steps']} coarse-to-fine steps; warm times are the best of the repetitions.", "",
             "| precision | sampler | first call s | encode s | coarse s | c2f s | decode s | whole vamp s | "
             "tokens = eager | tokens = static | variations/s | peak GB | floor s | generation / floor |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        w = r["warm"]
        equal = {name: f"{r['tokens_equal_' + name]:.4f}" if "tokens_equal_" + name in r else "-" for name in ("off", "static")}
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "-"
        lines.append(f"| {r['precision']} | {r['mode']} | {r['first_s']:.2f} | {w['encode']:.3f} | {w['coarse']:.3f} | "
                     f"{w['c2f']:.3f} | {w['decode']:.3f} | {w['total']:.3f} | {equal['off']} | {equal['static']} | "
                     f"{r['variations']['per_s']:.2f} ({r['variations']['n']} in {r['variations']['s']:.2f} s) | "
                     f"{peak} | {r['floor_s']:.4f} | {r['ratio']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", choices=("full", "shipped"), default="full",
                    help="full: the official full-size architecture with random weights; shipped: the package's model")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--modes", default="off,graph,compile", help="sampler modes, the first one 'off' (the reference)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=36)
    ap.add_argument("--c2f-steps", type=int, default=2)
    ap.add_argument("--variations", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--output", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="tiny models on the CPU, for tests")
    ap.add_argument("--silent", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.device, args.seconds, args.steps, args.reps, args.variations = "cpu", 1.0, 4, 1, 2
        if args.modes == ap.get_default("modes"):
            args.modes = "off,static"
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.modes = [m for m in args.modes.split(",") if m]
    if args.modes[0] != "off":
        ap.error("--modes must start with off (the eager sampler every other mode is compared with)")
    args.log = (lambda *a: None) if args.silent else (lambda *a: print(*a, file=sys.stderr, flush=True))
    res = run(args)
    report = markdown(res)
    if args.json:
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(res, indent=1))
    if args.output:
        with atomic_path(args.output) as tmp:
            Path(tmp).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
