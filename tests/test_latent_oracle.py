"""benchmarks/latent_oracle.py: hidden coarse frames filled by oracles and by coarse models, decoded and scored; the
near-K rows land within K of the truth, the truth row is the input's own codes, and bad arguments are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import benchmark_script, sine_mix
from vampnet.splits import split_of


@pytest.fixture(scope="module")
def latent_oracle():
    return benchmark_script("latent_oracle")


def test_hold_repeats_the_last_kept_frame_and_near_k_stays_within_k(latent_oracle, tiny_pipeline):
    codec = tiny_pipeline.codec
    ranks = latent_oracle.neighbour_ranks(codec, 2)
    assert torch.equal(ranks[:, torch.arange(64), torch.arange(64)], torch.zeros(2, 64, dtype=torch.long))
    codes = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    hidden = latent_oracle.hidden_frames(10, 3)
    assert hidden.tolist() == [False, True, True, False, True, True, False, True, True, False]
    gen = torch.Generator().manual_seed(0)
    held = latent_oracle.oracle_fill(codes, hidden, "hold", ranks, gen)
    assert torch.equal(held[:, [1, 2, 4, 5, 7, 8]], codes[:, [0, 0, 3, 3, 6, 6]])
    near = latent_oracle.oracle_fill(codes, hidden, "near-4", ranks, gen)
    got = ranks[torch.arange(2)[:, None], codes, near]
    assert torch.equal(near[:, ~hidden], codes[:, ~hidden])
    assert ((got[:, hidden] >= 1) & (got[:, hidden] < 4)).all()  # a neighbour, never the code itself


def test_rows_for_oracles_and_a_coarse_model_on_a_corpus(latent_oracle, tiny_models, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"piece{i}.wav" for i in range(200)]
    val = next(n for n in names if split_of(f"corpus/{n}", 0.05) == "val")
    sf.write(corpus / val, sine_mix(6.5, sr=22050, seed=1).astype(np.float32), 22050)  # two 3 s excerpts
    out = tmp_path / "oracle.json"
    base = tiny_models["base"]
    assert latent_oracle.main(["--corpus", str(corpus), "--models", str(base), "--seconds", "3", "--near", "4", "16",
                               "--coarse", f"tiny={base}", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["truth", "near-4", "near-16", "uniform", "hold", "tiny sample", "tiny argmax", "tiny expected"]
    assert rows["truth"]["median_rank"] == 0 and rows["truth"]["within_4"] == 1.0
    assert rows["truth"]["si_sdr_db"] > rows["uniform"]["si_sdr_db"]
    assert rows["near-4"]["within_4"] == 1.0 and rows["near-16"]["within_32"] == 1.0
    assert rows["uniform"]["within_4"] < 0.5  # 4 of 64 codes by chance
    assert all(r["vamps"] == 2 for r in rows.values())
    assert "| tiny expected |" in capsys.readouterr().out
    again = tmp_path / "codec_only.json"  # the same codec named by its file: the same oracle rows
    assert latent_oracle.main(["--corpus", str(corpus), "--codec", str(base / "codec.safetensors"), "--seconds", "3",
                               "--near", "4", "16", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["rows"] == {k: v for k, v in rows.items() if not k.startswith("tiny")}


def test_bad_arguments_are_one_line_errors(latent_oracle, tiny_models, tmp_path):
    base = str(tiny_models["base"])
    with pytest.raises(SystemExit, match="--periodic must be >= 2"):
        latent_oracle.main(["--corpus", str(tmp_path), "--models", base, "--periodic", "1"])
    with pytest.raises(SystemExit, match="--near in 1..64"):
        latent_oracle.main(["--corpus", str(tmp_path), "--models", base, "--near", "65"])
    with pytest.raises(SystemExit, match="LABEL=FILE"):
        latent_oracle.main(["--corpus", str(tmp_path), "--models", base, "--coarse", base])
