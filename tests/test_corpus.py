"""The training corpus (vampnet.corpus): exact beat times of renders, render length, raw PCM conversion, licence
parsing, the split report. Needs fluidsynth and a Debian General MIDI soundfont (CI installs `fluidsynth` and
`timgm6mb-soundfont`) and the music21 package; nothing here installs or downloads anything. Importing Debian
packages is tested in test_corpus_packages.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from vampnet.audio import find_audio
from vampnet.corpus import build, conversion, debian, licences, midi, music21_renders, scores
from vampnet.corpus.game_music import GAME_MUSIC
from vampnet.corpus.music21_renders import Piece
from vampnet.errors import CorpusError
from vampnet.splits import split_of
from vampnet.train.data import TokenizeConfig


def simple_score(time_signature: str, bars: int, pattern, pickup=None):
    """A one-part score: `pattern` is [(quarter length, is a note)] repeated every bar, after an optional pickup."""
    from music21 import meter, note, stream

    score, part = stream.Score(), stream.Part()
    for i in range(bars + (pickup is not None)):
        m = stream.Measure(number=i)
        if i == 0:
            m.insert(0, meter.TimeSignature(time_signature))
        if i == 0 and pickup is not None:
            m.append(note.Note("G4", quarterLength=pickup))
            m.paddingLeft = meter.TimeSignature(time_signature).barDuration.quarterLength - pickup
        else:
            for ql, is_note in pattern:
                m.append(note.Note("C5", quarterLength=ql) if is_note else note.Rest(quarterLength=ql))
        part.append(m)
    score.insert(0, part)
    return score


def onset_after(x: np.ndarray, sr: int, t: float) -> float:
    """First time near t where the level jumps well above what came just before (the previous note's release)."""
    start = int((t - 0.05) * sr)
    before = x[max(0, int((t - 0.1) * sr)):max(0, int((t - 0.02) * sr))]
    threshold = max(10 * (before.max() if before.size else 0.0), 0.01 * x.max())
    return (max(start, 0) + int(np.nonzero(x[max(start, 0):int((t + 0.05) * sr)] > threshold)[0][0])) / sr


def test_render_beats_are_exact_and_audio_matches_them(tmp_path):
    # 4/4 at 120 bpm: a quarter note on beat 1 and an eighth on beat 3 of each of 3 bars
    score = simple_score("4/4", 3, [(1, True), (1, False), (0.5, True), (0.5, False), (1, False)])
    font, package = midi.find_soundfonts()[-1]  # the smallest (TimGM6mb in CI)
    out = tmp_path / "piece.flac"
    meta = scores.render_score(score, out, font, us_per_quarter=500_000, programs=[0], info={"work": "test"})

    assert meta["beats"] == [k * 60 / 120 for k in range(12)]
    assert meta["beat_positions"] == [1, 2, 3, 4] * 3
    assert meta["downbeats"] == [0.0, 2.0, 4.0]
    assert [list(ts) for ts in meta["time_signatures"]] == [[0.0, "4/4"]]
    # the audio lasts the music (3 bars = 6 s) plus the tail, to the sample
    x, sr = sf.read(out)
    assert sr == midi.RENDER_SAMPLE_RATE and len(x) == int((6.0 + scores.RENDER_TAIL_S) * sr)
    assert meta["duration_s"] == len(x) / sr
    # notes sound where the score puts them (fluidsynth adds a few ms: 64-sample blocks and the attack)
    level = np.abs(x).max(axis=1)
    for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        assert abs(onset_after(level, sr, t) - t) < 0.01
    # sidecars: beats text (seconds, position; 1 = downbeat), MIDI, metadata
    lines = (tmp_path / "piece.beats.txt").read_text().splitlines()
    assert [line.split("\t") for line in lines[:2]] == [["0.000000", "1"], ["0.500000", "2"]]
    assert (tmp_path / "piece.mid").is_file()
    assert json.loads((tmp_path / "piece.json").read_text())["work"] == "test"


def test_beat_grid_follows_meter_and_pickup():
    from fractions import Fraction

    # 3/4 at 100 bpm: beats every 0.6 s, a downbeat every third
    score = simple_score("3/4", 2, [(1, True)] * 3)
    assert scores.beat_grid(score) == [(Fraction(k), k % 3 + 1) for k in range(6)]
    # 6/8 with an eighth-note pickup: two dotted-quarter beats a bar; the pickup holds no beat
    score = simple_score("6/8", 2, [(1.5, True), (1.5, True)], pickup=0.5)
    assert scores.beat_grid(score) == [(Fraction(1, 2), 1), (Fraction(2), 2), (Fraction(7, 2), 1), (Fraction(5), 2)]
    # 4/4 with a one-beat pickup: the pickup is beat 4
    score = simple_score("4/4", 1, [(2, True), (2, True)], pickup=1)
    assert scores.beat_grid(score) == [(Fraction(0), 4), (Fraction(1), 1), (Fraction(2), 2), (Fraction(3), 3), (Fraction(4), 4)]


def test_grace_notes_cannot_hang_the_render(tmp_path):
    from music21 import note

    score = simple_score("2/4", 2, [(1, True), (1, True)])
    grace = note.Note("E5").getGrace()  # zero length: music21 writes its note-off before its note-on
    score.parts[0].getElementsByClass("Measure")[0].insert(1.0, grace)
    font, _ = midi.find_soundfonts()[-1]
    meta = scores.render_score(score, tmp_path / "g.flac", font, us_per_quarter=500_000, programs=[52])  # sustained
    assert meta["duration_s"] == 2.0 + scores.RENDER_TAIL_S


def test_music21_corpus_is_prepared_resumably_with_split_report(tmp_path):
    out = tmp_path / "corpus"
    report = build.prepare_corpus(out, sources=("music21",), max_music21_pieces=2, seed=0, max_render_s=12.0,
                                   progress=False)
    flacs = sorted(out.rglob("*.flac"))
    assert len(flacs) == 2
    for flac in flacs:
        meta = json.loads(scores.sidecar(flac, ".json").read_text())
        assert meta["licence"]["status"] in ("free", "unrestricted")
        assert meta["music_end_s"] <= 12.0 + 1e-9
        assert abs(sf.info(flac).duration - meta["duration_s"]) < 1e-6
        beats = np.array(meta["beats"])
        assert np.all(np.diff(beats) > 0) and set(meta["downbeats"]) <= set(meta["beats"])
        assert scores.sidecar(flac, ".beats.txt").read_text().count("\n") == len(beats)
    entry = report["sources"]["music21"]
    assert entry["files"] == 2 and entry["licence"]["short"]
    assert (out / "SOURCES.md").read_text().startswith("# Corpus sources")
    # the report's validation files are exactly those the tokenizer will put in validation
    config = TokenizeConfig()
    val = sorted(p.relative_to(out).as_posix() for p, rel in find_audio([out]) if split_of(rel, config.val_fraction) == "val")
    assert sorted(entry["val"]["list"]) == val
    # a second run renders nothing again
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file() and f.suffix != ".json" and f.suffix != ".md"}
    again = build.prepare_corpus(out, sources=("music21",), max_music21_pieces=2, seed=0, max_render_s=12.0,
                                  progress=False)
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    assert again["sources"]["music21"]["pieces"] == entry["pieces"]


