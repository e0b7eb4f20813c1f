"""The training corpus, from free music only: Debian's game-music packages and music21's scores rendered to audio.

Layout of a corpus folder (made, or resumed, by `prepare_corpus`):
    <package>/...                      one Debian package's music: OGG copied as shipped; other formats, and
                                       tracks that are one loop played over and over (cut to one pass), as FLAC
    <package>/trimmed_loops.json       which tracks were cut, where, and how long they were
    music21/<collection>/<piece>.flac  a score from music21's corpus rendered with FluidSynth; beside it
        <piece>.mid                    the MIDI file that was rendered (instruments and tempo as heard)
        <piece>.beats.txt              one line per beat: seconds <TAB> position in the bar (1 = downbeat)
        <piece>.json                   the work, its licence, tempo, instruments, soundfont, beats and downbeats
    sources.json, SOURCES.md           per source: package and version, files, hours, licence, validation files

Beat times are exact: they come from the score (time signatures, measure offsets) and the one tempo written
into the MIDI file, not from analysing audio. Train/validation is decided per file by
`vampnet.train.data.split_of` on the path `vampnet tokenize <corpus folder>` will see, so this report and the
tokenizer always agree on which files are validation.

Debian packages are found with dpkg (`dpkg -s`, `dpkg -L`) and their licence is read from
/usr/share/doc/<package>/copyright. Everything here is deterministic for a given seed and set of installed
packages (and music21 version and soundfonts); files already in the folder are kept, so an interrupted run
continues where it stopped."""
from __future__ import annotations

import fnmatch
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..errors import VampNetError
from ..serialization import atomic_path
from .data import TokenizeConfig, find_audio, split_of

DEBIAN_PACKAGES = ("wesnoth-1.16-music", "nexuiz-music", "hyperrogue-music", "planetblupi-music-ogg", "fb-music-high",
                   "asc-music", "xblast-tnt-musics")
MUSIC21 = "music21"
DEFAULT_SOURCES = DEBIAN_PACKAGES + (MUSIC21,)

# Files of a package that we try to read as music; other files (docs, scripts) are ignored without a report.
# Tracker modules (.xm, .mod...) are listed so that the report says why they were left out.
PACKAGE_AUDIO_EXTENSIONS = {".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".aiff", ".aif", ".raw",
                            ".xm", ".mod", ".it", ".s3m", ".mid", ".midi"}
KEEP_AS_SHIPPED = {".ogg", ".oga", ".opus", ".flac"}  # compressed formats soundfile reads: copied byte for byte
ARCHIVE_EXTENSIONS = {".pk3"}  # Quake-engine games (nexuiz) ship their music inside zip archives
# Packages that also ship sound effects: only files whose path contains this are music.
MUSIC_ONLY = {"hyperrogue-music": "/music/"}


@dataclass(frozen=True)
class RawFormat:
    """How to read a package's headerless PCM files (they carry no rate or sample format of their own)."""

    sample_rate: int
    channels: int = 1
    encoding: str = "u8"  # unsigned 8-bit; the only raw encoding met so far


# xblast's sound server plays its songs as 8-bit unsigned mono at 22050 Hz.
RAW_FORMATS = {"xblast-tnt-musics": RawFormat(sample_rate=22050)}

# General MIDI soundfonts Debian ships, best first: (path, package that ships it).
SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
)

RENDER_SAMPLE_RATE = 44100
RENDER_TAIL_S = 2.0        # silence kept after the last note so releases and reverb can ring out
RENDER_LUFS = -20.0        # renders are levelled to this loudness (then peak-limited) so FLAC keeps its bits
DEFAULT_BEAT_BPM = 96.0    # tempo of a score that gives none, in beats (not quarters) per minute
TEMPO_RANGE_BPM = (50.0, 180.0)
TEMPO_SCALE_OCTAVES = 0.5  # renders scale the score's tempo by 2**U(-0.5, 0.5): x0.71 to x1.41


class CorpusError(VampNetError):
    """A corpus source is missing, cannot be installed, or a tool it needs (dpkg, fluidsynth, a soundfont) is absent."""


# ---------------------------------------------------------------------------------------------------------------
# Debian packages

def package_version(package: str) -> str | None:
    """The installed version of a Debian package, or None when it is not installed (`dpkg -s`)."""
    if shutil.which("dpkg") is None:
        raise CorpusError("dpkg not found: the Debian music sources need a Debian or Ubuntu system")
    result = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line and not line.startswith(" "))
    if "installed" not in fields.get("Status", "").split():
        return None  # e.g. removed with its configuration left behind
    return fields.get("Version", "").strip() or None


def ensure_package(package: str, install: bool = False) -> str:
    """Make sure `package` is installed (with apt-get when `install`); returns its version."""
    version = package_version(package)
    if version is not None:
        return version
    command = f"apt-get install -y {package}"
    if not install:
        raise CorpusError(f"Debian package {package} is not installed: run `sudo {command}` (or pass install=True)")
    if os.geteuid() != 0:
        raise CorpusError(f"installing {package} needs root: run `sudo {command}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                            capture_output=True, text=True, env=env)
    version = package_version(package)
    if result.returncode != 0 or version is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"`{command}` failed: {tail[0]} (run `apt-get update` first if the package is unknown)")
    return version


def package_files(package: str) -> list[Path]:
    """The music files a package installed (`dpkg -L`), archives that may hold music included, sorted;
    documentation is left out, and so are sound effects of packages listed in MUSIC_ONLY."""
    result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"`dpkg -L {package}` failed: {result.stderr.strip()}")
    files = []
    for line in result.stdout.splitlines():
        path = Path(line.strip())
        suffix = path.suffix.lower()
        if suffix not in PACKAGE_AUDIO_EXTENSIONS | ARCHIVE_EXTENSIONS or "/usr/share/doc/" in line:
            continue
        if package in MUSIC_ONLY and MUSIC_ONLY[package] not in line:
            continue
        if path.is_file():
            files.append(path)
    return sorted(files)


