"""scripts/train_background.sh, the shipped model's resumable background run: its stage logic, run against a stand-in
`vampnet` command (the VAMPNET variable) that records its calls and advances a run folder as training would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "train_background.sh"

# Stand-in for `vampnet`: `train KIND ... --set output=DIR --set max_steps=N` reaches N steps (saving latest/ like a
# run, with its model file); a file `die-KIND` makes the next N runs of that kind save 1 step and then die as the
# OOM killer would (exit 137), or die at once without progress when the file says "stuck".
FAKE = r'''
import json, pathlib, sys
args = sys.argv[1:]
log = pathlib.Path(__file__).with_name("calls.jsonl")
with log.open("a") as f:
    f.write(json.dumps(args) + "\n")
if args[0] != "train":
    if args[0] == "tokenize":
        pathlib.Path(args[args.index("-o") + 1]).mkdir(parents=True, exist_ok=True)
    sys.exit(0)
sets = dict(a.split("=", 1) for a in args[args.index("--set") :] if "=" in a)
out, steps, kind = pathlib.Path(sets["output"]), int(sets["max_steps"]), args[1]
latest = out / "latest"
meta = latest / "trainer.json"
step = json.loads(meta.read_text())["step"] if meta.is_file() else 0
die = pathlib.Path(__file__).with_name(f"die-{kind}")
record = out / "config.yaml"  # like a run: what it started from stays recorded when it resumes without it
if "init" in sets or not record.is_file():
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"init": sets.get("init"), "batch_size": 4, "window_s": 2.0,
                                  "model": {"n_layers": 2, "embedding_dim": 64, "n_heads": 2}}))
def save(n):
    latest.mkdir(parents=True, exist_ok=True)
    (latest / "model.safetensors").write_text(f"{kind} {n}")
    meta.write_text(json.dumps({"step": n}))
if die.is_file():
    left = die.read_text().strip()
    if left == "stuck":
        sys.exit(1)
    left = int(left) - 1
    die.write_text(str(left)) if left > 0 else die.unlink()
    save(step + 1)
    sys.exit(137)
save(steps)
'''


def run_script(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True, exist_ok=True)
    (data / "corpus" / "sources.json").write_text("{}")  # a corpus is there: the script goes straight to training
    fake = tmp_path / "fake_vampnet.py"
    fake.write_text(FAKE)
    environment = {**os.environ, "VAMPNET": f"{sys.executable} {fake}", "RETRY_S": "0", "CODEC_STEPS": "5",
                   "COARSE_STEPS": "7", "C2F_STEPS": "3", "SAVE_MINUTES": "2", **env}
    return subprocess.run(["bash", str(SCRIPT), str(data)], capture_output=True, text=True, env=environment, timeout=120)


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_a_killed_stage_goes_on_from_its_latest_checkpoint_and_every_stage_saves_on_a_clock(tmp_path):
    (tmp_path / "die-codec").write_text("2")  # the codec's first two processes are killed after a step each
    done = run_script(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    made = calls(tmp_path)
    kinds = [c[1] if c[0] == "train" else c[0] for c in made]
    assert kinds == ["codec", "codec", "codec", "tokenize", "coarse", "c2f"]
    codec_runs = [c for c in made if c[:2] == ["train", "codec"]]
    assert "--resume" not in codec_runs[0] and all("--resume" in c for c in codec_runs[1:])
    for c in made:
        if c[0] == "train":
            assert "save_every_s=120" in c and not any(a.startswith("time_limit_s=") for a in c)
    run = tmp_path / "data" / "runs" / "v3"
    assert json.loads((run / "codec" / "latest" / "trainer.json").read_text())["step"] == 5
    assert (run / "model" / "coarse.safetensors").read_text() == "coarse 7"
    assert done.stdout.count("the run stopped (exit 137)") == 2


def test_a_stage_that_never_progresses_gives_up_after_three_tries(tmp_path):
    (tmp_path / "die-codec").write_text("stuck")
    done = run_script(tmp_path)
    assert done.returncode == 1
    assert len(calls(tmp_path)) == 3
    assert "stopped three times in a row without progress" in done.stdout


def test_finished_stages_are_skipped_when_the_script_starts_again(tmp_path):
    run_script(tmp_path)
    (tmp_path / "calls.jsonl").unlink()
    again = run_script(tmp_path)
    assert again.returncode == 0
    assert not any(c[0] == "train" for c in calls(tmp_path))  # every stage had reached its steps


def init_of(call: list[str]) -> str | None:
    return next((a.split("=", 1)[1] for a in call if a.startswith("init=")), None)


def test_the_coarse_stage_starts_from_its_pre_run_or_from_scratch_and_c2f_from_the_shipped_model(tmp_path):
    done = run_script(tmp_path / "a")
    assert done.returncode == 0, done.stdout + done.stderr
    made = {c[1]: c for c in calls(tmp_path / "a") if c[0] == "train"}
    assert init_of(made["coarse"]) is None and any(a.endswith("coarse_v3.yaml") for a in made["coarse"])
    assert init_of(made["c2f"]).endswith("weights/small/c2f.safetensors")
    assert init_of(made["codec"]).endswith("weights/small/codec.safetensors")
    assert "init_new_codec=true" in made["coarse"] and "init_new_codec=true" in made["c2f"]
    card = json.loads((tmp_path / "a" / "data" / "runs" / "v3" / "model" / "card.json").read_text())
    parts = card["parts"]
    assert [parts[p]["steps"] for p in ("codec", "coarse", "c2f")] == [5, 7, 3]
    assert parts["coarse"]["hours_seen"] == round(7 * 4 * 2.0 / 3600, 1) and "started_from" not in parts["coarse"]
    shipped = json.loads((ROOT / "src" / "vampnet" / "weights" / "small" / "card.json").read_text())
    # what the shipped card says of its coarse-to-fine model's training: steps, hours seen, its training split
    c2f = shipped["parts"]["c2f"]
    assert parts["c2f"]["started_from"] == {"model": f"vampnet-small {shipped['version']}", "steps": c2f["steps"],
                                           "hours_seen": c2f["hours_seen"], "train_hours": c2f["train_hours"]}
    assert card["defaults"] == shipped["defaults"] and card["version"].startswith("v3 ")

    pre = tmp_path / "b" / "data" / "runs" / "v3" / "coarse_pre"
    for folder in ("latest", "best"):
        (pre / folder).mkdir(parents=True)
        (pre / folder / "model.safetensors").write_text("pre")
    done = run_script(tmp_path / "b")
    assert done.returncode == 0, done.stdout + done.stderr
    coarse = next(c for c in calls(tmp_path / "b") if c[:2] == ["train", "coarse"])
    assert init_of(coarse) == str(pre / "best" / "model.safetensors")


def test_parallel_stages_train_both_transformers_at_once_and_still_make_the_model(tmp_path):
    """PARALLEL_STAGES=1: coarse and c2f run side by side (after the tokens), both reach their steps, and the model
    folder and its card come after both."""
    done = run_script(tmp_path, PARALLEL_STAGES="1")
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = [c[1] if c[0] == "train" else c[0] for c in calls(tmp_path)]
    assert kinds[:2] == ["codec", "tokenize"] and sorted(kinds[2:]) == ["c2f", "coarse"]
    card = json.loads((tmp_path / "data" / "runs" / "v3" / "model" / "card.json").read_text())
    assert card["parts"]["coarse"]["steps"] == 7 and card["parts"]["c2f"]["steps"] == 3


def test_a_failing_parallel_stage_stops_the_script_before_the_model_is_made(tmp_path):
    (tmp_path / "die-c2f").write_text("stuck")
    done = run_script(tmp_path, PARALLEL_STAGES="1")
    assert done.returncode != 0 and "a transformer stage failed" in done.stdout
    assert not (tmp_path / "data" / "runs" / "v3" / "model").exists()
