#!/usr/bin/env python
"""Precision modes side by side in one process: the full-size coarse transformer forward and the codec encode and
decode of 10 s, in fp32, bf16 and int8, with their error against fp32 (logits relative error and top-1 agreement;
codec codes agreement and multi-scale mel distance of the decoded audio).

    python benchmarks/bench_precision.py [--layers 20] [--seconds 10] [--reps 2] [--output FILE]

Random weights (the official architecture); each variant timed `reps` times after a warm-up, best time kept."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import Codec, CodecConfig, MaskedTransformer, TransformerConfig
from vampnet import precision as P
from vampnet.spectral import multiscale_mel_distance


def best_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    cfg = TransformerConfig(n_codebooks=4, n_conditioning_codebooks=0, vocab_size=1024, latent_dim=8, embedding_dim=1280,
                            n_heads=20, n_layers=args.layers)
    base = MaskedTransformer(cfg).eval()
    ccfg = CodecConfig(encoder_dim=64, encoder_rates=(2, 4, 8, 12), decoder_dim=512, decoder_rates=(12, 8, 4, 2),
                       n_codebooks=14, codebook_size=1024, codebook_dim=8)
    codec = Codec(ccfg).eval()
    wav = torch.randn(1, 1, int(args.seconds * 44100)) * 0.1
    rows = []
    with torch.inference_mode():
        codes = codec.encode(wav)
        T = codes.shape[-1]
        tokens = torch.randint(0, 1024, (1, 4, T))
        ref_logits = base(tokens)
        ref_audio = codec.decode(codes)
        for mode in P.PRECISIONS:
            model = MaskedTransformer(cfg)
            model.load_state_dict(base.state_dict())
            model = P.apply_to_transformer(model.eval(), mode)
            c = Codec(ccfg)
            c.load_state_dict(codec.state_dict())
            c = P.apply_to_codec(c.eval(), mode, torch.device("cpu"))
            t_fwd, logits = best_time(lambda: model(tokens).float(), args.reps)
            t_enc, got_codes = best_time(lambda: c.encode(wav), args.reps)
            t_dec, audio = best_time(lambda: c.decode(codes).float(), args.reps)
            rows.append({
                "mode": mode, "forward": t_fwd, "encode": t_enc, "decode": t_dec,
                "logits_rel": float((logits - ref_logits).norm() / ref_logits.norm()),
                "top1": float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean()),
                "codes_equal": float((got_codes == codes).float().mean()),
                "mel": float(multiscale_mel_distance(audio, ref_audio, 44100)),
            })
    fp32 = rows[0]
    lines = [f"### Precision modes, one process ({args.layers}-layer coarse x 1280, {T} frames; codec 14 x 1024, "
             f"decoder_dim 512; {args.seconds:g} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
             f"CPU bf16 instructions: {P.cpu_has_bf16()})", "",
             "| mode | coarse forward (s) | speed-up | encode (s) | speed-up | decode (s) | speed-up | logits rel. err | "
             "top-1 agree | codes equal | mel dist. to fp32 audio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['forward']:.2f} | {fp32['forward'] / r['forward']:.2f}x | {r['encode']:.2f} | "
                     f"{fp32['encode'] / r['encode']:.2f}x | {r['decode']:.2f} | {fp32['decode'] / r['decode']:.2f}x | "
                     f"{r['logits_rel']:.1e} | {r['top1']:.3f} | {r['codes_equal']:.3f} | {r['mel']:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