# Licence phrases as they appear in free-form Debian copyright files; the earliest one in the text wins, because
# upstream's licence comes before the packaging's (which is often a different one).
_LICENCE_PATTERNS = (
    ("GPL", r"GNU\s+General\s+Public\s+Licen[cs]e|\bGPL\b"),
    ("LGPL", r"GNU\s+(Lesser|Library)\s+General\s+Public\s+Licen[cs]e|\bLGPL\b"),
    ("CC-BY-SA", r"Creative\s+Commons\s+Attribution[- ]Share[- ]?Alike|\bCC[- ]BY[- ]SA\b"),
    ("CC-BY", r"Creative\s+Commons\s+Attribution(?![- ]Share)|\bCC[- ]BY\b(?![- ]SA)"),
    ("CC0", r"\bCC0\b|Creative\s+Commons\s+Zero"),
    ("MIT", r"\bMIT\s+licen[cs]e|Permission is hereby granted, free of charge"),
    ("Artistic", r"Artistic\s+Licen[cs]e"),
    ("public-domain", r"public\s+domain"),
)


def parse_licence(text: str, files=()) -> dict:
    """The licence of a Debian copyright file: {"short": e.g. "GPL-2+", "line": the words that say so}.

    Machine-readable files (DEP-5) name it in `License:` fields: for the given installed `files`, the last
    paragraph whose `Files:` pattern matches each of them decides (as DEP-5 says), so music under its own licence
    in a game's copyright file gets that licence; several licences are joined with " and ". Without files, or
    when none matches, the `Files: *` paragraph decides. Free-form files are searched for the first licence
    phrase, with the GPL or CC version read from the words after it."""
    if re.match(r"\s*Format:", text):
        found = _dep5_licences(text, [str(f) for f in files])
        if found:
            return {"short": " and ".join(sorted(found)), "line": "; ".join(found[k] for k in sorted(found))}
    found = [(m.start(), name, m) for name, pattern in _LICENCE_PATTERNS
             for m in [re.search(pattern, text, re.I)] if m]
    # "public domain" often describes where samples came from, not the licence: only use it when nothing else is named
    named = [f for f in found if f[1] != "public-domain"] or found
    if not named:
        return {"short": "unknown", "line": ""}
    _, name, match = min(named, key=lambda f: f[0])
    after = text[match.end():match.end() + 400]
    if name in ("GPL", "LGPL", "CC-BY-SA", "CC-BY"):
        # "version 2", "v3", or a number right after the name ("CC BY-SA 3.0", "GPL-2")
        version = (re.search(r"\bversion\s*(\d(?:\.\d)?)|\bv(\d(?:\.\d)?)\b", after, re.I)
                   or re.match(r"\W{0,3}(\d(?:\.\d)?)\b", after))
        if version:
            name += "-" + next(g for g in version.groups() if g)
            later = r"\bor\s+(?:\(?at\s+your\s+option\)?,?\s+)?(?:any\s+)?later"
            if name.startswith(("GPL", "LGPL")) and re.search(later, after[:200], re.I):
                name += "+"
    return {"short": name, "line": _sentence(text, match.start(), match.end())}


def _dep5_licences(text: str, files: list[str]) -> dict[str, str]:
    """{licence: its License line} for the files (or the `Files: *` paragraph) of a DEP-5 copyright file."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        files_field = re.search(r"^Files:((?:.*)(?:\n[ \t]+.*)*)", block, re.M)
        licence = re.search(r"^License:\s*(\S.*)$", block, re.M)
        if files_field and licence:
            paragraphs.append((files_field.group(1).split(), licence.group(1).strip(), licence.group(0).strip()))
    found = {}
    for f in files:
        matching = [p for p in paragraphs if any(pat == "*" or fnmatch.fnmatch(f, "*/" + pat) for pat in p[0])]
        if matching:
            found[matching[-1][1]] = matching[-1][2]
    if not found:
        default = next((p for p in paragraphs if p[0] == ["*"]), None) or next(
            (p for p in paragraphs if not all(pat.startswith("debian/") for pat in p[0])), None)
        if default:
            found[default[1]] = default[2]
    return found


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around text[start:end], on one line."""
    begin = max(text.rfind(". ", 0, start) + 2, text.rfind("\n\n", 0, start) + 2, 0)
    stop = text.find(".", end)
    stop = len(text) if stop < 0 or stop - end > 300 else stop + 1
    return " ".join(text[begin:stop].split())[:300]


def package_licence(package: str, files=()) -> dict:
    """{"short", "line", "copyright_file"} for an installed package's `files` (or the package as a whole), from
    /usr/share/doc/<package>/copyright."""
    path = Path("/usr/share/doc") / package / "copyright"
    if not path.is_file():
        return {"short": "unknown", "line": "", "copyright_file": None}
    return {**parse_licence(path.read_text(errors="replace"), files), "copyright_file": str(path)}


def convert_raw(src: Path, dst: Path, fmt: RawFormat, metadata: dict | None = None) -> float:
    """Decode a headerless PCM file and write it as FLAC (or any format audio.save knows); returns seconds."""
    if fmt.encoding != "u8":
        raise CorpusError(f"raw encoding {fmt.encoding!r} is not supported")
    data = np.fromfile(src, dtype=np.uint8)
    data = data[: len(data) - len(data) % fmt.channels]
    if data.size == 0:
        raise CorpusError(f"raw audio file is empty: {src}")
    # unsigned 8-bit: 128 is silence, one step is 1/128 of full scale
    wav = (data.astype(np.float32) - 128.0) / 128.0
    wav = torch.from_numpy(wav.reshape(-1, fmt.channels).T.copy()).unsqueeze(0)
    audio.save(dst, wav, fmt.sample_rate, metadata)
    return wav.shape[-1] / fmt.sample_rate


