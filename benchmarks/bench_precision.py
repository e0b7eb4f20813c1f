#!/usr/bin/env python
"""Precision modes side by side in one process: the full-size coarse transformer forward and the codec encode and
decode of 10 s, in fp32, bf16 and int8, with their error against fp32 (logits relative error and top-1 agreement;
codec codes agreement and multi-scale mel distance of the decoded audio), and each forward's GFLOP/s against a
same-size matrix product in its own precision ([575x1280]x[1280x5120]) timed alongside.

    python benchmarks/bench_precision.py [--layers 20] [--seconds 10] [--reps 2] [--skip-codec] [--output FILE]

Random weights (the official architecture); each variant timed `reps` times after a warm-up, best time kept.
Where torchao is installed, an extra row `int8-torchao` runs the int8 mode's earlier CPU backend (torchao's
dynamically quantised linear) for comparison."""
from __future__ import annotations

import argparse
import os
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
from vampnet.quiet import quiet_torchao
from vampnet.spectral import multiscale_mel_distance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (FLOP count)


def torchao_int8(module):
    """The int8 mode as it was before the fused x86 kernels: torchao's dynamically quantised linear layers."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    with quiet_torchao():
        quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return module


def transformer_in(mode, model):
    if mode != "int8-torchao":
        return P.apply_to_transformer(model, mode)
    model.fold_for_inference()
    return torchao_int8(model)


MATMUL = (575, 1280, 5120)
MATMUL_FLOPS = 2 * MATMUL[0] * MATMUL[1] * MATMUL[2]


def matmul_layer(mode):
    """A call of one linear layer of the forward's size in `mode` (int8: the mode's quantised layer)."""
    M, K, N = MATMUL
    layer = torch.nn.Sequential(torch.nn.Linear(K, N, bias=False)).eval()
    x = torch.randn(M, K)
    if mode == "bf16":
        layer, x = layer.to(torch.bfloat16), x.to(torch.bfloat16)
    elif mode == "int8":
        layer = P.quantize_linears(layer)
    elif mode == "int8-torchao":
        layer = torchao_int8(layer)
    return lambda: layer(x)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def has_torchao():
    with quiet_torchao():
        try:
            import torchao  # noqa: F401
        except ImportError:
            return False
    return True


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
    p.add_argument("--skip-codec", action="store_true", help="transformer forward only")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    start_load = os.getloadavg()[0]
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
        modes = list(P.MODES) + (["int8-torchao"] if has_torchao() else [])
        flops = core.transformer_flops(cfg, T)["total"]
        models, layers = {}, {}
        for mode in modes:
            model = MaskedTransformer(cfg)
            model.load_state_dict(base.state_dict())
            models[mode], layers[mode] = transformer_in(mode, model.eval()), matmul_layer(mode)
        # rounds interleave the modes, so a change in the machine's load falls on all of them alike
        fwd = {m: [] for m in modes}
        mm = {m: [] for m in modes}
        for _ in range(args.reps + 1):  # the first round warms up
            for mode in modes:
                fwd[mode].append(timed(lambda: models[mode](tokens)))
                mm[mode].append(min(timed(layers[mode]) for _ in range(3)))
        for mode in modes:
            logits = models[mode](tokens).float()
            t_fwd, t_mm = min(fwd[mode][1:]), min(mm[mode][1:])
            row = {"mode": mode, "forward": t_fwd, "gflops": flops / t_fwd / 1e9, "matmul_gflops": MATMUL_FLOPS / t_mm / 1e9,
                   "logits_rel": float((logits - ref_logits).norm() / ref_logits.norm()),
                   "top1": float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean())}
            if not args.skip_codec and mode != "int8-torchao":  # (the codec is the same in both int8 rows)
                c = Codec(ccfg)
                c.load_state_dict(codec.state_dict())
                c = P.apply_to_codec(c.eval(), mode, torch.device("cpu"))
                row["encode"], got_codes = best_time(lambda: c.encode(wav), args.reps)
                row["decode"], audio = best_time(lambda: c.decode(codes).float(), args.reps)
                row["codes_equal"] = float((got_codes == codes).float().mean())
                row["mel"] = float(multiscale_mel_distance(audio, ref_audio, 44100))
            rows.append(row)
    fp32 = rows[0]
    lines = [f"### Precision modes, one process ({args.layers}-layer coarse x 1280, {T} frames; codec 14 x 1024, "
             f"decoder_dim 512; {args.seconds:g} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
             f"CPU bf16 instructions: {P.cpu_has_bf16()}, VNNI: {P.cpu_has_vnni()}; load average "
             f"{start_load:.1f} -> {os.getloadavg()[0]:.1f})", "",
             "| mode | coarse forward (s) | speed-up | forward GFLOP/s | same-size matmul GFLOP/s | efficiency | "
             "encode (s) | speed-up | decode (s) | speed-up | logits rel. err | top-1 agree | codes equal | "
             "mel dist. to fp32 audio |", "|---|" + "---:|" * 13]
    cell = lambda r, k, f: format(r[k], f) if k in r else "-"
    for r in rows:
        lines.append(f"| {r['mode']} | {r['forward']:.2f} | {fp32['forward'] / r['forward']:.2f}x | {r['gflops']:.0f} | "
                     f"{r['matmul_gflops']:.0f} | {r['gflops'] / r['matmul_gflops']:.2f} | {cell(r, 'encode', '.2f')} | "
                     + (f"{fp32['encode'] / r['encode']:.2f}x" if "encode" in r and "encode" in fp32 else "-") +
                     f" | {cell(r, 'decode', '.2f')} | "
                     + (f"{fp32['decode'] / r['decode']:.2f}x" if "decode" in r and "decode" in fp32 else "-") +
                     f" | {r['logits_rel']:.1e} | {r['top1']:.3f} | {cell(r, 'codes_equal', '.3f')} | {cell(r, 'mel', '.3f')} |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
