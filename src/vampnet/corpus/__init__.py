"""The training corpus, from free music only: Debian's game-music packages and music21's scores rendered to audio.
Building it is data gathering, not training: `vampnet.train` only reads the folder it makes.

Layout of a corpus folder (made, or resumed, by `prepare_corpus`):
    <package>/...                      one Debian package's music: OGG copied as shipped; other formats, mixed
                                       stems, rendered modules and MIDI, and tracks that are one loop played
                                       over and over (cut to one pass), as FLAC
    <package>/tracks.json              every kept track (source, licence, hash) and every dropped one, with why
    music21/<collection>/<piece>.flac  a score from music21's corpus rendered with FluidSynth; beside it
        <piece>.mid                    the MIDI file that was rendered (instruments and tempo as heard)
        <piece>.beats.txt              one line per beat: seconds <TAB> position in the bar (1 = downbeat)
        <piece>.json                   the work, its licence, tempo, instruments, soundfont, beats and downbeats
    sources.json, SOURCES.md           per source: package and version, files, hours, licences, validation files

Modules, one job each: `debian` (fetch and unpack .deb files), `licences` (copyright files, free or not),
`game_music` (which packages and files are music, and importing them), `conversion` (PCM, modules, stems, loops,
duplicates), `midi` (FluidSynth and soundfonts), `scores` (making a music21 score playable and rendering it),
`music21_renders` (which works, in which order), `report` (sources.json / SOURCES.md), `build` (all of it).

Train/validation is decided per file by `vampnet.splits.split_of` on the path `vampnet tokenize <corpus folder>`
will see, so the report and the tokenizer always agree on which files are validation. Everything is
deterministic for a given seed, package versions, music21 version and soundfonts; files already in the folder
are kept, so an interrupted run continues where it stopped."""
from .build import DEFAULT_MUSIC21_PIECES, DEFAULT_SOURCES, prepare_corpus

__all__ = ["DEFAULT_MUSIC21_PIECES", "DEFAULT_SOURCES", "prepare_corpus"]
