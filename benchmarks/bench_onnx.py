#!/usr/bin/env python
"""onnxruntime as a CPU backend of the transformers, side by side with torch in one process (issue 17): the
forward of a MaskedTransformer exported to ONNX for one static window, run by onnxruntime in fp32 and dynamically
quantised to int8, against torch fp32 and the int8 mode (`vampnet.precision.Int8Linear`, fbgemm).

    nice -n 10 python benchmarks/bench_onnx.py --models 8x1280/20,2x192/3 --seconds 10 --reps 4 \\
        --output onnx.md --json onnx.json [--threads 1]
    python benchmarks/bench_onnx.py --quick --silent --json raw.json      # a tiny model in seconds (the test)

Models are the coarse architecture (4 codebooks of 1024 codes, 8-d latents) with random weights, given as
LAYERSxWIDTH/HEADS: 8x1280/20 is the official width at a shorter depth, 2x192/3 the shipped v2 model's size. The
exported call is `model(codes)`, codes (1, 4, T) with half the tokens MASK -> logits (1, 4, T, 1024) of every frame:
the pass a generation step makes when every frame still has a token to choose (later steps classify fewer frames).
The relative-position bias of the window is a constant of the graph, so one export serves one window length.

Variants, timed in interleaved rounds (the first round warms up; best of `reps` kept), in wall seconds and in CPU
seconds of the process (on a shared machine, `--threads 1` CPU seconds are the comparable measure):
  torch-fp32       the reference;
  torch-int8       the `--precision int8` mode (int8 weights per output row, activations per tensor, 7 bits
                   where the CPU has no VNNI);
  ort-fp32         the export, onnxruntime with all graph optimisations, intra-op threads = torch's;
  ort-int8         `onnxruntime.quantization.quantize_dynamic` of the export: MatMul/Gemm with constant weights
                   (the same linear layers torch-int8 quantises), int8 weights per output channel, uint8
                   activations per tensor;
  ort-int8-7bit    the same with 7-bit weights (`reduce_range`), onnxruntime's advice for CPUs without VNNI.
Quality: each variant's logits against torch-fp32 (relative error of the whole tensor, top-1 agreement) and its
top-1 agreement with torch-int8."""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import MaskedTransformer, TransformerConfig
from vampnet import precision as P
from vampnet.serialization import atomic_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (probe codes, FLOP count, machine description)

try:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
except ImportError:  # reported by main(): this benchmark is about onnxruntime
    ort = None

VARIANTS = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8", "ort-int8-7bit")
HOP, SR = 768, 44100
QUICK = {"models": "2x32/2", "frames": 24, "reps": 2}
OPSET = 17


def parse_models(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)/(\d+)\s*", part)
        if not m or int(m[2]) % int(m[3]):
            raise argparse.ArgumentTypeError(f"model sizes are LAYERSxWIDTH/HEADS with WIDTH divisible by HEADS, "
                                             f"got {part!r}")
        sizes.append(tuple(int(g) for g in m.groups()))
    return sizes


def model_config(layers: int, width: int, heads: int, quick: bool) -> TransformerConfig:
    base = core.QUICK["coarse"] if quick else core.FULL["coarse"]
    return TransformerConfig(**{**base, "n_layers": layers, "embedding_dim": width, "n_heads": heads})