def test_music21_candidates_are_deterministic_varied_and_free():
    first = music21_renders.music21_candidates(seed=0)
    assert first == music21_renders.music21_candidates(seed=0)
    assert first[:8] != music21_renders.music21_candidates(seed=1)[:8]
    kinds = {c: kind for kind, collections in music21_renders.MUSIC21_KINDS.items() for c in collections}
    assert len({kinds[p.collection] for p in first[:len(music21_renders.MUSIC21_KINDS)]}) == len(music21_renders.MUSIC21_KINDS)
    assert not {p.collection for p in first} & set(music21_renders.MUSIC21_EXCLUDED)


def test_encoding_licence_classification(tmp_path):
    cases = {
        "restricted": "!!!YEM: Rights to all derivative electronic formats reserved.\n**kern\n",
        "free": "<rights>2010 Someone -- freely distributed under a CC-BY-SA 3.0 license</rights>",
        "unclear": "<rights>Copyright 2004 An Encoder</rights>",
        "unrestricted": "X:1\nT:A Reel\nK:D\nABcd|\n",
    }
    for status, text in cases.items():
        path = tmp_path / f"{status}.xml"
        path.write_text(text)
        assert music21_renders.encoding_licence(path)["status"] == status
    # one tune of a multi-tune ABC file is judged on its own lines and the file's header
    book = tmp_path / "book.abc"
    book.write_text("% a book of tunes\n\nX:1\nT:One\nK:G\nGABc|\n\nX:2\nT:Two\nZ:All rights reserved\nK:D\nDEFG|\n")
    assert music21_renders.encoding_licence(book, 1)["status"] == "unrestricted"
    assert music21_renders.encoding_licence(book, 2)["status"] == "restricted"
    assert Piece("x/book.abc", 2).out_rel == "music21/x/book-2"


