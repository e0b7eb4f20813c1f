"""The paper's experiments end to end on the tiny reference models, and the scorer on known cases."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import save_model_folder, sine_mix
from vampnet.eval.experiments import EXPERIMENTS, conditions, run
from vampnet.eval.opus import OPUS_MIN_KBPS
from vampnet.eval.scoring import score

SR = 44100
E = 2.5  # excerpt seconds: short so the tiny models run every condition quickly (the paper's 10 s is the default)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval") / "music"
    folder.mkdir()
    x = sine_mix(6.0, SR, seed=1)
    clicks = np.zeros_like(x)
    for t in np.arange(0.25, 6.0, 0.5):  # 120 BPM clicks so the beat tracker finds beats
        i = int(t * SR)
        clicks[i:i + 400] = 0.8 * np.exp(-np.arange(400) / 60.0)
    sf.write(folder / "a.wav", (0.5 * x + clicks).astype(np.float32), SR)
    sf.write(folder / "short.wav", x[: SR * 2].astype(np.float32), SR)  # shorter than an excerpt: never chosen
    return folder


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_writes_every_condition_then_scores_to_csv_markdown_and_png(experiment, tiny_pipeline, data_dir, tmp_path):
    out = tmp_path / experiment
    stats = run(tiny_pipeline, [data_dir], experiment, out, max_excerpts=1, seed=0, excerpt_s=E, models_name="fixtures-a",
               progress=False)
    names = [c.name for c in conditions(experiment, tiny_pipeline)]
    assert stats == {"excerpts": 1, "conditions": len(names), "written": len(names)}
    for name in ["baseline", *names]:
        info = sf.info(out / name / "0000.wav")
        assert info.samplerate == tiny_pipeline.sample_rate and info.duration == pytest.approx(E, abs=1e-3)
    assert run(tiny_pipeline, [data_dir], experiment, out, max_excerpts=1, seed=0, excerpt_s=E, models_name="fixtures-a",
               progress=False)["written"] == 0  # resumed: nothing left to do
    rows = score(out)
    assert [r["condition"] for r in rows] == names
    table = _csv(out / "metrics-all.csv")
    assert [r["condition"] for r in table] == names and all(float(r["mel_mean"]) > 0 for r in table)
    assert (out / f"plot-{experiment}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| condition |" in (out / "results.md").read_text()
    if experiment == "gen-compression":
        kbps = {r["condition"]: r["kbps"] for r in rows}
        assert kbps["4_codebooks_downsampled_4x"] == pytest.approx(6 * 4 * tiny_pipeline.frame_rate / 4 / 1000)  # 64 codes: 6 bits
        opus = [r for r in rows if r["kind"] == "opus"]
        assert opus and all(r["kbps"] > 0 for r in opus)  # measured, not nominal
        targets = [r["params"]["kbps"] for r in opus]  # none below what Opus reaches, so no row copies another
        assert len(set(targets)) == len(targets) and min(targets) == OPUS_MIN_KBPS


def test_opus_conditions_start_at_the_lowest_bitrate_opus_reaches(tiny_pipeline):
    opus = [c for c in conditions("gen-compression", tiny_pipeline) if c.kind == "opus"]
    token_rates = [c.bitrate_kbps(tiny_pipeline) for c in conditions("gen-compression", tiny_pipeline)
                   if c.kind in ("reconstructed", "kept")]
    expected = sorted({round(max(OPUS_MIN_KBPS, r), 2) for r in token_rates})
    assert [c.params["kbps"] for c in opus] == expected and [c.name for c in opus][0] == "opus_6kbps"


def test_a_condition_identical_to_the_baseline_scores_zero(tiny_pipeline, data_dir, tmp_path):
    out = tmp_path / "exp"
    run(tiny_pipeline, [data_dir], "gen-compression", out, max_excerpts=1, excerpt_s=E, progress=False)
    shutil.copy(out / "baseline" / "0000.wav", out / "reconstructed" / "0000.wav")
    rows = {r["condition"]: r for r in score(out)}
    assert rows["reconstructed"]["mel_mean"] == 0.0 and rows["reconstructed"]["sisdr_mean"] > 60
    assert rows["token_noise_0.75"]["mel_mean"] > 0


def test_inpainting_scores_leave_the_context_out(tiny_pipeline, data_dir, tmp_path):
    out = tmp_path / "musical"
    run(tiny_pipeline, [data_dir], "musical-sampling", out, max_excerpts=1, excerpt_s=E, progress=False)
    manifest = json.loads((out / "experiment.json").read_text())
    trims = {c["name"]: c["trim_s"] for c in manifest["conditions"]}
    assert trims == {"beat_driven": 0.0, "periodic_matched": 0.0, "inpaint_0.5s": 0.5, "inpaint_1.0s": 1.0}
    # an output that differs from the input only inside the 1 s contexts scores 0 once they are trimmed
    x, sr = sf.read(out / "baseline" / "0000.wav")
    y = x.copy()
    y[: sr // 2] = 0
    y[-sr // 2:] = 0
    sf.write(out / "inpaint_1.0s" / "0000.wav", y, sr, subtype=sf.info(out / "baseline" / "0000.wav").subtype)
    rows = {r["condition"]: r for r in score(out)}
    assert rows["inpaint_1.0s"]["mel_mean"] == 0.0


def test_cli_eval_run_and_score(data_dir, tmp_path, tiny_pipeline, capsys):
    from vampnet.cli import main
    models = save_model_folder(tmp_path / "models", tiny_pipeline.codec, tiny_pipeline.coarse, tiny_pipeline.c2f)

    out = tmp_path / "steps"
    assert main(["eval", "run", "--data", str(data_dir), "--experiment", "sampling-steps", "-o", str(out),
                 "--models", str(models), "--max-excerpts", "1", "--excerpt", "2.5", "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", "score", str(out)]) == 0  # the offline crepe embedding by default
    # one excerpt is far too few for a Fréchet distance: said on stderr and in the report
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "Fréchet distances rest on" in warning[0] and "1 excerpt (fewer than 25)" in warning[0]
    assert "51 embedding vectors for 272 dimensions" in warning[0]  # 2.5 s at one crepe vector per 50 ms
    assert f"**Warning:** {warning[0][len('warning: '):]}." in (out / "results.md").read_text()
    assert (out / "stats-mel.csv").is_file()
    frechet = (out / "stats-frechet.csv").read_text()
    assert "crepe" in frechet and "steps_36" in frechet
    assert "crepe" in (out / "results.md").read_text()
    assert main(["eval", "score", str(out), "--embedding", "vggish"]) == 1  # no weights file given: one-line error
    assert main(["eval", "run", "--data", str(data_dir), "--experiment", "nonsense", "-o", str(tmp_path / "x"),
                 "--models", str(models)]) == 1
    assert main(["eval", "score", str(tmp_path / "nowhere")]) == 1
