#!/usr/bin/env python
"""Speed benchmark of issue 6, one command: the whole vamp flow per precision, on the full-size official
architecture and on the shipped model, with peak memory, efficiency against a matrix product timed in the same
run, time against audio length, and the quality of the fast modes against fp32.

    python benchmarks/bench_speed.py [--precisions fp32,bf16,int8] [--lengths 10,30,60] [--corpus DIR]
                                     [--seeds 3] [--output report.md] [--json raw.json] [--quick]

Parts (each precision runs in its own child process, so its peak memory is its own):
  1. full size (random weights written in the official .pth format, loaded by `Pipeline.load(precision=...)`):
     10 s of 48 kHz stereo, 36 coarse steps, 2 coarse-to-fine steps; wall time, CPU use and peak RSS per stage;
     one coarse forward's GFLOP/s next to a [575x1280]x[1280x5120] product in the same precision (fp32 and bf16
     `F.linear`, int8 the mode's dynamically quantised linear);
  2. the shipped model: seconds per vamp and real-time factor for each length (default 10, 30, 60 s), with peak
     RSS (long audio runs in windows, so it should stay flat), plus fp32 with `draw="original"`;
  3. quality of bf16/int8 on the shipped model against fp32: logits relative error and top-1 agreement of both
     transformers, codec round-trip mel distance, and the mel distance of vamps to their inputs (validation
     excerpts of `--corpus`, else the example clip) over `--seeds` seeds; a mode is "within the fp32 spread"
     when its mean differs from fp32's by less than the standard deviation across fp32 seeds.
`--quick` runs every part on tiny settings, in this one process (tests use it); its numbers mean nothing."""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent / "src"))

import bench_core as core  # noqa: E402  (the official-format writer, stage recorder and memory helpers)
from vampnet import Pipeline, SamplingConfig, audio  # noqa: E402
from vampnet import precision as P  # noqa: E402
from vampnet.spectral import multiscale_mel_distance  # noqa: E402

EXAMPLE = HERE.parent / "examples" / "xblast-song1-excerpt.ogg"
PROMPT = core.PROMPT


# --- child jobs ---------------------------------------------------------------------------------------------

def matmul_rate(precision: str, M: int, K: int, N: int) -> dict:
    """GFLOP/s of one linear layer of the forward's shape in `precision` (median of a few)."""
    layer = torch.nn.Linear(K, N, bias=False).eval()
    x = torch.randn(M, K)
    if precision == "bf16":
        layer, x = layer.to(torch.bfloat16), x.to(torch.bfloat16)
    elif precision == "int8":
        layer = P.quantize_linears(torch.nn.Sequential(layer))
    with torch.inference_mode():
        times = core.timeit(lambda: layer(x), 8, 2)
    return {"shape": (M, K, N), "s": statistics.median(times), "gflops": 2 * M * K * N / statistics.median(times) / 1e9}


def full_size_job(job: dict) -> dict:
    spec = core.QUICK if job["quick"] else core.FULL
    precision = job["precision"]
    core.reset_peak()
    t = time.perf_counter()
    pipe = Pipeline.load(Path(job["folder"]), precision=precision, **spec["pipeline"])
    res = {"precision": precision, "load_s": time.perf_counter() - t, "load_peak_gb": core.peak_rss_gb()}
    res["matmul"] = matmul_rate(pipe.precisions["coarse"], *spec["matmul"])  # "auto": the mode it chose
    frames = min(math.ceil(round(job["seconds"] * pipe.frame_rate, 6)), pipe.coarse_window)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, pipe.coarse.vocab_size, (1, pipe.coarse.n_codebooks, frames), generator=g)
    codes = torch.where(PROMPT.build(codes, pipe.frame_rate)[:, : pipe.coarse.n_codebooks], pipe.coarse.mask_token, codes)
    with torch.inference_mode():
        times = core.timeit(lambda: pipe.coarse(codes), spec["forward_reps"], 1)
    flops = core.transformer_flops(pipe.coarse.config, frames)["total"]
    res["forward"] = {"frames": frames, "s": statistics.median(times), "gflops": flops / statistics.median(times) / 1e9}
    res["efficiency"] = res["forward"]["gflops"] / res["matmul"]["gflops"]
    rec = core.StageRecorder(core.reset_peak())
    rec.start()
    pipe.vamp(core.synthetic_input(job["seconds"]), core.INPUT_SR, prompt=PROMPT, seed=0, progress=rec,
              sampling=SamplingConfig(steps=job["steps"]), c2f_sampling=SamplingConfig(steps=job["c2f_steps"]))
    rec.finish()
    res["stages"] = {k: v for k, v in rec.stages().items() if k != "coarse_steps"}
    return res


