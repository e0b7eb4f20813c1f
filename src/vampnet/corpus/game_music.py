"""Game music from Debian packages: which packages, which of their files are music, and how one package's music
becomes corpus audio with the licence of every track recorded.

A package is fetched as a .deb (never installed) and only its music is taken out: the folders each package keeps
its music in (sound effects and voices left behind), archive members (.pk3/.zip) included. Every track then
passes, in order: its own licence from the package's copyright file (free only); duplicates (the same bytes, a
link, or the same recording by its loudness envelope, anywhere in the corpus) are dropped; it is decoded
(OGG/FLAC/MP3/WAV, headerless PCM, tracker modules through ffmpeg, MIDI through FluidSynth, stems mixed into one
song); a recording that is one loop played over and over is cut to one pass. OGG/FLAC files that need no cut are
copied byte for byte; everything else is written as FLAC. `<package>/tracks.json` records every kept track
(source, licence, content hash, envelope) and every dropped one with its reason, so a resumed run skips work
and still reports everything."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from .. import audio
from ..errors import CorpusError, VampNetError
from ..serialization import atomic_path
from .conversion import (RawFormat, decode_with_ffmpeg, loop_period, loudness_envelope, mix_stems, read_raw,
                         same_recording)
from .debian import deb_version, extract, fetch_deb
from .licences import CopyrightFile, licence_status
from .midi import render_midi_file

RECORDED_EXTENSIONS = {".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".aiff", ".aif", ".raw"}
MODULE_EXTENSIONS = {".xm", ".mod", ".it", ".s3m"}  # tracker modules, played once through ffmpeg's libopenmpt
MIDI_EXTENSIONS = {".mid", ".midi"}
MUSIC_EXTENSIONS = RECORDED_EXTENSIONS | MODULE_EXTENSIONS | MIDI_EXTENSIONS
KEEP_AS_SHIPPED = {".ogg", ".oga", ".opus", ".flac"}  # compressed formats soundfile reads: copied byte for byte
ARCHIVE_EXTENSIONS = {".pk3", ".zip"}  # Quake-engine games and 0 A.D. keep their data in zip archives
MIN_TRACK_S = 5.0  # shorter files are jingles or effects, not music to learn from


@dataclass(frozen=True)
class GameMusic:
    """Where a package keeps its music."""

    music: tuple[str, ...] = ("*",)  # fnmatch patterns of installed paths (archive member: archive folder/member)
    raw: RawFormat | None = None     # how to read its headerless PCM files
    stems: bool = False              # each folder is one song shipped as stems, mixed into one recording
    note: str = ""                   # what else the package ships, left behind


# The packages, in the order they are imported (an earlier package keeps a recording two packages share). The
# first seven made the first corpus: keep their paths as they are, the validation split depends on them.
GAME_MUSIC = {
    "wesnoth-1.16-music": GameMusic(),
    "nexuiz-music": GameMusic(note="music inside music.pk3"),
    "hyperrogue-music": GameMusic(music=("*/music/*",), note="sound effects in sounds/"),
    "planetblupi-music-ogg": GameMusic(),
    "fb-music-high": GameMusic(note="one XM tracker module"),
    "asc-music": GameMusic(),
    "xblast-tnt-musics": GameMusic(raw=RawFormat(sample_rate=22050), note="8-bit unsigned mono PCM at 22050 Hz"),
    "colobot-common-sounds": GameMusic(music=("*/colobot/music/*",), note="sound effects in sounds/"),
    "pushover-data": GameMusic(music=("*/pushover/themes/*",)),
    "starfighter-data": GameMusic(music=("*/starfighter/music/*",), note="sound effects in sound/"),
    "ardentryst": GameMusic(music=("*/ardentryst/Music/*",), note="sound effects and voices in Sounds/"),
    "fretsonfire-songs-muldjord": GameMusic(music=("*/songs/*.ogg",), stems=True, note="notes.mid are game charts"),
    "fretsonfire-songs-sectoid": GameMusic(music=("*/songs/*.ogg",), stems=True, note="notes.mid are game charts"),
    "flare-game": GameMusic(music=("*/mods/*/music/*",), note="sound effects in soundfx/"),
    "widelands-data": GameMusic(music=("*/data/music/*",), note="sound effects in data/sound/"),
    "megaglest-data": GameMusic(music=("*/menu/music/*", "*/factions/*/music/*"),
                                note="unit sounds and tileset ambience elsewhere"),
    "freedroidrpg-data": GameMusic(music=("*/sound/music/*",), note="effects and voices elsewhere"),
    "supertux-data": GameMusic(music=("*/supertux2/music/*",), note="sound effects in sounds/"),
    "supertuxkart-data": GameMusic(music=("*/data/music/*",), note="effects in sfx/ and tracks/"),
    "hedgewars-data": GameMusic(music=("*/Data/Music/*",), note="sound effects and voices in Sounds/"),
    "naev-data": GameMusic(music=("*/snd/music/*",), note="sound effects in snd/sounds/"),
    "0ad-data": GameMusic(music=("*/public/audio/music/*",), note="music inside public.zip; effects elsewhere"),
    "ufoai-music": GameMusic(music=("*/base/music/*",), note="music inside 0music.pk3"),
    "pingus-data": GameMusic(music=("*/data/music/*",), note="tracker modules and OGG; effects in data/sounds/"),
    "openttd-openmsx": GameMusic(note="General MIDI files, rendered with FluidSynth"),
}


@dataclass
class Seen:
    """What the corpus already holds, for duplicates: content hashes and loudness envelopes of kept tracks."""

    hashes: dict = field(default_factory=dict)     # sha1 -> "package/rel"
    envelopes: list = field(default_factory=list)  # ("package/rel", envelope)

    def add(self, where: str, sha1: str, envelope) -> None:
        self.hashes[sha1] = where
        self.envelopes.append((where, np.asarray(envelope, dtype=np.float64)))

    def duplicate_of(self, sha1: str | None, envelope=None) -> str | None:
        if sha1 is not None and sha1 in self.hashes:
            return self.hashes[sha1]
        if envelope is not None:
            return next((where for where, other in self.envelopes if same_recording(envelope, other)), None)
        return None


def load_seen(out_dir: Path) -> Seen:
    """The tracks every package folder of the corpus already holds (from their tracks.json)."""
    seen = Seen()
    for package in GAME_MUSIC:
        record = _read_tracks(Path(out_dir) / package)
        for rel, track in record["kept"].items():
            seen.add(f"{package}/{rel}", track["sha1"], track["envelope"])
    return seen


def _read_tracks(folder: Path) -> dict:
    path = folder / "tracks.json"
    return json.loads(path.read_text()) if path.is_file() else {"kept": {}, "dropped": []}


@dataclass
class Track:
    """One piece of music in a package, before conversion."""

    name: str             # installed path, or "archive:member"
    licence_path: str     # the path its licence is looked up by
    rel: PurePosixPath    # where it goes inside the package's corpus folder (its own suffix)
    kind: str             # "recorded", "raw", "module", "midi" or "stems"
    sources: list         # local files it is made from


def import_package(package: str, out_dir: Path, cache: Path, seen: Seen, seed: int = 0,
                   soundfonts: list | None = None, progress: bool = True) -> dict:
    """Fetch one package and put its free music into out_dir/<package>/; returns its part of the report."""
    spec = GAME_MUSIC[package]
    report = {"source": package, "kind": "debian", "folder": package, "package": package, "version": None,
              "licence": {"short": "unknown", "line": "", "copyright_file": None}, "licences": {}, "note": spec.note,
              "dropped": [], "trimmed_loops": []}
    deb = fetch_deb(package, cache)
    if deb is None:
        report["unavailable"] = "not in this system's Debian release (apt-get download cannot find it)"
        return report
    report["version"] = deb_version(deb)
    folder = Path(out_dir) / package
    record = _read_tracks(folder)
    if record.get("complete") and record.get("version") == report["version"] and record.get("licence"):
        return _summarise(report, record)  # this version was imported in full before: nothing to unpack
    kept, dropped = record["kept"], []
    copyright_path = f"/usr/share/doc/{package}/copyright"

    def wanted(path: str) -> bool:
        suffix = PurePosixPath(path).suffix.lower()
        if path == copyright_path:
            return True
        if "/usr/share/doc/" in path:
            return False
        return suffix in ARCHIVE_EXTENSIONS or (suffix in MUSIC_EXTENSIONS and _is_music(spec, path))

    with tempfile.TemporaryDirectory(prefix="vampnet-deb-") as work:
        files = extract(deb, wanted, Path(work))
        copyright_file = next((f for f in files if f.path == copyright_path and f.local), None)
        if copyright_file is None:
            report["unavailable"] = f"no {copyright_path} in the package: licence unknown, package left out"
            return report
        copyright_text = CopyrightFile(copyright_file.local.read_text(errors="replace"))
        report["licence"] = {**copyright_text.whole, "copyright_file": copyright_path}
        status, why = licence_status(copyright_text.whole["short"])
        tracks, links = _tracks(spec, [f for f in files if f.path != copyright_path], Path(work))
        dropped += [{"file": f.path, "reason": f"link to {f.link_to} (the same file)", "why": "duplicate"}
                    for f in links]
        for track in tqdm(tracks, desc=package, unit="file", disable=not progress):
            outcome = _import_track(package, track, folder, copyright_text, kept, seen, seed, soundfonts)
            if outcome is not None:
                dropped.append({"file": track.name, **outcome})
    if status != "free" and not kept:
        report["note"] = (report["note"] + "; " if report["note"] else "") + why
    record = {"version": report["version"], "complete": True, "licence": report["licence"], "note": report["note"],
              "kept": kept, "dropped": dropped}
    if kept or dropped:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "tracks.json") as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    return _summarise(report, record)


def _summarise(report: dict, record: dict) -> dict:
    """The package's report from its tracks record: licences counted, loops cut, files dropped."""
    report.update(licence=record["licence"], note=record["note"], dropped=record["dropped"], licences={},
                  trimmed_loops=[])
    for track in record["kept"].values():
        report["licences"][track["licence"]] = report["licences"].get(track["licence"], 0) + 1
        if "trimmed_loop" in track:
            report["trimmed_loops"].append({"file": track["source"], **track["trimmed_loop"]})
    return report


