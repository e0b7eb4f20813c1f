"""The DAC-family neural audio codec (LAC variant used by VampNet): waveforms <-> (B, K, T) token grids."""
from .model import Codec, CodecConfig

__all__ = ["Codec", "CodecConfig"]
