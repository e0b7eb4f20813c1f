"""Freed memory kept for reuse, so large tensors do not page-fault on every layer (Linux with glibc).

glibc serves every allocation above its mmap threshold (32 MB at most, adapting upwards from 128 KB) with fresh
pages from the kernel and hands them back when the block is freed. Audio models allocate and free tensors of that
size in every layer (the full-size codec on a 10 s clip: 64 channels x 441 000 samples, 113 MB in float32), so the
first touch of every 4 KB page of every one of them is a page fault that the kernel answers with a zeroed page.
On a measured Xeon that was two thirds of an elementwise operation's time on such a tensor (a 113 MB multiply:
111 ms, 33 ms with the blocks kept) and half of the codec's (BENCHMARKS.md, "Page faults").

`keep_freed_memory()` asks glibc (`mallopt`) to serve large blocks from its heap and not to give the heap's free
top back to the kernel, so a freed block is reused by the next tensor of its size: what CPU inference guides get
from jemalloc or tcmalloc with decay disabled, without preloading another allocator. The process's peak memory
stays that of its largest moment; memory freed after it stays with the process until it exits (a server keeps
what its largest job needed). It runs when `vampnet` is imported, like the thread settings (`vampnet.threads`),
unless $VAMPNET_KEEP_FREED_MEMORY is 0 or the user tuned glibc through its own MALLOC_* variables. Elsewhere
(macOS, Windows, musl) it does nothing."""
from __future__ import annotations

import ctypes
import os
import sys

KEEP_ENV = "VAMPNET_KEEP_FREED_MEMORY"
USER_TUNING = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
TRIM_NEVER = 2**31 - 1                 # the largest value mallopt takes: keep up to 2 GB of free heap top

__all__ = ["KEEP_ENV", "keep_freed_memory", "state"]

_state = {"kept": False, "why": "not asked yet"}


def _glibc():
    """The C library if it is glibc (it has mallopt and says its version), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, ValueError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the process for reuse (see the module's docstring); True if it is in effect.
    Idempotent, and never raises: an allocator setting must not stop an import."""
    if _state["kept"]:
        return True
    if os.environ.get(KEEP_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        _state["why"] = f"{KEEP_ENV} is off"
        return False
    tuned = [v for v in USER_TUNING if v in os.environ]
    if tuned:
        _state["why"] = f"left to the user's {tuned[0]}"
        return False
    libc = _glibc()
    if libc is None:
        _state["why"] = "not glibc"
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) == 1
    _state.update(kept=ok, why="in effect" if ok else "mallopt refused")
    return ok


def state() -> str:
    """One line for reports: whether freed memory is kept, and if not, why."""
    return "freed memory kept for reuse" if _state["kept"] else f"system allocator defaults ({_state['why']})"
