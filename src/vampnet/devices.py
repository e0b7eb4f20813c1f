"""Whether a torch device the user names exists on this machine, answered before anything is loaded onto it.

torch's own answers to an absent device are assertions deep inside a model's `.to()` ("Torch not compiled with CUDA
enabled"); `check_device` turns every such case into one `OptionError` that names the device and the reason."""
from __future__ import annotations

import torch

from .errors import OptionError, first_line


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device when it can hold tensors here; OptionError ("device 'cuda' is not available
    here: ...") when it is malformed or absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise OptionError(f"device {str(device)!r} is not a torch device ({first_line(e)}); try cpu or cuda") from None
    reason = _absence(dev)
    if reason:
        raise OptionError(f"device {str(device)!r} is not available here: {reason}")
    return dev


def _absence(dev: torch.device) -> str | None:
    """Why `dev` cannot be used on this machine, or None when it can."""
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            return "this torch was built without CUDA (use cpu, or install a CUDA build of torch)"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES), use cpu"
        if dev.index is not None and dev.index >= count:
            return f"this machine has {count} CUDA device(s), numbered from 0"
        return None
    if dev.type == "mps":
        return None if torch.backends.mps.is_available() else "MPS (Apple GPUs) is not available on this machine"
    try:  # other back ends (xpu, ...): the only sure test is to put a tensor there
        torch.empty(1, device=dev)
    except Exception as e:  # noqa: BLE001 - each back end fails in its own way
        return first_line(e)
    return None
