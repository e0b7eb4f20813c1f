"""benchmarks/prompt_rhythm.py: coarse models compared under several prompts on a corpus's validation files; the
rows differ only in the coarse model, and each prompt generates the share of tokens it should."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import benchmark_script, sine_mix
from vampnet.splits import split_of


@pytest.fixture(scope="module")
def prompt_rhythm():
    return benchmark_script("prompt_rhythm")


def test_two_names_for_one_coarse_model_score_the_same_and_prompts_generate_their_share(prompt_rhythm, tiny_models,
                                                                                        tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"piece{i}.wav" for i in range(200)]
    val = next(n for n in names if split_of(f"corpus/{n}", 0.05) == "val")
    sf.write(corpus / val, sine_mix(6.5, sr=22050, seed=1).astype(np.float32), 22050)  # two 3 s excerpts
    base = tiny_models["base"]
    out = tmp_path / "rhythm.json"
    assert prompt_rhythm.main(["--corpus", str(corpus), "--models", str(base), "--seconds", "3",
                               "--coarse", f"folder={base}", f"file={base / 'coarse.safetensors'}",
                               "--prompts", "1:1", "2:1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    a, b = result["models"]["folder"], result["models"]["file"]
    assert [r["label"] for r in a] == [r["label"] for r in b] and len(a) == 2
    for ra, rb in zip(a, b):  # the same weights and seeds: the same vamps
        assert {k: ra[k] for k in ("tempo_kept", "chroma_similarity", "si_sdr_db", "generated")} == \
               {k: rb[k] for k in ("tempo_kept", "chroma_similarity", "si_sdr_db", "generated")}
    frames = 3 * 22050 // 64 + 1  # hop 64; the tiny model has 2 coarse codebooks, upper 1 keeps codebook 0
    assert a[0]["generated"] == pytest.approx(0.5, abs=0.01)
    assert a[1]["generated"] == pytest.approx(1 - 0.5 * np.ceil(frames / 2) / frames, abs=0.01)
    assert result["codec"]["vamps"] == 2
    assert "| folder |" in capsys.readouterr().out


def test_a_malformed_prompt_or_model_spec_is_a_one_line_error(prompt_rhythm, tiny_models, tmp_path):
    with pytest.raises(SystemExit, match="PERIODIC:UPPER_CODEBOOKS"):
        prompt_rhythm.main(["--corpus", str(tmp_path), "--coarse", f"a={tiny_models['base']}", "--prompts", "3"])
    with pytest.raises(SystemExit, match="LABEL=FILE"):
        prompt_rhythm.main(["--corpus", str(tmp_path), "--coarse", str(tiny_models["base"])])
