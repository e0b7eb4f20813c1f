"""The onnxruntime benchmark runs on a tiny model: its ONNX export reproduces the torch forward, and every variant
is timed and compared with torch fp32."""
from __future__ import annotations

import argparse
import json
import sys

import pytest

from conftest import ROOT

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_onnx  # noqa: E402  (needs the path above)


def test_quick_run_exports_the_forward_exactly_and_times_every_variant(tmp_path):
    raw, report = tmp_path / "raw.json", tmp_path / "report.md"
    bench_onnx.main(["--quick", "--silent", "--json", str(raw), "--output", str(report)])
    res = json.loads(raw.read_text())
    (size,) = res["sizes"]
    assert (size["layers"], size["width"], size["heads"], size["frames"]) == (2, 32, 2, 24)
    rows = {r["variant"]: r for r in size["rows"]}
    assert list(rows) == list(bench_onnx.VARIANTS)
    # the export round-trips: onnxruntime's fp32 logits are torch's up to float rounding
    assert rows["ort-fp32"]["logits_rel"] < 1e-4 and rows["ort-fp32"]["top1"] == 1.0
    assert rows["torch-fp32"]["logits_rel"] == 0.0 and rows["torch-fp32"]["speedup_vs_fp32"] == 1.0
    # the int8 variants quantise something (an error above float rounding), and 7-bit weights stay close to fp32
    # on every CPU (8-bit ones saturate without VNNI, so their error depends on the machine)
    assert 1e-3 < rows["torch-int8"]["logits_rel"] < 0.1 and 1e-3 < rows["ort-int8-7bit"]["logits_rel"] < 0.1
    assert rows["ort-int8"]["logits_rel"] > 1e-3 and rows["ort-int8-7bit"]["top1"] > 0.8
    for r in rows.values():
        assert len(r["times_s"]) == 3 and r["forward_s"] == min(r["times_s"][1:]) > 0
        assert r["cpu_s"] == min(r["cpu_times_s"][1:])
    assert "| ort-int8-7bit |" in report.read_text()


@pytest.mark.parametrize("text", ["8x1280", "8x1280/3", "ax2/1"])
def test_model_sizes_are_checked(text):
    with pytest.raises(argparse.ArgumentTypeError, match="LAYERSxWIDTH/HEADS"):
        bench_onnx.parse_models(text)


def test_parsed_sizes():
    assert bench_onnx.parse_models("8x1280/20, 2x192/3") == [(8, 1280, 20), (2, 192, 3)]
