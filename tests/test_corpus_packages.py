"""Importing a Debian game-music package into the corpus, on small packages these tests build with dpkg-deb (offline:
the package cache already holds them, so nothing is downloaded): per-track licences, sound effects left behind,
duplicates (the same bytes, a link, the same recording re-encoded), archives, tracker modules (ffmpeg), MIDI
(FluidSynth), stems mixed, too-short files, resuming, and the report. Needs dpkg-deb, ffmpeg, fluidsynth and a GM
soundfont (CI installs them)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import soundfile as sf

from vampnet.corpus import build, game_music, midi, report
from vampnet.corpus.game_music import GameMusic, Seen, import_package

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: testgame

Files: *
Copyright: 2020 A Composer
License: GPL-2+

Files: data/music/nc_*.ogg
Copyright: 2020 Someone Else
License: CC-BY-NC-SA-3.0
"""


def tone(seconds: float, freq: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """A tone whose level changes every half second (so recordings have distinct loudness envelopes)."""
    t = np.arange(int(seconds * sr)) / sr
    levels = np.random.default_rng(seed).uniform(0.05, 0.5, int(seconds * 2) + 1)
    return (levels[(t * 2).astype(int)] * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tracker_module() -> bytes:
    """A 4-channel ProTracker module: one looped square-wave sample, one pattern with a note every 16 rows
    (64 rows at speed 6, 125 BPM: 7.68 s)."""
    sample = bytes([64] * 16 + [192] * 16)  # signed 8-bit square wave, one cycle of 32 bytes
    head = b"vampnet test".ljust(20, b"\0")
    head += b"square".ljust(22, b"\0") + struct.pack(">HBBHH", len(sample) // 2, 0, 64, 0, len(sample) // 2)
    head += (b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)) * 30
    head += bytes([1, 127]) + bytes(128) + b"M.K."
    rows = bytearray(64 * 4 * 4)
    for row in range(0, 64, 16):
        period = 428  # C-3
        rows[row * 16: row * 16 + 4] = bytes([(1 & 0xF0) | (period >> 8), period & 0xFF, (1 & 0x0F) << 4, 0])
    return head + bytes(rows) + sample


def midi_file(seconds: int = 6) -> bytes:
    """A format-0 MIDI file: one piano note held for `seconds` at 120 BPM (480 ticks a quarter)."""
    ticks = seconds * 2 * 480

    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.insert(0, (n & 0x7F) | 0x80)
        return bytes(out)

    track = (b"\0\xff\x51\x03\x07\xa1\x20" + b"\0\xc0\x00" + b"\0\x90\x3c\x64" + vlq(ticks) + b"\x80\x3c\x00"
             + b"\0\xff\x2f\x00")
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track


def build_deb(root, package: str, cache) -> None:
    """A .deb of the tree under `root`, named as apt-get download names it, in the package cache."""
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: Test <test@example.org>\nDescription: test music\n")
    (root / "usr/share/doc" / package).mkdir(parents=True, exist_ok=True)
    (root / "usr/share/doc" / package / "copyright").write_text(COPYRIGHT)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(cache / f"{package}_1.0-1_all.deb")],
                   check=True, capture_output=True)


@pytest.fixture
def game(tmp_path, monkeypatch):
    """A package with music (OGG, a copy, a link, a re-encoded copy, a non-commercial track, a short jingle, a
    tracker module, a MIDI file, an archive) and sound effects, registered as a corpus source."""
    package = "vampnet-test-music"
    root = tmp_path / "tree"
    music = root / "usr/share/games/testgame/data/music"
    music.mkdir(parents=True)
    sr = 22050
    sf.write(music / "theme.ogg", tone(8, 440, seed=1), sr, format="OGG", subtype="VORBIS")
    (music / "theme_copy.ogg").write_bytes((music / "theme.ogg").read_bytes())
    os.symlink("theme.ogg", music / "theme_link.ogg")
    sf.write(music / "theme_again.flac", tone(8, 440, seed=1), sr)  # the same recording, another format
    sf.write(music / "nc_battle.ogg", tone(8, 330, seed=2), sr, format="OGG", subtype="VORBIS")
    sf.write(music / "jingle.ogg", tone(2, 550, seed=3), sr, format="OGG", subtype="VORBIS")
    (music / "tune.mod").write_bytes(tracker_module())
    (music / "score.mid").write_bytes(midi_file())
    sf.write(tmp_path / "inner.ogg", tone(7, 660, seed=4), sr, format="OGG", subtype="VORBIS")
    with zipfile.ZipFile(root / "usr/share/games/testgame/data/extra.pk3", "w") as pk3:
        pk3.write(tmp_path / "inner.ogg", "music/inner.ogg")
        pk3.write(tmp_path / "inner.ogg", "sounds/boom.ogg")  # a sound effect inside the archive
    effects = root / "usr/share/games/testgame/data/sounds"
    effects.mkdir()
    sf.write(effects / "explosion.ogg", tone(6, 100, seed=5), sr, format="OGG", subtype="VORBIS")
    cache = tmp_path / "debs"
    build_deb(root, package, cache)
    monkeypatch.setitem(game_music.GAME_MUSIC, package, GameMusic(music=("*/data/music/*",)))
    return package, cache