def loop_period(wav: np.ndarray, sample_rate: int, probe_s: float = 10.0) -> tuple[float, float] | None:
    """(t, P) when a recording from time t on repeats itself with period P seconds to its very end (a game track
    stored as the same loop played several times over), else None. Such files are cut at t + P, which keeps
    everything once, so training does not see the loop many times.

    A 10 s probe (from 30 s in, else from a third of the way) is looked for later in the file (normalised
    cross-correlation above 0.98); a match at lag P counts only if 95% of the 5 s stretches after it (the last
    15 s aside) equal the audio P seconds earlier (correlation above 0.95), so a chorus heard twice in an
    evolving piece is not taken for a loop."""
    decimate = max(1, sample_rate // 4000)  # ~4-5 kHz keeps enough of the waveform to recognise it exactly
    n = len(wav) // decimate
    x = wav[: n * decimate].reshape(n, decimate).mean(axis=1).astype(np.float64)  # box low-pass, then decimate
    rate = sample_rate / decimate
    length, chunk = int(probe_s * rate), int(5.0 * rate)
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    size = 1 << int(np.ceil(np.log2(n + length))) if n else 1
    spectrum = np.fft.rfft(x, size) if n else None
    for start in (int(30.0 * rate), n // 3):
        if n < start + 3 * length:
            continue
        probe = x[start:start + length]
        probe_norm = np.linalg.norm(probe)
        if probe_norm < 1e-6:
            continue
        cc = np.fft.irfft(spectrum * np.conj(np.fft.rfft(probe, size)), size)[: n - length + 1]
        window = np.sqrt(np.maximum(energy[length:] - energy[:-length], 0.0))
        score = cc / (window * probe_norm + 1e-9)
        score[: start + length] = 0  # only matches after the probe itself
        peaks = [i for i in np.nonzero(score > 0.98)[0]
                 if score[i] >= score[max(i - 1, 0)] and score[i] >= score[min(i + 1, len(score) - 1)]]
        for pos in peaks:
            lag = int(pos) - start
            # the last 15 s may differ (a fade-out, a final chord); so may a stray 5 s here and there
            same = [_same(x[s:s + chunk], x[s - lag:s - lag + chunk])
                    for s in range(start + lag, n - chunk - int(15.0 * rate), chunk)]
            if same and sum(same) >= 0.95 * len(same):
                return start * decimate / sample_rate, lag * decimate / sample_rate
    return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-6 and nb < 1e-6:
        return True  # silence on both sides
    return float(a @ b) / (na * nb + 1e-12) > 0.95


def _package_items(files: list[Path], workdir: Path):
    """(where to read it, what to call it, path inside the corpus folder) for every music file of a package; the
    members of archives are yielded lazily, extracted one at a time into `workdir`."""
    plain = [f for f in files if f.suffix.lower() not in ARCHIVE_EXTENSIONS]
    if plain:
        root = Path(os.path.commonpath([str(f.parent) for f in plain]))
        for f in plain:
            yield (lambda f=f: f), str(f), f.relative_to(root)
    for archive in (f for f in files if f.suffix.lower() in ARCHIVE_EXTENSIONS):
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.namelist() if Path(m).suffix.lower() in PACKAGE_AUDIO_EXTENSIONS]
            if not members:
                continue
            root = os.path.commonpath([str(Path(m).parent) for m in members])
            for member in sorted(members):
                def extract(member=member, archive=archive):
                    target = workdir / Path(member).name
                    with zipfile.ZipFile(archive) as zz, zz.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    return target
                yield extract, f"{archive}:{member}", Path(archive.stem) / Path(member).relative_to(root)


def import_package(package: str, out_dir: Path, install: bool = False, progress: bool = True) -> dict:
    """Copy or convert one package's music into out_dir/<package>/; returns its part of the report.

    OGG/FLAC files are copied byte for byte, unless they are one loop played several times over: those (like
    anything soundfile reads in another format) are written as FLAC, loops trimmed to one pass."""
    version = ensure_package(package, install)
    files = package_files(package)
    report = {"source": package, "kind": "debian", "folder": package, "package": package, "version": version,
              "licence": package_licence(package, files), "skipped": [], "trimmed_loops": []}
    if package in MUSIC_ONLY:
        report["music_only"] = f"only files whose path contains {MUSIC_ONLY[package]!r} (the rest are sound effects)"
    old = out_dir / package / "trimmed_loops.json"  # trims of earlier runs, so a resumed report still lists them
    trimmed = json.loads(old.read_text()) if old.is_file() else {}
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="vampnet-corpus-") as work:
        items = list(_package_items(files, Path(work)))
        for open_item, name, rel in tqdm(items, desc=package, unit="file", disable=not progress):
            as_shipped = out_dir / package / rel
            as_flac = (out_dir / package / rel).with_suffix(".flac")
            if (rel.suffix.lower() in KEEP_AS_SHIPPED and as_shipped.exists()) or as_flac.exists():
                continue
            metadata = {"source": name, "package": f"{package} {version}", "licence": report["licence"]["short"]}
            src = None
            try:
                src = open_item()
                if package in RAW_FORMATS and src.suffix.lower() == ".raw":
                    convert_raw(src, as_flac, RAW_FORMATS[package], metadata)
                    continue
                wav, sr = audio.load(src)
                loop = loop_period(audio.to_mono(wav)[0, 0].numpy(), sr)
                if loop is not None:
                    period = loop[1]
                    keep = int(round(sum(loop) * sr))  # the intro and one pass of the loop
                    audio.save(as_flac, wav[..., :keep], sr, {**metadata, "trimmed_loop_s": round(period, 3)})
                    trimmed[rel.as_posix()] = {"file": name, "period_s": round(period, 3),
                                               "original_s": round(wav.shape[-1] / sr, 3), "kept_s": round(keep / sr, 3)}
                elif rel.suffix.lower() in KEEP_AS_SHIPPED:
                    with atomic_path(as_shipped) as tmp:
                        shutil.copyfile(src, tmp)
                else:
                    audio.save(as_flac, wav, sr, metadata)
            except VampNetError as e:
                report["skipped"].append({"file": name, "reason": _reason(Path(name), e)})
            finally:
                if src is not None and str(src).startswith(work):  # an extracted archive member
                    src.unlink(missing_ok=True)
    if trimmed:
        with atomic_path(old) as tmp:
            tmp.write_text(json.dumps(trimmed, indent=1))
    report["trimmed_loops"] = list(trimmed.values())
    return report


def _reason(src: Path, error: Exception) -> str:
    if src.suffix.lower() in {".xm", ".mod", ".it", ".s3m"}:
        return "tracker module: soundfile cannot read it (it would need a module player to render)"
    if src.suffix.lower() in {".mid", ".midi"}:
        return "MIDI: not audio"
    return str(error)


# ---------------------------------------------------------------------------------------------------------------
# music21 scores rendered with FluidSynth

