"""Hiding what optional libraries print that is harmless here, so a command's output is only its own.

torchao (loaded for int8, and by peft whenever it injects LoRA adapters) logs that its CUDA/mxfp8 kernels fail to
load on machines without them and makes torch's `_pytree` warn that registering enums is deprecated; neither
affects the CPU code vampnet uses."""
from __future__ import annotations

import contextlib
import logging
import warnings

NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_torchao():
    """Inside: torchao's and torch `_pytree`'s log messages below ERROR and Python warnings are not shown."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
