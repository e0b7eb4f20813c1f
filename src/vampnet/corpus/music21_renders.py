"""music21's own corpus as a corpus source: which works (public-domain compositions whose encodings are free or
record no restriction), in which order (musical kinds in turn, shuffled by seed), each rendered by `render_score`
into music21/<collection>/<piece>.flac with random General MIDI instruments, tempo and soundfont."""
from __future__ import annotations

import random
import re
import shutil
import signal
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import CorpusError
from .midi import find_soundfonts, soundfont_info
from .scores import add_second_part, choose_programs, choose_tempo, render_score, sidecar, truncate, without_repeats

MUSIC21 = "music21"
# CPU seconds one piece may take (most take 3-10): a few huge scores keep music21 busy for many minutes.
# Process CPU time, not wall time, so a busy machine skips the same pieces as an idle one.
PIECE_CPU_LIMIT_S = 90.0


class PieceTooSlow(Exception):
    """A piece took more than PIECE_CPU_LIMIT_S of CPU time to prepare."""


@contextmanager
def cpu_time_limit(seconds: float):
    """Raise PieceTooSlow in this (main) thread once the process has used `seconds` more CPU time; elsewhere,
    or where SIGVTALRM does not exist, run without a limit."""
    if not hasattr(signal, "SIGVTALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise PieceTooSlow(f"more than {seconds:.0f} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, stop)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)

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
    def kind(self) -> str:
        return next((k for k, collections in MUSIC21_KINDS.items() if self.collection in collections), "other")

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
            with cpu_time_limit(PIECE_CPU_LIMIT_S):
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
    arrangement = add_second_part(score, rng) if len(score.parts) == 1 and piece.kind == "folk" else "as written"
    us = choose_tempo(score, rng)
    programs = choose_programs(len(score.parts), rng)
    font_index = rng.randrange(len(soundfonts))
    truncate(score, max_render_s * 1e6 / us)
    md = score.metadata
    info = {"source": MUSIC21, "work": piece.id, "collection": piece.collection,
            "title": (md.title if md is not None else None) or Path(piece.path).stem,
            "composer": md.composer if md is not None else None,
            "licence": {**licence, "collection": MUSIC21_LICENCE}, "soundfont": fonts[font_index],
            "arrangement": arrangement}
    return render_score(score, out_audio, soundfonts[font_index][0], us, programs, info)

