"""benchmarks/token_baselines.py: count-based predictability of a token dataset, on data whose answer is known."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_dataset(folder: Path, files: int = 6, frames: int = 400, period: int = 16):
    """Codebook 0 counts up modulo `period` (its next code is certain given the last); codebook 1 is uniform noise."""
    (folder / "tokens").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(files):
        codes = np.zeros((2, frames), np.int16)
        codes[0] = (rng.integers(period) + np.arange(frames)) % period
        codes[1] = rng.integers(0, 1024, frames)
        name = f"tokens/f{i}.npy"
        np.save(folder / name, codes)
        rows.append({"source": f"f{i}.wav", "split": "val" if i == 0 else "train", "excerpt": 0, "start_s": 0.0,
                     "frames": frames, "loudness": -20.0, "tokens_file": name, "offset": 0})
    with open(folder / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "manifest.json").write_text(json.dumps({"codebook_size": 1024}))


def test_bigram_predicts_a_deterministic_sequence_and_not_noise(tmp_path):
    write_dataset(tmp_path / "data")
    out = tmp_path / "b.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "token_baselines.py"), str(tmp_path / "data"),
                           "--codebooks", "2", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    counting, noise = r["codebook 0"], r["codebook 1"]
    assert counting["tokens"] == 399
    assert counting["bigram"]["acc1"] == 1.0
    assert counting["unigram"]["acc1"] < 0.1 and counting["unigram"]["acc25"] == 1.0  # 16 codes, all in the top 25
    assert counting["bigram"]["cross_entropy"] < counting["unigram"]["cross_entropy"] - 1.0
    assert noise["bigram"]["acc1"] < 0.02 and noise["unigram"]["cross_entropy"] > np.log(1024) - 0.5
    assert "| mean |" in done.stdout


def test_a_folder_without_tokens_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "token_baselines.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "not a token dataset" in done.stderr and "Traceback" not in done.stderr