def _is_music(spec: GameMusic, path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in spec.music)


def _tracks(spec: GameMusic, files, work: Path) -> tuple[list[Track], list]:
    """The package's tracks (archive members taken out into `work`), and the links among its files."""
    links = [f for f in files if f.local is None]
    plain = [f for f in files if PurePosixPath(f.path).suffix.lower() not in ARCHIVE_EXTENSIONS]
    tracks = []
    if plain and spec.stems:
        songs: dict[PurePosixPath, list] = {}
        for f in plain:
            if f.local is not None:
                songs.setdefault(PurePosixPath(f.path).parent, []).append(f)
        root = PurePosixPath(os.path.commonpath([str(s.parent) for s in songs]))
        for song, stems in sorted(songs.items()):
            tracks.append(Track(str(song), stems[0].path, PurePosixPath(str(song.relative_to(root)) + ".flac"),
                                "stems", [s.local for s in stems]))
    elif plain:
        root = PurePosixPath(os.path.commonpath([str(PurePosixPath(f.path).parent) for f in plain]))
        for f in plain:
            if f.local is not None:
                tracks.append(Track(f.path, f.path, PurePosixPath(f.path).relative_to(root), _kind(spec, f.path),
                                    [f.local]))
    for archive in (f for f in files if f.local is not None and PurePosixPath(f.path).suffix.lower() in ARCHIVE_EXTENSIONS):
        folder = PurePosixPath(archive.path).parent
        with zipfile.ZipFile(archive.local) as z:
            members = sorted(m for m in z.namelist() if PurePosixPath(m).suffix.lower() in MUSIC_EXTENSIONS
                             and _is_music(spec, str(folder / m)))
            if not members:
                archive.local.unlink()
                continue
            root = PurePosixPath(os.path.commonpath([str(PurePosixPath(m).parent) for m in members]))
            for member in members:
                local = work / "members" / PurePosixPath(archive.path).stem / member
                local.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                rel = PurePosixPath(PurePosixPath(archive.path).stem) / PurePosixPath(member).relative_to(root)
                tracks.append(Track(f"{archive.path}:{member}", str(folder / member), rel, _kind(spec, member), [local]))
        archive.local.unlink()  # 0 A.D.'s is 3 GB: gone as soon as its music is out
    return tracks, links