def test_licence_parsing_of_debian_copyright_files():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nSource: http://example.org\n\n"
            "Files: *\nCopyright: 2002 A Composer\nLicense: GPL-2+\n\n"
            "Files: debian/*\nCopyright: 2004 A Packager\nLicense: GPL-3+\n\n"
            "License: GPL-2+\n This program is free software...\n")
    assert licences.parse_licence(dep5) == {"short": "GPL-2+", "line": "License: GPL-2+"}
    # music with its own paragraph (hyperrogue's) gets that licence, matched against the installed paths
    game = dep5.replace("Files: debian/*", "Files: music/a.ogg\n       music/b.ogg\nCopyright: A Musician\n"
                        "License: CC-BY-SA-3.0\n\nFiles: debian/*")
    music = ["/usr/share/games/game/music/a.ogg", "/usr/share/games/game/music/b.ogg"]
    assert licences.parse_licence(game, music)["short"] == "CC-BY-SA-3.0"
    assert licences.parse_licence(game, music + ["/usr/share/games/game/other.ogg"])["short"] == "CC-BY-SA-3.0 and GPL-2+"
    wesnoth = ("License:\n        This program is free software; you can redistribute it and/or modify\n"
               "        it under the terms of the GNU General Public License version 2\n"
               "        or at your option any later version.\n")
    assert licences.parse_licence(wesnoth)["short"] == "GPL-2+"
    xblast = ("Copyright 2004 Oliver Vogel & others\n\n   This package is free software; you can redistribute it\n"
              "   it under the terms of the GNU General Public License as published by\n"
              "   the Free Software Foundation; version 2 dated June, 1991.\n")
    parsed = licences.parse_licence(xblast)
    assert parsed["short"] == "GPL-2" and "GNU General Public License" in parsed["line"]
    later = "You are free to distribute this software under the terms of\nthe GNU General Public License, version 2 or later.\n"
    assert licences.parse_licence(later)["short"] == "GPL-2+"
    # a mention of public-domain samples does not hide the licence that follows
    fluid = ("Fluid was constructed in part from samples found in the public domain.\n"
             "  \"I hereby release Fluid under the MIT license, as described in COPYING.\"\n")
    assert licences.parse_licence(fluid)["short"] == "MIT"
    assert licences.parse_licence("Music released under Creative Commons Attribution-ShareAlike 3.0.\n")["short"] == "CC-BY-SA-3.0"
    assert licences.parse_licence("no words about rights\n")["short"] == "unknown"


def test_free_licences_are_told_from_non_commercial_and_unclear_ones():
    for short in ("GPL-2+", "CC-BY-SA-3.0", "CC0-1.0", "public-domain", "GPL-3 or CC-BY-3.0", "MIT",
                  "GPL-3.0+ and CC-BY-SA-3.0", "zlib or GPL-2 or CC-BY-3.0", "Artistic-2.0"):
        assert licences.licence_status(short)[0] == "free", short
    for short in ("CC-BY-NC-SA-3.0", "CC-BY-ND-4.0", "Sampling+", "CC-BY-SA-3.0 and CC-BY-NC-3.0"):
        assert licences.licence_status(short)[0] == "non-free", short
    for short in ("unknown", "Bitstream-Vera-Fonts", "GPL-2+ and Proprietary"):
        assert licences.licence_status(short)[0] == "unclear", short
    # one file of a DEP-5 file, matched by its installed path (archive members: the archive's folder + member)
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: A\nLicense: GPL-2+\n\n"
            "Files: base/music/NC*.ogg\nCopyright: B\nLicense: CC-BY-NC-SA-3.0\n")
    parsed = licences.CopyrightFile(text)
    assert parsed.licence_of("/usr/share/games/g/base/music/NCtrack.ogg")["short"] == "CC-BY-NC-SA-3.0"
    assert parsed.licence_of("/usr/share/games/g/base/music/free.ogg")["short"] == "GPL-2+"
    free_form = "The songs are licenced under the terms of the Creative Commons Attribution ShareAlike licence 3.0:\n"
    assert licences.CopyrightFile(free_form).licence_of("/any/song.ogg")["short"] == "CC-BY-SA-3.0"


