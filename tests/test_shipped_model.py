"""The small model shipped inside the package: it loads offline, codes audio well and vamps."""
from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from conftest import ROOT, sine_mix
from vampnet import Pipeline, audio
from vampnet.eval.metrics import mel_distance
from vampnet.pretrained import shipped_folder
from vampnet.prompts import PromptConfig

EXAMPLE = ROOT / "examples" / "xblast-song1-excerpt.ogg"


@pytest.fixture(scope="module")
def shipped() -> Pipeline:
    return Pipeline.from_pretrained()


def test_shipped_model_is_the_documented_architecture_and_fits_the_size_budget(shipped):
    files = sorted(p.name for p in shipped_folder().glob("*.safetensors"))
    assert files == ["c2f.safetensors", "coarse.safetensors", "codec.safetensors"]
    assert sum(p.stat().st_size for p in shipped_folder().glob("*.safetensors")) <= 60e6
    assert shipped.sample_rate == 22050 and shipped.codec.hop_length == 384  # the official 57.4 Hz token rate
    assert shipped.n_codebooks == 8 and shipped.coarse.config.n_codebooks == 4
    assert shipped.c2f.config.n_conditioning_codebooks == 4
    card = json.loads((shipped_folder() / "card.json").read_text())
    assert card["name"] == "vampnet-small" and card["licence"]
    for part in ("coarse", "c2f"):  # the card describes the weights that ship
        config, described = getattr(shipped, part).config, card["parts"][part]
        assert (config.n_layers, config.embedding_dim) == (described["layers"], described["width"])
        assert config.n_heads == described.get("heads", config.n_heads)


def test_shipped_codec_reconstructs_music_far_better_than_an_untrained_one(shipped):
    from vampnet.codec import Codec

    wav, sr = audio.load(EXAMPLE, max_seconds=4.0)
    x = audio.normalize_loudness(audio.resample(audio.to_mono(wav), sr, shipped.sample_rate), shipped.sample_rate, -24)[0]
    with torch.inference_mode():
        trained = mel_distance(x, shipped.codec.decode(shipped.codec.encode(x)), shipped.sample_rate)
        torch.manual_seed(0)
        untrained = Codec(shipped.codec.config).eval()
        baseline = mel_distance(x, untrained.decode(untrained.encode(x)), shipped.sample_rate)
    print(f"mel distance: shipped codec {trained:.3f}, untrained {baseline:.3f}")
    assert trained < 2.2 and trained < 0.6 * baseline


def test_shipped_model_vamps_two_seconds_reproducibly(shipped):
    x = torch.from_numpy(sine_mix(2.0, sr=44100, seed=3))[None, None].float()
    a = shipped.vamp(x, 44100, prompt=PromptConfig(periodic_prompt=4), seed=7)
    b = shipped.vamp(x, 44100, prompt=PromptConfig(periodic_prompt=4), seed=7)
    assert a.sample_rate == 22050 and a.audio.shape == (1, 1, 44100)
    assert torch.isfinite(a.audio).all() and a.audio.abs().max() > 1e-3
    assert torch.equal(a.codes, b.codes) and a.mask.float().mean() > 0.5


def test_cli_vamps_the_example_with_the_shipped_model_by_default(tmp_path):
    from vampnet.cli import main

    out = tmp_path / "vamp.wav"
    assert main(["vamp", str(EXAMPLE), "-o", str(out), "--seed", "0"]) == 0
    info = sf.info(out)
    assert info.samplerate == 22050 and info.duration == pytest.approx(sf.info(EXAMPLE).duration, abs=0.05)


