#!/usr/bin/env python
"""Core benchmark: one vamp of the full-size VampNet architecture (random weights) on CPU, stage by stage.

    python benchmarks/bench_core.py [--seconds 10] [--steps 36] [--c2f-steps 2] [--quick] [--output FILE] [--json FILE]

What it does (see benchmarks/README.md):
  1. builds the official architecture with random weights (codec LAC 44.1 kHz hop 768, coarse 20 x 1280,
     c2f 16 x 1280) in a child process, writes it in the OFFICIAL container format (torch.save of
     {'state_dict', 'metadata': {'kwargs'}} with the original key names, LoRA factors included) and loads the
     folder with `Pipeline.load`, checking on a probe input that the round trip reproduces the built models;
  2. times the stages of one `Pipeline.vamp` (preprocess, encode, coarse generation, coarse-to-fine, decode,
     end to end) from its progress callback, with the peak RSS and CPU use of each stage;
  3. times one coarse forward, counts its FLOPs analytically and compares the achieved GFLOP/s with a single
     fp32 matrix product of a comparable shape timed in the same run;
  4. decodes the same tokens with a second decoder width (1536, lac/conf/base.yml's; the main run uses 512, the
     width the ~180 MB official file suggests);
  5. profiles one coarse forward and one decode by operator.
`--quick` runs the same code on a tiny configuration in a few seconds (for tests)."""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vampnet import Codec, CodecConfig, MaskedTransformer, Pipeline, PromptConfig, SamplingConfig, TransformerConfig
from vampnet.model.official import LORA_PROJECTIONS, LAYER_MAP

# --- configurations -----------------------------------------------------------------------------------------

FULL = {
    # LAC kwargs as the official codec.pth would hold them (14 codebooks of 1024 codes, 8-d, 44.1 kHz, hop 768)
    "codec": dict(encoder_dim=64, encoder_rates=[2, 4, 8, 12], decoder_dim=512, decoder_rates=[12, 8, 4, 2],
                  n_codebooks=14, codebook_size=1024, codebook_dim=8, quantizer_dropout=False, sample_rate=44100),
    "alt_decoder_dim": 1536,
    "coarse": dict(n_codebooks=4, n_conditioning_codebooks=0, vocab_size=1024, latent_dim=8, embedding_dim=1280,
                   n_heads=20, n_layers=20),
    "c2f": dict(n_codebooks=14, n_conditioning_codebooks=4, vocab_size=1024, latent_dim=8, embedding_dim=1280,
                n_heads=20, n_layers=16),
    "pipeline": {},
    "seconds": 10.0, "steps": 36, "forward_reps": 3, "matmul": (575, 1280, 5120), "probe_frames": 32,
}

QUICK = {
    "codec": dict(encoder_dim=4, encoder_rates=[2, 4, 4, 4], decoder_dim=32, decoder_rates=[4, 4, 4, 2],
                  n_codebooks=4, codebook_size=16, codebook_dim=4, quantizer_dropout=False, sample_rate=12800),
    "alt_decoder_dim": 16,
    "coarse": dict(n_codebooks=2, n_conditioning_codebooks=0, vocab_size=16, latent_dim=4, embedding_dim=32,
                   n_heads=2, n_layers=2),
    "c2f": dict(n_codebooks=4, n_conditioning_codebooks=2, vocab_size=16, latent_dim=4, embedding_dim=32,
                n_heads=2, n_layers=2),
    "pipeline": {"c2f_chunk_s": 0.3},  # several c2f chunks, so the batched path runs
    "seconds": 1.0, "steps": 4, "forward_reps": 2, "matmul": (100, 32, 128), "probe_frames": 8,
}

# the original implementation's timings on this machine (from the issue), seconds / GB
ORIGINAL = {"encode": 9.0, "forward": 3.14, "coarse": 117.5, "c2f": 6.4, "decode": 2.0, "total": 135.0, "peak_gb": 3.6,
            "matmul_gflops": 190.0}

PROMPT = PromptConfig(periodic_prompt=7, upper_codebook_mask=3)  # the original app's defaults, every benchmark's prompt
INPUT_SR = 48000  # the synthetic input is 48 kHz stereo, so preprocessing resamples and downmixes
OFFICIAL_VAMPNET_EXTRA = dict(r_cond_dim=0, flash_attn=False, noise_mode="mask", dropout=0.1)


