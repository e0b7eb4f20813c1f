"""vampnet: music generation and editing by masked acoustic token modelling (VampNet, ISMIR 2023).

Public API (loaded lazily, so `import vampnet` is fast). Its one side effect: before anything loads torch, CPU
threads are set to sleep rather than spin while they wait (OMP_WAIT_POLICY=PASSIVE unless set) and
$VAMPNET_THREADS, if set, chooses their number, so a busy machine does not slow vampnet 5-25x (`vampnet.threads`).

    Pipeline            the whole flow: audio -> tokens -> prompt -> coarse -> coarse-to-fine -> audio
    Codec               the neural audio codec (encode waveforms to token grids and back)
    MaskedTransformer   the coarse / coarse-to-fine token model
    generate            confidence-based parallel iterative decoding
    prompts             mask builders; PromptConfig, SamplingConfig describe a vamp, PipelineConfig how it runs
"""
from __future__ import annotations

import importlib

from .threads import prepare_environment, set_threads

prepare_environment()

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "vampnet.pipeline",
    "PipelineConfig": "vampnet.pipeline",
    "VampResult": "vampnet.pipeline",
    "Codec": "vampnet.codec",
    "CodecConfig": "vampnet.codec",
    "MaskedTransformer": "vampnet.model",
    "TransformerConfig": "vampnet.model",
    "generate": "vampnet.sampling",
    "SamplingConfig": "vampnet.sampling",
    "PromptConfig": "vampnet.prompts",
    "VampNetError": "vampnet.errors",
    "AudioError": "vampnet.errors",
    "CheckpointError": "vampnet.errors",
    "OptionError": "vampnet.errors",
    "CodesFileError": "vampnet.errors",
}
_SUBMODULES = {"threads", "prompts", "audio", "checkpoints", "sampling", "pipeline", "codec", "model", "errors"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES) + ["set_threads"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"vampnet.{name}")
    else:
        raise AttributeError(f"module 'vampnet' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