def test_model_card_metrics_script_runs_on_validation_files_only(tmp_path, monkeypatch):
    import subprocess
    import sys

    import numpy as np

    from vampnet.splits import split_of

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import model_metrics as mm

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"piece{i}.wav" for i in range(200)]
    val = [n for n in names if split_of(f"corpus/{n}", 0.05) == "val"][:1]
    train = [n for n in names if split_of(f"corpus/{n}", 0.05) == "train"][:1]
    for n in val + train:
        sf.write(corpus / n, sine_mix(10.5, sr=44100, seed=len(n)).astype(np.float32), 44100)
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_metrics.py"), str(corpus), "--quick",
                           "--rhythm-seeds", "2", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["setup"]["excerpts"] == 1  # the validation file only
    assert results["codec"]["kbps"] == pytest.approx(8 * 10 * 22050 / 384 / 1000)
    assert set(results["periodic"]) == {"P=4", "P=8", "P=16", "P=32"}
    rhythm = results["rhythm"]  # one excerpt: no unrelated one to compare with
    assert list(rhythm)[:2] == ["codec round trip", "Opus 8 kbit/s"]
    assert rhythm["codec round trip"]["chroma_similarity"]["mean"] > 0.9 and rhythm["codec round trip"]["generated"] == 0
    # the shipped card's defaults are periodic 1 / upper codebooks 2: 6 of the 8 codebooks generated; `--periodic 3`
    # with the card's other settings generates more, the schema's own default prompt (periodic 7) more again
    own, p1, p3 = (rhythm[k] for k in (mm.DEFAULTS_VAMP, mm.PERIODIC_1, mm.PERIODIC_3))
    assert results["setup"]["defaults"]["periodic"] == 1 and own == p1  # the same prompt: vamped once, the same numbers
    schema = rhythm["vamp, periodic 7 / upper codebooks 3 (the schema's defaults)"]
    assert own["generated"] == pytest.approx(6 / 8)
    assert own["generated"] < p3["generated"] < schema["generated"] < 1
    assert "vamp, the schema's defaults + every tracked beat" in rhythm
    # two seeds: each vamp row pools two vamps of the one excerpt, the deterministic rows score it once
    assert own["excerpts"] == p3["excerpts"] == schema["excerpts"] == 2 and rhythm["codec round trip"]["excerpts"] == 1
    assert results["setup"]["training"]["parts"]["coarse"]["steps"] == 11500  # v3, from the shipped card
    coarse = results["accuracy"]["coarse"]
    assert 0 <= coarse["val_acc1"] <= 1
    # the accuracy curve covers the same masked tokens as the summary numbers
    assert sum(b["tokens"] for b in coarse["curve"]) == coarse["val_tokens"]
    hits = sum(b["acc1"] * b["tokens"] for b in coarse["curve"] if b["tokens"])
    assert hits / coarse["val_tokens"] == pytest.approx(coarse["val_acc1"], abs=1e-6)
    assert len(coarse["acc1_lo_per_codebook"]) == 4
    assert 0 < coarse["frequency_baseline"]["acc25_lo"] <= 1
    frechet = results["frechet"]
    assert {"codec round trip", mm.FRECHET_VAMPS, "free generation (nothing kept)", "random tokens"} <= set(frechet)
    # decoded random tokens are further from real music than the codec's own round trip
    assert frechet["codec round trip"]["frechet"] < frechet["random tokens"]["frechet"]
    assert "| our codec" in done.stdout

    figure = tmp_path / "curve.png"
    shown = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_metrics.py"), "--compare", str(out), str(out),
                            "--labels", "first", "second", "--curve-figure", str(figure)],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "| | first | second |" in shown.stdout
    top1 = f"{coarse['val_acc1_lo']:.3f}"
    assert f"| coarse top-1, r < 0.5 | {top1} | {top1} |" in shown.stdout
    assert "Whole 10 s vamp" not in shown.stdout  # runs without timing get no empty timing table
    # issue 26's acceptance, each point measured for both columns; a model is not above itself in accuracy
    share = rhythm["codec round trip"]["tempo_kept"] / rhythm["codec round trip"]["excerpts"]
    mark = "✓" if share >= 0.9 else "✗"
    assert f"| codec round trip keeps the tempo (share of excerpts, ≥ 0.90) | {share:.2f} {mark} | {share:.2f} {mark} |" in shown.stdout
    bins = sum(1 for b in coarse["curve"] if b["tokens"])
    assert f"mask-ratio bins | (baseline) | 0/{bins} ✗ |" in shown.stdout
    coarse_cell = "11500 steps, 256 h of audio seen (training split 25.5 h); from a pre-run of the same architecture on v2's tokens (7000 steps)"
    assert f"| coarse | {coarse_cell} | {coarse_cell} |" in shown.stdout
    assert figure.stat().st_size > 0


