"""Tokenised datasets: audio folders -> codec tokens on disk, so training never runs the codec encoder; a dataset
folder -> one compact pack file (train/pack.py) to carry to another machine. Training reads either.

Layout of a dataset folder (all standard formats, inspectable with numpy / a spreadsheet):
    manifest.json         codec identity and configuration, tokenizer settings
    index.csv             one row per kept excerpt: source file, split, start, frames, loudness, token file, offset
    tokens/<id>.npy       int16 (codebooks, frames) tokens of one source file's kept excerpts, concatenated;
                          opened memory-mapped
    loudness/<id>.npy     float16 (frames,) the loudness control (vampnet.controls, dB) of the same frames, measured
                          on the normalised excerpt the codec encoded (absent in datasets made before controls)
Files are assigned to train/validation by a hash of their relative path (deterministic, independent of order);
excerpts quieter than a loudness cutoff are skipped; re-running resumes where it stopped."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import audio
from ..audio import find_audio
from ..codec.bulk import BulkEncoder
from ..controls import FLOOR_DB, WINDOW_HOPS, loudness_db
from ..errors import AudioError, OptionError, VampNetError
from ..serialization import atomic_path
from ..splits import SPLIT_SALT, VAL_FRACTION, split_of
from .pack import read_pack, read_pack_controls, read_pack_meta, write_pack

INDEX_FIELDS = ["source", "split", "excerpt", "start_s", "frames", "loudness", "tokens_file", "offset"]


class DatasetError(VampNetError):
    """A token dataset is missing, inconsistent, or was made with another codec or settings."""


@dataclass(frozen=True)
class TokenizeConfig:
    """How audio becomes training tokens."""

    excerpt_s: float = 10.0          # audio is cut into excerpts of this length (the last may be shorter)
    min_excerpt_s: float = 1.0       # shorter leftovers are dropped
    loudness_cutoff: float = -40.0   # excerpts quieter than this (LUFS) are skipped as silence
    target_lufs: float = -24.0       # loudness every excerpt is normalised to before encoding (as at inference)
    val_fraction: float = VAL_FRACTION  # share of source files that go to validation
    split_salt: str = SPLIT_SALT        # changes which files land in validation

    def __post_init__(self):
        if self.excerpt_s <= 0 or not 0 < self.min_excerpt_s <= self.excerpt_s:
            raise OptionError("excerpt lengths must be positive, with min_excerpt_s <= excerpt_s")
        if not 0 <= self.val_fraction < 1:
            raise OptionError("val_fraction must be in [0, 1)")


def read_index(folder) -> list[dict]:
    path = Path(folder) / "index.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["excerpt"], r["frames"], r["offset"] = int(r["excerpt"]), int(r["frames"]), int(r["offset"])
        r["start_s"], r["loudness"] = float(r["start_s"]), float(r["loudness"])
    return rows


def _write_index(folder: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(folder / "index.csv") as tmp:
        tmp.write_text(buf.getvalue())


def read_manifest(folder) -> dict:
    """The manifest of a dataset folder or of a token pack file."""
    if Path(folder).is_file():
        return read_pack_meta(folder)["manifest"]
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{folder} is not a token dataset (no manifest.json)")
    return json.loads(path.read_text())


def tokenize(audio_dirs, out_dir, codec, config: TokenizeConfig = TokenizeConfig(), codec_path: str | None = None,
             batch_size: int = 4, progress: bool = True, encode=None) -> dict:
    """Encode every audio file under `audio_dirs` into the dataset folder `out_dir`; returns summary counts.

    Files already in the index are skipped, so an interrupted run continues where it stopped. Unreadable files
    are reported and skipped, not fatal. `encode` maps (B, 1, N) audio to (B, K, T) codes; by default a
    `BulkEncoder` of the codec (the codes of `codec.encode`, sooner)."""
    out = Path(out_dir)
    (out / "tokens").mkdir(parents=True, exist_ok=True)
    (out / "loudness").mkdir(exist_ok=True)
    manifest = {
        "format": "vampnet-tokens", "version": 1, "codec_fingerprint": codec.fingerprint(),
        "codec_path": str(codec_path) if codec_path else None, "codec_config": codec.config.to_dict(),
        "sample_rate": codec.sample_rate, "hop_length": codec.hop_length, "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size, "tokenize": asdict(config),
        "controls": {"loudness": {"window_hops": WINDOW_HOPS, "floor_db": FLOOR_DB}},
    }
    if (out / "manifest.json").exists():
        old = read_manifest(out)
        for key in ("codec_fingerprint", "tokenize"):
            if old.get(key) != manifest[key]:
                raise DatasetError(f"{out} was made with a different {key.replace('_', ' ')}; use a new folder")
    else:
        with atomic_path(out / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))
    rows = read_index(out)
    done = {r["source"] for r in rows} | _skipped_sources(out)
    files = find_audio(audio_dirs)
    todo = [(p, rel) for p, rel in files if rel not in done]
    stats = {"files": len(files), "already_done": len(files) - len(todo), "encoded": 0, "excerpts": 0,
             "silent_excerpts": 0, "unreadable": 0}
    if encode is None:
        encode = BulkEncoder(codec)
    for path, rel in tqdm(todo, desc="tokenize", unit="file", disable=not progress):
        try:
            wav, sr = audio.load(path)
        except AudioError as e:
            stats["unreadable"] += 1
            _record_skip(out, rel, str(e))
            continue
        wav = audio.resample(audio.to_mono(wav), sr, codec.sample_rate)
        excerpts, silent = _excerpts(wav, codec.sample_rate, config)
        stats["silent_excerpts"] += silent
        token_file = f"tokens/{hashlib.sha1(rel.encode()).hexdigest()[:20]}.npy"
        new_rows, blocks, levels, offset = [], [], [], 0
        for group in _batches(excerpts, batch_size):
            with torch.inference_mode():
                codes = encode(torch.cat([x for _, x, _ in group])).cpu()
            for (start, x, loud), c in zip(group, codes):
                frames = math.ceil(x.shape[-1] / codec.hop_length)
                blocks.append(c[:, :frames].numpy().astype(np.int16))
                levels.append(loudness_db(x, codec.hop_length).astype(np.float16))
                new_rows.append({"source": rel, "split": split_of(rel, config.val_fraction, config.split_salt),
                                 "excerpt": len(new_rows), "start_s": round(start / codec.sample_rate, 4),
                                 "frames": frames, "loudness": round(loud, 2), "tokens_file": token_file, "offset": offset})
                offset += frames
        if not blocks:
            _record_skip(out, rel, "silent")
            continue
        with atomic_path(out / loudness_file(token_file)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(levels))
        with atomic_path(out / token_file) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(blocks, axis=1))
        rows.extend(new_rows)
        _write_index(out, rows)  # after the tokens: an indexed file is always complete
        stats["encoded"] += 1
        stats["excerpts"] += len(new_rows)
    return stats


def loudness_file(token_file: str) -> str:
    """The loudness control file beside a tokens file: tokens/<id>.npy -> loudness/<id>.npy."""
    return "loudness/" + Path(token_file).name


def _excerpts(wav, sr, config):
    """Cut (1, 1, N) audio into excerpts; keep those above the loudness cutoff, normalised to the target.
    Equal-length excerpts come first so they batch together."""
    n = int(round(config.excerpt_s * sr))
    kept, silent = [], 0
    for start in range(0, wav.shape[-1], n):
        x = wav[..., start:start + n]
        if x.shape[-1] < config.min_excerpt_s * sr:
            continue
        loud = audio.loudness(x, sr)
        if not math.isfinite(loud) or loud < config.loudness_cutoff:
            silent += 1
            continue
        x, _ = audio.normalize_loudness(x, sr, config.target_lufs, measured=loud)
        kept.append((start, x, loud))
    return kept, silent


def _batches(items, size):
    """Groups of equal-length excerpts, at most `size` each."""
    group = []
    for item in items:
        if group and (len(group) == size or group[0][1].shape[-1] != item[1].shape[-1]):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _record_skip(out: Path, rel: str, reason: str) -> None:
    with open(out / "skipped.csv", "a", newline="") as f:
        csv.writer(f).writerow([rel, reason])


def _skipped_sources(out: Path) -> set[str]:
    path = out / "skipped.csv"
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        return {row[0] for row in csv.reader(f) if row}


def make_pack(dataset, output, codec, n_codebooks: int | None = None, max_train_hours: float | None = None) -> dict:
    """Write the dataset folder `dataset` (vampnet tokenize) as one pack file; returns its summary. `codec` is the
    codec that made the dataset (checked by its fingerprint): the pack keeps its codebook vectors.

    Keeps the first `n_codebooks` codebooks (all by default) and, with `max_train_hours`, only as many training
    files as fit in that many hours, chosen by a hash of their path (a stable, mixed subset); validation is kept
    whole."""
    dataset = Path(dataset)
    if dataset.is_file():
        raise DatasetError(f"{dataset} is a file; a pack is made from a dataset folder (vampnet tokenize)")
    manifest = read_manifest(dataset)
    if codec.fingerprint() != manifest.get("codec_fingerprint"):
        raise DatasetError(f"{dataset} was made with another codec than the one given (fingerprints differ)")
    rows = read_index(dataset)
    if not rows:
        raise DatasetError(f"{dataset} has no excerpts")
    k_all = int(manifest["n_codebooks"])
    k = k_all if n_codebooks is None else int(n_codebooks)
    if not 1 <= k <= k_all:
        raise DatasetError(f"the dataset has {k_all} codebooks; cannot keep {k}")
    rows = _choose_files(rows, max_train_hours, manifest["sample_rate"] / manifest["hop_length"])

    blocks, levels, out_rows, base = [], [], [], 0
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["tokens_file"], []).append(r)
    for name, file_rows in by_file.items():
        tokens = np.load(dataset / name, mmap_mode="r")
        used = max(r["offset"] + r["frames"] for r in file_rows)
        if tokens.ndim != 2 or tokens.shape[0] < k or tokens.shape[1] < used:
            raise DatasetError(f"{dataset / name} does not hold the frames its index rows name")
        blocks.append(np.asarray(tokens[:k, :used]))
        level_path = dataset / loudness_file(name)
        levels.append(np.load(level_path)[:used].astype(np.float32) if level_path.is_file() else None)
        for r in file_rows:
            out_rows.append({key: r[key] for key in ("source", "split", "excerpt", "start_s", "frames", "loudness")}
                            | {"offset": base + r["offset"]})
        base += used
    codes = np.concatenate(blocks, axis=1) if blocks else np.zeros((k, 0), np.int16)
    codebooks = np.stack([q.codebook.weight.detach().float().cpu().numpy() for q in codec.quantizer.quantizers])
    # the loudness control travels when every file has it (datasets made before controls have none)
    loudness = np.concatenate(levels) if levels and all(x is not None for x in levels) else None
    size = write_pack(output, manifest | {"n_codebooks": k, "codec_n_codebooks": k_all}, out_rows, codes, codebooks,
                      loudness)
    hours = sum(r["frames"] for r in out_rows) / (manifest["sample_rate"] / manifest["hop_length"]) / 3600
    return {"file": str(output), "bytes": size, "codebooks": k, "hours": round(hours, 4),
            "bytes_per_hour": round(size / hours) if hours else None,
            "excerpts": {s: sum(r["split"] == s for r in out_rows) for s in ("train", "val")}}


def _choose_files(rows: list[dict], max_train_hours: float | None, frame_rate: float) -> list[dict]:
    """All rows, or every validation row and the training files (whole) that fit in max_train_hours."""
    if max_train_hours is None:
        return rows
    if max_train_hours <= 0:
        raise DatasetError("max_train_hours must be positive")
    frames: dict[str, int] = {}
    for r in rows:
        if r["split"] == "train":
            frames[r["source"]] = frames.get(r["source"], 0) + r["frames"]
    budget, keep = max_train_hours * 3600 * frame_rate, set()
    for source in sorted(frames, key=lambda s: hashlib.sha1(s.encode()).hexdigest()):
        if frames[source] <= budget:
            keep.add(source)
            budget -= frames[source]
    return [r for r in rows if r["split"] != "train" or r["source"] in keep]


class TokenDataset:
    """Windows of tokens from one split of a dataset folder (memory-mapped) or of a token pack file (in memory).

    `batch(indices)` returns (B, K, window) int64 windows; `sample_indices(generator, n)` draws windows uniformly
    over all frames (an excerpt long enough for the window is chosen with probability proportional to its
    length, then an offset). Validation uses `fixed_indices(n)`: n windows spread evenly over the split.
    `codebooks` is a pack's codec codebook vectors (K_codec, V, L) tensor, None for a folder. `loudness(indices)`
    returns the windows' loudness control (B, window) in dB."""

    def __init__(self, folder, split: str, window_frames: int, n_codebooks: int | None = None):
        self.folder = Path(folder)
        self.window = int(window_frames)
        self._arrays: dict[str, np.ndarray] = {}
        self._levels: dict[str, np.ndarray] = {}
        self.codebooks = None
        if self.folder.is_file():
            self.manifest, all_rows, codes, codebooks, controls = _load_pack(str(self.folder.resolve()),
                                                                             self.folder.stat().st_mtime_ns)
            self._arrays[""] = codes
            if "loudness" in controls:
                self._levels[""] = controls["loudness"]
            self.codebooks = torch.from_numpy(codebooks)
            all_rows = [r | {"tokens_file": ""} for r in all_rows]
        else:
            self.manifest = read_manifest(folder)
            all_rows = read_index(folder)
        self.n_codebooks = n_codebooks or self.manifest["n_codebooks"]
        if self.n_codebooks > self.manifest["n_codebooks"]:
            raise DatasetError(f"the dataset has {self.manifest['n_codebooks']} codebooks, {self.n_codebooks} requested")
        rows = [r for r in all_rows if r["split"] == split and r["frames"] >= self.window]
        if not rows:
            raise DatasetError(f"{folder} has no {split} excerpts of at least {self.window} frames")
        self.rows = rows
        spans = np.array([r["frames"] - self.window + 1 for r in rows], dtype=np.int64)
        self._cum = np.concatenate([[0], np.cumsum(spans)])

    def __len__(self) -> int:
        """Number of distinct windows."""
        return int(self._cum[-1])

    def _tokens(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = np.load(self.folder / name, mmap_mode="r")
        return self._arrays[name]

    def _where(self, index: int) -> tuple[str, int]:
        """(tokens file, first frame) of window `index`."""
        row = int(np.searchsorted(self._cum, index, side="right") - 1)
        r = self.rows[row]
        return r["tokens_file"], r["offset"] + index - int(self._cum[row])

    def window_at(self, index: int) -> np.ndarray:
        name, start = self._where(index)
        return self._tokens(name)[: self.n_codebooks, start:start + self.window]

    def _loudness(self, name: str) -> np.ndarray:
        if name not in self._levels:
            path = self.folder / loudness_file(name)
            if self.folder.is_file() or not path.is_file():
                raise DatasetError(f"{self.folder} has no loudness control (tokenised before controls existed, or "
                                   "packed from such a dataset): tokenise the audio again into a new folder")
            self._levels[name] = np.load(path, mmap_mode="r")
        return self._levels[name]

    def loudness(self, indices) -> torch.Tensor:
        """(B, window) float32 loudness control (dB) of the windows `indices`, aligned with `batch(indices)`."""
        out = []
        for i in indices:
            name, start = self._where(i)
            out.append(np.asarray(self._loudness(name)[start:start + self.window], np.float32))
        return torch.from_numpy(np.stack(out))

    def sample_indices(self, generator: torch.Generator, n: int) -> list[int]:
        return torch.randint(0, len(self), (n,), generator=generator).tolist()

    def fixed_indices(self, limit: int | None = None) -> list[int]:
        """`limit` windows spread evenly over the split (every excerpt's first window when limit is None)."""
        if limit is None:
            return [int(c) for c in self._cum[:-1]]
        return sorted({int(round(x)) for x in np.linspace(0, len(self) - 1, limit)})

    def batch(self, indices) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.window_at(i) for i in indices]).astype(np.int64))


@lru_cache(maxsize=2)
def _load_pack(path: str, mtime_ns: int):
    """A pack read once for both splits (keyed by its modification time, so a rewritten pack is read again)."""
    return (*read_pack(path), read_pack_controls(path))
