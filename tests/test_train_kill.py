"""Training survives SIGKILL: killed at random moments and at every point of a checkpoint write, a run resumes
from its last complete checkpoint, loses at most one save interval, never leaves a corrupt or half-written file,
and ends with exactly the weights and per-step losses of a run that was never interrupted."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SET_A
from test_train import tiny, write_tones

from vampnet import MaskedTransformer
from vampnet.train.data import TokenizeConfig, tokenize
from vampnet.train.masked import train
from vampnet.train.state import TRAINER_FILE, find_training_checkpoint, load_optimizer

SAVE_EVERY, MAX_STEPS = 3, 30

# Runs one training process; KILL_AT="<name>:<n>" makes it SIGKILL itself just before the n-th os.replace whose
# destination is called <name> (a point inside a checkpoint write), so those moments are hit on purpose.
CHILD = r'''
import json, os, signal, sys
from pathlib import Path
from vampnet.train.config import TrainConfig
from vampnet.train.masked import train
name, _, n = os.environ.get("KILL_AT", "::").partition(":")
if name:
    real, seen = os.replace, [0]
    def replace(src, dst):
        if Path(dst).name == name:
            seen[0] += 1
            if seen[0] == int(n):
                os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
    os.replace = replace
train(TrainConfig(**json.loads(sys.argv[1])), resume=True, progress=False)
'''


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from vampnet import Codec

    root = tmp_path_factory.mktemp("killdata")
    write_tones(root / "audio" / "tones", n=4, seconds=2.5)
    tokenize([root / "audio"], root / "ds", Codec.load(SET_A / "codec.pth"), TokenizeConfig(excerpt_s=1.5, val_fraction=0.3),
             codec_path=str(SET_A / "codec.pth"), progress=False)
    return root


def config(dataset, out):
    return tiny(dataset, out, max_steps=MAX_STEPS, save_every=SAVE_EVERY, val_every=1000, n_layers=1)


def log_rows(out: Path) -> list[dict]:
    if not (out / "log.csv").is_file():
        return []
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def checkpoint_step(out: Path) -> int:
    found = find_training_checkpoint(out / "latest")
    return 0 if found is None else json.loads((found / TRAINER_FILE).read_text())["step"]


def assert_every_visible_file_is_whole(out: Path):
    """Checkpoint folders load completely; the log holds whole rows with distinct steps."""
    for folder in [out / "latest", *out.glob("step-*")]:
        if folder.exists():
            model = MaskedTransformer.load(folder / "model.safetensors")
            load_optimizer(folder / "optimizer.safetensors", torch.optim.AdamW(model.parameters()))
            assert json.loads((folder / TRAINER_FILE).read_text())["step"] >= 1
    rows = log_rows(out)
    assert all(None not in row.values() and row["train_loss"] for row in rows)
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(1, len(steps) + 1))  # a resumed run never logs a step twice or skips one


def start(cfg, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg.to_dict())], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_training_resumes_exactly_after_sigkill(dataset, tmp_path):
    reference = config(dataset, tmp_path / "reference")
    train(reference, progress=False)
    ref_losses = {int(r["step"]): r["train_loss"] for r in log_rows(tmp_path / "reference")}

    out = tmp_path / "killed"
    cfg = config(dataset, out)
    # 1. killed at each point of the second `latest` write: model file, optimiser file, old checkpoint moved aside,
    #    new one moved in (between those two renames there is no `latest`, only `.latest.old`)
    for point in ("model.safetensors:2", "optimizer.safetensors:2", ".latest.old:1", "latest:2"):
        before = checkpoint_step(out)
        proc = start(cfg, {"KILL_AT": point})
        assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()
        assert_every_visible_file_is_whole(out)
        assert checkpoint_step(out) >= before  # nothing complete was lost
    # 2. killed at random moments while it trains and saves
    rng = np.random.default_rng(0)
    kills = 0
    while kills < 3:
        proc = start(cfg)
        seen = len(log_rows(out))
        deadline = time.time() + 300
        while len(log_rows(out)) <= seen and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:  # it finished first: the run is complete
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        logged = int(log_rows(out)[-1]["step"])
        assert_every_visible_file_is_whole(out)
        assert checkpoint_step(out) >= logged - SAVE_EVERY  # at most one save interval is lost
    # 3. the last resume finishes the run
    proc = start(cfg)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    assert_every_visible_file_is_whole(out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert {int(r["step"]): r["train_loss"] for r in log_rows(out)} == ref_losses
    a = MaskedTransformer.load(tmp_path / "reference" / "latest" / "model.safetensors").state_dict()
    b = MaskedTransformer.load(out / "latest" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
