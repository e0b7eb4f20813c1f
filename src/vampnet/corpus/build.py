"""One command for the whole corpus: check the tools, then import every game-music package and render the music21
scores into one folder, and write its report."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import CorpusError
from ..splits import SPLIT_SALT, VAL_FRACTION
from .debian import DEB_CACHE, ensure_package, package_version
from .game_music import GAME_MUSIC, import_package, load_seen
from .midi import SOUNDFONTS, find_soundfonts
from .music21_renders import MUSIC21, music21_corpus_root, render_music21
from .report import write_report

DEFAULT_SOURCES = tuple(GAME_MUSIC) + (MUSIC21,)
DEFAULT_MUSIC21_PIECES = 300


def prepare_corpus(out_dir, sources=DEFAULT_SOURCES, max_music21_pieces: int = DEFAULT_MUSIC21_PIECES, seed: int = 0,
                   install: bool = False, val_fraction: float = VAL_FRACTION, split_salt: str = SPLIT_SALT,
                   max_render_s: float = 180.0, package_cache=None, progress: bool = True) -> dict:
    """Build (or complete) the corpus folder `out_dir` from `sources` (Debian package names and/or "music21");
    write sources.json and SOURCES.md; return the report.

    Music packages are fetched with `apt-get download` into `package_cache` (default ~/.cache/vampnet/debs) and
    never installed. The tools (fluidsynth, soundfonts, ffmpeg) are installed with apt-get when `install` (root
    needed), otherwise a CorpusError names the command. Files already present are kept. The split uses
    `split_of` exactly as `vampnet tokenize out_dir` will, so pass the same val_fraction and salt there."""
    out = Path(out_dir)
    unknown = [s for s in sources if s not in GAME_MUSIC and s != MUSIC21]
    if unknown:
        raise CorpusError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(GAME_MUSIC)}, {MUSIC21}")
    if max_music21_pieces < 0:
        raise CorpusError("max_music21_pieces must be >= 0")
    _preflight(sources, install)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(package_cache) if package_cache is not None else DEB_CACHE
    soundfonts = find_soundfonts()
    seen = load_seen(out)
    reports = {}
    for source in sources:
        if source == MUSIC21:
            reports[source] = render_music21(out, max_music21_pieces, seed, max_render_s=max_render_s, progress=progress)
        else:
            reports[source] = import_package(source, out, cache, seen, seed, soundfonts, progress)
    return write_report(out, reports, val_fraction, split_salt, seed)


def _preflight(sources, install: bool) -> None:
    """Fail before any work when a tool is missing, naming everything that is (one apt command for all). Rendering
    needs fluidsynth and one GM soundfont; --install adds all three soundfonts, so renders use several."""
    renders = MUSIC21 in sources or "openttd-openmsx" in sources
    packages = [s for s in sources if s != MUSIC21]
    if MUSIC21 in sources:
        music21_corpus_root()  # raises with the pip command
    if packages and shutil.which("dpkg-deb") is None:
        raise CorpusError("dpkg-deb not found: the Debian music sources need a Debian or Ubuntu system")
    needed = (["fluidsynth"] if renders else []) + (["ffmpeg"] if packages else [])
    missing = [p for p in needed if package_version(p) is None]
    fonts = [package for _, package in SOUNDFONTS]
    if renders and install:
        missing += [p for p in fonts if package_version(p) is None]
    elif renders and not find_soundfonts():
        missing.append("timgm6mb-soundfont")  # 5 MB; the other two (200 MB) sound better and are used too
    if missing and not install:
        raise CorpusError(f"not installed: {', '.join(missing)}; run `sudo apt-get install -y {' '.join(missing)}` "
                          "(or pass install=True)")
    for package in dict.fromkeys(missing):
        ensure_package(package, install=True)
