#!/usr/bin/env python
"""Peak memory of a full-size vamp per stage and precision (issue 17), one command:

    python benchmarks/bench_memory.py [--precisions fp32,bf16,int8] [--formats official,ours] [--seconds 10]
                                      [--steps 2] [--quick] [--output report.md] [--json raw.json]

A child process builds the official architecture with random weights and writes it in the official `.pth`
container (bench_core's writer, LoRA factors included); a second child loads it and writes it again in our
safetensors format. Then, for every format and precision, a FRESH process loads the folder with
`Pipeline.load(precision=...)` and vamps `--seconds` of 48 kHz stereo, recording after each stage (imports, load,
preprocess, encode, coarse, coarse-to-fine, decode) the stage's own peak RSS (the kernel's VmHWM, reset between
stages through /proc/self/clear_refs), the RSS the stage leaves behind, and the running peak of the process.
Memory does not depend on the number of sampling steps (every step runs the same forward), so `--steps 2`
keeps the run short; it does not depend on the machine's load either. `--quick`: tiny models, seconds."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent / "src"))

import bench_core as core  # noqa: E402  (the official-format writer and the synthetic input)
from vampnet import Pipeline, SamplingConfig  # noqa: E402

PROMPT = core.PROMPT
STAGES = ("imports", "load", "preprocess", "encode", "coarse", "c2f", "decode")


class MemoryMarks:
    """Stage boundaries -> (stage peak, RSS left behind, running process peak), all in GB."""

    def __init__(self):
        self.marks: dict[str, dict] = {}
        self.running = 0.0
        self.can_reset = core.reset_peak()

    def mark(self, stage: str) -> None:
        peak = core.peak_rss_gb()
        self.running = max(self.running, peak)
        rss = (core._status_kb("VmRSS") or 0) / 2**20
        self.marks[stage] = {"peak_gb": peak, "rss_gb": rss, "running_peak_gb": self.running}
        if self.can_reset:
            core.reset_peak()


def weight_gb(*models) -> float:
    """Bytes of the weights the models hold: parameters, buffers and int8 layers' packed weights."""
    total = 0
    for m in models:
        if m is None:
            continue
        total += sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
        for layer in m.modules():
            packed = getattr(layer, "_packed", None)
            if packed is not None:
                w, b = torch.ops.quantized.linear_unpack(packed)
                total += w.numel() + 8 * w.shape[0] + (0 if b is None else 4 * b.numel())
    return total / 2**30


def job(spec: dict) -> dict:
    """One fresh process: load one folder in one precision, vamp, memory per stage."""
    marks = MemoryMarks()
    marks.mark("imports")
    t0 = time.perf_counter()
    pipe = Pipeline.load(Path(spec["folder"]), precision=spec["precision"], **spec["pipeline"])
    marks.mark("load")
    load_s = time.perf_counter() - t0
    weights = weight_gb(pipe.codec, pipe.coarse, pipe.c2f)

    def progress(stage, done, total):
        if stage == "encode":
            marks.mark("preprocess" if done == 0 else "encode")
        elif stage in ("coarse", "coarse-to-fine") and done == total:
            marks.mark("coarse" if stage == "coarse" else "c2f")

    t0 = time.perf_counter()
    result = pipe.vamp(core.synthetic_input(spec["seconds"]), core.INPUT_SR, prompt=PROMPT, seed=0, progress=progress,
                       sampling=SamplingConfig(steps=spec["steps"]), c2f_sampling=SamplingConfig(steps=spec["c2f_steps"]))
    marks.mark("decode")
    return {"precision": spec["precision"], "format": spec["format"], "load_s": load_s,
            "vamp_s": time.perf_counter() - t0, "weights_gb": weights, "stages": marks.marks,
            "peak_gb": marks.running, "per_stage_reset": marks.can_reset, "codes_sum": int(result.codes.sum())}


def write_ours(src: Path, dst: Path) -> None:
    """Our safetensors format from the official folder (fp32, as `vampnet convert` would write it)."""
    pipe = Pipeline.load(src)
    pipe.codec.save(dst / "codec.safetensors")
    pipe.coarse.save(dst / "coarse.safetensors")
    pipe.c2f.save(dst / "c2f.safetensors")