def shipped_job(job: dict) -> dict:
    precision, draw = job["precision"], job["draw"]
    pipe = Pipeline.from_pretrained(job["models"], precision=precision)
    sampling = SamplingConfig(steps=job["steps"], draw=draw)
    c2f_sampling = SamplingConfig(steps=2, draw=draw)
    pipe.vamp(core.synthetic_input(1.0), core.INPUT_SR, seed=0, sampling=sampling, c2f_sampling=c2f_sampling)  # warm-up
    out = {"precision": precision, "draw": draw, "lengths": {}}
    for seconds in job["lengths"]:
        wav = core.synthetic_input(seconds)
        core.reset_peak()
        rec = core.StageRecorder(False)
        rec.start()
        pipe.vamp(wav, core.INPUT_SR, prompt=PROMPT, seed=0, sampling=sampling, c2f_sampling=c2f_sampling, progress=rec)
        rec.finish()
        stages = rec.stages()
        out["lengths"][str(seconds)] = {"s": stages["total"][0], "rtf": stages["total"][0] / seconds,
                                        "peak_gb": core.peak_rss_gb(),
                                        "stages": {k: v[0] for k, v in stages.items() if k != "coarse_steps"}}
    return out


def run_child(job: dict, log) -> dict:
    log(f"[bench] {job['kind']} {job.get('precision', '')} {job.get('draw', '')} ...")
    if job["quick"]:  # a child keeps each precision's peak memory its own; quick numbers need no such care
        return json.loads(json.dumps((full_size_job if job["kind"] == "full" else shipped_job)(job)))
    done = subprocess.run([sys.executable, __file__, "--_job", json.dumps(job)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed: {job}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- quality of the fast modes (in this process) ------------------------------------------------------------

def clips(corpus: Path | None, sample_rate: int, seconds: float, limit: int) -> list[torch.Tensor]:
    if corpus is not None:
        from model_metrics import validation_excerpts
        return validation_excerpts(corpus, sample_rate, seconds, per_file=1)[:limit]
    wav, sr = audio.load(EXAMPLE, max_seconds=seconds)
    return [audio.normalize_loudness(audio.resample(audio.to_mono(wav), sr, sample_rate), sample_rate, -24.0)[0]]


def quality(models, precisions, corpus, seeds: int, steps: int, seconds: float, limit: int, log) -> dict:
    pipes = {p: Pipeline.from_pretrained(models, precision=p) for p in precisions}
    ref = pipes["fp32"]
    sr = ref.sample_rate
    xs = clips(corpus, sr, seconds, limit)
    res = {"clips": len(xs), "seeds": seeds, "seconds": seconds, "source": Path(corpus).name if corpus else EXAMPLE.name, "modes": {}}
    codes = [ref.encode(x) for x in xs]
    with torch.inference_mode():
        probe = []
        for c in codes:  # half the coarse tokens masked, upper codebooks masked for c2f: a typical pass's input
            m = PROMPT.build(c, ref.frame_rate)
            probe.append((c, m))
        ref_logits = {part: [getattr(ref, part)(_masked(getattr(ref, part), c, m)).float() for c, m in probe]
                      for part in ("coarse", "c2f")}
    for p in precisions:
        pipe = pipes[p]
        log(f"[bench] quality {p} ...")
        row = {}
        with torch.inference_mode():
            for part in ("coarse", "c2f"):
                model = getattr(pipe, part)
                errs, agree = [], []
                for (c, m), r in zip(probe, ref_logits[part]):
                    got = model(_masked(model, c, m)).float()
                    errs.append(float((got - r).norm() / r.norm()))
                    agree.append(float((got.argmax(-1) == r.argmax(-1)).float().mean()))
                row[part] = {"logits_rel_err": statistics.mean(errs), "top1_agree": statistics.mean(agree)}
            row["codec_mel"] = statistics.mean(
                float(multiscale_mel_distance(pipe.decode(pipe.encode(x))[..., : x.shape[-1]], x, sr))
                for x in xs)
        per_seed = []
        for seed in range(seeds):
            per_seed.append([float(multiscale_mel_distance(
                pipe.vamp(x, sr, prompt=PROMPT, seed=seed, sampling=SamplingConfig(steps=steps)).audio[..., : x.shape[-1]],
                x, sr)) for x in xs])
        flat = [v for s in per_seed for v in s]
        row["vamp_mel"] = {"mean": statistics.mean(flat), "std": statistics.pstdev(flat)}
        # spread across seeds: the std over seeds of each clip's distance, averaged over clips
        row["seed_std"] = statistics.mean(statistics.pstdev([s[i] for s in per_seed]) for i in range(len(xs))) if seeds > 1 else 0.0
        res["modes"][p] = row
    fp32 = res["modes"]["fp32"]
    for p, row in res["modes"].items():
        row["within_fp32_spread"] = abs(row["vamp_mel"]["mean"] - fp32["vamp_mel"]["mean"]) <= fp32["seed_std"]
    return res


def _masked(model, codes, mask):
    c = codes[:, : model.n_codebooks]
    m = mask[:, : model.n_codebooks].clone()
    m[:, : model.n_conditioning_codebooks] = False
    return torch.where(m, model.mask_token, c)


# --- report -------------------------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    m = res["machine"]
    out = [f"### Speed per precision ({m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, "
           f"{m['torch_threads']} threads, CPU bf16 instructions: {res['cpu_bf16']})", "",
           f"Load average start {m['loadavg_start'][0]:.2f}, end {res['loadavg_end'][0]:.2f} (above ~1 per core: "
           "other work shared the CPU).", ""]
    if res.get("full"):
        f0 = res["full"][0]
        out += [f"**Full-size official architecture** (random weights, official .pth files; {res['seconds']:g} s of "
                f"48 kHz stereo; {res['steps']} coarse steps, {res['c2f_steps']} coarse-to-fine steps; fast draw):", "",
                "| precision | encode (s) | coarse (s) | c2f (s) | decode (s) | **total (s)** | vs original 135 s | "
                "peak RSS (GB) | forward GFLOP/s | same-size matmul GFLOP/s | efficiency |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["full"]:
            s = r["stages"]
            peak = max(max(v[2] for v in s.values()), r["load_peak_gb"])
            out.append(f"| {r['precision']} | {s['encode'][0]:.1f} | {s['coarse'][0]:.1f} | {s.get('c2f', (0,))[0]:.1f} | "
                       f"{s['decode'][0]:.1f} | **{s['total'][0]:.1f}** | {core.ORIGINAL['total'] / s['total'][0]:.2f}x | "
                       f"{peak:.2f} | {r['forward']['gflops']:.0f} | {r['matmul']['gflops']:.0f} | {r['efficiency']:.2f} |")
        out += ["", f"Speed-up over fp32 in the same run: " + ", ".join(
            f"{r['precision']} {f0['stages']['total'][0] / r['stages']['total'][0]:.2f}x" for r in res["full"]), ""]
    if res.get("shipped"):
        lengths = list(res["shipped"][0]["lengths"])
        out += ["**Shipped model** (vampnet-small; seconds per whole vamp, real-time factor in brackets, peak RSS):", "",
                "| precision | draw | " + " | ".join(f"{L} s" for L in lengths) + " | peak RSS per length (GB) |",
                "|---|---|" + "---:|" * len(lengths) + "---|"]
        for r in res["shipped"]:
            cells = [f"{v['s']:.2f} ({v['rtf']:.3f})" for v in r["lengths"].values()]
            peaks = " / ".join(f"{v['peak_gb']:.2f}" for v in r["lengths"].values())
            out.append(f"| {r['precision']} | {r['draw']} | " + " | ".join(cells) + f" | {peaks} |")
        base = res["shipped"][0]["lengths"]
        if len(base) > 1:
            first, last = list(base.values())[0], list(base.values())[-1]
            Ls = [float(L) for L in base]
            out += ["", f"Time per second of audio (fp32): {first['s'] / Ls[0]:.3f} s at {Ls[0]:g} s, "
                    f"{last['s'] / Ls[-1]:.3f} s at {Ls[-1]:g} s (linear growth keeps these equal)."]
        out.append("")
    q = res.get("quality")
    if q:
        out += [f"**Quality of the fast modes on the shipped model** ({q['clips']} clip(s) of {q['seconds']:g} s from "
                f"{q['source']}, {q['seeds']} seeds each):", "",
                "| precision | coarse logits rel. err | coarse top-1 agree | c2f logits rel. err | c2f top-1 agree | "
                "codec round-trip mel | vamp mel to input (mean ± std) | fp32 seed spread | within fp32 spread |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for p, r in q["modes"].items():
            out.append(f"| {p} | {r['coarse']['logits_rel_err']:.1e} | {r['coarse']['top1_agree']:.3f} | "
                       f"{r['c2f']['logits_rel_err']:.1e} | {r['c2f']['top1_agree']:.3f} | {r['codec_mel']:.3f} | "
                       f"{r['vamp_mel']['mean']:.3f} ± {r['vamp_mel']['std']:.3f} | {q['modes']['fp32']['seed_std']:.3f} | "
                       f"{'yes' if r['within_fp32_spread'] else 'no'} |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default="fp32,bf16,int8")
    p.add_argument("--lengths", default=None, help="shipped-model audio lengths in seconds (default 10,30,60)")
    p.add_argument("--corpus", type=Path, help="prepared corpus: quality on its validation excerpts")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--models", default=None, help="the model folder of parts 2-3 (default: the shipped model)")
    p.add_argument("--skip-full", action="store_true", help="skip the full-size part (minutes)")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script runs")
    p.add_argument("--output", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--silent", action="store_true")
    p.add_argument("--_job", dest="job", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        job = json.loads(args.job)
        if job["quick"]:
            torch.set_num_threads(1)
        print(json.dumps((full_size_job if job["kind"] == "full" else shipped_job)(job)))
        return 0

    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.silent else (lambda *a: None)
    if args.quick:
        torch.set_num_threads(1)
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    for x in precisions:
        P.check(x)
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")  # the reference of every comparison
    lengths = [float(x) for x in (args.lengths or ("0.5,1" if args.quick else "10,30,60")).split(",")]
    seconds, steps, c2f_steps = (1.0, 4, 2) if args.quick else (10.0, 36, 2)
    res = {"machine": core.machine_info(), "cpu_bf16": P.cpu_has_bf16(), "seconds": seconds, "steps": steps,
           "c2f_steps": c2f_steps, "precisions": precisions}
    if not args.skip_full:
        spec = core.QUICK if args.quick else core.FULL
        with tempfile.TemporaryDirectory(prefix="vampnet-speed-") as tmp:
            log("[bench] writing the full-size official-format checkpoints ...")
            child = {**{k: spec[k] for k in ("codec", "coarse", "c2f", "probe_frames")}, "threads": torch.get_num_threads()}
            if args.quick:
                core.write_official(Path(tmp), child)
            else:  # in a child, so the models it builds do not stay in this process's memory
                subprocess.run([sys.executable, str(HERE / "bench_core.py"), "--_write-official", tmp, "--_spec",
                                json.dumps(child)], check=True)
            res["full"] = [run_child({"kind": "full", "precision": x, "folder": tmp, "quick": args.quick,
                                      "seconds": seconds, "steps": steps, "c2f_steps": c2f_steps}, log) for x in precisions]
    jobs = [(x, "fast") for x in precisions] + [("fp32", "original")]
    res["shipped"] = [run_child({"kind": "shipped", "precision": x, "draw": d, "models": args.models, "quick": args.quick,
                                 "lengths": lengths, "steps": steps}, log) for x, d in jobs]
    res["quality"] = quality(args.models, precisions, args.corpus, 1 if args.quick else args.seeds, steps,
                             1.0 if args.quick else 10.0, 1 if args.quick else 8, log)
    res["loadavg_end"] = os.getloadavg()
    text = markdown(res)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
