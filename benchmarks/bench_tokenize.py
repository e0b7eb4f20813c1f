#!/usr/bin/env python
"""Tokenisation speed: `vampnet tokenize` with the codec's own encode path (before) and with the bulk encoder
(now), on the same audio files, side by side in one run; then the size of token packs made from the result.

    python benchmarks/bench_tokenize.py AUDIO_DIR [--codec PATH] [--rounds 2] [--threads N] [--output FILE]

Each round tokenises the whole folder with both paths (alternating which goes first) into fresh folders and
records wall and CPU seconds; the best round of each counts. It checks that both wrote identical tokens. Audio
seconds per wall second and per CPU second are reported (on a shared machine CPU seconds are the steadier
measure). Pack sizes: bit-packed (the pack format) and, for comparison, the same codes as int16 deflated
(np.savez_compressed), for the coarse codebooks (4) and all of them."""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet.codec import Codec
from vampnet.train.data import TokenizeConfig, make_pack, read_index, tokenize

ROOT = Path(__file__).resolve().parents[1]


def run(audio_dir: Path, out: Path, codec, codec_path: str, old: bool) -> tuple[float, float]:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    tokenize([audio_dir], out, codec, TokenizeConfig(), codec_path=codec_path, progress=False,
             encode=codec.encode if old else None)
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def deflated_bytes(codes: np.ndarray) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, codes=codes.astype(np.int16))
    return buf.tell()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audio_dir", type=Path)
    p.add_argument("--codec", type=Path, default=ROOT / "src" / "vampnet" / "weights" / "small" / "codec.safetensors")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    codec = Codec.load(args.codec)
    lines = [f"### Tokenisation: codec encode path vs bulk encoder ({args.audio_dir.name}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        best = {"before": (1e9, 1e9), "now": (1e9, 1e9)}
        for r in range(args.rounds):
            for name in (("before", "now") if r % 2 == 0 else ("now", "before")):
                wall, cpu = run(args.audio_dir, tmp / f"{name}{r}", codec, str(args.codec), old=name == "before")
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
                print(f"round {r} {name}: wall {wall:.1f} s, cpu {cpu:.1f} s", file=sys.stderr)
        rows = read_index(tmp / "now0")
        seconds = sum(r["frames"] for r in rows) / codec.frame_rate
        identical = rows == read_index(tmp / "before0") and all(
            np.array_equal(np.load(tmp / "now0" / f), np.load(tmp / "before0" / f)) for f in {r["tokens_file"] for r in rows})
        lines += [f"{len({r['source'] for r in rows})} files, {seconds:.0f} s of audio kept in {len(rows)} excerpts; "
                  f"tokens of the two paths identical: **{identical}**", "",
                  "| path | wall s | CPU s | audio s per wall s | audio s per CPU s |", "|---|---|---|---|---|"]
        for name, (wall, cpu) in best.items():
            lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {seconds / wall:.1f} | {seconds / cpu:.1f} |")
        b, n = best["before"], best["now"]
        lines += ["", f"Speed-up: {b[0] / n[0]:.2f}x wall, {b[1] / n[1]:.2f}x CPU.", "",
                  "| codebooks | pack file, MB per hour of audio | of which fixed (codebook vectors, headers) | "
                  "same codes as int16, deflated (npz), MB per hour |", "|---|---|---|---|"]
        hours = seconds / 3600
        for k in (4, codec.n_codebooks):
            summary = make_pack(tmp / "now0", tmp / f"p{k}.vpack", codec, n_codebooks=k)
            codes = np.concatenate([np.load(tmp / "now0" / f)[:k] for f in dict.fromkeys(r["tokens_file"] for r in rows)], 1)
            with np.load(tmp / f"p{k}.vpack") as z:
                fixed = summary["bytes"] - z["codes"].nbytes - z["meta"].nbytes  # what does not grow with hours
            lines.append(f"| {k} | {(summary['bytes'] - fixed) / hours / 1e6:.3f} | {fixed / 1e6:.3f} MB once | "
                         f"{deflated_bytes(codes) / hours / 1e6:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