def _kind(spec: GameMusic, path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in MODULE_EXTENSIONS:
        return "module"
    if suffix in MIDI_EXTENSIONS:
        return "midi"
    return "raw" if suffix == ".raw" and spec.raw is not None else "recorded"


def _import_track(package: str, track: Track, folder: Path, copyright_text: CopyrightFile, kept: dict, seen: Seen,
                  seed: int, soundfonts) -> dict | None:
    """Put one track into the corpus; None when it is there (now or from an earlier run), else why it is not."""
    licence = copyright_text.licence_of(track.licence_path)
    status, why = licence_status(licence["short"])
    if status != "free":
        return {"reason": why, "why": "licence"}
    shipped = track.kind == "recorded" and track.rel.suffix.lower() in KEEP_AS_SHIPPED
    as_shipped, as_flac = folder / track.rel, (folder / track.rel).with_suffix(".flac")
    rel = track.rel.as_posix()
    flac_rel = track.rel.with_suffix(".flac").as_posix()
    for done in (rel, flac_rel):
        if done in kept and (folder / done).exists():
            return None
    sha1 = hashlib.sha1()
    for source in track.sources:
        sha1.update(Path(source).read_bytes())
    sha1 = sha1.hexdigest()
    if (twin := seen.duplicate_of(sha1)) is not None:
        return {"reason": f"duplicate of {twin} (the same bytes)", "why": "duplicate"}
    metadata = {"source": track.name, "package": package, "licence": licence["short"]}
    try:
        wav, sr, soundfont = _decode(track, package, seed, soundfonts)
        if wav.shape[-1] < MIN_TRACK_S * sr:
            return {"reason": f"{wav.shape[-1] / sr:.1f} s: shorter than {MIN_TRACK_S:.0f} s (a jingle or effect)",
                    "why": "too short"}
        mono = audio.to_mono(wav)[0, 0].numpy()
        envelope = loudness_envelope(mono, sr)
        if (twin := seen.duplicate_of(None, envelope)) is not None:
            return {"reason": f"duplicate of {twin} (the same recording)", "why": "duplicate"}
        entry = {"source": track.name, "licence": licence["short"], "licence_line": licence["line"], "sha1": sha1,
                 "envelope": [round(float(v), 1) for v in envelope]}
        if soundfont is not None:
            entry["soundfont"] = soundfont
            metadata["soundfont"] = soundfont
        loop = loop_period(mono, sr)
        if loop is not None:
            keep = int(round(sum(loop) * sr))  # the intro and one pass of the loop
            audio.save(as_flac, wav[..., :keep], sr, {**metadata, "trimmed_loop_s": round(loop[1], 3)})
            entry["trimmed_loop"] = {"period_s": round(loop[1], 3), "original_s": round(wav.shape[-1] / sr, 3),
                                     "kept_s": round(keep / sr, 3)}
            out_rel = flac_rel
        elif shipped:
            with atomic_path(as_shipped) as tmp:
                shutil.copyfile(track.sources[0], tmp)
            out_rel = rel
        else:
            audio.save(as_flac, wav, sr, metadata)
            out_rel = flac_rel
    except VampNetError as e:
        return {"reason": str(e), "why": "unreadable"}
    kept[out_rel] = entry
    seen.add(f"{package}/{out_rel}", sha1, envelope)
    return None


def _decode(track: Track, package: str, seed: int, soundfonts):
    """(audio, sample rate, soundfont used or None) of a track."""
    if track.kind == "raw":
        fmt = GAME_MUSIC[package].raw
        return read_raw(track.sources[0], fmt), fmt.sample_rate, None
    if track.kind == "module":
        return *decode_with_ffmpeg(track.sources[0]), None
    if track.kind == "stems":
        return *mix_stems(track.sources), None
    if track.kind == "midi":
        if not soundfonts:
            raise CorpusError("no General MIDI soundfont installed to render MIDI (fluid-soundfont-gm)")
        font, font_package = random.Random(f"midi:{seed}:{track.name}").choice(soundfonts)
        return *render_midi_file(track.sources[0], font), f"{font} ({font_package})"
    wav, sr = audio.load(track.sources[0])
    return wav, sr, None
