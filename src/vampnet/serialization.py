"""Reading and writing checkpoint containers: our safetensors format (weights + JSON config in the metadata),
the official audiotools `.pth` container and PyTorch Lightning `.ckpt` files (both read with `weights_only=True`,
never executed), and atomic file writes.

This module knows nothing of architectures; codec and model modules build themselves from what it returns."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError, first_line

FORMAT_NAME = "vampnet"
FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    """A checkpoint's tensors and configuration, whatever container it came from."""

    state_dict: dict[str, torch.Tensor]
    config: dict
    kind: str | None  # "codec", "transformer", ... for our format; None for official files (no kind recorded)
    official: bool
    path: Path


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask can only set it, which would
    race with other threads writing files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def default_mode(path: Path, directory: bool = False) -> int:
    """The permissions a replaced `path` should get: the existing file's, else what a plain `open(path, "w")`
    (or `mkdir`) would give under the current umask. Temporary files are created private (0600/0700), so
    without this every file we write would be unreadable to other users, web servers and shared model folders."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step, on failure it is removed.

    Readers never see a half-written file and a failed write never destroys an existing one. The new file gets
    the existing file's permissions, or the umask's for a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` in one step (see atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_safetensors(path, state_dict: dict[str, torch.Tensor], kind: str, config: dict, extra: dict | None = None):
    """Write tensors and a JSON config as one safetensors file, atomically."""
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "config": json.dumps(config, sort_keys=True),
    }
    if extra:
        metadata["extra"] = json.dumps(extra, sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_checkpoint(path) -> LoadedCheckpoint:
    """Read our safetensors format or an official `.pth` container; raise CheckpointError with the reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"expected a checkpoint file, got a folder: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"checkpoint is empty: {path}")
    if _looks_like_safetensors(head):
        return _read_safetensors(path)
    return _read_official(path)


def _looks_like_safetensors(head: bytes) -> bool:
    # a safetensors file starts with an 8-byte little-endian header size followed by a JSON object
    return len(head) >= 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> LoadedCheckpoint:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several unrelated types for corrupt files
        raise CheckpointError(f"corrupt safetensors checkpoint {path}: {e}") from None
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is a safetensors file but not a vampnet checkpoint (no vampnet metadata)")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} has no readable config in its metadata") from None
    return LoadedCheckpoint(state, config, meta.get("kind"), official=False, path=path)


def _read_official(path: Path) -> LoadedCheckpoint:
    try:
        try:  # memory-mapped: weights are paged in from the file instead of copied into memory
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) files
    except pickle.UnpicklingError as e:
        # torch names the Python object (a "global") it refused; any other unpickling failure is a file that is
        # no pickle at all (junk, truncated)
        if "global" not in str(e).lower():
            raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch or safetensors file") from None
        # weights_only refuses anything but tensors and plain containers: such a file would run code when loaded
        raise CheckpointError(f"{path} holds Python objects, not plain weights; refusing to load it") from None
    except Exception as e:
        first = first_line(e)
        raise CheckpointError(f"cannot read checkpoint {path}: {first[:200]}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        metadata = obj.get("metadata") or {}
        kwargs = metadata.get("kwargs") if isinstance(metadata, dict) else None
        if not isinstance(kwargs, dict):
            raise CheckpointError(f"{path} has no metadata['kwargs']: not an official VampNet/LAC checkpoint")
        state = {k.removeprefix("_orig_mod."): v for k, v in obj["state_dict"].items()}
        return LoadedCheckpoint(state, dict(kwargs), None, official=True, path=path)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        # a bare state dict, e.g. an original LoRA file of lora_A/lora_B tensors
        return LoadedCheckpoint(dict(obj), {}, "bare_state_dict", official=True, path=path)
    raise CheckpointError(f"{path} is not a VampNet checkpoint (unexpected content)")


# PyTorch Lightning checkpoints pickle a few Lightning objects beside the weights: the hyper-parameters'
# AttributeDict (a dict subclass) and callback classes used as dict keys. They are read with weights_only=True,
# each such name answered by a plain dict, so loading never imports Lightning nor runs code from the file.
_LIGHTNING_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.")


def read_lightning_checkpoint(path, kind: str = "Lightning") -> dict:
    """A PyTorch Lightning checkpoint as a dict (state_dict, hyper_parameters, ...); `kind` names the model in
    errors ("cannot read the WaveBeat checkpoint ...")."""
    stand_ins: list[str] = []
    for _ in range(32):
        allowed = [(dict, name) for name in stand_ins]
        try:
            with torch.serialization.safe_globals(allowed):
                ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch reports a blocked global as an UnpicklingError
            message = str(e)
            found = re.search(r"GLOBAL ([\w.]+)", message)
            name = found.group(1) if found else None
            if name and name.startswith(_LIGHTNING_PREFIXES) and name not in stand_ins:
                stand_ins.append(name)
                continue
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            what = f"it needs '{name}', which is not a tensor or a Lightning object" if name else \
                next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(e).__name__)
            raise CheckpointError(f"cannot read the {kind} checkpoint {path} safely: {what}") from None
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{path} is not a {kind} checkpoint (not a dict)")
        return ckpt
    raise CheckpointError(f"cannot read the {kind} checkpoint {path}: too many unknown Lightning objects")


def key_problems(expected: dict[str, tuple | None], state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Compare a state dict with the keys (and shapes, where given) an architecture needs:
    {'missing': [...], 'unexpected': [...], 'misshapen': ["'key' has shape ..., the architecture needs ...", ...]}, in key order."""
    misshapen = [f"'{k}' has shape {tuple(state_dict[k].shape)}, the architecture needs {tuple(shape)}"
                 for k, shape in expected.items()
                 if k in state_dict and shape is not None and tuple(state_dict[k].shape) != tuple(shape)]
    return {"missing": [k for k in expected if k not in state_dict],
            "unexpected": [k for k in state_dict if k not in expected], "misshapen": misshapen}


def load_state_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source, assign: bool = False) -> None:
    """Load every parameter and buffer of `module` from `state_dict`, refusing missing, unexpected or misshapen keys.

    The original code loads non-strictly and silently keeps random weights for missing keys; we name the key."""
    own = module.state_dict()
    problems = key_problems({k: tuple(v.shape) for k, v in own.items()}, state_dict)
    for what, keys in problems.items():
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            if what == "misshapen":
                raise CheckpointError(f"{source}: key {keys[0]}{more}")
            raise CheckpointError(f"{source}: {what} key '{keys[0]}'{more}")
    # assign=True adopts the loaded tensors (for modules built on the meta device: no init, no copy)
    module.load_state_dict({k: state_dict[k].to(v.dtype) for k, v in own.items()}, strict=True, assign=assign)