# Corpus folders by musical kind; pieces are drawn from the kinds in turn, so a small corpus is already varied.
# (Four-part vocal writing comes from "early": madrigals, motets, mass movements.)
MUSIC21_KINDS = {
    "folk": ("ryansMammoth", "oneills1850", "airdsAirs", "miscFolk", "nottingham-dataset"),
    "early": ("josquin", "monteverdi", "trecento", "ciconia", "luca", "lusitano"),
    "classical": ("beethoven", "mozart", "haydn", "handel", "corelli", "cpebach"),
    "romantic-modern": ("schumann_robert", "schumann_clara", "chopin", "schubert", "verdi", "weber", "beach", "joplin",
                        "johnson_j_r", "liliuokalani", "webern", "schoenberg"),
}
# Left out on purpose, with the reason recorded in the report.
MUSIC21_EXCLUDED = {
    "bach": "chorales compiled from Margaret Greentree's jsbchorales.net encodings ('PDF (c) 2004 Margaret Greentree "
            "- used by permission'), whose terms reserved commercial use: not free",
    "palestrina": "encodings (c) 2000 John Miller / CCARH: 'Rights to all derivative electronic formats reserved'",
    "essenFolksong": "permission for non-commercial distribution and use only (essenFolksong/license.txt)",
    "demos": "test files for music21, not music",
    "theoryExercises": "exercises, not music",
    "leadSheet": "chord-symbol lead sheets (one marked All Rights Reserved)",
}
# Collections whose ABC files hold one voice per tune number: the voices are merged into one score.
MUSIC21_VOICE_FILES = {"josquin"}
SCORE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")  # preference order when a work exists twice

MUSIC21_LICENCE = ("compositions in the public domain; encodings distributed with music21 (BSD-3-Clause) "
                   "'with the permission of the encoders' (music21/corpus/license.txt); only encodings with no "
                   "restriction recorded or an explicit free licence are used")

# Words in an encoding that make it unusable for us, and words that grant a free licence.
_RESTRICTED = re.compile(r"rights to all derivative|non-?commercial|all rights reserved|licensing agreement", re.I)
_FREE = re.compile(r"public domain|\bCC0\b|\bCC[- ]BY|creative commons|general public licen[cs]e", re.I)
_COPYRIGHT = re.compile(r"(copyright|\(c\)|©)[^\n<]{0,120}", re.I)

# General MIDI programs (0-based) used for renders, with their GM names: pitched instruments only (no sound
# effects, no percussion kits), so every part stays recognisable music.
GM_PROGRAMS = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 2: "Electric Grand Piano", 4: "Electric Piano 1",
    5: "Electric Piano 2", 6: "Harpsichord", 7: "Clavinet", 8: "Celesta", 9: "Glockenspiel", 10: "Music Box",
    11: "Vibraphone", 12: "Marimba", 13: "Xylophone", 14: "Tubular Bells", 15: "Dulcimer", 16: "Drawbar Organ",
    17: "Percussive Organ", 18: "Rock Organ", 19: "Church Organ", 20: "Reed Organ", 21: "Accordion",
    22: "Harmonica", 23: "Tango Accordion", 24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)",
    26: "Electric Guitar (jazz)", 27: "Electric Guitar (clean)", 29: "Overdriven Guitar", 30: "Distortion Guitar",
    32: "Acoustic Bass", 33: "Electric Bass (finger)", 34: "Electric Bass (pick)", 35: "Fretless Bass",
    38: "Synth Bass 1", 40: "Violin", 41: "Viola", 42: "Cello", 43: "Contrabass", 44: "Tremolo Strings",
    45: "Pizzicato Strings", 46: "Orchestral Harp", 48: "String Ensemble 1", 49: "String Ensemble 2",
    50: "Synth Strings 1", 52: "Choir Aahs", 53: "Voice Oohs", 54: "Synth Voice", 56: "Trumpet", 57: "Trombone",
    58: "Tuba", 60: "French Horn", 61: "Brass Section", 62: "Synth Brass 1", 64: "Soprano Sax", 65: "Alto Sax",
    66: "Tenor Sax", 67: "Baritone Sax", 68: "Oboe", 69: "English Horn", 70: "Bassoon", 71: "Clarinet",
    72: "Piccolo", 73: "Flute", 74: "Recorder", 75: "Pan Flute", 79: "Ocarina", 80: "Lead 1 (square)",
    81: "Lead 2 (sawtooth)", 82: "Lead 3 (calliope)", 88: "Pad 1 (new age)", 89: "Pad 2 (warm)",
    104: "Sitar", 105: "Banjo", 106: "Shamisen", 107: "Koto", 108: "Kalimba", 109: "Bagpipe", 110: "Fiddle",
    111: "Shanai",
}
ENSEMBLE_PROGRAMS = (0, 4, 6, 16, 19, 21, 24, 46, 48, 49, 52, 61)  # one sound for every part
BASS_PROGRAMS = (0, 32, 33, 35, 38, 42, 43, 57, 58, 67, 70)          # the lowest of three or more parts


