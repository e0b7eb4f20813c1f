#!/usr/bin/env python
"""A busy CPU: the shipped model's vamp idle and beside a competing program, with spinning and with sleeping
OpenMP threads, side by side in one run.

    python benchmarks/bench_threads.py [--seconds 10] [--reps 5] [--rounds 3] [--quick] [--output FILE] [--json FILE]

Each configuration runs in a child process of its own, because OpenMP reads its wait policy once, when torch
loads it:
  - "spinning (before)": torch imported before vampnet, so the runtime keeps its default (spin, then sleep): what
    every vampnet command did before `vampnet.threads`;
  - "vampnet": `import vampnet` first, as every entry point does: idle threads sleep (OMP_WAIT_POLICY=PASSIVE);
  - "vampnet --threads 1": the same with one thread.
Each is timed idle and beside a competitor: another torch program with two threads and torch's defaults running
small matrix products (the load of a second job, a DAW's plug-ins, a training run), started before the vamp and
stopped after it. Idle runs are repeated `--rounds` times, the configurations taking turns. Reported: the median
seconds of the timed vamps (`--reps` per run, after one warm-up vamp), the loaded/idle ratio of
the medians and of the slowest loaded vamp (spinning threads are bimodal: a vamp beside them runs either ~2x or
~25x slower, depending on how the two pools' spinning lines up),
and whether each configuration's tokens equal the idle "vampnet" ones (threads change float rounding only)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_core as core  # noqa: E402  (machine info, report)
CLIP = ROOT / "examples" / "xblast-song1-excerpt.ogg"

CONFIGS = [  # name, torch imported before vampnet, threads
    ("spinning (before)", True, None),
    ("vampnet", False, None),
    ("vampnet --threads 1", False, 1),
]

# the child: one configuration, warm-up then timed vamps; prints one JSON line
CHILD = r"""
import json, sys, time, hashlib
spec = json.loads(sys.argv[1])
if spec["torch_first"]:
    import torch
import vampnet, torch
if spec["threads"]:
    vampnet.set_threads(spec["threads"])
pipe = vampnet.Pipeline.from_pretrained()
wav, sr = vampnet.audio.load(spec["clip"])
wav = wav[..., : int(sr * spec["seconds"])]
pipe.vamp(wav, sr, seed=0)
times = []
for _ in range(spec["reps"]):
    start = time.perf_counter()
    result = pipe.vamp(wav, sr, seed=0)
    times.append(time.perf_counter() - start)
codes = result.codes.numpy().tobytes()
print(json.dumps({"times": times, "threads": torch.get_num_threads(), "report": vampnet.threads.thread_report(),
                  "codes_sha": hashlib.sha256(codes).hexdigest()[:16]}))
"""

# the competitor: a torch program with default settings (spinning threads) doing small products until killed
COMPETITOR = r"""
import torch
torch.set_num_threads(2)
a, b = torch.randn(64, 256), torch.randn(256, 256)
while True:
    for _ in range(100):
        a @ b
"""


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                          "VAMPNET_THREADS", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_config(torch_first: bool, threads, seconds: float, reps: int, loaded: bool) -> dict:
    env = clean_env()
    competitor = None
    if loaded:
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
        time.sleep(2.0)  # let it start spinning
    try:
        spec = {"torch_first": torch_first, "threads": threads, "clip": str(CLIP), "seconds": seconds, "reps": reps}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True,
                              timeout=3600)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["median_s"] = statistics.median(out["times"])
    out["worst_s"] = max(out["times"])
    return out


def run(args) -> dict:
    seconds, reps = (1.0, 1) if args.quick else (args.seconds, args.reps)
    res = {"machine": core.machine_info(), "seconds": seconds, "reps": reps, "quick": args.quick, "rows": []}
    configs = CONFIGS[:2] if args.quick else CONFIGS
    rows = {name: {"name": name} for name, _, _ in configs}
    # idle runs alternate between the configurations, round after round, so a drift of the machine's speed
    # (other tenants, clock) spreads over all of them instead of favouring whichever ran first
    for state, rounds in (("idle", 1 if args.quick else args.rounds), ("loaded", 1)):
        for _ in range(rounds):
            for name, torch_first, threads in configs:
                part = run_config(torch_first, threads, seconds, reps, loaded=state == "loaded")
                if state in rows[name]:
                    part["times"] = rows[name][state]["times"] + part["times"]
                    part["median_s"], part["worst_s"] = statistics.median(part["times"]), max(part["times"])
                rows[name][state] = part
                if not args.silent:
                    print(f"{name:>22} {state:>6}: {part['median_s']:.2f} s  {part['report']}", flush=True)
    for row in rows.values():
        row["loaded_over_idle"] = row["loaded"]["median_s"] / row["idle"]["median_s"]
        row["worst_loaded_over_idle"] = row["loaded"]["worst_s"] / row["idle"]["median_s"]
        res["rows"].append(row)
    reference = next(r for r in res["rows"] if r["name"] == "vampnet")
    base_idle = res["rows"][0]["idle"]["median_s"]
    for row in res["rows"]:
        row["idle_vs_before"] = row["idle"]["median_s"] / base_idle
        row["same_tokens"] = {state: row[state]["codes_sha"] == reference["idle"]["codes_sha"] for state in ("idle", "loaded")}
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; SIMD {m['simd']}; torch {m['torch']}",
             f"- the shipped model's vamp of {res['seconds']:g} s of the example clip, median of {res['reps']} per run after a "
             "warm-up; loaded = beside a 2-thread torch program running small products", "",
             "| configuration | idle (s) | loaded (s) | loaded / idle | slowest loaded / idle | idle vs before | "
             "tokens = vampnet idle (idle, loaded) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in res["rows"]:
        same = ", ".join("yes" if row["same_tokens"][s] else "no" for s in ("idle", "loaded"))
        lines.append(f"| {row['name']} | {row['idle']['median_s']:.2f} | {row['loaded']['median_s']:.2f} | "
                     f"{row['loaded_over_idle']:.2f}x | {row['worst_loaded_over_idle']:.2f}x | {row['idle_vs_before']:.2f}x | "
                     f"{same} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="idle runs of each configuration, interleaved")
    parser.add_argument("--quick", action="store_true", help="1 s clip, one timed vamp, no one-thread row (for tests)")
    parser.add_argument("--silent", action="store_true")
    parser.add_argument("--output", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    res = run(args)
    core.report(args, res, markdown(res))


if __name__ == "__main__":
    main()
