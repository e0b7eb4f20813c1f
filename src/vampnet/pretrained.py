"""Where named models live: the small model shipped inside the package, the official weights, the user's
fine-tuned models, or a folder.

`resolve(None)` (or "small") is the package's own model, read offline from the installed package, and
"small-loudness" its bundled fine-tune with a loudness control input; "official" is
the folder `vampnet download` fills ($VAMPNET_HOME/official, default ~/.cache/vampnet/official; a name only once it
holds every part, so an interrupted download's leftovers are "not downloaded"); a bare name found in the models
folder ($VAMPNET_HOME/models/NAME, where `vampnet finetune --name NAME` writes) is a fine-tuned model: its adapters
(or full weights) over the base model its manifest names; anything else is taken as a path to a model folder (a
fine-tuned folder anywhere is recognised by its manifest too)."""
from __future__ import annotations

import getpass
import json
import os
import re
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .checkpoints import has_every_part
from .errors import CheckpointError, OptionError

SHIPPED = "small"          # the name of the model inside the package (also the default)
OFFICIAL = "official"
# models that travel inside the package beside the shipped one (a folder of weights/ each): a fine-tune of the shipped
# model (a manifest as `vampnet finetune` writes, and the parts it changes) or a whole model folder (codec, coarse,
# c2f; a fine-tune of an earlier shipped model keeps that model's codec so): "small-loudness" follows a loudness
# envelope (MODEL_CARD.md)
BUNDLED = ("small-loudness",)
RESERVED = (SHIPPED, OFFICIAL, "default", *BUNDLED)
MANIFEST = "finetune.json"  # written by `vampnet finetune` beside its adapters: which base they go on
MANIFEST_FORMAT = "vampnet-finetune"


def home() -> Path:
    """vampnet's data folder: $VAMPNET_HOME, default ~/.cache/vampnet."""
    return Path(os.environ.get("VAMPNET_HOME", Path.home() / ".cache" / "vampnet"))


