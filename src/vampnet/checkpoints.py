"""Model files: finding a model folder's files, converting official `.pth` checkpoints to our safetensors format,
describing a checkpoint, and downloading the official weights from the Hugging Face hub (lazily, on request only)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import huggingface_hub  # its submodules load on first use, so importing it is cheap
import torch

from .codec import Codec, CodecConfig
from .errors import CheckpointError, first_line
from .model import MaskedTransformer, TransformerConfig
from .model.official import official_keys
from .serialization import LoadedCheckpoint, key_problems, read_checkpoint

PARTS = ("codec", "coarse", "c2f")
EXTENSIONS = (".safetensors", ".pth")
OFFICIAL_REPO = "hugggof/vampnet"
OFFICIAL_FILES = {"codec": "codec.pth", "coarse": "coarse.pth", "c2f": "c2f.pth"}
OFFICIAL_LICENCE = "CC BY-NC-SA 4.0 (the official VampNet weights; non-commercial, separate from this package's licence)"


def find_model_files(folder) -> dict[str, Path | None]:
    """{'codec': path, 'coarse': path or None, 'c2f': path or None} for a folder of <part>.safetensors or <part>.pth."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    files: dict[str, Path | None] = {}
    for part in PARTS:
        files[part] = next((folder / f"{part}{ext}" for ext in EXTENSIONS if (folder / f"{part}{ext}").is_file()), None)
    if files["codec"] is None:
        raise CheckpointError(f"{folder} has no codec.safetensors or codec.pth")
    return files


def has_every_part(folder) -> bool:
    """Whether a folder holds a whole model: a codec, coarse and coarse-to-fine file each (.safetensors or .pth).
    A folder short of one (an interrupted download's leftovers) is no model to offer or load by name."""
    folder = Path(folder)
    return folder.is_dir() and all(any((folder / f"{part}{ext}").is_file() for ext in EXTENSIONS) for part in PARTS)


def kind_of(path) -> str:
    """'codec', 'transformer' or 'lora' for a checkpoint file, from its content (not its name)."""
    return _kind(read_checkpoint(path))


def _kind(ckpt: LoadedCheckpoint) -> str:
    if not ckpt.official:
        return ckpt.kind or "unknown"
    if ckpt.kind == "bare_state_dict":
        return "lora" if all("lora_" in k for k in ckpt.state_dict) else "unknown"
    if "encoder_rates" in ckpt.config:
        return "codec"
    if "embedding_dim" in ckpt.config:
        return "transformer"
    return "unknown"


def _expected_keys(ckpt: LoadedCheckpoint, kind: str) -> dict[str, tuple | None] | None:
    """The keys (with shapes where the container fixes them) that a checkpoint of this kind and configuration
    must hold; None for kinds without a fixed layout (adapters, unknown files)."""
    if kind == "codec":
        with torch.device("meta"):
            module = Codec(CodecConfig.from_dict(ckpt.config))
    elif kind == "transformer" and ckpt.official:
        config = TransformerConfig.from_official_kwargs(ckpt.config)
        lora = {k for k in ckpt.state_dict if ".lora_" in k}  # optional factors, checked when loading
        return {k: None for k in sorted(official_keys(config) | lora)}
    elif kind == "transformer":
        with torch.device("meta"):
            module = MaskedTransformer(TransformerConfig.from_dict(ckpt.config))
    else:
        return None
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def convert(src, dst, codec=None) -> Path:
    """Convert one official checkpoint (codec or transformer) to our format; transformers need the codec
    (a Codec or a path). The converted model gives the same outputs (tested)."""
    kind = kind_of(src)
    if kind == "codec":
        Codec.load(src).save(dst)
    elif kind == "transformer":
        if codec is None:
            raise CheckpointError(f"converting the transformer {src} needs its codec (--codec PATH)")
        codec = codec if isinstance(codec, Codec) else Codec.load(codec)
        MaskedTransformer.load(src, codec).save(dst)
    else:
        raise CheckpointError(f"{src} is neither a codec nor a transformer checkpoint")
    return Path(dst)


def convert_folder(src_dir, dst_dir) -> dict[str, Path]:
    """Convert a folder of official codec/coarse/c2f files into a folder of our safetensors files."""
    files = find_model_files(src_dir)
    dst_dir = Path(dst_dir)
    codec = Codec.load(files["codec"])
    out = {"codec": dst_dir / "codec.safetensors"}
    codec.save(out["codec"])
    for part in ("coarse", "c2f"):
        if files[part] is not None:
            out[part] = dst_dir / f"{part}.safetensors"
            MaskedTransformer.load(files[part], codec).save(out[part])
    return out


def describe(path) -> dict:
    """What `vampnet info` prints: format, kind, configuration, parameter count, and whether the file holds
    exactly the keys its kind and configuration need (`complete`; else the missing/unexpected/misshapen keys)."""
    ckpt = read_checkpoint(path)
    kind = _kind(ckpt)
    info = {
        "path": str(path),
        "format": "official (.pth container)" if ckpt.official else "vampnet (safetensors)",
        "kind": kind,
        "config": ckpt.config,
        "tensors": len(ckpt.state_dict),
        "parameters": sum(t.numel() for t in ckpt.state_dict.values()),
        "has_lora": any("lora_" in k for k in ckpt.state_dict),
    }
    try:
        expected = _expected_keys(ckpt, kind)
    except (CheckpointError, TypeError, ValueError) as e:
        first = first_line(e)
        raise CheckpointError(f"{path}: its {kind} configuration is unusable: {first}") from None
    if expected is not None:
        problems = key_problems(expected, ckpt.state_dict)
        info["complete"] = not any(problems.values())
        info.update({k: v for k, v in problems.items() if v})
    return info


def download_official(dest, repo_id: str = OFFICIAL_REPO, revision: str | None = None, parts=PARTS,
                      filenames: dict[str, str] | None = None) -> dict[str, Path]:
    """Download the official checkpoints from the Hugging Face hub into `dest`, atomically: the files arrive in a
    hidden sibling folder (`.NAME.download`, where huggingface_hub's lock and partial files live, so a later try
    resumes) and move into `dest` only when every one of them is complete. A failed download leaves `dest` as it
    was. Nothing is downloaded at import time or unless this is called."""
    names = {**OFFICIAL_FILES, **(filenames or {})}
    dest = Path(dest)
    staging = dest.parent / f".{dest.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    fetched = {}
    for part in parts:
        try:
            fetched[part] = Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=names[part],
                                                                 revision=revision, local_dir=staging))
        except Exception as e:
            raise CheckpointError(f"download of {names[part]} from {repo_id} failed: {first_line(e)} (the partial "
                                  f"download in {staging} is resumed by the next try)") from None
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, path in fetched.items():
        out[part] = dest / names[part]
        os.replace(path, out[part])  # same file system (a sibling folder): each move is atomic
    shutil.rmtree(staging, ignore_errors=True)
    return out
