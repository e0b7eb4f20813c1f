#!/usr/bin/env python
"""The CPU budget of the small model (issue 14): the whole 10 s vamp in fp32 and the `vampnet vamp` command as a
whole, for the shipped model (v2) and for another coarse architecture (`--compare`, default v1's
configs/small/coarse_v1.yaml; e.g. configs/small/coarse_v3.yaml) with random weights, beside the shipped codec and
coarse-to-fine model (speed does not depend on the weights), plus a sweep of candidate coarse / coarse-to-fine
architectures on the same token grid.

    python benchmarks/bench_small.py [--seconds 10] [--steps 36] [--prompt 7:3] [--compare CONFIG] [--reps 3]
                                     [--cli-reps 3] [--candidates] [--threads N] [--output report.md]
                                     [--json raw.json] [--quick]

Parts:
  1. whole vamp, in this process, best of `--reps` after a warm-up: the example clip looped to `--seconds`,
     the original app's prompt (periodic 7, upper codebooks from 3; `--prompt P:U`), 36 coarse (`--steps`) and 2
     coarse-to-fine steps, fp32;
     per stage (preprocess + encode, coarse, coarse-to-fine, decode + loudness) wall seconds, and the whole vamp's
     CPU seconds (process time: on a shared machine wall time also counts waiting for a core);
  2. the command as a new user runs it, best of `--cli-reps`: `python -m vampnet.cli vamp EXAMPLE -o OUT --seed 0`
     in a fresh process (start, imports, model load and the vamp), next to a fresh process that only imports what
     the command imports, and the model load timed in this process;
  3. `--candidates`: coarse architectures (layers x width / heads) timed for 36 steps on the 10 s grid
     (575 frames x 4 codebooks) and coarse-to-fine ones for 2 steps on its chunks, random weights, with their
     parameters, fp32 weight size and matrix-product GFLOP.
All variants of a part run interleaved in one process, so their ratios hold even when the machine is shared; the
load average at start and end is printed. `--quick` runs every part on tiny settings (tests use it)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import vampnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from vampnet import audio  # noqa: E402
from vampnet.model import MaskedTransformer, TransformerConfig  # noqa: E402
from vampnet.pipeline import Pipeline  # noqa: E402
from vampnet.prompts import PromptConfig  # noqa: E402
from vampnet.sampling import SamplingConfig, generate_with_config  # noqa: E402

EXAMPLE = ROOT / "examples" / "xblast-song1-excerpt.ogg"
CONFIGS = ROOT / "configs" / "small"
PROMPT = PromptConfig(periodic_prompt=7, upper_codebook_mask=3)  # the original app's defaults (the CLI's too)
# coarse candidates (layers, width, heads) and coarse-to-fine ones; the shipped ones first
COARSE_CANDIDATES = [(6, 256, 8), (6, 256, 4), (4, 256, 4), (3, 256, 4), (2, 384, 6), (4, 192, 3), (2, 256, 4),
                     (3, 192, 3), (2, 192, 3), (1, 256, 4), (2, 128, 2)]
C2F_CANDIDATES = [(4, 256, 8), (4, 256, 4), (2, 256, 4)]
QUICK_CANDIDATES = [(1, 64, 2), (1, 64, 1)]


def transformer_config(path: Path) -> TransformerConfig:
    """The architecture named by a training YAML (vocabulary and latent width: the shipped codec's)."""
    data = yaml.safe_load(path.read_text())
    return TransformerConfig.from_dict(data.get("model", data))  # nested under model: since 2026-12; flat before


def flops(cfg: TransformerConfig, T: int, B: int = 1) -> float:
    """Matrix-product FLOPs of one forward (2*M*N*K each): embedding, per layer q/k/v/out 8TD^2, GEGLU 12TD^2,
    attention 4T^2D, classifier 2TD*P*V."""
    D = cfg.embedding_dim
    per_item = (2 * T * cfg.n_codebooks * cfg.latent_dim * D + cfg.n_layers * (20 * T * D * D + 4 * T * T * D)
                + 2 * T * D * cfg.n_predict_codebooks * cfg.vocab_size)
    return B * per_item


def random_model(cfg: TransformerConfig, codec) -> MaskedTransformer:
    """Random weights, the codec's codebooks in the embedding (as a trained model would have them)."""
    torch.manual_seed(0)
    model = MaskedTransformer(cfg).eval()
    with torch.no_grad():
        for k in range(cfg.n_codebooks):
            model.embedding.codebooks[k].copy_(codec.quantizer.quantizers[k].codebook.weight)
    return model


def example_input(seconds: float) -> tuple[torch.Tensor, int]:
    wav, sr = audio.load(EXAMPLE)
    n = int(seconds * sr)
    return wav.repeat(1, 1, -(-n // wav.shape[-1]))[..., :n], sr


# --- part 1: the whole vamp ---------------------------------------------------------------------------------

def time_vamp(pipe: Pipeline, wav, sr, steps: int, prompt: PromptConfig = PROMPT) -> dict:
    marks = {}

    def progress(stage, done, total):
        now = time.perf_counter()
        marks.setdefault(stage, now)
        marks[stage + ":end"] = now

    t0, c0 = time.perf_counter(), time.process_time()
    pipe.vamp(wav, sr, prompt=prompt, seed=0, sampling=SamplingConfig(steps=steps),
              c2f_sampling=SamplingConfig(steps=2), progress=progress)
    t1, c1 = time.perf_counter(), time.process_time()
    return {"encode": marks["encode:end"] - t0, "coarse": marks["coarse-to-fine"] - marks["encode:end"],
            "c2f": marks["decode"] - marks["coarse-to-fine"], "decode": t1 - marks["decode"],
            "total": t1 - t0, "cpu": c1 - c0}


def vamp_part(pipes: dict, seconds: float, reps: int, steps: int, log, prompt: PromptConfig = PROMPT) -> dict:
    wav, sr = example_input(seconds)
    warm, wsr = example_input(min(seconds, 1.0))
    for pipe in pipes.values():
        pipe.vamp(warm, wsr, seed=0, sampling=SamplingConfig(steps=2))
    runs = {name: [] for name in pipes}
    for rep in range(reps):
        for name, pipe in pipes.items():  # interleaved: each rep sees the same machine state for every model
            log(f"[bench] vamp {name} {rep + 1}/{reps}")
            runs[name].append(time_vamp(pipe, wav, sr, steps, prompt))
    out = {}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["total"])
        out[name] = {"best": best, "stage_min": {k: min(r[k] for r in rs) for k in best},
                     "totals": [r["total"] for r in rs]}
    return out


# --- part 2: the command ------------------------------------------------------------------------------------

def cli_part(folders: dict, clip: Path, reps: int, log) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    imports = [sys.executable, "-c", "import vampnet.cli.generate, vampnet.pipeline, vampnet.prompts, vampnet.sampling"]
    res = {name: {"command": [], "imports": [], "load": []} for name in folders}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for name, folder in folders.items():
                log(f"[bench] command {name} {rep + 1}/{reps}")
                args = [sys.executable, "-m", "vampnet.cli", "vamp", str(clip), "-o", str(Path(tmp) / "out.wav"),
                        "--seed", "0", "-q"] + ([] if folder is None else ["--models", str(folder)])
                for key, cmd in (("command", args), ("imports", imports)):
                    t = time.perf_counter()
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    res[name][key].append(time.perf_counter() - t)
                    if done.returncode != 0:
                        raise SystemExit(f"command failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
                t = time.perf_counter()
                Pipeline.from_pretrained(folder)
                res[name]["load"].append(time.perf_counter() - t)
    return {name: {k: min(v) for k, v in r.items()} | {"all_command": r["command"]} for name, r in res.items()}


# --- part 3: candidate architectures ------------------------------------------------------------------------

def candidates_part(codec, coarse_list, c2f_list, frames: int, chunk: int, steps: int, reps: int, log) -> dict:
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, codec.codebook_size, (1, 8, frames), generator=g)
    mask = PROMPT.build(codes, codec.frame_rate)
    n = -(-frames // chunk)
    pad = n * chunk - frames
    chunks = lambda x, v: torch.nn.functional.pad(x, (0, pad), value=v).view(1, 8, n, chunk).permute(0, 2, 1, 3).reshape(n, 8, chunk)
    c8, m8 = chunks(codes, 0), chunks(mask, True)
    jobs = [("coarse", c, random_model(TransformerConfig(n_codebooks=4, embedding_dim=c[1], n_heads=c[2], n_layers=c[0],
                                                          vocab_size=codec.codebook_size, latent_dim=codec.codebook_dim), codec))
            for c in coarse_list]
    jobs += [("c2f", c, random_model(TransformerConfig(n_codebooks=8, n_conditioning_codebooks=4, embedding_dim=c[1],
                                                       n_heads=c[2], n_layers=c[0], vocab_size=codec.codebook_size,
                                                       latent_dim=codec.codebook_dim), codec)) for c in c2f_list]
    times = {(kind, c): [] for kind, c, _ in jobs}
    cpu = {(kind, c): [] for kind, c, _ in jobs}
    for rep in range(reps):
        log(f"[bench] candidates {rep + 1}/{reps}")
        for kind, c, model in jobs:
            x, m, s = (codes[:, :4], mask[:, :4], steps) if kind == "coarse" else (c8, m8, 2)
            t, p = time.perf_counter(), time.process_time()
            generate_with_config(model, x, m, SamplingConfig(steps=s), seed=0)
            times[(kind, c)].append(time.perf_counter() - t)
            cpu[(kind, c)].append(time.process_time() - p)
    rows = []
    for kind, c, model in jobs:
        n_par = sum(p.numel() for p in model.parameters())
        gflop = (steps * flops(model.config, frames) if kind == "coarse" else 2 * flops(model.config, chunk, n)) / 1e9
        rows.append({"kind": kind, "layers": c[0], "width": c[1], "heads": c[2], "head_dim": c[1] // c[2],
                     "params_m": n_par / 1e6, "mb_fp32": 4 * n_par / 1e6, "gflop": gflop,
                     "s": min(times[(kind, c)]), "cpu_s": min(cpu[(kind, c)])})
    return {"frames": frames, "chunk": chunk, "chunks": n, "steps": steps, "rows": rows}


# --- report -------------------------------------------------------------------------------------------------

def report(res: dict) -> str:
    m = res["machine"]
    lines = [f"### Small-model CPU budget ({m['cpu']}, {m['cores']} logical CPUs, torch {m['torch']}, "
             f"{m['threads']} threads, fp32)", "",
             f"Load average (1 min) at start {m['load'][0]:.2f}, at end {m['load'][1]:.2f} (above ~{m['cores']}: "
             "other work shared the CPU and every time below is inflated).", ""]
    v = res["vamp"]
    periodic, upper = res.get("prompt", "7:3").split(":")
    lines += [f"**Whole {res['seconds']:g} s vamp** (example clip looped, prompt periodic {periodic} / upper codebooks {upper}, "
              f"{res['steps']} coarse + 2 coarse-to-fine steps; best of {res['reps']} runs interleaved; stage columns "
              "from the best run):", "",
              "| model | coarse | c2f | encode (s) | coarse (s) | c2f (s) | decode (s) | **total (s)** | RTF | CPU s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in v.items():
        b, a = r["best"], res["models"][name]
        lines.append(f"| {name} | {a['coarse']} | {a['c2f']} | {b['encode']:.2f} | {b['coarse']:.2f} | {b['c2f']:.2f} | "
                     f"{b['decode']:.2f} | **{b['total']:.2f}** | {b['total'] / res['seconds']:.3f} | {b['cpu']:.2f} |")
    if "cli" in res:
        c = res["cli"]
        lines += ["", f"**The command as a whole** (`vampnet vamp {c['clip']} -o OUT --seed 0`, fresh process, best of "
                  f"{c['reps']}):", "",
                  "| model | start + imports (s) | model load (s) | **whole command (s)** | all runs (s) |",
                  "|---|---:|---:|---:|---|"]
        for name, r in c["models"].items():
            lines.append(f"| {name} | {r['imports']:.2f} | {r['load']:.2f} | **{r['command']:.2f}** | "
                         f"{', '.join(f'{t:.2f}' for t in r['all_command'])} |")
    if "candidates" in res:
        cd = res["candidates"]
        lines += ["", f"**Candidate architectures** (random weights; coarse: {cd['steps']} steps on {cd['frames']} frames "
                  f"x 4 codebooks; coarse-to-fine: 2 steps on {cd['chunks']} chunks of {cd['chunk']} frames; best of "
                  f"{res['reps']}):", "",
                  "| part | layers x width / heads (head dim) | params (M) | fp32 MB | GFLOP | wall (s) | CPU s | GFLOP/s (wall) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in cd["rows"]:
            lines.append(f"| {r['kind']} | {r['layers']} x {r['width']} / {r['heads']} ({r['head_dim']}) | {r['params_m']:.2f} | "
                         f"{r['mb_fp32']:.1f} | {r['gflop']:.0f} | {r['s']:.2f} | {r['cpu_s']:.2f} | {r['gflop'] / r['s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=36)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cli-reps", type=int, default=3)
    ap.add_argument("--candidates", action="store_true", help="also time the candidate architectures")
    ap.add_argument("--no-cli", action="store_true", help="skip the command timing")
    ap.add_argument("--compare", type=Path, default=CONFIGS / "coarse_v1.yaml",
                    help="training config of the coarse architecture timed beside the shipped one")
    ap.add_argument("--prompt", default="7:3", help="PERIODIC:UPPER_CODEBOOKS of the timed vamps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--output", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="tiny settings: proves every part runs, numbers mean nothing")
    ap.add_argument("--silent", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda s: None) if args.silent else (lambda s: print(s, file=sys.stderr, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seconds, args.steps, args.reps, args.cli_reps = 1.0, 2, 1, 1
    load0 = os.getloadavg()[0]
    shipped = Pipeline.from_pretrained(None)
    codec = shipped.codec
    periodic, upper = (int(v) for v in args.prompt.split(":"))
    prompt = PromptConfig(periodic_prompt=periodic, upper_codebook_mask=upper)
    other = f"{args.compare.stem.replace('coarse_', '')} (random weights)"
    other_pipe = Pipeline(codec, random_model(transformer_config(args.compare), codec), shipped.c2f)
    describe = lambda m: f"{m.config.n_layers} x {m.config.embedding_dim} / {m.config.n_heads}"
    res = {"seconds": args.seconds, "steps": args.steps, "reps": args.reps, "prompt": args.prompt,
           "models": {"shipped": {"coarse": describe(shipped.coarse), "c2f": describe(shipped.c2f)},
                      other: {"coarse": describe(other_pipe.coarse), "c2f": describe(other_pipe.c2f)}}}
    res["vamp"] = vamp_part({"shipped": shipped, other: other_pipe}, args.seconds, args.reps, args.steps, log, prompt)
    if args.candidates or args.quick:
        frames = codec.frames(int(args.seconds * codec.sample_rate))
        res["candidates"] = candidates_part(codec, QUICK_CANDIDATES if args.quick else COARSE_CANDIDATES,
                                            QUICK_CANDIDATES if args.quick else C2F_CANDIDATES, frames,
                                            shipped.c2f_chunk, args.steps, args.reps, log)
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "other"
            folder.mkdir()
            codec.save(folder / "codec.safetensors")
            other_pipe.coarse.save(folder / "coarse.safetensors")
            other_pipe.c2f.save(folder / "c2f.safetensors")
            clip = EXAMPLE
            if args.quick:
                clip = Path(tmp) / "clip.wav"
                audio.save(clip, *example_input(1.0))
            res["cli"] = {"clip": EXAMPLE.name if not args.quick else "1 s clip", "reps": args.cli_reps,
                          "models": cli_part({"shipped": None, other: folder}, clip, args.cli_reps, log)}
    res["machine"] = {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "python": platform.python_version(),
                      "load": (load0, os.getloadavg()[0])}
    text = report(res)
    print(text)
    if args.output:
        args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
