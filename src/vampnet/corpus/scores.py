"""music21 scores made playable and rendered: one tempo, General MIDI instruments, repeats played through,
notes that cannot hang, a cut at a bar line, folk melodies given a second part, and the exact beat times of the
result; `render_score` writes the audio with its MIDI file, beats and metadata beside it."""
from __future__ import annotations

import copy
import json
import random
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import torch

from .. import audio
from ..serialization import atomic_path
from .midi import RENDER_LUFS, RENDER_SAMPLE_RATE, fluidsynth_render

RENDER_TAIL_S = 2.0        # silence kept after the last note so releases and reverb can ring out
DEFAULT_BEAT_BPM = 96.0    # tempo of a score that gives none, in beats (not quarters) per minute
TEMPO_RANGE_BPM = (50.0, 180.0)
TEMPO_SCALE_OCTAVES = 0.5  # renders scale the score's tempo by 2**U(-0.5, 0.5): x0.71 to x1.41

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
        # fluidsynth renders far faster than real time; the limit only stops a runaway render
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


def add_second_part(score, rng: random.Random) -> str:
    """Give a one-part score (a folk tune) a second part, in place: the melody doubled an octave below, or a bass
    that plays, each bar, the root of the tonic, subdominant or dominant triad that holds most of the bar's
    melody (by duration; the tonic when tied). Returns "doubled" or "harmonised"."""
    from music21 import note, stream

    melody = score.parts[0]
    if rng.random() < 0.5:
        lower = copy.deepcopy(melody)
        lower.transpose(-12, inPlace=True)
        score.insert(0, lower)
        return "doubled"
    key = score.analyze("key")
    triads = []
    for degree in (1, 4, 5):
        pitches = [key.pitchFromDegree((degree - 1 + step) % 7 + 1) for step in (0, 2, 4)]
        triads.append((pitches[0], {p.pitchClass for p in pitches}))
    bass = stream.Part()
    for measure in melody.getElementsByClass(stream.Measure):
        held = {}
        for n in measure.recurse().notes:
            for p in n.pitches:
                held[p.pitchClass] = held.get(p.pitchClass, 0.0) + float(n.duration.quarterLength)
        root = max(triads, key=lambda t: sum(held.get(pc, 0.0) for pc in t[1]))[0]
        length = float(measure.duration.quarterLength)
        bar = stream.Measure(number=measure.number)
        bar.paddingLeft = measure.paddingLeft
        if measure.timeSignature is not None:
            bar.timeSignature = copy.deepcopy(measure.timeSignature)
        if length > 0:
            n = note.Note(root.name, quarterLength=length)
            n.octave = 3 if root.pitchClass < 5 else 2
            bar.append(n if held else note.Rest(quarterLength=length))
        bass.insert(float(measure.offset), bar)
    score.insert(0, bass)
    return "harmonised"
