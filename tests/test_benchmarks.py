"""The benchmark scripts run end to end (on tiny settings) and report what BENCHMARKS.md says they report."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

BENCH = ROOT / "benchmarks"


def run_quick(script: str, tmp_path):
    """Run a benchmark script with --quick; returns its JSON results and the path of its markdown report."""
    raw, report = tmp_path / "raw.json", tmp_path / "report.md"
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--silent", "--json", str(raw),
                           "--output", str(report)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(raw.read_text()), report


@pytest.mark.slow
def test_speed_benchmark_reports_every_part_for_every_precision(tmp_path):
    res, report = run_quick("bench_speed.py", tmp_path)
    assert [r["precision"] for r in res["full"]] == ["fp32", "bf16", "int8"]
    for r in res["full"]:
        stages = r["stages"]
        assert {"encode", "coarse", "c2f", "decode", "total"} <= set(stages)
        assert stages["total"][0] >= stages["coarse"][0] > 0 and r["forward"]["gflops"] > 0 and r["matmul"]["gflops"] > 0
    assert [(r["precision"], r["draw"]) for r in res["shipped"]] == [
        ("fp32", "fast"), ("bf16", "fast"), ("int8", "fast"), ("fp32", "original")]
    for r in res["shipped"]:
        assert list(r["lengths"]) == ["0.5", "1.0"] and all(v["rtf"] > 0 for v in r["lengths"].values())
    q = res["quality"]["modes"]
    assert q["fp32"]["coarse"]["logits_rel_err"] == 0 and q["fp32"]["c2f"]["top1_agree"] == 1
    assert 0 < q["bf16"]["coarse"]["logits_rel_err"] < 0.05 and q["int8"]["c2f"]["top1_agree"] > 0.8
    text = report.read_text()
    assert "Full-size official architecture" in text and "Shipped model" in text and "Quality of the fast modes" in text


@pytest.mark.slow
def test_memory_benchmark_reports_every_stage_per_format_and_precision(tmp_path):
    res, report = run_quick("bench_memory.py", tmp_path)
    assert [(r["format"], r["precision"]) for r in res["runs"]] == [
        (f, p) for f in ("official", "ours") for p in ("fp32", "bf16", "int8")]
    for r in res["runs"]:
        assert list(r["stages"]) == ["imports", "load", "preprocess", "encode", "coarse", "c2f", "decode"]
        assert r["peak_gb"] == max(s["peak_gb"] for s in r["stages"].values()) and r["weights_gb"] > 0
    sums = {(r["format"], r["precision"]): r["codes_sum"] for r in res["runs"]}
    assert sums["official", "fp32"] == sums["ours", "fp32"]  # the two formats hold the same model
    assert "Peak memory per stage" in report.read_text()


@pytest.mark.slow
def test_core_benchmark_runs_quick(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "bench_core.py"), "--quick", "--silent", "--json",
                           str(tmp_path / "raw.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "raw.json").read_text())
    assert res["roundtrip"]["codec_codes_equal"] and res["roundtrip"]["coarse_max_abs_diff"] == 0
    assert res["output_finite"]


@pytest.mark.slow
def test_small_budget_benchmark_times_both_models_the_command_and_candidates(tmp_path):
    res, report = run_quick("bench_small.py", tmp_path)
    assert list(res["vamp"]) == ["shipped", "v1 (random weights)"]
    assert res["models"]["v1 (random weights)"]["coarse"] == "6 x 256 / 8"  # the architecture configs/small/coarse_v1.yaml names
    for r in res["vamp"].values():
        b = r["best"]
        assert all(b[k] > 0 for k in ("encode", "coarse", "c2f", "decode"))
        assert b["total"] >= b["coarse"] + b["c2f"] and b["total"] == min(r["totals"])
    for r in res["cli"]["models"].values():
        assert r["command"] > r["imports"] > 0 and r["load"] > 0
    kinds = [(r["kind"], r["layers"], r["width"], r["heads"]) for r in res["candidates"]["rows"]]
    assert kinds == [("coarse", 1, 64, 2), ("coarse", 1, 64, 1), ("c2f", 1, 64, 2), ("c2f", 1, 64, 1)]
    assert all(r["s"] > 0 and r["gflop"] > 0 and r["params_m"] > 0 for r in res["candidates"]["rows"])
    text = report.read_text()
    assert "Whole 1 s vamp" in text and "The command as a whole" in text and "Candidate architectures" in text


def test_cli_start_benchmark_times_each_tree(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "bench_cli_start.py"), "--reps", "1", "--command", "info",
                           f"a={ROOT / 'src'}", f"b={ROOT / 'src'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert [r[0].strip() for r in rows] == ["a", "b"]
    assert all(float(cell) > 0 for r in rows for cell in r[1:])


@pytest.mark.slow
def test_gpu_benchmark_compares_each_sampler_with_the_eager_one(tmp_path):
    """On a CPU (--quick): every precision and mode reports its stages, the floor and the tokens against eager;
    the static sampler gives the eager tokens; CUDA graphs are skipped without CUDA."""
    res, report = run_quick("bench_gpu.py", tmp_path)
    assert [(r["precision"], r["mode"]) for r in res["runs"]] == [(p, m) for p in ("fp32", "bf16") for m in ("off", "static")]
    for r in res["runs"]:
        w = r["warm"]
        assert all(w[k] > 0 for k in ("encode", "coarse", "decode", "total")) and r["first_s"] > 0
        assert r["floor_s"] > 0 and r["ratio"] == pytest.approx(r["generation_s"] / r["floor_s"])
        assert r["variations"]["n"] == 2 and r["variations"]["per_s"] > 0
        assert r["flops"]["coarse"] > 0 and r["flops"]["c2f"] > 0
    static = [r for r in res["runs"] if r["mode"] == "static"]
    assert all(r["tokens_equal_off"] == 1.0 for r in static)
    assert "generation / floor" in report.read_text()


@pytest.mark.slow
def test_threads_benchmark_compares_spinning_and_sleeping_threads_idle_and_loaded(tmp_path):
    res, report = run_quick("bench_threads.py", tmp_path)
    rows = {r["name"]: r for r in res["rows"]}
    assert list(rows) == ["spinning (before)", "vampnet"]
    assert "could not choose it" in rows["spinning (before)"]["idle"]["report"]
    assert "PASSIVE (chosen by vampnet)" in rows["vampnet"]["loaded"]["report"]
    for row in rows.values():
        assert row["idle"]["median_s"] > 0 and row["loaded"]["median_s"] > 0
        assert row["loaded_over_idle"] == pytest.approx(row["loaded"]["median_s"] / row["idle"]["median_s"])
        assert row["same_tokens"]["idle"]  # the same thread count gives the same tokens with either wait policy
    assert "| vampnet |" in report.read_text()


def test_train_precision_benchmark_reports_both_precisions_per_model(tmp_path):
    res, report = run_quick("bench_train_precision.py", tmp_path)
    (row,) = res["rows"]
    assert row["fp32"]["steps_per_s"] > 0 and row["bf16"]["steps_per_s"] > 0
    assert row["bf16_speedup"] == pytest.approx(row["fp32"]["s_per_step"] / row["bf16"]["s_per_step"])
    assert isinstance(res["auto_picks_bf16"], bool) and "bf16 speed-up" in report.read_text()
