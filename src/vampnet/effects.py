"""Effects on the input before it is encoded: pitch shift (upstream VampNet's "pitch shift amount").

`InputEffects` declares the options (vampnet.schema), so every front end offers them as it offers the prompt and
sampling options; `apply` runs them on a clip. The pitch shift is librosa's (`librosa.effects.pitch_shift`: a phase
vocoder time stretch, then a soxr resample back to the clip's length), already our beat tracker's library (the
`beats` extra). Measured on a 10 s harmonic tone at 44.1 kHz (2 CPU threads shared): +12 / -12 / +7 semitones took
205 / 90 / 117 ms and landed within 0.8 cents of the target pitch (YIN estimate). The alternatives: upstream's
torch-pitch-shift needs torchaudio, which has no release for our torch (2.13; torchaudio stops at 2.11); pedalboard
(Rubber Band) was as exact (within 1 cent) but 3-6 times slower here and is GPL-3, so it is not used."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import audio
from .errors import OptionError
from .schema import config_values, option

PITCH_RANGE = (-12, 12)  # semitones, as upstream's control


@dataclass(frozen=True)
class InputEffects:
    """What is done to the input before encoding; the defaults leave it untouched."""

    pitch_shift: int = option(0, "shift the input up or down this many semitones first (its tempo stays)",
                              label="pitch shift", unit="semitones", minimum=PITCH_RANGE[0], maximum=PITCH_RANGE[1],
                              step=1)

    def __post_init__(self):
        low, high = PITCH_RANGE
        if not low <= self.pitch_shift <= high:
            raise OptionError(f"pitch shift must be from {low} to {high} semitones, got {self.pitch_shift}")

    @classmethod
    def from_values(cls, values: dict) -> "InputEffects":
        """From user-facing values by option name (as the front ends hold them; other names are ignored)."""
        return cls(**config_values(cls, values))


def pitch_shift(wav: torch.Tensor, sample_rate: int, semitones: int) -> torch.Tensor:
    """(B, C, N) audio shifted `semitones` (tempo and length kept), at the input's loudness."""
    if semitones == 0:
        return wav
    try:
        import librosa
    except ImportError:
        raise OptionError("pitch shift needs librosa: pip install 'vampnet[beats]'") from None
    x = wav.detach().cpu().double().numpy()
    shifted = librosa.effects.pitch_shift(x, sr=sample_rate, n_steps=float(semitones), res_type="soxr_hq")
    out = torch.from_numpy(shifted).float()
    # the vocoder changes the level a little (about 1 dB at +12); the vamp keeps the loudness it is given
    return torch.cat([audio.match_loudness(out[i:i + 1], sample_rate, audio.loudness(wav[i:i + 1], sample_rate))
                      for i in range(out.shape[0])])


def apply(effects: InputEffects, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The clip with `effects` applied (itself where they change nothing)."""
    return pitch_shift(wav, sample_rate, effects.pitch_shift)