def test_a_package_is_imported_with_free_music_only_and_every_drop_explained(tmp_path, game):
    package, cache = game
    out = tmp_path / "corpus"
    fonts = midi.find_soundfonts()[-1:]
    result = import_package(package, out, cache, Seen(), seed=0, soundfonts=fonts, progress=False)

    assert result["version"] == "1.0-1" and result["licence"]["short"] == "GPL-2+"
    kept = sorted(p.relative_to(out / package).as_posix() for p in (out / package).rglob("*.*") if p.suffix != ".json")
    # the archive's member keeps its path below the archive's name (as nexuiz's music.pk3 always did)
    assert kept == ["extra/inner.ogg", "score.flac", "theme.ogg", "tune.flac"]
    assert (out / package / "theme.ogg").read_bytes() == (game[1].parent / "tree/usr/share/games/testgame/data/music/"
                                                          "theme.ogg").read_bytes()  # OGG copied byte for byte
    why = {d["file"].rsplit("/", 1)[-1]: d["why"] for d in result["dropped"]}
    assert why == {"theme_copy.ogg": "duplicate", "theme_link.ogg": "duplicate", "theme_again.flac": "duplicate",
                   "nc_battle.ogg": "licence", "jingle.ogg": "too short"}
    assert "CC-BY-NC-SA-3.0" in next(d["reason"] for d in result["dropped"] if d["why"] == "licence")
    assert result["licences"] == {"GPL-2+": 4}
    # the tracker module is played once (64 rows at speed 6, 125 BPM: 7.68 s; libopenmpt adds ~0.1 s), not looped;
    # the MIDI note lasts 6 s plus its release
    assert 7.6 <= sf.info(out / package / "tune.flac").duration <= 7.9
    x, _ = sf.read(out / package / "tune.flac")
    assert np.abs(x).max() > 0.05
    assert 6.0 <= sf.info(out / package / "score.flac").duration <= 6.6
    tracks = json.loads((out / package / "tracks.json").read_text())
    assert set(tracks["kept"]) == set(kept)
    assert tracks["kept"]["score.flac"]["soundfont"].startswith(str(fonts[0][0]))

    # the report counts what is in the folder; a second run converts nothing again and still explains every drop
    doc = report.write_report(out, {package: result}, 0.05, "vampnet", seed=0)
    assert doc["sources"][package]["files"] == 4
    stamps = {p: p.stat().st_mtime_ns for p in (out / package).rglob("*.*") if p.suffix != ".json"}
    again = import_package(package, out, cache, game_music.load_seen(out), seed=0, soundfonts=fonts, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(d["file"] for d in again["dropped"]) == sorted(d["file"] for d in result["dropped"])
    assert "## Dropped files" in (out / "SOURCES.md").read_text()


def test_a_recording_already_in_another_package_is_a_duplicate(tmp_path, game):
    package, cache = game
    out = tmp_path / "corpus"
    seen = Seen()
    sr = 22050
    folder = tmp_path / "other"
    folder.mkdir()
    sf.write(folder / "theme.wav", tone(8, 440, seed=1), sr)
    x, _ = sf.read(folder / "theme.wav")
    from vampnet.corpus.conversion import loudness_envelope

    seen.add("other-game/theme.wav", "0" * 40, loudness_envelope(x, sr))
    result = import_package(package, out, cache, seen, seed=0, soundfonts=midi.find_soundfonts()[-1:], progress=False)
    assert not (out / package / "theme.ogg").exists()
    assert any(d["reason"] == "duplicate of other-game/theme.wav (the same recording)" for d in result["dropped"])


def test_stems_of_a_song_are_mixed_into_one_recording(tmp_path, monkeypatch):
    package = "vampnet-test-stems"
    root = tmp_path / "tree"
    sr = 22050
    for song, freqs in (("first", (220, 330)), ("second", (440, 550))):
        folder = root / "usr/share/games/g/songs" / song
        folder.mkdir(parents=True)
        for stem, freq in zip(("guitar.flac", "song.flac"), freqs):
            sf.write(folder / stem, tone(6, freq, sr, seed=freq), sr)
        (folder / "notes.mid").write_bytes(midi_file())  # the game's chart of the song, not music
    cache = tmp_path / "debs"
    build_deb(root, package, cache)
    monkeypatch.setitem(game_music.GAME_MUSIC, package, GameMusic(music=("*/songs/*.flac",), stems=True))
    out = tmp_path / "corpus"
    doc = build.prepare_corpus(out, sources=(package,), package_cache=cache, progress=False)  # the command's path
    result = doc["sources"][package]
    assert sorted(p.name for p in (out / package).glob("*.flac")) == ["first.flac", "second.flac"]
    assert result["files"] == 2 and result["hours"] == pytest.approx(12 / 3600, abs=1e-3)
    mixed, read_sr = sf.read(out / package / "first.flac")
    assert read_sr == sr and mixed.shape == (6 * sr, 2)
    expected = tone(6, 220, sr, seed=220) + tone(6, 330, sr, seed=330)
    np.testing.assert_allclose(mixed[:, 0], expected, atol=2e-4)
    assert result["dropped"] == []


def test_a_package_this_release_lacks_is_left_out_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(game_music.GAME_MUSIC, "vampnet-no-such-package", GameMusic())
    monkeypatch.setattr(game_music, "fetch_deb", lambda package, cache: None)
    result = import_package("vampnet-no-such-package", tmp_path / "corpus", tmp_path / "debs", Seen(), progress=False)
    assert "not in this system's Debian release" in result["unavailable"]
    assert not (tmp_path / "corpus").exists()