@dataclass(frozen=True)
class Piece:
    """One work of music21's corpus: a file, and a tune number inside a file that holds several."""

    path: str                 # relative to music21's corpus folder, e.g. "bach/bwv1.6.mxl"
    number: int | None = None

    @property
    def id(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def collection(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def out_rel(self) -> str:
        """Where its render goes inside the corpus folder (without extension)."""
        stem = self.path.rsplit(".", 1)[0]
        return f"{MUSIC21}/{stem}" + ("" if self.number is None else f"-{self.number}")


def music21_corpus_root() -> Path:
    try:
        import music21
    except ImportError:
        raise CorpusError("the music21 source needs the music21 package: pip install music21") from None
    return Path(music21.__file__).parent / "corpus"


def music21_candidates(seed: int = 0) -> list[Piece]:
    """Every usable music21 work in the order renders take them: the kinds in turn (folk, early, classical,
    romantic-modern), each kind's works shuffled by `seed`. A larger count only appends to a smaller one's list."""
    root = music21_corpus_root()
    rng = random.Random(f"music21-order:{seed}")
    per_kind = []
    for kind, collections in MUSIC21_KINDS.items():
        pieces = []
        for collection in collections:
            pieces.extend(_collection_pieces(root, collection))
        pieces.sort(key=lambda p: (p.path, p.number or 0))
        rng.shuffle(pieces)
        per_kind.append(pieces)
    order = []
    for i in range(max(map(len, per_kind), default=0)):
        order.extend(pieces[i] for pieces in per_kind if i < len(pieces))
    return order


def _collection_pieces(root: Path, collection: str) -> list[Piece]:
    folder = root / collection
    if not folder.is_dir():
        return []
    best: dict[Path, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in SCORE_EXTENSIONS and path.is_file():
            key = path.with_suffix("")
            if key not in best or SCORE_EXTENSIONS.index(path.suffix.lower()) < SCORE_EXTENSIONS.index(best[key].suffix.lower()):
                best[key] = path
    pieces = []
    for path in sorted(best.values()):
        rel = path.relative_to(root).as_posix()
        numbers = _abc_numbers(path) if path.suffix.lower() == ".abc" else []
        if len(numbers) > 1 and collection not in MUSIC21_VOICE_FILES:
            pieces.extend(Piece(rel, n) for n in numbers)
        else:
            pieces.append(Piece(rel))
    return pieces


def _abc_numbers(path: Path) -> list[int]:
    return sorted({int(n) for n in re.findall(r"^X:\s*(\d+)", path.read_text(errors="replace"), re.M)})


def encoding_licence(path: Path, number: int | None = None) -> dict:
    """What an encoding says about its rights: {"status": "free" | "unrestricted" | "restricted" | "unclear",
    "note": the line that decided it}. Restricted and unclear encodings are not rendered."""
    text = _score_text(path)
    if number is not None:  # one tune of a multi-tune ABC file: its own header and the file's header
        parts = re.split(r"^(?=X:)", text, flags=re.M)
        head = parts[0] if parts and not parts[0].startswith("X:") else ""
        tune = next((p for p in parts if re.match(rf"X:\s*{number}\b", p)), "")
        text = head + tune
    if m := _RESTRICTED.search(text):
        return {"status": "restricted", "note": _line_at(text, m.start())}
    if m := _FREE.search(text):
        return {"status": "free", "note": _line_at(text, m.start())}
    if m := _COPYRIGHT.search(text):
        return {"status": "unclear", "note": _line_at(text, m.start())}
    return {"status": "unrestricted", "note": "no copyright or licence recorded in the encoding"}


def _score_text(path: Path) -> str:
    if path.suffix.lower() == ".mxl":
        with zipfile.ZipFile(path) as z:
            return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist() if not n.startswith("META-INF"))
    return path.read_text(errors="replace")


def _line_at(text: str, index: int) -> str:
    """The words around a match, within its line, without XML tags (MusicXML files are often one long line)."""
    start = max(text.rfind("\n", 0, index) + 1, index - 80)
    end = text.find("\n", index)
    end = min(end if end >= 0 else len(text), index + 160)
    line = re.sub(r"<[^>]*>?", " ", text[start:end])
    return " ".join(line.split())[:200]


def load_piece(piece: Piece):
    """The music21 Score of a piece (voices of a one-voice-per-tune file merged)."""
    from music21 import corpus, stream

    score = corpus.parse(piece.path, number=piece.number) if piece.number is not None else corpus.parse(piece.path)
    if isinstance(score, stream.Opus):
        score = score.mergeScores() if piece.collection in MUSIC21_VOICE_FILES else score.scores[0]
    return score


def find_soundfonts() -> list[tuple[Path, str]]:
    """Installed General MIDI soundfonts we know, best first: (path, Debian package)."""
    return [(Path(p), pkg) for p, pkg in SOUNDFONTS if Path(p).is_file()]


def soundfont_info(path: Path, package: str | None) -> dict:
    info = {"path": str(path), "package": package, "version": None, "licence": None}
    if package and shutil.which("dpkg"):
        info["version"] = package_version(package)
        info["licence"] = package_licence(package, [path])
    return info


def choose_tempo(score, rng: random.Random) -> int:
    """Microseconds per quarter note for a render: the score's first tempo (or 96 beats a minute) scaled by a
    random factor, kept within 50-180 beats a minute. An integer, so the MIDI file holds it exactly."""
    from music21 import meter, tempo

    ts = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None) or meter.TimeSignature("4/4")
    beat_ql = float(ts.beatDuration.quarterLength)
    marks = [m for m in score.recurse().getElementsByClass(tempo.MetronomeMark) if m.number is not None]
    beat_bpm = marks[0].getQuarterBPM() / beat_ql if marks and marks[0].getQuarterBPM() else DEFAULT_BEAT_BPM
    beat_bpm *= 2 ** rng.uniform(-TEMPO_SCALE_OCTAVES, TEMPO_SCALE_OCTAVES)
    beat_bpm = min(max(beat_bpm, TEMPO_RANGE_BPM[0]), TEMPO_RANGE_BPM[1])
    return int(round(60e6 / (beat_bpm * beat_ql)))


def choose_programs(n_parts: int, rng: random.Random) -> list[int]:
    """General MIDI programs for the parts (top to bottom): sometimes one ensemble sound for all, otherwise a
    random instrument each, with a bass-capable one at the bottom of three or more parts."""
    if n_parts > 1 and rng.random() < 0.25:
        return [rng.choice(ENSEMBLE_PROGRAMS)] * n_parts
    programs = [rng.choice(sorted(GM_PROGRAMS)) for _ in range(n_parts)]
    if n_parts >= 3:
        programs[-1] = rng.choice(BASS_PROGRAMS)
    return programs


def set_tempo(score, us_per_quarter: int) -> None:
    """Replace every tempo indication by one metronome mark at the start (so one tempo holds throughout)."""
    from music21 import stream, tempo

    for mark in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    bpm = 60e6 / us_per_quarter
    for part in score.parts:
        first = next(iter(part.getElementsByClass(stream.Measure)), None)
        (first if first is not None else part).insert(0, tempo.MetronomeMark(number=bpm, referent=1.0))


def set_instruments(score, programs: list[int]) -> None:
    """Replace every instrument of every part by the General MIDI program chosen for that part."""
    from music21 import instrument

    for inst in list(score.recurse().getElementsByClass(instrument.Instrument)):
        inst.activeSite.remove(inst)
    for part, program in zip(score.parts, programs):
        inst = instrument.instrumentFromMidiProgram(program)
        inst.midiProgram = program
        part.insert(0, inst)


def drop_unplayable(score) -> None:
    """Remove grace notes and chord symbols: they have no length, and music21 writes a zero-length note's note-off
    before its note-on, which leaves it sounding for ever (fluidsynth then renders without end)."""
    from music21 import harmony, note

    for el in list(score.recurse().getElementsByClass((note.GeneralNote, harmony.Harmony))):
        if isinstance(el, harmony.Harmony) or (not isinstance(el, note.Rest) and el.duration.quarterLength == 0):
            el.activeSite.remove(el)


def without_repeats(score):
    """The score played through: repeats expanded, or, where music21 cannot expand them (badly formed marks),
    removed so the music is played once as written. music21's MIDI export expands repeats itself, so beat times
    are only right for a score that has none left."""
    from music21 import bar, repeat, spanner, stream

    try:
        return score.expandRepeats()
    except repeat.ExpanderException:
        pass
    for m in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = bar.Barline()
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline()
    for mark in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        mark.activeSite.remove(mark)
    return score


def truncate(score, max_quarters: float) -> None:
    """Cut the score at the last bar line that ends within `max_quarters` (at least one bar is kept)."""
    from music21 import stream

    measures = list(score.parts[0].getElementsByClass(stream.Measure))
    cutoff = None
    for m in measures[1:]:
        if float(m.offset) > max_quarters:
            break
        cutoff = float(m.offset)
    ends_in_time = float(score.highestTime) <= max_quarters
    if ends_in_time or cutoff is None:
        return
    for part in score.parts:
        for el in list(part):
            if float(el.offset) >= cutoff - 1e-9:
                part.remove(el)
    score.coreElementsChanged()  # the score caches its length


def beat_grid(score) -> list[tuple[Fraction, int]]:
    """(offset in quarter notes, position in the bar) of every notated beat, position 1 being the downbeat.

    Beats come from each bar's time signature (`getBeatOffsets`: 6/8 has two beats, 3/4 three). A pickup bar
    (padding on the left, or a short first bar) only has its last beats; a short bar elsewhere (the end of a
    repeated section) has its first beats."""
    from music21 import meter, stream

    part = score.parts[0]
    measures = list(part.getElementsByClass(stream.Measure))
    end = Fraction(score.highestTime)
    ts = None
    beats = []
    for i, m in enumerate(measures):
        if m.timeSignature is not None:
            ts = m.timeSignature
        elif ts is None:
            ts = m.getContextByClass(meter.TimeSignature) or meter.TimeSignature("4/4")
        start = Fraction(m.offset)
        length = (Fraction(measures[i + 1].offset) if i + 1 < len(measures) else end) - start
        bar = Fraction(ts.barDuration.quarterLength)
        shift = Fraction(m.paddingLeft)
        if shift == 0 and i == 0 and 0 < length < bar:
            shift = bar - length
        offsets = [Fraction(b) for b in ts.getBeatOffsets()]
        step = Fraction(ts.beatDuration.quarterLength)
        while offsets[-1] + step < shift + length:  # an over-full bar: keep counting beats past its end
            offsets.append(offsets[-1] + step)
        for position, b in enumerate(offsets, 1):
            if shift <= b < shift + length:
                beats.append((start + b - shift, position))
    return beats


def sidecar(out_audio: Path, extension: str) -> Path:
    """A file beside a render: sidecar("bwv1.6.flac", ".mid") is "bwv1.6.mid" (with_suffix would drop ".6")."""
    return out_audio.with_name(out_audio.stem + extension)


def write_midi(score, path: Path) -> None:
    """The score as a MIDI file (music21's export), every channel told 'all notes off' at its end so that no
    note can hang."""
    from music21 import midi

    mf = midi.translate.streamToMidiFile(score)
    for track in mf.tracks:
        channels = sorted({e.channel for e in track.events if e.isChannelEvent()})
        end = next((i for i, e in enumerate(track.events) if e.type == midi.MetaEvents.END_OF_TRACK), len(track.events))
        extra = []
        for channel in channels:
            off = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            off.parameter1, off.parameter2 = 123, 0  # controller 123: all notes off (they release naturally)
            extra += [off, midi.DeltaTime(track, time=0, channel=channel)]
        track.events[end:end] = extra  # the event before END_OF_TRACK is its delta time: insert after it
    mf.open(str(path), "wb")
    try:
        mf.write()
    finally:
        mf.close()


def fluidsynth_render(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int = RENDER_SAMPLE_RATE,
                      timeout_s: float = 600.0) -> None:
    """Render a MIDI file to a float WAV with the fluidsynth command line (faster than real time, no audio device)."""
    if shutil.which("fluidsynth") is None:
        raise CorpusError("fluidsynth not found: run `sudo apt-get install fluidsynth`")
    command = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-O", "float", "-T", "wav",
               "-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:  # a note left sounding makes fluidsynth render for ever
        raise CorpusError(f"fluidsynth did not finish {midi_path} within {timeout_s:.0f} s") from None
    if result.returncode != 0 or not wav_path.is_file():
        raise CorpusError(f"fluidsynth failed on {midi_path}: {(result.stderr or result.stdout).strip()[-300:]}")


def render_score(score, out_audio, soundfont, us_per_quarter: int, programs: list[int], info: dict | None = None,
                 sample_rate: int = RENDER_SAMPLE_RATE, tail_s: float = RENDER_TAIL_S) -> dict:
    """Render a music21 score at one tempo with the given instruments; write the audio (FLAC), MIDI, beats and
    metadata beside each other. Returns the metadata (also in <name>.json).

    The audio lasts exactly the music plus `tail_s`; beat k of the score is at offset * us_per_quarter / 1e6 s."""
    from music21 import meter

    out_audio = Path(out_audio)
    score = without_repeats(score)  # a no-op for a score already played through
    drop_unplayable(score)
    set_tempo(score, us_per_quarter)
    set_instruments(score, programs)
    seconds_per_quarter = Fraction(us_per_quarter, 10**6)
    music_end = float(Fraction(score.highestTime) * seconds_per_quarter)
    beats = [(float(offset * seconds_per_quarter), position) for offset, position in beat_grid(score)]
    signatures = []
    for ts in score.parts[0].recurse().getElementsByClass(meter.TimeSignature):
        t = float(Fraction(ts.getOffsetInHierarchy(score.parts[0])) * seconds_per_quarter)
        if not signatures or signatures[-1][1] != ts.ratioString:
            signatures.append((t, ts.ratioString))
    with tempfile.TemporaryDirectory(prefix="vampnet-render-") as tmp:
        midi_tmp, wav_tmp = Path(tmp) / "score.mid", Path(tmp) / "render.wav"
        write_midi(score, midi_tmp)
        # fluidsynth renders ~100x faster than real time here; the limit only stops a runaway render
        fluidsynth_render(midi_tmp, wav_tmp, Path(soundfont), sample_rate, timeout_s=60 + music_end)
        wav, sr = audio.load(wav_tmp)
        with atomic_path(sidecar(out_audio, ".mid")) as dst:
            shutil.copyfile(midi_tmp, dst)
    n = int(round((music_end + tail_s) * sr))
    wav = torch.nn.functional.pad(wav[..., :n], (0, max(0, n - wav.shape[-1])))
    fade = min(n, int(0.05 * sr))  # the tail may be cut mid-reverb: fade its last 50 ms instead of clicking
    wav[..., n - fade:] *= torch.linspace(1.0, 0.0, fade)
    wav, _ = audio.normalize_loudness(wav, sr, RENDER_LUFS)
    meta = {
        **(info or {}),
        "sample_rate": sr, "duration_s": n / sr, "music_end_s": music_end, "tail_s": tail_s,
        "us_per_quarter": us_per_quarter, "quarter_bpm": 60e6 / us_per_quarter,
        "time_signatures": signatures,
        "instruments": [{"part": i, "program": p, "name": GM_PROGRAMS.get(p, f"program {p}")} for i, p in enumerate(programs)],
        "beats": [t for t, _ in beats], "beat_positions": [p for _, p in beats],
        "downbeats": [t for t, p in beats if p == 1],
    }
    with atomic_path(sidecar(out_audio, ".beats.txt")) as dst:
        dst.write_text("".join(f"{t:.6f}\t{p}\n" for t, p in beats))
    with atomic_path(sidecar(out_audio, ".json")) as dst:
        dst.write_text(json.dumps(meta, indent=1))
    audio.save(out_audio, wav, sr, {k: meta[k] for k in ("work", "licence") if k in meta})  # last: marks it done
    return meta


def render_music21(out_dir: Path, max_pieces: int, seed: int = 0, soundfonts: list[tuple[Path, str]] | None = None,
                   max_render_s: float = 180.0, progress: bool = True) -> dict:
    """Render up to `max_pieces` music21 works into out_dir/music21/; returns this source's part of the report."""
    import music21

    soundfonts = soundfonts or find_soundfonts()
    if not soundfonts:
        raise CorpusError("no General MIDI soundfont found: run `sudo apt-get install fluid-soundfont-gm` "
                          "(or timgm6mb-soundfont)")
    if shutil.which("fluidsynth") is None:
        raise CorpusError("fluidsynth not found: run `sudo apt-get install fluidsynth`")
    fonts = [soundfont_info(path, pkg) for path, pkg in soundfonts]
    report = {"source": MUSIC21, "kind": "music21", "folder": MUSIC21, "package": "music21 (PyPI)",
              "version": music21.__version__,
              "licence": {"short": "public-domain works; free or unrestricted encodings", "line": MUSIC21_LICENCE,
                          "copyright_file": str(music21_corpus_root() / "license.txt")},
              "soundfonts": fonts, "excluded_collections": MUSIC21_EXCLUDED, "skipped": [], "pieces": []}
    root = music21_corpus_root()
    from tqdm.auto import tqdm

    bar = tqdm(total=max_pieces, desc=MUSIC21, unit="piece", disable=not progress)
    for piece in music21_candidates(seed):
        if len(report["pieces"]) >= max_pieces:
            break
        out_audio = out_dir / f"{piece.out_rel}.flac"
        if out_audio.exists() and sidecar(out_audio, ".json").exists():
            report["pieces"].append(piece.id)
            bar.update(1)
            continue
        licence = encoding_licence(root / piece.path, piece.number)
        if licence["status"] in ("restricted", "unclear"):
            report["skipped"].append({"file": piece.id, "reason": f"encoding {licence['status']}: {licence['note']}"})
            continue
        try:
            meta = _render_piece(piece, out_audio, licence, seed, soundfonts, fonts, max_render_s)
        except Exception as e:  # music21 raises many kinds on odd encodings; one bad score must not stop the corpus
            report["skipped"].append({"file": piece.id, "reason": f"{type(e).__name__}: {str(e)[:200]}"})
            continue
        report["pieces"].append(piece.id)
        bar.update(1)
        bar.set_postfix_str(f"{piece.id} {meta['duration_s']:.0f}s")
    bar.close()
    return report


def _render_piece(piece: Piece, out_audio: Path, licence: dict, seed: int, soundfonts, fonts, max_render_s: float) -> dict:
    from music21 import stream

    rng = random.Random(f"music21-render:{seed}:{piece.id}")  # per piece: renders don't depend on each other
    score = without_repeats(load_piece(piece))
    if not score.parts or not list(score.parts[0].getElementsByClass(stream.Measure)):
        raise CorpusError("no parts with measures")
    if len(score.parts) > 15:
        raise CorpusError(f"{len(score.parts)} parts: more than the 15 melodic MIDI channels")
    us = choose_tempo(score, rng)
    programs = choose_programs(len(score.parts), rng)
    font_index = rng.randrange(len(soundfonts))
    truncate(score, max_render_s * 1e6 / us)
    md = score.metadata
    info = {"source": MUSIC21, "work": piece.id, "collection": piece.collection,
            "title": (md.title if md is not None else None) or Path(piece.path).stem,
            "composer": md.composer if md is not None else None,
            "licence": {**licence, "collection": MUSIC21_LICENCE}, "soundfont": fonts[font_index]}
    return render_score(score, out_audio, soundfonts[font_index][0], us, programs, info)


# ---------------------------------------------------------------------------------------------------------------
# The whole corpus and its report

def prepare_corpus(out_dir, sources=DEFAULT_SOURCES, max_music21_pieces: int = 40, seed: int = 0,
                   install: bool = False, val_fraction: float = TokenizeConfig.val_fraction,
                   split_salt: str = TokenizeConfig.split_salt, max_render_s: float = 180.0,
                   progress: bool = True) -> dict:
    """Build (or complete) the corpus folder `out_dir` from `sources` (Debian package names and/or "music21");
    write sources.json and SOURCES.md; return the report.

    Missing packages are installed with apt-get when `install` (root needed), otherwise a CorpusError names the
    command. Files already present are kept. The split uses `split_of` exactly as `vampnet tokenize out_dir`
    will, so pass the same val_fraction and salt there."""
    out = Path(out_dir)
    unknown = [s for s in sources if s not in DEFAULT_SOURCES]
    if unknown:
        raise CorpusError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_SOURCES)}")
    if max_music21_pieces < 0:
        raise CorpusError("max_music21_pieces must be >= 0")
    _preflight(sources, install)
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for source in sources:
        if source == MUSIC21:
            reports[source] = render_music21(out, max_music21_pieces, seed, max_render_s=max_render_s, progress=progress)
        else:
            reports[source] = import_package(source, out, install, progress)
    return write_report(out, reports, val_fraction, split_salt, seed)


