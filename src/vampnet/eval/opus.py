"""Opus round trips through ffmpeg (libopus): the classical-codec baseline of the paper's compression results."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .. import audio
from ..errors import AudioError, OptionError

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the input rates libopus accepts
# Opus's documented range starts at 6 kbit/s; libopus takes lower targets but gives one and the same stream for
# all of them (about 5 kbit/s asked, 3.5-4.8 measured), so a lower target would only label a copy of that stream
OPUS_MIN_KBPS = 6.0


def ffmpeg_path() -> str:
    """The ffmpeg executable, or an AudioError saying how to get one."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise AudioError("the Opus baseline needs ffmpeg with libopus (apt install ffmpeg)")
    return path


def opus_roundtrip(wav: torch.Tensor, sample_rate: int, kbps: float) -> tuple[torch.Tensor, float]:
    """Encode (1, C, N) audio with libopus at `kbps` (VBR target, music mode) and decode it back.

    Returns (decoded audio, same shape and rate, time-aligned: ffmpeg removes Opus's pre-skip; real bitrate in
    kbit/s from the Opus packets' size, Ogg framing excluded). Audio is fed to libopus at the lowest rate it
    accepts that keeps the signal's whole band."""
    if not OPUS_MIN_KBPS <= kbps <= 512:
        raise OptionError(f"Opus bitrate {kbps:g} kbit/s is outside {OPUS_MIN_KBPS:g}..512 (below {OPUS_MIN_KBPS:g}, "
                          "libopus gives the same stream for every target)")
    ffmpeg = ffmpeg_path()
    opus_rate = next((r for r in OPUS_RATES if r >= sample_rate), 48000)
    channels, n = wav.shape[1], wav.shape[-1]
    with tempfile.TemporaryDirectory(prefix="vampnet-opus-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "out.opus", Path(tmp) / "out.wav"
        audio.save(src, wav, sample_rate, metadata=None)
        _run([ffmpeg, "-v", "error", "-y", "-i", str(src), "-ar", str(opus_rate), "-c:a", "libopus",
              "-b:a", f"{kbps}k", "-application", "audio", str(enc)])
        _run([ffmpeg, "-v", "error", "-y", "-i", str(enc), "-ar", str(sample_rate), "-ac", str(channels), str(dec)])
        out, _ = audio.load(dec)
        real_kbps = _packet_bytes(ffmpeg, enc) * 8 / 1000 / (n / sample_rate)
    if out.shape[-1] < n:
        out = torch.nn.functional.pad(out, (0, n - out.shape[-1]))
    return out[..., :n], real_kbps


def _packet_bytes(ffmpeg: str, path: Path) -> int:
    """Total size of the Opus packets in an Ogg file (the payload a bitrate counts), via ffprobe."""
    ffprobe = str(Path(ffmpeg).with_name("ffprobe"))
    if not Path(ffprobe).exists():
        return path.stat().st_size
    out = _run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size", "-of", "csv=p=0",
                str(path)])
    return sum(int(line) for line in out.split() if line.strip().isdigit())


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise AudioError(f"{Path(cmd[0]).name} took over 10 minutes") from None
    if done.returncode != 0:
        raise AudioError(f"{Path(cmd[0]).name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout
