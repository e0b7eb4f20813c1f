"""Training checkpoints: a folder holding the model (our safetensors format, loadable by the pipeline as is),
the optimiser state (safetensors, no pickle) and the trainer's position (JSON), replaced atomically.

Randomness in training is derived from (seed, step, rank), so the step is the whole data position and RNG
state: resuming from a checkpoint continues exactly as an uninterrupted run."""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError

MODEL_FILE, OPTIMIZER_FILE, TRAINER_FILE = "model.safetensors", "optimizer.safetensors", "trainer.json"


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors keyed 'state.<param>.<name>', JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_checkpoint(folder, model, optimizer, trainer: dict, write_model=None) -> Path:
    """Write model + optimiser + trainer state into `folder`, replacing any previous one in one step.

    `write_model(folder)` replaces the default `model.save(folder / "model.safetensors")` (LoRA runs save only
    their adapter)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if write_model is None:
            model.save(tmp / MODEL_FILE)
        else:
            write_model(tmp)
        tensors, meta = optimizer_to_flat(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"meta": json.dumps(meta)})
        (tmp / TRAINER_FILE).write_text(json.dumps(trainer, indent=2, default=float))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_training_checkpoint(folder, model, optimizer, read_model=None) -> dict:
    """Restore model and optimiser from `folder`; returns the trainer state (step, metrics, config).
    `read_model(folder)` replaces the default reading of model.safetensors into `model`."""
    from safetensors import safe_open

    folder = Path(folder)
    if not (folder / TRAINER_FILE).is_file():
        # a crash between the two renames of save_training_checkpoint leaves the previous state here
        old = folder.with_name(f".{folder.name}.old")
        if (old / TRAINER_FILE).is_file():
            folder = old
        else:
            raise CheckpointError(f"no training checkpoint in {folder}")
    if read_model is None:
        model.load_state_dict(type(model).load(folder / MODEL_FILE).state_dict())
    else:
        read_model(folder)
    with safe_open(str(folder / OPTIMIZER_FILE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["meta"])
    optimizer_from_flat(optimizer, tensors, meta)
    return json.loads((folder / TRAINER_FILE).read_text())


def append_log_row(path, fields: list[str], row: dict) -> None:
    """Append one row to a CSV training log, writing the header when the file is new."""
    path = Path(path)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
