"""Where named models live: the small model shipped inside the package, the official weights, or a folder.

`model_folder(None)` (or "small") is the package's own model, read offline from the installed package;
"official" is the folder `vampnet download` fills ($VAMPNET_HOME/official, default ~/.cache/vampnet/official);
anything else is taken as a path to a model folder."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

SHIPPED = "small"          # the name of the model inside the package (also the default)
OFFICIAL = "official"


def home() -> Path:
    """vampnet's data folder: $VAMPNET_HOME, default ~/.cache/vampnet."""
    return Path(os.environ.get("VAMPNET_HOME", Path.home() / ".cache" / "vampnet"))


def shipped_folder() -> Path:
    """The folder of the shipped small model inside the installed package."""
    from importlib.resources import files

    return Path(str(files("vampnet") / "weights" / SHIPPED))


def model_folder(name: str | os.PathLike | None = None) -> Path:
    """The model folder for a name (None/"small": shipped; "official": downloaded official weights) or a path."""
    if name is None or str(name) in (SHIPPED, "default"):
        folder = shipped_folder()
        if not (folder / "codec.safetensors").is_file():
            raise CheckpointError(f"the shipped model is missing from this installation ({folder}); reinstall vampnet")
        return folder
    if str(name) == OFFICIAL:
        folder = home() / OFFICIAL
        if not folder.is_dir() or not any(folder.iterdir()):
            raise CheckpointError(f"the official weights are not in {folder}: run 'vampnet download' once (needs "
                                  "network; set VAMPNET_HOME to keep them elsewhere)")
        return folder
    folder = Path(name)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder} (give a folder, 'small' or 'official')")
    return folder
