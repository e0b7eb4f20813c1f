#!/usr/bin/env python
"""Start-up cost of a `vampnet` command: process start, the imports the command needs and argument parsing, without
any model work (`python -m vampnet.cli vamp --help`), for one or more source trees side by side:

    python benchmarks/bench_cli_start.py [--reps 6] [--command vamp] [LABEL=SRC_DIR ...]

Each tree is run in a fresh process per rep, trees alternating. Reported: the child's CPU seconds (user + system,
which other load on a shared machine barely changes; median and minimum) and its wall seconds (minimum). With no
tree given it measures this checkout's `src`. To compare with an older commit:
`git worktree add /tmp/old COMMIT` and pass `before=/tmp/old/src now=src`."""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_seconds(cmd: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of `cmd`."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="*", help="LABEL=SRC_DIR (default: now=<this checkout>/src)")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--command", default="vamp", help="the vampnet command whose start-up is timed")
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.trees) if args.trees else {"now": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "vampnet.cli", args.command, "--help"]
    runs = {label: [] for label in trees}
    for _ in range(args.reps):
        for label, src in trees.items():
            runs[label].append(child_seconds(cmd, {**os.environ, "PYTHONPATH": src}))
    print(f"`python -m vampnet.cli {args.command} --help`, {args.reps} runs per tree, alternating; load average "
          f"{os.getloadavg()[0]:.2f} at the end\n")
    print("| tree | CPU s (median) | CPU s (min) | wall s (min) |\n|---|---:|---:|---:|")
    for label, rs in runs.items():
        cpu = [c for c, _ in rs]
        print(f"| {label} | {statistics.median(cpu):.2f} | {min(cpu):.2f} | {min(w for _, w in rs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
