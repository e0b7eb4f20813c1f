"""Training checkpoints: a folder holding the model (our safetensors format, loadable by the pipeline as is),
the optimiser state (safetensors, no pickle) and the trainer's position (JSON), replaced atomically.

Randomness in training is derived from (seed, step, rank), so the step is the whole data position and RNG
state: resuming from a checkpoint continues exactly as an uninterrupted run."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..serialization import atomic_path, default_mode, write_text_atomic

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


def save_optimizer(path, optimizer: torch.optim.Optimizer) -> None:
    """An optimiser's state as a safetensors file (no pickle), written atomically."""
    tensors, meta = optimizer_to_flat(optimizer)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})


def load_optimizer(path, optimizer: torch.optim.Optimizer) -> None:
    """Restore an optimiser from save_optimizer's file."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["meta"])
    optimizer_from_flat(optimizer, tensors, meta)


def save_training_checkpoint(folder, model, optimizer, trainer: dict, write_model=None) -> Path:
    """Write model + optimiser + trainer state into `folder`, replacing any previous one in one step.

    `write_model(folder)` replaces the default `model.save(folder / "model.safetensors")` (LoRA runs save only
    their adapter)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        os.chmod(tmp, default_mode(folder, directory=True))
        if write_model is None:
            model.save(tmp / MODEL_FILE)
        else:
            write_model(tmp)
        save_optimizer(tmp / OPTIMIZER_FILE, optimizer)
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


def find_training_checkpoint(folder) -> Path | None:
    """The complete checkpoint at `folder`, or the previous one a crash between the two renames of
    save_training_checkpoint left at `.<name>.old`; None when there is neither (a run that never saved)."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(f".{folder.name}.old")):
        if (candidate / TRAINER_FILE).is_file():
            return candidate
    return None


def remove_unfinished_writes(run_folder) -> list[Path]:
    """Delete what a killed process left half-written in a run folder: temporary checkpoint folders
    (`.<name>.<random>`) and temporary files of atomic writes (`.<name>.<random><suffix>.tmp`). The `.<name>.old`
    fallback is kept: find_training_checkpoint may still need it. Returns what was removed."""
    removed = []
    run_folder = Path(run_folder)
    if not run_folder.is_dir():
        return removed
    for path in run_folder.iterdir():
        if not path.name.startswith(".") or path.name.endswith(".old"):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed


def truncate_log(path, last_step: int, fields: list[str] | None = None) -> None:
    """Keep the log rows up to `last_step` (a resumed run logs the later steps again) and drop a half-written last
    line, rewriting the file in one step. With `fields` (the columns the resumed run writes) a log written with other
    columns (a newer version added a metric) gets them, the old rows' values kept under their names."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    header = next(csv.reader(lines[:1]))
    if "step" not in header:
        return
    column = header.index("step")

    def keep(line: str) -> bool:
        if not line.endswith("\n"):
            return False
        row = next(csv.reader([line]))
        return len(row) == len(header) and row[column].isdigit() and int(row[column]) <= last_step

    kept = [line for line in lines[1:] if keep(line)]
    if fields is not None and list(fields) != header:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(dict(zip(header, row)) for row in csv.reader(kept))
        write_text_atomic(path, buf.getvalue())
        return
    write_text_atomic(path, lines[0] + "".join(kept))


def load_training_checkpoint(folder, model, optimizer, read_model=None) -> dict:
    """Restore model and optimiser from `folder` (or its `.old` fallback, see find_training_checkpoint); returns the
    trainer state (step, metrics, config). `read_model(folder)` replaces the default reading of
    model.safetensors into `model`."""
    found = find_training_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no training checkpoint in {folder}")
    folder = found
    if read_model is None:
        model.load_state_dict(type(model).load(folder / MODEL_FILE).state_dict())
    else:
        read_model(folder)
    load_optimizer(folder / OPTIMIZER_FILE, optimizer)
    return json.loads((folder / TRAINER_FILE).read_text())


def append_log_row(path, fields: list[str], row: dict) -> None:
    """Append one row to a CSV training log, writing the header when the file is new. The line goes out in one
    write() call, so a killed process leaves whole lines (truncate_log drops the rows a resumed run redoes)."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    if not path.exists():
        writer.writeheader()
    writer.writerow(row)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, buf.getvalue().encode())
    finally:
        os.close(fd)