"""Input effects (vampnet.effects): the pitch shift moves a tone by the semitones asked, keeps its length and
loudness, and, applied before encoding, moves a vamp that keeps every token by an octave at +12."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from vampnet import OptionError, Pipeline, audio
from vampnet.effects import InputEffects, pitch_shift
from vampnet.ui import Settings, Studio

librosa = pytest.importorskip("librosa")
SR = 22050


def harmonic_tone(f0: float, seconds: float = 2.0, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (0.2 * sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6))).float().view(1, 1, -1)


def pitch_of(wav: torch.Tensor, sr: int = SR) -> float:
    """The median YIN estimate (Hz) over the middle of the clip."""
    f = librosa.yin(wav.reshape(-1).numpy(), fmin=60, fmax=2000, sr=sr, frame_length=2048)
    return float(np.median(f[len(f) // 4: -len(f) // 4]))


def cents(f: float, target: float) -> float:
    return 1200 * math.log2(f / target)


@pytest.mark.parametrize("semitones", [12, -12, 7])
def test_pitch_shift_moves_a_tone_by_the_semitones_asked_keeping_its_length_and_loudness(semitones):
    wav = harmonic_tone(220.0)
    shifted = pitch_shift(wav, SR, semitones)
    assert shifted.shape == wav.shape
    assert abs(cents(pitch_of(shifted), 220.0 * 2 ** (semitones / 12))) < 10
    assert abs(audio.loudness(shifted, SR) - audio.loudness(wav, SR)) < 0.1


def test_no_shift_is_the_input_itself_and_the_range_is_an_octave_each_way():
    wav = harmonic_tone(220.0, 0.5)
    assert pitch_shift(wav, SR, 0) is wav
    assert InputEffects.from_values({"pitch_shift": -12}).pitch_shift == -12
    with pytest.raises(OptionError, match=r"pitch shift \(pitch_shift\) must be from -12 to 12 semitones, got 13"):
        InputEffects.from_values({"pitch_shift": 13})


def test_a_studio_vamp_keeping_every_token_with_pitch_shift_12_is_an_octave_up(tmp_path):
    """The shipped model's codec (trained): with every token kept the vamp is the codec's copy of its input, so the
    shift applied before encoding is what moves the pitch."""
    clip = tmp_path / "tone.wav"
    sf.write(clip, harmonic_tone(220.0)[0, 0].numpy(), SR)
    pipeline = Pipeline.from_pretrained()
    studio = Studio(pipeline=pipeline)
    try:  # a prompt of every token of every codebook: nothing generated
        kept = dict(preset="custom", periodic=1, upper_codebooks=pipeline.n_codebooks, seed=0, steps=1)
        plain = studio.generate(clip, Settings(**kept))
        shifted = studio.generate(clip, Settings(pitch_shift=12, **kept))
    finally:
        studio.close()
    assert plain.results[0].settings["generated_fraction"] == 0
    f_plain, f_shifted = pitch_of(plain.results[0].audio), pitch_of(shifted.results[0].audio)
    assert abs(cents(f_plain, 220.0)) < 30
    assert abs(cents(f_shifted, 2 * f_plain)) < 30
    assert shifted.results[0].settings["pitch_shift"] == 12 and "pitch_shift" not in plain.results[0].settings


def test_the_cli_shifts_before_encoding_and_refuses_a_shift_out_of_range_in_one_line(tmp_path, capsys):
    from vampnet.cli import main

    clip = tmp_path / "tone.wav"
    sf.write(clip, harmonic_tone(220.0)[0, 0].numpy(), SR)
    kept = ["--periodic", "1", "--upper-codebooks", "14", "--steps", "1", "--seed", "0", "-q"]
    assert main(["vamp", str(clip), "-o", str(tmp_path / "up.wav"), "--pitch-shift", "12", *kept]) == 0
    up, sr = sf.read(tmp_path / "up.wav", dtype="float32")
    assert abs(cents(pitch_of(torch.from_numpy(up), sr), 440.0)) < 30
    assert main(["vamp", str(clip), "-o", str(tmp_path / "bad.wav"), "--pitch-shift", "13", *kept]) != 0
    err = capsys.readouterr().err
    assert "'--pitch-shift'" in err and "Traceback" not in err and not (tmp_path / "bad.wav").exists()
