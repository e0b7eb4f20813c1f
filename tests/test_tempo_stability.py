"""benchmarks/tempo_stability.py: changes that keep the music's tempo are counted as keeping it by the evaluation's
tempo measure, an unrelated excerpt is not, and the table names every change at both hops."""
from __future__ import annotations

import torch

from conftest import benchmark_script
from test_musical_metrics import SR, clicks
from vampnet.pipeline import Pipeline


def load_script():
    return benchmark_script("tempo_stability")


def test_tempo_preserving_changes_keep_the_tempo_and_an_unrelated_excerpt_does_not():
    script = load_script()
    shipped = Pipeline.from_pretrained()
    assert shipped.sample_rate == SR
    excerpts = [torch.from_numpy(clicks(bpm, seconds=6.0)).view(1, 1, -1) for bpm in (141, 97)]
    results = script.measure(excerpts, SR, shipped.codec)
    ours = results["evaluation"]
    for change in ("gain -1 dB", "delay 10 ms", "delay 50 ms", "Opus 32 kbit/s"):
        assert ours[change] == {"kept": 2, "excerpts": 2, "lost": []}, change
    assert ours["an unrelated excerpt"]["kept"] == 0 and len(ours["an unrelated excerpt"]["lost"]) == 2
    assert set(results["librosa default (512 samples)"]) == set(ours)
    table = script.markdown(results)
    assert table.count("\n") == len(ours) + 1 and "| codec round trip | " in table
