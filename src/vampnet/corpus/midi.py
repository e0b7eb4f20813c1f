"""MIDI to audio with FluidSynth and a free General MIDI soundfont: the renderer of music21 scores and of games'
MIDI music (openttd-openmsx)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .. import audio
from ..errors import CorpusError
from .debian import package_version
from .licences import CopyrightFile

# General MIDI soundfonts Debian ships, best first: (path, package that ships it). Each render picks one of those
# installed by seed, so the corpus hears the same notes through several sample sets.
SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    ("/usr/share/sounds/sf3/MuseScore_General.sf3", "musescore-general-soundfont"),
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
)

RENDER_SAMPLE_RATE = 44100
RENDER_LUFS = -20.0  # renders are levelled to this loudness (then peak-limited) so FLAC keeps its bits


def find_soundfonts() -> list[tuple[Path, str]]:
    """Installed General MIDI soundfonts we know, best first: (path, Debian package)."""
    return [(Path(p), pkg) for p, pkg in SOUNDFONTS if Path(p).is_file()]


def soundfont_info(path: Path, package: str | None) -> dict:
    """Path, package, version and licence of a soundfont, for the report."""
    info = {"path": str(path), "package": package, "version": None, "licence": None}
    copyright_file = Path("/usr/share/doc") / (package or "") / "copyright"
    if package and shutil.which("dpkg"):
        info["version"] = package_version(package)
    if package and copyright_file.is_file():
        info["licence"] = CopyrightFile(copyright_file.read_text(errors="replace")).licence_of(str(path))
    return info


def fluidsynth_render(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int = RENDER_SAMPLE_RATE,
                      timeout_s: float = 600.0) -> None:
    """Render a MIDI file to a float WAV with the fluidsynth command line (faster than real time, no audio device)."""
    if shutil.which("fluidsynth") is None:
        raise CorpusError("fluidsynth not found: run `sudo apt-get install fluidsynth`")
    # dynamic sample loading: only the instruments a file plays are read (decoding a whole .sf3 takes seconds per render)
    command = ["fluidsynth", "-ni", "-q", "-o", "synth.dynamic-sample-loading=1", "-g", "0.5", "-r", str(sample_rate),
               "-O", "float", "-T", "wav",
               "-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:  # a note left sounding makes fluidsynth render for ever
        raise CorpusError(f"fluidsynth did not finish {midi_path} within {timeout_s:.0f} s") from None
    if result.returncode != 0 or not wav_path.is_file():
        raise CorpusError(f"fluidsynth failed on {midi_path}: {(result.stderr or result.stdout).strip()[-300:]}")


def render_midi_file(midi_path: Path, soundfont: Path, max_s: float = 900.0) -> tuple[torch.Tensor, int]:
    """A MIDI file as audio ((1, 2, N), 44.1 kHz), trailing silence trimmed and levelled to RENDER_LUFS."""
    with tempfile.TemporaryDirectory(prefix="vampnet-midi-") as tmp:
        wav_path = Path(tmp) / "render.wav"
        fluidsynth_render(Path(midi_path), wav_path, Path(soundfont), timeout_s=60 + max_s)
        wav, sr = audio.load(wav_path, max_seconds=max_s)
    loud = (wav.abs().amax(dim=(0, 1)) > 1e-4).nonzero()
    if len(loud) == 0:
        raise CorpusError(f"MIDI file renders to silence: {midi_path}")
    wav = wav[..., : int(loud[-1]) + 1 + int(0.5 * sr)]  # keep half a second of release
    wav, _ = audio.normalize_loudness(wav, sr, RENDER_LUFS)
    return wav, sr