def test_the_split_rule_is_unchanged():
    # sha1("vampnet/" + relpath)[:8 bytes] / 2**64 of a few paths, as the first corpus's split computed them: a file
    # is validation exactly when this is below val_fraction, so existing files never move between the splits
    known = {"corpus/pingus-data/gd-myla.flac": 0.19739991180531136,
             "corpus/wesnoth-1.16-music/battle.ogg": 0.47967570466928733,
             "corpus/music21/joplin/maple_leaf_rag.flac": 0.17379407913280936}
    for relpath, fraction in known.items():
        assert split_of(relpath, fraction + 1e-12) == "val" and split_of(relpath, fraction - 1e-12) == "train"
    assert TokenizeConfig().val_fraction == 0.05 and TokenizeConfig().split_salt == "vampnet"


def test_raw_unsigned_8bit_pcm_reads_as_float_audio(tmp_path):
    fmt = GAME_MUSIC["xblast-tnt-musics"].raw
    sr = fmt.sample_rate
    t = np.arange(sr // 2) / sr
    raw = np.round(128 + 100 * np.sin(2 * np.pi * 440 * t)).astype(np.uint8)
    raw.tofile(tmp_path / "song.raw")
    x = conversion.read_raw(tmp_path / "song.raw", fmt)
    assert sr == 22050 and x.shape == (1, 1, sr // 2)
    np.testing.assert_allclose(x[0, 0].numpy(), (raw.astype(np.float64) - 128) / 128, atol=1e-7)


def test_missing_package_error_names_the_apt_command():
    with pytest.raises(CorpusError, match="apt-get install -y vampnet-no-such-package"):
        debian.ensure_package("vampnet-no-such-package", install=False)


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="unknown source"):
        build.prepare_corpus(tmp_path, sources=("not-a-package",), progress=False)
    assert not os.listdir(tmp_path)


def test_a_track_that_is_one_loop_played_over_is_found_and_a_repeated_chorus_is_not():
    sr = 8000
    rng = np.random.default_rng(0)
    noise = lambda seconds: rng.standard_normal(int(seconds * sr)).astype(np.float32)  # noqa: E731
    intro, loop = noise(40), noise(25)
    start, period = conversion.loop_period(np.concatenate([intro] + [loop] * 5), sr)
    assert period == pytest.approx(25, abs=1e-3) and start + period <= 40 + 2 * 25  # cut keeps all of it once
    a, b, c = noise(20), noise(20), noise(20)
    assert conversion.loop_period(np.concatenate([noise(35), a, b, a, c]), sr) is None


def test_missing_tools_are_all_named_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "package_version", lambda name: None if name in ("fluidsynth", "ffmpeg") else "1")
    with pytest.raises(CorpusError, match=r"apt-get install -y fluidsynth ffmpeg"):
        build.prepare_corpus(tmp_path / "c", sources=("nexuiz-music", "openttd-openmsx"), progress=False)
    assert not (tmp_path / "c").exists()


def test_a_piece_that_takes_too_much_cpu_time_is_stopped():
    with pytest.raises(music21_renders.PieceTooSlow):
        with music21_renders.cpu_time_limit(0.2):
            while True:  # busy, as music21 is on a huge score
                sum(range(1000))
    with music21_renders.cpu_time_limit(5.0):  # and a quick one runs to its end, the timer cleared after it
        total = sum(range(1000))
    assert total == 499500