def run_child(args: list[str]) -> str:
    done = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed: {args[:2]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def markdown(res: dict) -> str:
    m = res["machine"]
    out = [f"### Peak memory per stage ({res['mode']}: {res['seconds']:g} s of 48 kHz stereo, {res['steps']} coarse + "
           f"{res['c2f_steps']} coarse-to-fine steps; torch {m['torch']}, {m['torch_threads']} threads)", "",
           "Each row is a fresh process. Per stage: the stage's own peak RSS (GB), and in brackets the RSS it leaves "
           "behind; last columns: the whole process's peak (the largest stage peak) and the bytes of the loaded weights.", "",
           "| format | precision | " + " | ".join(STAGES) + " | **process peak** | weights |",
           "|---|---|" + "---:|" * len(STAGES) + "---:|---:|"]
    for r in res["runs"]:
        cells = [f"{r['stages'][s]['peak_gb']:.2f} ({r['stages'][s]['rss_gb']:.2f})" if s in r["stages"] else "-"
                 for s in STAGES]
        out.append(f"| {r['format']} | {r['precision']} | " + " | ".join(cells) +
                   f" | **{r['peak_gb']:.2f}** | {r['weights_gb']:.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default="fp32,bf16,int8")
    p.add_argument("--formats", default="official,ours", help="official (.pth) and/or ours (.safetensors)")
    p.add_argument("--seconds", type=float, default=None, help="audio length (default 10; --quick 1)")
    p.add_argument("--steps", type=int, default=2, help="coarse steps (memory does not depend on them)")
    p.add_argument("--c2f-steps", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny models: checks the script runs")
    p.add_argument("--output", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--silent", action="store_true")
    p.add_argument("--keep", type=Path, help="folder for the model files, kept and reused between runs")
    p.add_argument("--_job", dest="job", help=argparse.SUPPRESS)
    p.add_argument("--_write-ours", dest="write_ours", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        spec = json.loads(args.job)
        if spec["quick"]:
            torch.set_num_threads(1)
        print(json.dumps(job(spec)))
        return 0
    if args.write_ours:
        write_ours(*args.write_ours)
        return 0

    spec = core.QUICK if args.quick else core.FULL
    seconds = args.seconds if args.seconds is not None else spec["seconds"]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.silent else (lambda *a: None)
    res = {"mode": "quick" if args.quick else "full size", "seconds": seconds, "steps": args.steps,
           "c2f_steps": args.c2f_steps, "machine": core.machine_info(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="vampnet-mem-") as tmp:
        root = args.keep or Path(tmp)
        official, ours = root / "official", root / "ours"
        official.mkdir(parents=True, exist_ok=True)
        ours.mkdir(exist_ok=True)
        if not (official / "c2f.pth").is_file():
            log(f"[bench] writing official-format checkpoints to {official} ...")
            child = {**{k: spec[k] for k in ("codec", "coarse", "c2f", "probe_frames")}, "threads": torch.get_num_threads()}
            subprocess.run([sys.executable, str(HERE / "bench_core.py"), "--_write-official", str(official),
                            "--_spec", json.dumps(child)], check=True)
        if "ours" in formats and not (ours / "c2f.safetensors").is_file():
            log("[bench] writing our safetensors format ...")
            run_child(["--_write-ours", str(official), str(ours)])
        for fmt in formats:
            for precision in precisions:
                log(f"[bench] {fmt} {precision} ...")
                job_spec = {"folder": str(official if fmt == "official" else ours), "format": fmt, "precision": precision,
                            "seconds": seconds, "steps": args.steps, "c2f_steps": args.c2f_steps,
                            "pipeline": spec["pipeline"], "quick": args.quick}
                res["runs"].append(json.loads(run_child(["--_job", json.dumps(job_spec)])))
                if args.json:  # after every run: a long run stopped early keeps what it measured
                    args.json.write_text(json.dumps(res, indent=1))
    text = markdown(res)
    if not args.silent:
        print(text)
    if args.output:
        args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
