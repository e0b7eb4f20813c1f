"""Reading and writing checkpoint containers: our safetensors format (weights + JSON config in the metadata),
the official audiotools `.pth` container (read with `weights_only=True`, never executed), and atomic file writes.

This module knows nothing of architectures; codec and model modules build themselves from what it returns."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step, on failure it is removed.

    Readers never see a half-written file and a failed write never destroys an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_safetensors(path, state_dict: dict[str, torch.Tensor], kind: str, config: dict, extra: dict | None = None):
    """Write tensors and a JSON config as one safetensors file, atomically."""
    from safetensors.torch import save_file

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
    from safetensors import safe_open

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
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
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


def load_state_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source, assign: bool = False) -> None:
    """Load every parameter and buffer of `module` from `state_dict`, refusing missing, unexpected or misshapen keys.

    The original code loads non-strictly and silently keeps random weights for missing keys; we name the key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}'" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(state_dict[k].shape)}, the architecture needs {tuple(v.shape)}")
    # assign=True adopts the loaded tensors (for modules built on the meta device: no init, no copy)
    module.load_state_dict({k: state_dict[k].to(v.dtype) for k, v in own.items()}, strict=True, assign=assign)