def _preflight(sources, install: bool) -> None:
    """Fail before any work when something is missing, naming everything that is (one apt command for all)."""
    missing = [s for s in sources if s != MUSIC21 and package_version(s) is None]
    if MUSIC21 in sources:
        music21_corpus_root()  # raises with the pip command
        if shutil.which("fluidsynth") is None:
            missing.append("fluidsynth")
        if not find_soundfonts():
            missing.append("timgm6mb-soundfont")  # 5 MB; fluid-soundfont-gm (120 MB) sounds better and is used too
    if missing and not install:
        raise CorpusError(f"not installed: {', '.join(missing)}; run `sudo apt-get install -y {' '.join(missing)}` "
                          "(or pass install=True)")
    for package in missing:
        ensure_package(package, install=True)


def write_report(out: Path, reports: dict, val_fraction: float, split_salt: str, seed: int) -> dict:
    """Count files, hours and the split of every source folder; merge with the report of earlier runs (sources
    not prepared this time keep their entry); write sources.json and SOURCES.md atomically."""
    old = {}
    if (out / "sources.json").is_file():
        old = json.loads((out / "sources.json").read_text()).get("sources", {})
    merged = {**old, **reports}
    by_folder: dict[str, list] = {}
    for path, rel in find_audio([out]):
        folder = path.relative_to(out).parts[0]
        by_folder.setdefault(folder, []).append((path, rel))
    for name, report in merged.items():
        files = by_folder.get(report["folder"], [])  # everything the tokenizer will see, even from older runs
        stats = {"train": {"files": 0, "duration_s": 0.0}, "val": {"files": 0, "duration_s": 0.0, "list": []}}
        for path, rel in files:
            split = split_of(rel, val_fraction, split_salt)
            stats[split]["files"] += 1
            stats[split]["duration_s"] += audio.duration(path)
            if split == "val":
                stats["val"]["list"].append(path.relative_to(out).as_posix())
        report.update(files=len(files), duration_s=stats["train"]["duration_s"] + stats["val"]["duration_s"],
                      train=stats["train"], val=stats["val"])
        report["hours"] = round(report["duration_s"] / 3600, 3)
    split_rule = (f"vampnet.train.data.split_of(relpath, val_fraction={val_fraction}, salt={split_salt!r}): a file is "
                  f"validation when int(sha1('{split_salt}/' + relpath)[:8 bytes]) / 2**64 < {val_fraction}; relpath "
                  f"is '{out.name}/<path inside the corpus>', as `vampnet tokenize {out.name}` sees it (tokenize the "
                  f"corpus folder itself, under this name, with the same --val-fraction)")
    # audio the tokenizer would take that no source accounts for (put there by hand): named, never counted as free
    unlisted = sorted(set(by_folder) - {r["folder"] for r in merged.values()})
    document = {"format": "vampnet-corpus", "version": 1, "seed": seed, "val_fraction": val_fraction,
                "split_salt": split_salt, "split_rule": split_rule, "sources": merged, "unlisted_folders": unlisted,
                "total": {"files": sum(r["files"] for r in merged.values()),
                          "hours": round(sum(r["duration_s"] for r in merged.values()) / 3600, 3)}}
    with atomic_path(out / "sources.json") as tmp:
        tmp.write_text(json.dumps(document, indent=1, default=str))
    with atomic_path(out / "SOURCES.md") as tmp:
        tmp.write_text(_markdown(document))
    return document


