"""CPU threads that share the machine politely: OpenMP workers that sleep while they wait, and how many of them.

torch's CPU kernels run on an OpenMP pool whose idle workers spin, burning a core while they wait for the next
parallel region. Beside another busy program (a DAW, a second job, another torch process) the spinning threads
of both fight for the cores and everything gets 5-25x slower (BENCHMARKS.md, "A busy CPU"). Sleeping workers
(`OMP_WAIT_POLICY=PASSIVE`) cost nothing measurable on an idle machine and keep a loaded one within ~2x.

The OpenMP runtime reads its wait policy once, when torch loads it, so `prepare_environment` runs when `vampnet`
is imported (before any of its modules imports torch) and only sets what the user has not set. The thread count
can change at any time (`set_threads`), and `VAMPNET_THREADS` sets it for every entry point: the CLI, the studio,
HARP, the OSC bridge and `import vampnet`. Results from different thread counts can differ in the last bits of
floats (kernels split sums differently), so rarely a sampled token differs; the same count gives the same output.
"""
from __future__ import annotations

import os
import sys

from .errors import OptionError

THREADS_ENV = "VAMPNET_THREADS"
WAIT_POLICY = "PASSIVE"

__all__ = ["THREADS_ENV", "WAIT_POLICY", "prepare_environment", "requested_threads", "set_threads", "thread_report"]

# what prepare_environment found and did, for thread_report
_state = {"prepared": False, "torch_was_loaded": False, "policy_from_user": False}


def requested_threads(value: str | int | None = None) -> int | None:
    """The thread count asked for by `value`, or by $VAMPNET_THREADS when value is None (None: torch's default).
    Raises OptionError for anything but a positive integer."""
    source = "--threads"
    if value is None:
        value = os.environ.get(THREADS_ENV)
        source = THREADS_ENV
        if value is None or str(value).strip() == "":
            return None
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1:
        raise OptionError(f"{source} must be a positive whole number of threads, got {value!r}")
    return count


def prepare_environment() -> None:
    """Choose OpenMP's wait policy (and the thread count of $VAMPNET_THREADS) before torch starts; a variable the
    user set is kept. After torch has loaded, only the thread count can still change (see set_threads)."""
    if _state["prepared"]:
        return
    _state["prepared"] = True
    _state["torch_was_loaded"] = "torch" in sys.modules
    _state["policy_from_user"] = "OMP_WAIT_POLICY" in os.environ
    if _state["torch_was_loaded"]:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    try:
        set_threads(None)
    except OptionError:
        pass  # reported when an entry point applies the variable (set_threads); an import must not fail


def set_threads(count: str | int | None = None) -> int | None:
    """Use `count` CPU threads (None: $VAMPNET_THREADS, else leave torch's choice); returns the count asked for.
    Before torch has loaded this only sets the environment torch will read, so this module never imports torch."""
    wanted = requested_threads(count)
    if wanted is None:
        return None
    torch = sys.modules.get("torch")
    if torch is None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(wanted)
    elif wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)
    return wanted


def thread_report() -> str:
    """One line: the threads and the wait policy this process runs with, and where the policy came from."""
    torch = sys.modules.get("torch")
    count = torch.get_num_threads() if torch is not None else os.environ.get("OMP_NUM_THREADS", os.cpu_count())
    policy = os.environ.get("OMP_WAIT_POLICY", "the runtime's default (spin, then sleep)")
    if _state["torch_was_loaded"] and not _state["policy_from_user"]:
        origin = "torch was loaded before vampnet, so vampnet could not choose it"
    elif _state["policy_from_user"]:
        origin = "set by the user"
    else:
        origin = "chosen by vampnet"
    return f"{count} CPU threads; OpenMP wait policy {policy} ({origin})"