# --- memory / cpu helpers -----------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS high-water mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak RSS since the last reset_peak (VmHWM), or since start (ru_maxrss) where that is unavailable."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 2**20


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_info() -> dict:
    model, flags = "unknown", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return {
        "cpu": model, "logical_cpus": os.cpu_count(), "simd": " ".join(simd) or "n/a",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
        "mem_total_gb": (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30,
        "loadavg_start": os.getloadavg(),
    }


# --- FLOP counts --------------------------------------------------------------------------------------------

def transformer_flops(cfg: TransformerConfig, T: int, B: int = 1) -> dict:
    """FLOPs of one forward, 2*M*N*K per matrix product (elementwise ops, norms, softmax not counted):
    embedding proj 2*T*(K*L)*D; per layer q,k,v,out 4*2*T*D*D, attention QK^T 2*T*T*D and AV 2*T*T*D (summed over
    heads), GEGLU w_in 2*T*D*4D and w_out 2*T*2D*D; classifier 2*T*D*(P*V). Total per item:
    2TKLD + n_layers*(20*T*D^2 + 4*T^2*D) + 2TD*P*V."""
    D, K, L = cfg.embedding_dim, cfg.n_codebooks, cfg.latent_dim
    P, V = cfg.n_predict_codebooks, cfg.vocab_size
    parts = {
        "embedding": 2 * T * K * L * D,
        "projections (q,k,v,out)": cfg.n_layers * 4 * 2 * T * D * D,
        "attention (QK^T, AV)": cfg.n_layers * 4 * T * T * D,
        "feed-forward (GEGLU)": cfg.n_layers * (2 * T * D * 4 * D + 2 * T * 2 * D * D),
        "classifier": 2 * T * D * P * V,
    }
    parts = {k: v * B for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def codec_flops(cfg: dict, frames: int) -> dict:
    """Convolution FLOPs (2 per multiply-add) of encoding / decoding `frames` frames with a LAC codec.

    conv C_in -> C_out, kernel k, output length L: 2*C_in*C_out*k*L; transposed conv: 2*C_in*C_out*k*L_in.
    Encoder: conv 1->E0 k7; per block (input width C, length L, stride s) three residual units (k7 + 1x1) =
    3*2*C*C*8*L and the strided conv C->2C, k 2s = 2*C*2C*2s*L/s; final conv k3. Quantiser projections and the
    nearest-code search included; decoder: conv k7, per block a transposed conv and a multi-receptive-field
    block (3 chains x 3 layers x 2 convs of kernel 3/7/11) = 2*C^2*L*2*3*(3+7+11), final conv C->1 k7.
    Snake activations, weight norm and additions are not counted."""
    E0, K, L, V = cfg["encoder_dim"], cfg["n_codebooks"], cfg["codebook_dim"], cfg["codebook_size"]
    n = frames * math.prod(cfg["encoder_rates"])
    enc = 2 * E0 * 7 * n
    C, length = E0, n
    for s in cfg["encoder_rates"]:
        enc += 3 * 2 * C * C * (7 + 1) * length + 2 * C * 2 * C * 2 * s * (length // s)
        C, length = 2 * C, length // s
    enc += 2 * C * C * 3 * length
    enc += K * (2 * C * L * length + 2 * L * C * length + 2 * length * V * L)
    D = cfg["decoder_dim"]
    dec = K * 2 * L * C * frames + 2 * C * D * 7 * frames
    length = frames
    for s in cfg["decoder_rates"]:
        dec += 2 * D * (D // 2) * 2 * s * length
        D, length = D // 2, length * s
        dec += 2 * D * D * length * 2 * 3 * (3 + 7 + 11)
    dec += 2 * D * 7 * length
    return {"encode": enc, "decode": dec}


# --- official container writer (runs in a child process, so its memory is not in our peak) ------------------

def official_transformer_state(model: MaskedTransformer, generator: torch.Generator) -> dict:
    """Our layout -> the original's key names and shapes (the inverse of model/official.py), with LoRA factors
    (lora_A random, lora_B zero, so the merged weight is the built one while the merge still runs)."""
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    cfg = model.config
    V, P = cfg.vocab_size, cfg.n_predict_codebooks
    out = {
        "embedding.special.MASK": sd["embedding.mask_latent"],
        "embedding.out_proj.weight": sd["embedding.proj.weight"].unsqueeze(-1),
        "embedding.out_proj.bias": sd["embedding.proj.bias"],
        "transformer.layers.0.self_attn.relative_attention_bias.weight": sd["rel_bias.table.weight"],
        "transformer.norm.weight": sd["norm.weight"],
    }
    for i in range(cfg.n_layers):
        for theirs, ours in LAYER_MAP.items():
            out[f"transformer.layers.{i}.{theirs}"] = sd[f"layers.{i}.{ours}"]
        for proj in LORA_PROJECTIONS:
            w = out[f"transformer.layers.{i}.{proj}.weight"]
            out[f"transformer.layers.{i}.{proj}.lora_A"] = torch.randn(8, w.shape[1], generator=generator) / math.sqrt(w.shape[1])
            out[f"transformer.layers.{i}.{proj}.lora_B"] = torch.zeros(w.shape[0], 8)
    # our row c*V + v  <-  official channel v*P + c
    inv = torch.arange(V * P).view(P, V).t().reshape(-1)
    out["classifier.layers.0.weight_v"] = sd["classifier.weight_v"][inv].unsqueeze(-1)
    out["classifier.layers.0.weight_g"] = sd["classifier.weight_g"][inv].unsqueeze(-1)
    out["classifier.layers.0.bias"] = sd["classifier.bias"][inv]
    return out


def probe_codes(cfg: TransformerConfig, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, cfg.vocab_size, (1, cfg.n_codebooks, T), generator=g)
    masked = torch.rand(1, cfg.n_codebooks, T, generator=g) < 0.5
    masked[:, : cfg.n_conditioning_codebooks] = False
    return torch.where(masked, cfg.vocab_size, codes)


def write_official(folder: Path, spec: dict) -> None:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    codec = Codec(CodecConfig.from_dict(spec["codec"])).eval()
    with torch.no_grad():  # a little spread in the snake alphas, so the codec is not degenerate
        for name, p in codec.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 1.5, generator=g)
    torch.save({"state_dict": codec.state_dict(), "metadata": {"kwargs": spec["codec"]}}, folder / "codec.pth")
    probe = {}
    T = spec["probe_frames"]
    wav = torch.randn(1, 1, T * codec.hop_length, generator=g) * 0.1
    with torch.inference_mode():
        probe["codec_wav"], probe["codec_codes"] = wav, codec.encode(wav)
    for part in ("coarse", "c2f"):
        cfg = TransformerConfig(**spec[part])
        model = MaskedTransformer(cfg).eval()
        with torch.no_grad():
            model.embedding.codebooks.copy_(torch.stack(
                [codec.quantizer.quantizers[i].codebook.weight for i in range(cfg.n_codebooks)]))
            for layer in model.layers:  # non-trivial norm weights, as trained files have
                layer.attn_norm.weight.uniform_(0.5, 1.5, generator=g)
                layer.ff_norm.weight.uniform_(0.5, 1.5, generator=g)
        kwargs = {**spec[part], **OFFICIAL_VAMPNET_EXTRA}
        torch.save({"state_dict": official_transformer_state(model, g), "metadata": {"kwargs": kwargs}},
                   folder / f"{part}.pth")
        codes = probe_codes(cfg, T, seed=2)
        with torch.inference_mode():
            probe[f"{part}_codes"], probe[f"{part}_logits"] = codes, model(codes)
        del model
        gc.collect()
    torch.save(probe, folder / "probe.pt")


# --- timing helpers -----------------------------------------------------------------------------------------

def timeit(fn, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_matmul(M: int, K: int, N: int) -> dict:
    a, b = torch.randn(M, K), torch.randn(K, N)
    w = b.t().contiguous()  # nn.Linear's layout: weight (N, K), y = x @ w.T
    flops = 2 * M * N * K
    t1 = time.perf_counter()
    timeit(lambda: torch.mm(a, b), 1, 1)
    once = (time.perf_counter() - t1) / 2
    reps = max(3, min(20, int(1.5 / max(once, 1e-4))))  # about 1.5 s of products, 3 to 20 of them
    mm = timeit(lambda: torch.mm(a, b), reps, 1)
    lin = timeit(lambda: torch.nn.functional.linear(a, w), reps, 1)
    return {"shape": (M, K, N), "flops": flops, "reps": reps,
            "mm_s": statistics.median(mm), "mm_best_s": min(mm), "linear_s": statistics.median(lin),
            "mm_gflops": flops / statistics.median(mm) / 1e9, "mm_best_gflops": flops / min(mm) / 1e9,
            "linear_gflops": flops / statistics.median(lin) / 1e9}


def profile_ops(fn, top: int = 8) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.key not in ("[memory]",)]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


class StageRecorder:
    """Progress callback for Pipeline.vamp: wall time, CPU time and peak RSS at every event."""

    def __init__(self, can_reset: bool):
        self.can_reset = can_reset
        self.events: list[tuple[str, int, int, float, float, float]] = []

    def start(self):
        reset_peak()
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()

    def __call__(self, stage: str, done: int, total: int):
        t, c, peak = time.perf_counter(), cpu_seconds(), peak_rss_gb()
        if self.can_reset:
            reset_peak()
        self.events.append((stage, done, total, t, c, peak))

    def finish(self):
        self("end", 1, 1)

    def stages(self) -> dict:
        """{stage: (wall s, cpu s, peak GB)} plus per-step wall times of the coarse generation."""
        ev = self.events
        idx = lambda stage, done=None: [i for i, e in enumerate(ev) if e[0] == stage and (done is None or e[1] == done)]
        bounds = {
            "preprocess": (None, idx("encode", 0)[0]),
            "encode": (idx("encode", 0)[0], idx("encode", 1)[0]),
            "coarse": (idx("encode", 1)[0], idx("coarse")[-1]),
            "c2f": (idx("coarse")[-1], idx("coarse-to-fine")[-1]) if idx("coarse-to-fine") else None,
            "decode": (idx("decode", 0)[0], idx("decode", 1)[0]),
            "total": (None, idx("end")[0]),
        }
        out = {}
        for name, b in bounds.items():
            if b is None:
                continue
            a, z = b
            t_a, c_a = (self.t0, self.c0) if a is None else (ev[a][3], ev[a][4])
            peaks = [e[5] for e in ev[(0 if a is None else a + 1): z + 1]]
            out[name] = (ev[z][3] - t_a, ev[z][4] - c_a, max(peaks))
        steps = [ev[i][3] for i in [idx("encode", 1)[0]] + idx("coarse")]
        out["coarse_steps"] = [b - a for a, b in zip(steps, steps[1:])]
        return out


def synthetic_input(seconds: float, sr: int = INPUT_SR) -> torch.Tensor:
    """Stereo test signal: a few partials with tremolo plus a little noise, (1, 2, N)."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sr)) / sr
    x = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.15 * torch.sin(2 * math.pi * 330 * t + 1) + 0.1 * torch.sin(2 * math.pi * 1375 * t)
    x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * t))
    left = x + 0.01 * torch.randn(t.shape, generator=g)
    right = 0.8 * x + 0.01 * torch.randn(t.shape, generator=g)
    return torch.stack([left, right]).unsqueeze(0)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- the run ------------------------------------------------------------------------------------------------

def run(args) -> dict:
    spec = dict(QUICK if args.quick else FULL)
    if args.quick:
        # tiny ops are dominated by thread hand-offs, which stall when another process holds a core
        torch.set_num_threads(1)
    seconds = args.seconds if args.seconds is not None else spec["seconds"]
    steps = args.steps if args.steps is not None else spec["steps"]
    c2f_steps = args.c2f_steps
    res: dict = {"mode": "quick" if args.quick else "full", "seconds": seconds, "steps": steps, "c2f_steps": c2f_steps,
                 "machine": machine_info(), "config": {k: spec[k] for k in ("codec", "alt_decoder_dim", "coarse", "c2f")}}
    can_reset = reset_peak()
    res["per_stage_peaks"] = can_reset
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.silent else (lambda *a: None)

    with tempfile.TemporaryDirectory(prefix="vampnet-bench-") as tmp:
        folder = Path(tmp)
        # 1. write the official files in a child process (its memory does not count in our peak)
        log(f"[bench] writing official-format checkpoints to {folder} ...")
        t = time.perf_counter()
        child = {**{k: spec[k] for k in ("codec", "coarse", "c2f", "probe_frames")}, "threads": torch.get_num_threads()}
        subprocess.run([sys.executable, __file__, "--_write-official", str(folder), "--_spec", json.dumps(child)], check=True)
        res["write_s"] = time.perf_counter() - t
        res["file_mb"] = {p.stem: p.stat().st_size / 1e6 for p in sorted(folder.glob("*.pth")) if p.stem != "probe"}

        # 2. load through the official path
        log("[bench] Pipeline.load ...")
        reset_peak()
        t, c = time.perf_counter(), cpu_seconds()
        pipe = Pipeline.load(folder, **spec["pipeline"])
        res["load"] = (time.perf_counter() - t, cpu_seconds() - c, peak_rss_gb())
        gc.collect()
        res["rss_after_load_gb"] = (_status_kb("VmRSS") or 0) / 2**20
        res["params"] = {"codec": n_params(pipe.codec), "coarse": n_params(pipe.coarse), "c2f": n_params(pipe.c2f)}
        probe = torch.load(folder / "probe.pt", weights_only=True)

    # round-trip check: the loaded models reproduce the built ones
    with torch.inference_mode():
        res["roundtrip"] = {
            "codec_codes_equal": bool(torch.equal(pipe.codec.encode(probe["codec_wav"]), probe["codec_codes"])),
            "coarse_max_abs_diff": float((pipe.coarse(probe["coarse_codes"]) - probe["coarse_logits"]).abs().max()),
            "c2f_max_abs_diff": float((pipe.c2f(probe["c2f_codes"]) - probe["c2f_logits"]).abs().max()),
        }
    del probe
    gc.collect()

    # 3. matrix product reference, then one coarse forward
    M, K, N = spec["matmul"]
    log(f"[bench] matmul [{M}x{K}] x [{K}x{N}] ...")
    res["matmul"] = bench_matmul(M, K, N)

    frames = math.ceil(round(seconds * pipe.frame_rate, 6))
    frames = min(frames, pipe.coarse_window)  # one coarse window = one forward's length
    g = torch.Generator().manual_seed(0)
    fwd_codes = torch.randint(0, pipe.coarse.vocab_size, (1, pipe.coarse.n_codebooks, frames), generator=g)
    fwd_mask = PROMPT.build(fwd_codes, pipe.frame_rate)
    fwd_codes = torch.where(fwd_mask[:, : pipe.coarse.n_codebooks], pipe.coarse.mask_token, fwd_codes)
    log(f"[bench] coarse forward, {frames} frames ...")
    with torch.inference_mode():
        times = timeit(lambda: pipe.coarse(fwd_codes), spec["forward_reps"], warmup=1)
    flops = transformer_flops(pipe.coarse.config, frames)
    res["forward"] = {"frames": frames, "times": times, "median_s": statistics.median(times), "best_s": min(times),
                      "flops": flops, "gflops": flops["total"] / statistics.median(times) / 1e9}

    # 4. one vamp, stage by stage
    wav = synthetic_input(seconds)
    prompt = PROMPT
    sampling, c2f_sampling = SamplingConfig(steps=steps), SamplingConfig(steps=c2f_steps)
    log(f"[bench] vamp of {seconds} s ({steps} coarse steps, {c2f_steps} c2f steps) ...")
    gc.collect()
    rec = StageRecorder(can_reset)
    rec.start()
    result = pipe.vamp(wav, INPUT_SR, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling, seed=0, progress=rec)
    rec.finish()
    res["stages"] = rec.stages()
    res["vamp_frames"] = int(result.codes.shape[-1])
    res["generated_fraction"] = result.settings["generated_fraction"]
    res["output_finite"] = bool(torch.isfinite(result.audio).all())
    T = res["vamp_frames"]
    one_window = T <= pipe.coarse_window  # longer inputs run several overlapping windows: no simple count
    res["coarse_gen_flops"] = steps * transformer_flops(pipe.coarse.config, T)["total"] if one_window else None
    n_chunks = math.ceil(T / pipe.c2f_chunk)
    res["c2f_shape"] = (n_chunks, pipe.c2f_chunk)
    res["c2f_flops"] = c2f_steps * transformer_flops(pipe.c2f.config, pipe.c2f_chunk, B=n_chunks)["total"]

    # 5. the same tokens through a codec of the alternative decoder width (random weights, built directly)
    alt_cfg = CodecConfig.from_dict({**spec["codec"], "decoder_dim": spec["alt_decoder_dim"]})
    alt = Codec(alt_cfg).eval()
    res["alt_codec"] = {"decoder_dim": alt_cfg.decoder_dim, "params": n_params(alt)}
    log(f"[bench] decode with decoder_dim {alt_cfg.decoder_dim} ...")
    codes = result.codes
    gc.collect()
    reset_peak()
    with torch.inference_mode():
        t, c = time.perf_counter(), cpu_seconds()
        alt.decode(codes)
        res["alt_codec"]["decode"] = (time.perf_counter() - t, cpu_seconds() - c, peak_rss_gb())

    # 6. where the time goes, by operator
    log("[bench] profiling one coarse forward and one decode ...")
    with torch.inference_mode():
        res["profile_forward"] = profile_ops(lambda: pipe.coarse(fwd_codes))
        res["profile_decode"] = profile_ops(lambda: alt.decode(codes))

    # resetting VmHWM also resets what getrusage reports, so the process peak is the largest peak seen
    peaks = [res["load"][2], res["alt_codec"]["decode"][2], peak_rss_gb()]
    peaks += [v[2] for k, v in res["stages"].items() if k != "coarse_steps"]
    res["process_peak_gb"] = max(peaks) if can_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


# --- report -------------------------------------------------------------------------------------------------

def machine_line(m: dict) -> str:
    """One markdown line naming the machine of a run: CPU, threads, SIMD, torch, load average at start and end."""
    return (f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} thread(s); SIMD {m['simd']}; "
            f"torch {m['torch']}; load average at start/end {m['loadavg_start'][0]:.1f} / {m['loadavg_end'][0]:.1f}")


def report(args, res: dict, text: str) -> None:
    """Write a benchmark's markdown (--output) and raw results (--json), and print the markdown unless --silent."""
    if getattr(args, "output", None):
        args.output.write_text(text)
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(res, indent=1, default=str))
    if not getattr(args, "silent", False):
        print(text)


def _f(x, nd=2):
    if x is None:
        return "—"
    return f"{x:.{nd}f}"


def _g(x) -> str:
    """A rate or size: whole numbers from 10 up, three significant digits below."""
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.3g}"


def markdown(res: dict) -> str:
    m, cfg, st = res["machine"], res["config"], res["stages"]
    full = res["mode"] == "full" and res["seconds"] == 10 and res["steps"] == 36 and res["c2f_steps"] == 2
    orig = ORIGINAL if full else {}
    L = []
    L.append(f"### vampnet core benchmark ({res['mode']} configuration, random weights)\n")
    L.append(f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['mem_total_gb']:.0f} GiB RAM; "
             f"SIMD {m['simd']}; torch {m['torch']} (cpu capability {m['cpu_capability']}), "
             f"{m['torch_threads']} threads; Python {m['python']}")
    la0, la1 = m["loadavg_start"], m.get("loadavg_end", (float("nan"),) * 3)
    L.append(f"- load average (1/5/15 min): start {la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f}, "
             f"end {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f} (above ~1 per core means other work shared the CPU)")
    c = cfg["codec"]
    L.append(f"- codec: LAC {c['sample_rate']} Hz, encoder_dim {c['encoder_dim']} rates {c['encoder_rates']}, "
             f"decoder_dim {c['decoder_dim']} rates {c['decoder_rates']} (hop {math.prod(c['decoder_rates'])}), "
             f"{c['n_codebooks']} x {c['codebook_size']} codebooks of dim {c['codebook_dim']}; "
             f"{res['params']['codec'] / 1e6:.1f} M params")
    for part in ("coarse", "c2f"):
        t = cfg[part]
        L.append(f"- {part}: {t['n_codebooks']} codebooks ({t['n_conditioning_codebooks']} conditioning), "
                 f"width {t['embedding_dim']}, {t['n_heads']} heads, {t['n_layers']} layers; "
                 f"{res['params'][part] / 1e6:.1f} M params")
    files = ", ".join(f"{k}.pth {v:.0f} MB" for k, v in res["file_mb"].items())
    rt = res["roundtrip"]
    L.append(f"- loaded with `Pipeline.load` from official-format files ({files}; written in {res['write_s']:.0f} s "
             f"by a child process): load {res['load'][0]:.1f} s, peak RSS while loading {res['load'][2]:.2f} GB"
             + (f", RSS after loading {res['rss_after_load_gb']:.2f} GB" if "rss_after_load_gb" in res else "") + "; "
             f"round trip vs the built models: codec codes equal {rt['codec_codes_equal']}, "
             f"coarse logits max |diff| {rt['coarse_max_abs_diff']:.1e}, c2f {rt['c2f_max_abs_diff']:.1e}")
    L.append(f"- input: {res['seconds']} s of synthetic 48 kHz stereo -> {res['vamp_frames']} frames; prompt: periodic 7, "
             f"upper codebook mask 3 ({res['generated_fraction']:.0%} of tokens generated); coarse {res['steps']} steps, "
             f"c2f {res['c2f_steps']} steps as one batch of {res['c2f_shape'][0]} chunks x {res['c2f_shape'][1]} frames; "
             f"seed 0; output finite: {res['output_finite']}")
    L.append("")
    L.append("| stage | wall (s) | CPU (cores busy) | peak RSS in stage (GB) | original (s) | original / ours |")
    L.append("|---|---:|---:|---:|---:|---:|")

    def row(name, key, t_cpu_peak, extra=""):
        t, cpu, peak = t_cpu_peak
        o = orig.get(key)
        L.append(f"| {name}{extra} | {t:.2f} | {cpu / t if t > 0 else 0:.2f} | {peak:.2f} | {_f(o, 1)} | "
                 f"{(o / t) if o and t > 0 else float('nan'):.2f}x |".replace("nanx", "—"))

    row("preprocess (downmix, resample 48k->44.1k, loudness)", None, st["preprocess"])
    row("codec encode", "encode", st["encode"])
    fw = res["forward"]
    L.append(f"| one coarse forward ({fw['frames']} frames, median of {len(fw['times'])}, warm) | {fw['median_s']:.3g} | — | — | "
             f"{_f(orig.get('forward'))} | " + (f"{orig['forward'] / fw['median_s']:.2f}x |" if orig else "— |"))
    steps = st["coarse_steps"]
    row(f"coarse generation ({res['steps']} steps; per step {statistics.mean(steps):.3g} s)", "coarse", st["coarse"])
    if "c2f" in st:
        row(f"coarse-to-fine ({res['c2f_steps']} steps, chunks batched)", "c2f", st["c2f"])
    row(f"codec decode, decoder_dim {c['decoder_dim']} (+ loudness match)", "decode", st["decode"])
    a = res["alt_codec"]
    row(f"codec decode, decoder_dim {a['decoder_dim']} (same tokens; not in end to end)", "decode", a["decode"])
    row("**end to end** (`Pipeline.vamp`)", "total", st["total"])
    peak_vamp = max(v[2] for k, v in st.items() if k != "coarse_steps")
    process_peak = res.get("process_peak_gb", max(peak_vamp, res["load"][2], a["decode"][2]))
    L.append(f"| peak RSS: during the vamp / whole process incl. loading | — | — | "
             f"{peak_vamp:.2f} / {process_peak:.2f} | {_f(orig.get('peak_gb'), 1)} GB | — |")
    L.append("")

    # throughput
    mm, fl = res["matmul"], fw["flops"]
    Mx, Kx, Nx = mm["shape"]
    gen_gf = res["coarse_gen_flops"] / st["coarse"][0] / 1e9 if res["coarse_gen_flops"] else None
    c2f_gf = res["c2f_flops"] / st["c2f"][0] / 1e9 if "c2f" in st else None
    L.append("| throughput (fp32) | GFLOP | s | GFLOP/s | vs matmul |")
    L.append("|---|---:|---:|---:|---:|")
    L.append(f"| matmul `torch.mm` [{Mx}x{Kx}]·[{Kx}x{Nx}] (median of {mm['reps']}; best {_g(mm['mm_best_gflops'])} GFLOP/s) "
             f"| {_g(mm['flops'] / 1e9)} | {_g(mm['mm_s'])} | {_g(mm['mm_gflops'])} | 1.00 |")
    L.append(f"| matmul `F.linear` x·Wᵀ, W [{Nx}x{Kx}] | {_g(mm['flops'] / 1e9)} | {_g(mm['linear_s'])} | "
             f"{_g(mm['linear_gflops'])} | {mm['linear_gflops'] / mm['mm_gflops']:.2f} |")
    L.append(f"| one coarse forward ({fw['frames']} frames) | {_g(fl['total'] / 1e9)} | {_g(fw['median_s'])} | "
             f"{_g(fw['gflops'])} | **{fw['gflops'] / mm['mm_gflops']:.2f}** |")
    if gen_gf:
        L.append(f"| coarse generation ({res['steps']} forwards + sampling) | {_g(res['coarse_gen_flops'] / 1e9)} | "
                 f"{_g(st['coarse'][0])} | {_g(gen_gf)} | {gen_gf / mm['mm_gflops']:.2f} |")
    if c2f_gf:
        L.append(f"| coarse-to-fine ({res['c2f_steps']} forwards of {res['c2f_shape'][0]}x{res['c2f_shape'][1]} frames + sampling) | "
                 f"{_g(res['c2f_flops'] / 1e9)} | {_g(st['c2f'][0])} | {_g(c2f_gf)} | {c2f_gf / mm['mm_gflops']:.2f} |")
    frames = res["vamp_frames"]
    cf = codec_flops(c, frames)
    cf_alt = codec_flops({**c, "decoder_dim": a["decoder_dim"]}, frames)
    for name, flops, t in ((f"codec encode ({frames} frames; convolutions)", cf["encode"], st["encode"][0]),
                           (f"codec decode, decoder_dim {c['decoder_dim']} (convolutions)", cf["decode"], st["decode"][0]),
                           (f"codec decode, decoder_dim {a['decoder_dim']} (convolutions)", cf_alt["decode"], a["decode"][0])):
        L.append(f"| {name} | {_g(flops / 1e9)} | {_g(t)} | {_g(flops / t / 1e9)} | {flops / t / 1e9 / mm['mm_gflops']:.2f} |")
    L.append("")
    parts = ", ".join(f"{k} {_g(v / 1e9)}" for k, v in fl.items() if k != "total")
    L.append(f"Coarse forward FLOPs (GFLOP): {parts}. Formula per item, 2·M·N·K for every matrix product: "
             "2·T·(K·L)·D (embedding) + n_layers·(20·T·D² + 4·T²·D) (q,k,v,out; GEGLU 4D in, 2D out; QKᵀ and AV) "
             "+ 2·T·D·P·V (classifier); norms, softmax, GELU and biases are not counted.")
    if full:
        L.append(f"Original matmul on this machine (from the issue): ~{ORIGINAL['matmul_gflops']:.0f} GFLOP/s fp32.")
    L.append("")
    for title, key in (("one coarse forward", "profile_forward"),
                       (f"one decode with decoder_dim {a['decoder_dim']}", "profile_decode")):
        L.append(f"Top operators by self CPU time, {title} (torch.profiler):\n")
        L.append("| op | calls | self ms | share |")
        L.append("|---|---:|---:|---:|")
        for e in res[key]:
            L.append(f"| `{e['op']}` | {e['calls']} | {e['self_ms']:.0f} | {e['share']:.0%} |")
        L.append("")
    return "\n".join(L)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=None, help="audio length (default 10; 1 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="coarse sampling steps (default 36; 4 with --quick)")
    p.add_argument("--c2f-steps", type=int, default=2, help="coarse-to-fine sampling steps (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration on 1 thread, a few seconds (to check the script runs)")
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    p.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    p.add_argument("--from-json", type=Path, help="do not run: render the report of an earlier --json file")
    p.add_argument("--_write-official", dest="write_official", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_spec", dest="spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write_official is not None:
        write_official(args.write_official, json.loads(args.spec))
        return 0
    if args.from_json is not None:
        res = json.loads(args.from_json.read_text())
    else:
        res = run(args)
    md = markdown(res)
    print(md)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(md + "\n")
    if args.json and args.from_json is None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