def _markdown(doc: dict) -> str:
    lines = ["# Corpus sources", "",
             "Generated by `vampnet.train.corpus.prepare_corpus`; do not edit. Free music only.", "",
             "| source | package / version | files (train / val) | hours (train / val) | licence | copyright file |",
             "|---|---|---|---|---|---|"]
    for name, r in doc["sources"].items():
        lic = r["licence"]
        lines.append(f"| {name} | {r['package']} {r['version']} | {r['files']} ({r['train']['files']} / {r['val']['files']}) "
                     f"| {r['hours']:.2f} ({r['train']['duration_s'] / 3600:.2f} / {r['val']['duration_s'] / 3600:.2f}) "
                     f"| {lic['short']} | {lic.get('copyright_file') or ''} |")
    lines += ["", f"Total: {doc['total']['files']} files, {doc['total']['hours']:.2f} hours.", "",
              "## Split", "", doc["split_rule"] + ".", "", "## Licences", ""]
    for name, r in doc["sources"].items():
        lines.append(f"- **{name}**: {r['licence']['short']}. {r['licence']['line']}")
        for font in r.get("soundfonts", []):
            font_licence = (font.get("licence") or {}).get("short", "unknown")
            lines.append(f"  - rendered with {font['path']} ({font['package']} {font['version']}, {font_licence})")
    lines += ["", "## Validation files", ""]
    for name, r in doc["sources"].items():
        lines.append(f"- **{name}**: " + (", ".join(f"`{f}`" for f in r["val"]["list"]) or "none"))
    skipped = [(name, s) for name, r in doc["sources"].items() for s in r.get("skipped", [])]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {name}: `{s['file']}`: {s['reason']}" for name, s in skipped]
    if doc.get("unlisted_folders"):
        lines += ["", "## Not from any source (check before training)", ""]
        lines += [f"- `{f}/`" for f in doc["unlisted_folders"]]
    excluded = next((r["excluded_collections"] for r in doc["sources"].values() if "excluded_collections" in r), None)
    if excluded:
        lines += ["", "## music21 collections left out", ""]
        lines += [f"- {k}: {v}" for k, v in excluded.items()]
    return "\n".join(lines) + "\n"