def export(model: MaskedTransformer, codes: torch.Tensor, path: Path) -> None:
    """ONNX of `model(codes)` for this shape only. The TorchScript exporter (the default one needs onnxscript);
    its tracer warns that the shape checks become constants, which a static window wants."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (codes,), str(path), dynamo=False, input_names=["codes"], output_names=["logits"],
                          opset_version=OPSET)


def quantize(src: Path, dst: Path, reduce_range: bool) -> None:
    root = logging.getLogger()  # quantize_dynamic advises pre-processing through the root logger on every call
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def ort_forward(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda codes: torch.from_numpy(session.run(["logits"], {"codes": codes.numpy()})[0])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU: this process, all threads). With one thread the CPU seconds are the
    work done whatever share of the CPU the process got; with more they include threads spinning at barriers."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_size(layers, width, heads, frames, reps, quick, workdir: Path, log) -> dict:
    cfg = model_config(layers, width, heads, quick)
    torch.manual_seed(0)
    model = MaskedTransformer(cfg).eval()
    model.fold_for_inference()  # the classifier as every precision mode runs it (same weight, one product)
    codes = core.probe_codes(cfg, frames, seed=2)
    setup, forwards = {}, {"torch-fp32": model}
    start = time.perf_counter()
    forwards["torch-int8"] = P.apply_to_transformer(copy.deepcopy(model), "int8")
    setup["torch_int8_s"] = time.perf_counter() - start
    paths = {v: workdir / f"{layers}x{width}_{v}.onnx" for v in VARIANTS[2:]}
    log(f"{layers}x{width}/{heads}: exporting ({frames} frames)")
    setup["export_s"] = timed(lambda: export(model, codes, paths["ort-fp32"]))
    onnx.checker.check_model(str(paths["ort-fp32"]))
    setup["quantize_s"] = timed(lambda: quantize(paths["ort-fp32"], paths["ort-int8"], reduce_range=False))
    quantize(paths["ort-fp32"], paths["ort-int8-7bit"], reduce_range=True)
    for v, path in paths.items():
        start = time.perf_counter()
        forwards[v] = ort_forward(path)
        setup[f"{v}_session_s"] = time.perf_counter() - start
        setup[f"{v}_mb"] = path.stat().st_size / 1e6
    times, cpu = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for r in range(reps + 1):  # rounds interleave the variants, so load changes fall on all alike
            for v in VARIANTS:
                wall, used = timed_cpu(lambda: forwards[v](codes))
                times[v].append(wall)
                cpu[v].append(used)
            log(f"  round {r}: " + ", ".join(f"{v} {times[v][-1]:.3f} s ({cpu[v][-1]:.3f} CPU s)" for v in VARIANTS))
        logits = {v: forwards[v](codes).float() for v in VARIANTS}
    ref, top_ref, top_int8 = logits["torch-fp32"], logits["torch-fp32"].argmax(-1), logits["torch-int8"].argmax(-1)
    flops = core.transformer_flops(cfg, frames)["total"]
    rows = []
    for v in VARIANTS:
        best = min(times[v][1:])
        top = logits[v].argmax(-1)
        rows.append({"variant": v, "forward_s": best, "times_s": times[v], "cpu_s": min(cpu[v][1:]),
                     "cpu_times_s": cpu[v], "gflops": flops / best / 1e9,
                     "logits_rel": float((logits[v] - ref).norm() / ref.norm()),
                     "top1": float((top == top_ref).float().mean()),
                     "top1_vs_torch_int8": float((top == top_int8).float().mean())})
    best = {r["variant"]: r["forward_s"] for r in rows}
    best_cpu = {r["variant"]: r["cpu_s"] for r in rows}
    for r in rows:
        r["speedup_vs_fp32"] = best["torch-fp32"] / r["forward_s"]
        r["speedup_vs_torch_int8"] = best["torch-int8"] / r["forward_s"]
        r["cpu_speedup_vs_fp32"] = best_cpu["torch-fp32"] / r["cpu_s"]
        r["cpu_speedup_vs_torch_int8"] = best_cpu["torch-int8"] / r["cpu_s"]
    setup["peak_rss_gb"] = core.peak_rss_gb()  # process peak so far: export and quantisation included
    for path in paths.values():
        path.unlink()
    return {"layers": layers, "width": width, "heads": heads, "frames": frames, "gflop": flops / 1e9,
            "setup": setup, "rows": rows}


def markdown(res: dict) -> str:
    m = res["machine"]
    no_vnni = "no VNNI" if not res["vnni"] else "VNNI"
    lines = [f"#### onnxruntime vs torch on CPU, one process ({m['cpu']}, {m['logical_cpus']} logical CPUs, SIMD: "
             f"{m['simd']}: {no_vnni}; torch {m['torch']} with {m['torch_threads']} threads, onnxruntime "
             f"{res['versions']['onnxruntime']}, onnx {res['versions']['onnx']}, opset {OPSET}; load average "
             f"{m['loadavg_start'][0]:.1f} -> {res['loadavg_end']:.1f}; best of {res['reps']} interleaved rounds "
             f"after a warm-up)", ""]
    for s in res["sizes"]:
        st = s["setup"]
        lines += [f"**{s['layers']} layers x {s['width']} / {s['heads']} heads, {s['frames']} frames** "
                  f"({s['gflop']:.1f} GFLOP per forward; export {st['export_s']:.1f} s, int8 quantisation "
                  f"{st['quantize_s']:.1f} s, session start fp32 {st['ort-fp32_session_s']:.1f} s / int8 "
                  f"{st['ort-int8_session_s']:.1f} s; ONNX {st['ort-fp32_mb']:.0f} MB fp32, "
                  f"{st['ort-int8_mb']:.0f} MB int8; process peak RSS {st['peak_rss_gb']:.1f} GB)", "",
                  "| variant | forward (s) | vs torch fp32 | vs torch int8 | forward (CPU s) | vs torch fp32 | "
                  "vs torch int8 | logits rel. err | top-1 agree (fp32) | top-1 agree (torch int8) |",
                  "|---|" + "---:|" * 9]
        for r in s["rows"]:
            lines.append(f"| {r['variant']} | {r['forward_s']:.3f} | {r['speedup_vs_fp32']:.2f}x | "
                         f"{r['speedup_vs_torch_int8']:.2f}x | {r['cpu_s']:.3f} | {r['cpu_speedup_vs_fp32']:.2f}x | "
                         f"{r['cpu_speedup_vs_torch_int8']:.2f}x | {r['logits_rel']:.1e} | "
                         f"{r['top1']:.3f} | {r['top1_vs_torch_int8']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=parse_models, default=parse_models("8x1280/20,2x192/3"),
                   help="LAYERSxWIDTH/HEADS, comma-separated (default 8x1280/20,2x192/3)")
    p.add_argument("--seconds", type=float, default=10.0, help="window length; frames = ceil(seconds * 44100 / 768)")
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--threads", type=int, help="torch's threads and onnxruntime's intra-op threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="a tiny model (vocabulary 16) on 24 frames, for the test")
    p.add_argument("--silent", action="store_true")
    p.add_argument("--output", type=Path, help="markdown report")
    p.add_argument("--json", type=Path, help="raw results")
    args = p.parse_args(argv)
    if ort is None:
        p.error("this benchmark needs onnxruntime and onnx: pip install onnxruntime onnx")
    if args.reps < 1 or (args.threads is not None and args.threads < 1):
        p.error("--reps and --threads must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = -(-int(round(args.seconds * SR)) // HOP)
    models, reps = args.models, args.reps
    if args.quick:
        models, frames, reps = parse_models(QUICK["models"]), QUICK["frames"], QUICK["reps"]
    log = (lambda *_: None) if args.silent else (lambda msg: print(msg, file=sys.stderr, flush=True))
    res = {"machine": core.machine_info(), "vnni": P.cpu_has_vnni(), "reps": reps, "quick": args.quick,
           "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__}}
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        res["sizes"] = [bench_size(*size, frames, reps, args.quick, Path(tmp), log) for size in models]
    res["loadavg_end"] = os.getloadavg()[0]
    text = markdown(res)
    if not args.silent:
        print(text)
    if args.output:
        write_atomic(args.output, text + "\n")
    if args.json:
        write_atomic(args.json, json.dumps(res, indent=1) + "\n")
    return res


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
