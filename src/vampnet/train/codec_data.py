"""Codec training data: the audio files of a run (split into training and validation by file), excerpts of them at
the codec rate (mono, loudness-normalised, silent excerpts redrawn), and each step's batch with its quantizer-dropout
codebook counts, all pure functions of (seed, step, item) so that a resumed run sees the same data."""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import audio
from ..audio import AUDIO_EXTENSIONS, find_audio
from ..errors import AudioError, OptionError
from ..splits import split_of
from .loop import mix_seed

PCM_MAX = 32767  # preloaded audio is stored as 16-bit samples


def list_audio(paths) -> list[tuple[Path, str]]:
    """(path, name) of every audio file among `paths` (folders are searched recursively), sorted and de-duplicated."""
    found, seen = [], set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            items = find_audio([p])
        elif p.is_file():
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise AudioError(f"not an audio file ({', '.join(sorted(AUDIO_EXTENSIONS))}): {p}")
            items = [(p, p.name)]
        else:
            raise AudioError(f"audio file or folder not found: {p}")
        for path, rel in items:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, rel))
    return found


class ExcerptSampler:
    """Excerpts of n samples at the codec rate from a list of files, each a pure function of a seed.

    A file is drawn with probability proportional to its duration and a start uniformly inside it (files shorter
    than an excerpt are zero-padded); the excerpt is made mono, resampled and, unless quieter than
    `loudness_cutoff`, normalised to `target_lufs` (peak at most 1). Quiet excerpts are redrawn."""

    def __init__(self, files: list[Path], sample_rate: int, n_samples: int, target_lufs: float = -24.0,
                 loudness_cutoff: float = -40.0, max_tries: int = 50, preload: bool = False):
        self.sample_rate, self.n = int(sample_rate), int(n_samples)
        self.cache: list[tuple[torch.Tensor, float]] | None = None  # preloaded: (int16 samples, scale) per file
        self.target, self.cutoff, self.max_tries = target_lufs, loudness_cutoff, max_tries
        self.files, lengths = [], []
        for f in files:
            try:
                seconds = audio.duration(f)
            except AudioError:
                continue
            if seconds > 0:
                self.files.append(Path(f))
                lengths.append(int(seconds * self.sample_rate))
        if not self.files:
            raise AudioError("no readable audio files to train on")
        if preload:
            self.cache = self._decode_all()
            lengths = [int(x.shape[-1]) for x, _ in self.cache]
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.weights = self.lengths.double().clamp(min=self.n)

    def _decode_all(self) -> list[tuple[torch.Tensor, float]]:
        """Every file as (1, 1, N) mono 16-bit samples at the codec rate with the scale that restores them: half
        the memory of float32 (a 32 h corpus at 22.05 kHz: 5 GB instead of 10, which decided whether a training
        run survived beside other jobs on a 24 GB machine), at a quantisation noise 96 dB under each file's peak.
        Decoding and resampling release the GIL, so threads decode files side by side."""

        def decode(path):
            wav, sr = audio.load(path)
            wav = audio.resample(audio.to_mono(wav), sr, self.sample_rate).float()
            scale = float(wav.abs().max()) / PCM_MAX or 1.0
            return wav.div(scale).round_().to(torch.int16).contiguous(), scale

        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            return list(pool.map(decode, self.files))

    def read(self, index: int, start: int) -> torch.Tensor:
        """(1, 1, n) mono audio at the codec rate from file `index`, starting at `start` (codec-rate samples)."""
        if self.cache is not None:
            samples, scale = self.cache[index]
            wav = samples[..., start:start + self.n].float().mul_(scale)
            return F.pad(wav, (0, self.n - wav.shape[-1])) if wav.shape[-1] < self.n else wav
        end_s = (start + self.n) / self.sample_rate + 0.1  # a margin keeps the resampler's end effects outside
        wav, sr = audio.load(self.files[index], max_seconds=end_s)
        wav = audio.resample(audio.to_mono(wav), sr, self.sample_rate)[..., start:start + self.n]
        return F.pad(wav, (0, self.n - wav.shape[-1])) if wav.shape[-1] < self.n else wav

    def excerpt(self, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(self.max_tries):
            i = int(torch.multinomial(self.weights, 1, generator=gen))
            start = int(torch.randint(0, max(1, int(self.lengths[i]) - self.n + 1), (1,), generator=gen))
            x = self.read(i, start)
            loud = audio.loudness(x, self.sample_rate)
            if math.isfinite(loud) and loud >= self.cutoff:
                return audio.normalize_loudness(x, self.sample_rate, self.target)[0]
        raise AudioError(f"no excerpt louder than {self.cutoff} LUFS in {self.max_tries} tries; "
                         "is the training audio silent? (lower loudness_cutoff)")


def split_files(audio_paths, val_paths, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) of the audio among `audio_paths` (folders or files); without `val_paths`,
    a `val_fraction` of the files goes to validation by a hash of their name."""
    if not audio_paths:
        raise OptionError("a codec training run needs `audio` (folders or files)")
    items = list_audio(audio_paths)
    if not items:
        raise AudioError(f"no audio files found in {', '.join(audio_paths)}")
    if val_paths:
        return [p for p, _ in items], [p for p, _ in list_audio(val_paths)]
    train = [p for p, rel in items if split_of(rel, val_fraction) == "train"]
    val = [p for p, rel in items if split_of(rel, val_fraction) == "val"]
    if not train:
        train, val = [p for p, _ in items], []
    return train, val or train


def draw_n_quantizers(batch: int, n_codebooks: int, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """(batch,) int64 codebook counts: round(dropout * batch) items, chosen at random, get n ~ U{1..K}, the rest K."""
    n = torch.full((batch,), n_codebooks, dtype=torch.long)
    order = torch.randperm(batch, generator=generator)
    counts = torch.randint(1, n_codebooks + 1, (batch,), generator=generator)
    dropped = order[: int(round(dropout * batch))]
    n[dropped] = counts[dropped]
    return n


class StepBatches(torch.utils.data.Dataset):
    """Item s = one rank's rows `rows` of the batch of training step s: audio excerpts (b, 1, n) and codebook counts
    (b,) (quantizer dropout), each a pure function of (seed, s, item). Picklable (no model, only the data), so
    DataLoader workers can build batches ahead."""

    def __init__(self, data: ExcerptSampler, seed: int, batch_size: int, dropout: float, n_codebooks: int, rows: slice):
        self.data, self.seed, self.batch_size, self.dropout = data, seed, batch_size, dropout
        self.n_codebooks, self.rows = n_codebooks, rows

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = range(self.batch_size)[self.rows]
        x = torch.cat([self.data.excerpt(mix_seed(self.seed, step, i)) for i in items])
        n_q = draw_n_quantizers(self.batch_size, self.n_codebooks, self.dropout,
                                torch.Generator().manual_seed(mix_seed(self.seed, step)))
        return x, n_q[self.rows]
