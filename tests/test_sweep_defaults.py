"""benchmarks/sweep_defaults.py: the default-settings sweep runs end to end on a corpus's validation files, its
selection rule picks the right setting from a hand-made table, and the defaults it prints pass the schema's checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import benchmark_script, sine_mix
from vampnet.errors import OptionError
from vampnet.prompts import PromptConfig
from vampnet.sampling import SamplingConfig
from vampnet.schema import config_values, options_of
from vampnet.splits import split_of


@pytest.fixture(scope="module")
def sweep_defaults():
    return benchmark_script("sweep_defaults")


def row(label, tempo, chroma, si_sdr, generated, prompt=None, sampling=None):
    return {"label": label, "tempo_kept_share": tempo, "chroma_similarity": chroma, "si_sdr_db": si_sdr,
            "generated": generated, "prompt": prompt or {"periodic": 7, "upper_codebooks": 3}, "beats": False,
            "sampling": sampling or {"temperature": 1.0, "steps": 36}}


def test_selection_rule_rejects_copies_and_vamps_that_generate_too_little(sweep_defaults):
    rows = [row("copy", 0.95, 0.99, 12.0, 0.9),           # keeps the most tempo, but SI-SDR says it is the input
            row("at the bound", 0.9, 0.99, 10.0, 0.9),    # 10 dB is not below 10 dB
            row("mostly kept", 0.8, 0.98, 2.0, 0.3),      # generates under half of the coarse tokens
            row("good", 0.5, 0.90, 0.0, 0.6),
            row("better chroma", 0.5, 0.95, -5.0, 0.5),   # ties on tempo, wins on chroma; 0.5 generated is enough
            row("less tempo", 0.4, 0.99, -20.0, 0.95)]
    assert [r["label"] for r in sweep_defaults.ranked(rows)] == ["better chroma", "good", "less tempo"]
    assert sweep_defaults.choose(rows)["label"] == "better chroma"
    assert sweep_defaults.choose(rows[:3]) is None  # nothing eligible: no defaults rather than a copy


def test_pooled_rows_add_counts_and_weight_means_by_vamps(sweep_defaults):
    keys = ("chroma_similarity", "onset_correlation", "si_sdr_db", "generated", "seconds_per_vamp")
    old = {"label": "a", "tempo_kept": 3, "vamps": 4, "tempo_kept_share": 0.75} | dict.fromkeys(keys, 0.9)
    new = {"label": "a", "tempo_kept": 2, "vamps": 8, "tempo_kept_share": 0.25} | dict.fromkeys(keys, 0.3)
    both = sweep_defaults.pooled(old, new)
    assert (both["tempo_kept"], both["vamps"], both["tempo_kept_share"]) == (5, 12, 5 / 12)
    assert all(both[k] == pytest.approx(0.5) for k in keys)  # (4 x 0.9 + 8 x 0.3) / 12


def test_defaults_fragment_is_keyed_by_schema_option_names_and_checked(sweep_defaults):
    chosen = row("x", 0.5, 0.9, 0.0, 0.8, {"periodic": 3, "upper_codebooks": 2}, {"temperature": 0.8, "steps": 24})
    fragment = sweep_defaults.defaults_fragment(chosen)
    assert fragment == {"prompt": {"periodic": 3, "upper_codebooks": 2}, "sampling": {"temperature": 0.8, "steps": 24}}
    assert set(fragment["prompt"]) <= {o.name for o in options_of(PromptConfig)}
    assert set(fragment["sampling"]) <= {o.name for o in options_of(SamplingConfig)}
    assert config_values(PromptConfig, fragment["prompt"]) == {"periodic_prompt": 3, "upper_codebook_mask": 2}
    assert config_values(SamplingConfig, fragment["sampling"]) == {"temperature": 0.8, "steps": 24}
    with pytest.raises(OptionError, match="periodic"):
        sweep_defaults.defaults_fragment(row("bad", 0.5, 0.9, 0.0, 0.8, {"periodic": -1, "upper_codebooks": 3}))


def test_sweep_runs_on_validation_files_and_writes_table_json_and_figure(sweep_defaults, tiny_models, tmp_path,
                                                                         capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"piece{i}.wav" for i in range(200)]
    val = next(n for n in names if split_of(f"corpus/{n}", 0.05) == "val")
    sf.write(corpus / val, sine_mix(6.5, sr=22050, seed=1).astype(np.float32), 22050)  # two 3 s excerpts
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    assert sweep_defaults.main(["--corpus", str(corpus), "--models", str(tiny_models["base"]), "--quick",
                                "--json", str(out), "--figure", str(png)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["setup"]["excerpts"] == 2 and results["setup"]["finished"]
    rows = {r["label"]: r for r in results["settings"]}
    # the tiny model has 2 coarse codebooks: upper_codebooks 3 is clipped to 2 (every coarse codebook kept)
    assert list(rows)[:3] == ["P2, upper 1", "P7, upper 2", "P7, upper 2, + beats"]
    frames = 3 * 22050 // 64 + 1  # a 3 s excerpt's frames at hop 64 (the last partial frame included)
    assert rows["P2, upper 1"]["generated"] == pytest.approx(1 - 0.5 * np.ceil(frames / 2) / frames, abs=0.01)
    assert rows["P7, upper 2"]["generated"] == pytest.approx(1 - np.ceil(frames / 7) / frames, abs=0.01)
    sampled = [r for r in results["settings"] if r["stage"] == "sampling"]
    assert len(sampled) == 2 * 2  # the best 2 prompts x temperatures (0.8, 1) x steps (4)
    assert {r["label"].split(", T")[0] for r in sampled} == set(results["sampling_prompts"])
    for r in results["settings"]:
        assert r["vamps"] == 2 and 0 <= r["tempo_kept"] <= 2 and r["seconds_per_vamp"] > 0
        assert r["tempo_kept_share"] == r["tempo_kept"] / 2
    assert results["chosen"] == sweep_defaults.choose(results["settings"])["label"]
    defaults = json.loads(printed.split("defaults:", 1)[1].strip().splitlines()[0])
    assert defaults == results["defaults"]
    assert config_values(PromptConfig, defaults["prompt"]) and config_values(SamplingConfig, defaults["sampling"])
    assert f"| **{results['chosen']}" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # stage 3: the best setting vamped again with another seed, pooled with its first vamps
    confirmed = tmp_path / "confirmed.json"
    png.unlink()
    assert sweep_defaults.main(["--corpus", str(corpus), "--models", str(tiny_models["base"]), "--quick",
                                "--confirm", str(out), "--confirm-seeds", "1", "--confirm-top", "1",
                                "--json", str(confirmed), "--figure", str(png)]) == 0
    again = json.loads(confirmed.read_text())
    (best,) = again["confirmation"]["settings"]  # the tiny model has no unclipped "today's default" to add
    first = rows[best["label"]]
    assert best["label"] == sweep_defaults.ranked(results["settings"])[0]["label"]
    assert best["vamps"] == 4 and first["tempo_kept"] <= best["tempo_kept"] <= first["tempo_kept"] + 2
    assert again["chosen"] == best["label"] and again["settings"] == results["settings"]
    assert "Confirmation: the best settings" in capsys.readouterr().out and png.is_file()