def _inductor_default_cache() -> str:
    """torch inductor's own kernel cache folder, <temp dir>/torchinductor_<user> (the rule of
    torch._inductor.runtime.cache_dir_utils.default_cache_dir, which tests compare with this; importing that module
    would import torch._dynamo, 1.5 s)."""
    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return os.path.join(tempfile.gettempdir(), "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def use_compile_cache() -> None:
    """Keep torch.compile's kernels in $VAMPNET_HOME/compiled unless the user named another cache, so a shape
    compiles from scratch once per machine (inductor's own default is a folder in /tmp, emptied at reboot).
    Importing torch._dynamo writes that default into the environment, so it counts as unset here."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(_inductor_default_cache()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(home() / "compiled")


def models_home() -> Path:
    """The folder of the user's fine-tuned models, one sub-folder per name: $VAMPNET_HOME/models."""
    return home() / "models"


def shipped_folder(name: str = SHIPPED) -> Path:
    """The folder of the shipped small model (or of a BUNDLED fine-tune of it) inside the installed package."""
    return Path(str(files("vampnet") / "weights" / name))


@dataclass(frozen=True)
class ModelSource:
    """What a model name stands for: a base model folder (codec and transformers), and for a fine-tuned model the
    adapter folder (`lora`) or the full fine-tuned weights (`coarse`, `c2f`) that go over it."""

    name: str
    base: Path
    lora: Path | None = None
    coarse: Path | None = None
    c2f: Path | None = None

    @property
    def finetuned(self) -> bool:
        return any(p is not None for p in (self.lora, self.coarse, self.c2f))

    @property
    def tuned_folder(self) -> Path | None:
        """A fine-tuned model's own folder (its adapters or full weights, its manifest); None for a plain model."""
        tuned = self.lora or (self.coarse or self.c2f)
        return None if tuned is None else tuned if tuned == self.lora else tuned.parent

    def load_options(self) -> dict:
        """The fine-tuned files as `Pipeline.load` keywords (empty for a plain model)."""
        return {k: v for k, v in (("lora", self.lora), ("coarse", self.coarse), ("c2f", self.c2f)) if v is not None}


def is_valid_name(name: str) -> bool:
    """A fine-tuned model's name: letters, digits, '-', '_' and '.', not a reserved name, not hidden."""
    return (bool(name) and not name.startswith(".") and name not in RESERVED
            and all(c.isalnum() or c in "-_." for c in name))


def resolve(name: str | os.PathLike | None = None) -> ModelSource:
    """The model a name stands for (None/"small": shipped; "official": downloaded; a fine-tuned model's name; a
    folder path). Raises CheckpointError naming what is available when nothing matches."""
    if name is None or str(name) in (SHIPPED, "default", ""):
        folder = shipped_folder()
        if not (folder / "codec.safetensors").is_file():
            raise CheckpointError(f"the shipped model is missing from this installation ({folder}); reinstall vampnet")
        return ModelSource(SHIPPED, folder)
    text = str(name)
    if text == OFFICIAL:
        folder = home() / OFFICIAL
        if not has_every_part(folder):
            raise CheckpointError(f"the official weights are not (all) in {folder}: run 'vampnet download' (needs "
                                  "network; set VAMPNET_HOME to keep them elsewhere)")
        return ModelSource(OFFICIAL, folder)
    if text in BUNDLED:
        folder = shipped_folder(text)
        if has_every_part(folder):  # a whole model of its own (one made with an earlier shipped codec keeps it)
            return ModelSource(text, folder)
        if not (folder / MANIFEST).is_file():
            raise CheckpointError(f"the bundled model {text} is missing from this installation ({folder}); "
                                  "reinstall vampnet")
        return _finetuned(text, folder)
    named = models_home() / text
    if is_valid_name(text) and (named / MANIFEST).is_file():
        return _finetuned(text, named)
    folder = Path(name)
    if (folder / MANIFEST).is_file():
        return _finetuned(text, folder)
    if not folder.is_dir():
        known = ", ".join(available_models())
        raise CheckpointError(f"model not found: {text} (give one of {known}, or a model folder)")
    return ModelSource(text, folder)


def model_folder(name: str | os.PathLike | None = None) -> Path:
    """The folder holding a named model's codec and base transformers (for a fine-tuned model: its base's)."""
    return resolve(name).base


def finetuned_models() -> list[str]:
    """Names of the fine-tuned models in the models folder, sorted."""
    root = models_home()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_valid_name(p.name) and (p / MANIFEST).is_file())


def available_models() -> list[str]:
    """What a model menu offers: the shipped model and its bundled fine-tunes, the official one when downloaded,
    each of the user's fine-tuned models."""
    bundled = [name for name in BUNDLED if _installed(shipped_folder(name))]
    return [SHIPPED, *bundled, *([OFFICIAL] if has_every_part(home() / OFFICIAL) else []), *finetuned_models()]


def manifest(base: str, kind: str, **details) -> dict:
    """The content of a fine-tuned folder's manifest (`base`: a model name or an absolute folder path)."""
    if kind not in ("lora", "full"):
        raise OptionError(f"a fine-tune is 'lora' or 'full', got {kind!r}")
    return {"format": MANIFEST_FORMAT, "version": 1, "base": base, "kind": kind, **details}


def _installed(folder: Path) -> bool:
    """Whether a bundled model's folder is there: a fine-tune's manifest, or a whole model."""
    return (folder / MANIFEST).is_file() or has_every_part(folder)


def _finetuned(name: str, folder: Path) -> ModelSource:
    try:
        info = json.loads((folder / MANIFEST).read_text())
        base, kind = info["base"], info["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{folder / MANIFEST} is not a readable fine-tune manifest") from None
    if info.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{folder / MANIFEST} is not a vampnet fine-tune manifest")
    source = resolve(base)
    if source.finetuned:
        raise CheckpointError(f"{name}: its base {base} is itself a fine-tuned model")
    if kind == "lora":
        return ModelSource(name, source.base, lora=folder)
    parts = {p: folder / f"{p}.safetensors" for p in ("coarse", "c2f") if (folder / f"{p}.safetensors").is_file()}
    if not parts:
        raise CheckpointError(f"{folder} holds no fine-tuned coarse.safetensors or c2f.safetensors")
    return ModelSource(name, source.base, **parts)