def test_control_adherence_script_scores_each_guidance_on_validation_excerpts(tmp_path):
    import json
    import subprocess
    import sys

    import numpy as np

    from vampnet import Codec, MaskedTransformer
    from vampnet.checkpoints import find_model_files
    from vampnet.pretrained import resolve
    from vampnet.splits import split_of
    from vampnet.train.data import TokenizeConfig, tokenize

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [n for n in (f"piece{i}.wav" for i in range(400)) if split_of(f"corpus/{n}", 0.05) == "val"][:2]
    for i, n in enumerate(names):
        x = sine_mix(3.0, sr=22050, seed=i) * np.linspace(0.05, 1.0, 3 * 22050) ** (1 + i)  # two envelopes
        sf.write(corpus / n, x.astype(np.float32), 22050)
    files = find_model_files(resolve("small").base)
    codec = Codec.load(files["codec"])
    tokenize([corpus], tmp_path / "tokens", codec, TokenizeConfig(excerpt_s=3.0), codec_path=str(files["codec"]),
             progress=False)
    coarse = MaskedTransformer.load(files["coarse"], codec)
    coarse.add_controls(1)  # an untrained projection: the script runs, the numbers mean nothing
    coarse.save(tmp_path / "coarse.safetensors")
    out = tmp_path / "adherence.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "control_adherence.py"), str(tmp_path / "tokens"),
                           "--coarse", str(tmp_path / "coarse.safetensors"), "--audio-root", str(tmp_path),
                           "--excerpts", "2", "--guidance", "0,2", "--steps", "2", "--seeds", "2", "--json", str(out),
                           "--figure", str(tmp_path / "curves.png")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["no control", "guidance 0", "guidance 2", "base model (no control input)"]
    assert all(-1 <= r["pearson_mean"] <= 1 and r["excerpts"] == 2 and r["generations"] == 4 and r["frechet"] >= 0
               and len(r["frechet_per_seed"]) == 2 for r in results.values())
    # the projection is zero-initialised, so the fine-tune's starting point generates exactly what its base model does
    assert results["no control"] == results["base model (no control input)"]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_bundled_loudness_model_is_v2_with_a_controlled_coarse_model():
    """small-loudness was fine-tuned from vampnet-small v2, so it keeps v2's codec and coarse-to-fine model (whose
    tokens its coarse model reads) now that the shipped model is v3."""
    from vampnet.model_defaults import of_model
    from vampnet.pretrained import BUNDLED, available_models, is_valid_name, resolve

    source = resolve("small-loudness")
    folder = shipped_folder("small-loudness")
    assert source.base == folder and not source.finetuned  # a whole model folder of its own
    assert (folder / "codec.safetensors").read_bytes() != (shipped_folder() / "codec.safetensors").read_bytes()
    assert available_models()[:2] == ["small", "small-loudness"] and "small-loudness" in BUNDLED
    assert not is_valid_name("small-loudness")  # `vampnet finetune --name` cannot shadow it
    defaults = of_model("small-loudness").values
    assert defaults["sampling"]["guidance"] == 1.0 and defaults["sampling"]["steps"] == 12
    card = json.loads((shipped_folder("small-loudness") / "card.json").read_text())
    assert card["parts"]["coarse"]["controls"] == ["loudness"]


def test_bundled_loudness_model_follows_a_rising_and_a_falling_envelope():
    from vampnet.control_options import clip_control
    from vampnet.controls import loudness_from_audio, pearson

    pipe = Pipeline.from_pretrained("small-loudness")
    assert pipe.coarse.n_controls == 1
    wav, sr = audio.load(EXAMPLE)
    followed = {}
    for name, curve in {"rising": "0:-45, 8:-12", "falling": "0:-12, 8:-45"}.items():
        control = clip_control(pipe, wav, sr, loudness=curve)
        result = pipe.vamp(wav, sr, seed=0, control=control)  # the bundled card's prompt and guidance
        produced = loudness_from_audio(result.audio, result.sample_rate, pipe.codec).values[:control.n_frames, 0]
        followed[name] = pearson(control.values[: len(produced), 0], produced)
    # the two requests are opposite, so the clip's own dynamics cannot satisfy both (measured 0.91-0.92)
    assert followed["rising"] > 0.7 and followed["falling"] > 0.7, followed


def test_compare_models_script_reuses_each_models_metrics_and_prints_the_acceptance(tmp_path):
    """scripts/compare_models.sh: a model whose metrics.json is there is not evaluated again; the comparison has the
    side-by-side tables, issue 26's acceptance points and the training table (here from the v1/v2 card numbers)."""
    import os
    import shutil
    import subprocess
    import sys

    results = ROOT / "benchmarks" / "results" / "model_v1_v2"
    for label in ("v1", "v2"):
        (tmp_path / "out" / label).mkdir(parents=True)
        shutil.copy(results / f"{label}_metrics.json", tmp_path / "out" / label / "metrics.json")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "compare_models.sh"), "no-such-model", "no-such-model",
                           str(tmp_path / "no-corpus"), str(tmp_path / "out"), "v1", "v2"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "out" / "comparison.md").read_text()
    assert "| | v1 | v2 |" in text and "**Acceptance (issue 26)**" in text
    assert "| Fréchet distance of the vamps / of the codec round trip (≤ 1.3) | 2.44 ✗ | 1.63 ✗ |" in text
    assert (tmp_path / "out" / "accuracy_curve.png").stat().st_size > 0
