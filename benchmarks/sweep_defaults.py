#!/usr/bin/env python
"""Pick a model's default prompt and sampling settings by a sweep on the corpus's validation split (issue 26).

    python benchmarks/sweep_defaults.py --corpus CORPUS [--models small] [--excerpts 24] [--seeds 0]
                                        [--json FILE] [--figure FILE.png] [--quick]
    python benchmarks/sweep_defaults.py --corpus CORPUS --confirm FILE [--confirm-seeds 1 2] [--confirm-top 3]
                                        [--json FILE] [--figure FILE.png]

CORPUS is the folder `vampnet prepare-corpus` made; the excerpts (10 s, mono, codec rate, -24 LUFS) come from its
validation files only (model_metrics.validation_excerpts: the split training used), spread evenly over them.
Each setting vamps every excerpt once per seed and is scored against its input with model_metrics' measures
(eval.musical.keeps_rhythm_and_key, eval.metrics.si_sdr): tempo kept (octave-tolerant, 4 %; a count, a share of
the vamps and a share of what the codec round trip keeps), chroma similarity, onset correlation, SI-SDR, the
share of coarse tokens generated and the seconds per vamp.

Two stages, because the product of the issue's axes is too big for a CPU:
  1. prompts at the default sampling: periodic prompts of several periods, with the upper-codebook mask at
     several levels (how many lower codebooks a kept frame keeps), and beat-driven prompts (every tracked beat
     kept, on top of a periodic prompt or alone);
  2. sampling (temperature x steps) over the best `--sampling-prompts` prompts of stage 1;
  3. (`--confirm` the JSON of stages 1-2) the best `--confirm-top` settings and today's default vamped again with
     `--confirm-seeds`, pooled with their first vamps, and the rule applied again: the best of 30 settings on one
     seed is partly luck.

The selection rule (`choose`): among settings whose vamps are new music (mean SI-SDR to the input below
MAX_SI_SDR_DB = 10 dB) and that generate at least MIN_GENERATED = half of the coarse tokens (below that a "vamp"
is mostly the input played back: periodic 1 with three of four codebooks kept generates a quarter), keep the one
that keeps the tempo of the most excerpts, then the one with the highest chroma similarity. It prints a markdown
table and the chosen settings as the `{"prompt": {...}, "sampling": {...}}` fragment a model card's defaults
hold, keyed by the schema's option names (checked with schema.config_values). `--quick` is a tiny grid on
2 excerpts of 3 s (for tests).

The default run (24 excerpts, 32 settings, one seed) took 43 minutes on one core of a shared 2-core Xeon with the
shipped model (a 10 s vamp took 2-4.4 s there depending on the load, its scoring 0.2 s); the confirmation of 5
settings with 2 more seeds took 23 minutes on the same core under heavier load."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import vampnet  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_metrics import spread, validation_excerpts  # noqa: E402

from vampnet import options  # noqa: E402
from vampnet.eval import musical  # noqa: E402
from vampnet.eval.metrics import si_sdr  # noqa: E402
from vampnet.pipeline import Pipeline  # noqa: E402
from vampnet.prompts import PromptConfig  # noqa: E402
from vampnet.sampling import SamplingConfig  # noqa: E402
from vampnet.schema import config_values  # noqa: E402

MAX_SI_SDR_DB = 10.0   # above it a vamp is close to a copy of its input (the codec round trip scores ~5-8 dB more)
MIN_GENERATED = 0.5    # the share of coarse tokens a default must generate
EXCERPT_S = 10.0
EXCERPTS_PER_FILE = 6  # as model_metrics: consecutive excerpts read per validation file before spreading
TODAYS_DEFAULT = {"periodic": PromptConfig().periodic_prompt, "upper_codebooks": PromptConfig().upper_codebook_mask}

# Stage 1: (user-facing prompt options, keep every tracked beat). upper_codebooks = k: codebooks 0..k-1 of a kept
# frame are kept, the rest generated; k = the coarse model's codebook count keeps every coarse codebook (the
# schema has no "off": None would also keep the fine codebooks, which the coarse-to-fine model then copies).
PROMPT_GRID = (
    *[({"periodic": p, "upper_codebooks": 3}, False) for p in (1, 2, 3, 5, 7, 13)],
    *[({"periodic": p, "upper_codebooks": 2}, False) for p in (1, 2, 3)],
    *[({"periodic": p, "upper_codebooks": 1}, False) for p in (1, 2)],
    *[({"periodic": p, "upper_codebooks": 4}, False) for p in (3, 7)],
    ({"periodic": 7, "upper_codebooks": 3}, True),        # the shipped "follow beat" idea: default + every beat
    ({"periodic": 13, "upper_codebooks": 3}, True),       # a sparser period, the beats carry the rhythm
    ({"periodic": 0, "upper_codebooks": 3, "beat_after": 0.1}, True),  # beats alone, ~6 frames kept at each
)
TEMPERATURES = (0.6, 0.8, 1.0)
STEPS = (12, 24, 36)
QUICK_PROMPT_GRID = (({"periodic": 2, "upper_codebooks": 1}, False), ({"periodic": 7, "upper_codebooks": 3}, False),
                     ({"periodic": 7, "upper_codebooks": 3}, True))
QUICK_TEMPERATURES, QUICK_STEPS = (0.8, 1.0), (4,)


def label_of(prompt: dict, beats: bool, sampling: dict | None = None) -> str:
    """A setting's name in tables and plots: its prompt options, '+ beats', and its sampling where not default."""
    words = [f"P{prompt['periodic']}", f"upper {prompt['upper_codebooks']}"]
    words += [f"{k} {v}" for k, v in prompt.items() if k not in ("periodic", "upper_codebooks")]
    if beats:
        words.append("+ beats")
    if sampling:
        words.append(f"T {sampling['temperature']:g}, {sampling['steps']} steps")
    return ", ".join(words)


def prompt_config(prompt: dict, beat_times) -> PromptConfig:
    """The PromptConfig of user-facing `prompt` options (checked by the schema), keeping `beat_times` if given."""
    return PromptConfig(**config_values(PromptConfig, prompt), keep_times_s=tuple(beat_times or ()))


def score(x: torch.Tensor, y: torch.Tensor, sample_rate: int) -> dict:
    """model_metrics.rhythm_metrics' per-vamp measures: tempo kept, onset correlation, chroma similarity, SI-SDR."""
    y = y[..., : x.shape[-1]]
    return musical.keeps_rhythm_and_key(x, y, sample_rate) | {"si_sdr": si_sdr(x, y)}


def summarise(scores: list[dict], codec_kept: int | None) -> dict:
    """One setting's row from its per-vamp scores (each also holding `generated` and `seconds`)."""
    kept, n = sum(bool(s["tempo_kept"]) for s in scores), len(scores)
    mean = lambda key: statistics.fmean(float(s[key]) for s in scores)
    return {"tempo_kept": kept, "vamps": n, "tempo_kept_share": kept / n,
            "tempo_kept_vs_codec": kept / codec_kept if codec_kept else None,
            "chroma_similarity": mean("chroma_similarity"), "onset_correlation": mean("onset_correlation"),
            "si_sdr_db": mean("si_sdr"), "generated": mean("generated"), "seconds_per_vamp": mean("seconds")}


def eligible(row: dict, max_si_sdr_db: float = MAX_SI_SDR_DB, min_generated: float = MIN_GENERATED) -> bool:
    """Whether a setting makes new music (mean SI-SDR below the bound) and generates enough of the coarse tokens."""
    return row["si_sdr_db"] < max_si_sdr_db and row["generated"] >= min_generated


def ranked(rows: list[dict], max_si_sdr_db: float = MAX_SI_SDR_DB, min_generated: float = MIN_GENERATED) -> list[dict]:
    """The eligible rows, best first: most tempo kept (share of vamps), then highest chroma similarity."""
    ok = [r for r in rows if eligible(r, max_si_sdr_db, min_generated)]
    return sorted(ok, key=lambda r: (-r["tempo_kept_share"], -r["chroma_similarity"]))


def choose(rows: list[dict], max_si_sdr_db: float = MAX_SI_SDR_DB, min_generated: float = MIN_GENERATED) -> dict | None:
    """The selection rule: the best eligible row (see `ranked`), or None when no setting is eligible."""
    best = ranked(rows, max_si_sdr_db, min_generated)
    return best[0] if best else None


def defaults_fragment(row: dict) -> dict:
    """The model card's defaults for a chosen row, keyed by the schema's option names; checked by config_values
    (an out-of-range value raises OptionError). A beat-driven winner adds `"beats": true`, which is the CLI's
    --beats flag, not a PromptConfig option."""
    fragment = {"prompt": dict(row["prompt"]), "sampling": dict(row["sampling"])}
    config_values(PromptConfig, fragment["prompt"])
    config_values(SamplingConfig, fragment["sampling"])
    if row.get("beats"):
        fragment["prompt"]["beats"] = True
    return fragment


class Sweep:
    """Vamps the excerpts with one setting after another and keeps a row per setting."""

    def __init__(self, pipeline: Pipeline, excerpts: list[torch.Tensor], seeds: list[int], log=print,
                 codec: dict | None = None):
        self.pipeline, self.excerpts, self.seeds, self.log = pipeline, excerpts, seeds, log
        self.sr = pipeline.sample_rate
        self.n_coarse = pipeline.coarse.config.n_codebooks
        self._beats: list | None = None
        self.rows: list[dict] = []
        self.codec = codec or self._codec_round_trip()  # deterministic: a confirmation reuses the sweep's

    def _codec_round_trip(self) -> dict:
        scores = []
        for x in self.excerpts:
            t = time.perf_counter()
            with torch.inference_mode():
                y = self.pipeline.codec.decode(self.pipeline.codec.encode(x))
            scores.append(score(x, y, self.sr) | {"generated": 0.0, "seconds": time.perf_counter() - t})
        row = summarise(scores, None)
        row["tempo_kept_vs_codec"] = 1.0
        self.log(f"codec round trip: tempo kept {row['tempo_kept']}/{row['vamps']}, chroma "
                 f"{row['chroma_similarity']:.3f}, SI-SDR {row['si_sdr_db']:.1f} dB")
        return row

    def beat_times(self) -> list:
        """Each excerpt's tracked beats (options.vamp_prompt's tracker), tracked once."""
        if self._beats is None:
            self._beats = [options.vamp_prompt(None, wav=x, sample_rate=self.sr, beats=True)[0].keep_times_s
                           for x in self.excerpts]
        return self._beats

    def run(self, prompt: dict, beats: bool, sampling: dict, stage: str) -> dict:
        prompt = dict(prompt, upper_codebooks=min(prompt["upper_codebooks"], self.n_coarse))
        label = label_of(prompt, beats, None if stage == "prompt" else sampling)
        done = next((r for r in self.rows if r["label"] == label), None)
        if done is not None:  # a clipped upper_codebooks can make two grid entries one setting
            return done
        config = SamplingConfig(**config_values(SamplingConfig, sampling))
        scores = []
        for i, x in enumerate(self.excerpts):
            cfg = prompt_config(prompt, self.beat_times()[i] if beats else None)
            for seed in self.seeds:
                t = time.perf_counter()
                result = self.pipeline.vamp(x, self.sr, prompt=cfg, sampling=config, seed=seed + i)
                seconds = time.perf_counter() - t
                generated = result.mask[:, : self.n_coarse].float().mean().item()
                scores.append(score(x, result.audio, self.sr) | {"generated": generated, "seconds": seconds})
        row = {"label": label, "stage": stage, "prompt": prompt, "beats": beats, "sampling": dict(sampling),
               "todays_default": prompt == TODAYS_DEFAULT and not beats and sampling == default_sampling()}
        row |= summarise(scores, self.codec["tempo_kept"])
        self.rows.append(row)
        self.log(f"{label}: tempo kept {row['tempo_kept']}/{row['vamps']}, chroma {row['chroma_similarity']:.3f}, "
                 f"SI-SDR {row['si_sdr_db']:.1f} dB, generated {row['generated']:.0%}, {row['seconds_per_vamp']:.1f} s")
        return row


def default_sampling() -> dict:
    return {"temperature": SamplingConfig().temperature, "steps": SamplingConfig().steps}


def sweep(pipeline: Pipeline, excerpts, seeds, prompt_grid, temperatures, steps, n_sampling_prompts: int,
          checkpoint=None, log=print) -> dict:
    """Both stages; `checkpoint(results)` is called after each setting (the JSON so far survives a stopped run)."""
    s = Sweep(pipeline, excerpts, seeds, log)
    results = {"codec round trip": s.codec, "settings": s.rows}
    for prompt, beats in prompt_grid:
        s.run(prompt, beats, default_sampling(), "prompt")
        if checkpoint:
            checkpoint(results)
    best_prompts = ranked([r for r in s.rows if r["stage"] == "prompt"])[:n_sampling_prompts]
    results["sampling_prompts"] = [r["label"] for r in best_prompts]
    for base in best_prompts:
        for temperature in temperatures:
            for n_steps in steps:
                sampling = {"temperature": temperature, "steps": n_steps}
                if sampling != default_sampling():  # measured in stage 1
                    s.run(base["prompt"], base["beats"], sampling, "sampling")
                    if checkpoint:
                        checkpoint(results)
    chosen = choose(s.rows)
    results["chosen"] = chosen["label"] if chosen else None
    results["defaults"] = defaults_fragment(chosen) if chosen else None
    return results


def pooled(old: dict, new: dict) -> dict:
    """One setting's row over the vamps of two runs (different seeds): counts added, means weighted by vamps."""
    n = old["vamps"] + new["vamps"]
    out = dict(old, vamps=n, tempo_kept=old["tempo_kept"] + new["tempo_kept"])
    out["tempo_kept_share"] = out["tempo_kept"] / n
    for key in ("chroma_similarity", "onset_correlation", "si_sdr_db", "generated", "seconds_per_vamp"):
        out[key] = (old[key] * old["vamps"] + new[key] * new["vamps"]) / n
    return out


def confirm(pipeline: Pipeline, excerpts, seeds, previous: dict, top: int, log=print) -> dict:
    """Stage 3: the sweep's `top` eligible settings and today's default vamped again with other `seeds`, pooled
    with the sweep's vamps, and the rule applied to the pooled rows (the best of many settings on one seed is
    partly luck: tempo kept moves by a few excerpts in 24 from seed to seed)."""
    if previous.get("setup", {}).get("excerpts") != len(excerpts):
        raise SystemExit("error: --confirm needs the sweep's corpus and --excerpts (the excerpt counts differ)")
    s = Sweep(pipeline, excerpts, seeds, log, codec=previous["codec round trip"])
    rows = ranked(previous["settings"])[:top]
    rows += [r for r in previous["settings"] if r["todays_default"] and r not in rows]
    confirmed = []
    for old in rows:
        new = s.run(old["prompt"], old["beats"], old["sampling"], old["stage"])
        confirmed.append(pooled(old, new))
    chosen = choose(confirmed)
    return dict(previous, confirmation={"seeds": list(seeds), "settings": confirmed},
                chosen=chosen["label"] if chosen else None, defaults=defaults_fragment(chosen) if chosen else None)


def markdown(results: dict) -> str:
    codec = results["codec round trip"]
    lines = ["| setting | tempo kept | of the codec's | chroma | onset corr. | SI-SDR (dB) | coarse generated | s / vamp |",
             "|---|---|---|---|---|---|---|---|",
             f"| codec round trip (reference) | {codec['tempo_kept']}/{codec['vamps']} | 100 % | "
             f"{codec['chroma_similarity']:.3f} | {codec['onset_correlation']:.3f} | {codec['si_sdr_db']:.1f} | 0 % | "
             f"{codec['seconds_per_vamp']:.1f} |"]
    for r in results["settings"]:
        name = r["label"] + (" (today's default)" if r["todays_default"] else "")
        if r["label"] == results.get("chosen"):
            name = f"**{name} (chosen)**"
        elif not eligible(r):
            name += " ✗"
        vs = f"{r['tempo_kept_vs_codec']:.0%}" if r["tempo_kept_vs_codec"] is not None else "n/a"
        lines.append(f"| {name} | {r['tempo_kept']}/{r['vamps']} | {vs} | {r['chroma_similarity']:.3f} | "
                     f"{r['onset_correlation']:.3f} | {r['si_sdr_db']:.1f} | {r['generated']:.0%} | "
                     f"{r['seconds_per_vamp']:.1f} |")
    if results.get("confirmation"):
        c = results["confirmation"]
        lines += ["", f"Confirmation: the best settings and today's default again with seeds {c['seeds']}, pooled "
                  "with the sweep's vamps:", "",
                  "| setting | tempo kept | chroma | onset corr. | SI-SDR (dB) | coarse generated |", "|---|---|---|---|---|---|"]
        for r in c["settings"]:
            name = r["label"] + (" (today's default)" if r["todays_default"] else "")
            name = f"**{name} (chosen)**" if r["label"] == results.get("chosen") else name
            lines.append(f"| {name} | {r['tempo_kept']}/{r['vamps']} | {r['chroma_similarity']:.3f} | "
                         f"{r['onset_correlation']:.3f} | {r['si_sdr_db']:.1f} | {r['generated']:.0%} |")
    lines.append(f"\n✗: not eligible (SI-SDR ≥ {MAX_SI_SDR_DB:g} dB or under {MIN_GENERATED:.0%} of the coarse tokens "
                 "generated).")
    return "\n".join(lines)


def figure(results: dict, path: Path) -> None:
    """Tempo kept and chroma similarity against the share of coarse tokens generated, one point per setting
    (hollow: not eligible; triangles: beat-driven; crosses: confirmation), the chosen setting starred, today's
    default ringed, the codec round trip dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, codec = results["settings"], results["codec round trip"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "tempo_kept_share", "share of vamps keeping the input's tempo"),
                           (axes[1], "chroma_similarity", "chroma similarity to the input")):
        for stage, beats, color, marker in (("prompt", False, "tab:blue", "o"), ("prompt", True, "tab:green", "^"),
                                            ("sampling", False, "tab:orange", "o"), ("sampling", True, "tab:orange", "^")):
            for ok in (True, False):
                pts = [r for r in rows if r["stage"] == stage and r["beats"] == beats and eligible(r) == ok]
                if pts:
                    what = "beat-driven prompts" if stage == "prompt" and beats else f"{stage} sweep"
                    ax.scatter([r["generated"] for r in pts], [r[key] for r in pts], s=28, marker=marker,
                               facecolors=color if ok else "none", edgecolors=color,
                               label=what + ("" if ok else " (not eligible)"))
        confirmed = results.get("confirmation", {}).get("settings", [])
        if confirmed:
            ax.scatter([r["generated"] for r in confirmed], [r[key] for r in confirmed], s=40, marker="x",
                       color="black", label=f"confirmation (seeds pooled, {confirmed[0]['vamps']} vamps)")
        ax.axhline(codec[key], color="gray", linestyle="--", linewidth=1, label="codec round trip")
        ax.axvline(MIN_GENERATED, color="gray", linestyle=":", linewidth=1)
        for r in rows:
            if r["todays_default"]:
                ax.scatter([r["generated"]], [r[key]], s=140, facecolors="none", edgecolors="black",
                           label="today's default")
        for r in confirmed or rows:  # the chosen setting where it was chosen: pooled after a confirmation
            if r["label"] == results.get("chosen"):
                ax.scatter([r["generated"]], [r[key]], s=220, marker="*", color="red", zorder=5,
                           label=f"chosen: {r['label']}")
        ax.set_xlabel("share of coarse tokens generated")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def cpu_name() -> str:
    """The CPU's model name (as lscpu shows it), or the architecture where /proc/cpuinfo has none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def portable(path) -> str:
    """A path as it may be committed: under the home folder written with ~ (result files name no absolute home path)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + "/") or text == home else text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="the folder `vampnet prepare-corpus` made")
    ap.add_argument("--models", default=None, help="model folder, 'small' (default, the shipped model) or a name")
    ap.add_argument("--excerpts", type=int, default=24, help="10 s validation excerpts, spread over the files")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="vamp seeds (excerpt i uses seed + i)")
    ap.add_argument("--sampling-prompts", type=int, default=2, help="best prompts given the sampling sweep")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None, help="PNG: tempo kept and chroma against share generated")
    ap.add_argument("--confirm", type=Path, default=None,
                    help="a finished sweep's JSON: vamp its best settings and today's default again (stage 3)")
    ap.add_argument("--confirm-seeds", type=int, nargs="+", default=[1, 2], help="seeds of the confirmation")
    ap.add_argument("--confirm-top", type=int, default=3, help="how many of the sweep's best settings to confirm")
    ap.add_argument("--quick", action="store_true", help="a tiny grid on 2 excerpts of 3 s (for tests)")
    args = ap.parse_args(argv)
    if args.excerpts < 1:
        ap.error("--excerpts must be at least 1")
    torch.manual_seed(0)
    t0 = time.time()
    pipeline = Pipeline.from_pretrained(args.models)
    if pipeline.coarse is None:
        raise SystemExit("error: the model has no coarse transformer to vamp with")
    seconds = 3.0 if args.quick else EXCERPT_S
    n = 2 if args.quick else args.excerpts
    excerpts = spread(validation_excerpts(args.corpus, pipeline.sample_rate, seconds,
                                          2 if args.quick else EXCERPTS_PER_FILE), n)
    grid = QUICK_PROMPT_GRID if args.quick else PROMPT_GRID
    temperatures, steps = (QUICK_TEMPERATURES, QUICK_STEPS) if args.quick else (TEMPERATURES, STEPS)
    setup = {"models": args.models or "small", "corpus": portable(args.corpus), "excerpts": len(excerpts),
             "excerpt_s": seconds, "seeds": args.seeds, "max_si_sdr_db": MAX_SI_SDR_DB, "min_generated": MIN_GENERATED,
             "torch": torch.__version__, "threads": torch.get_num_threads(),
             "machine": cpu_name()}

    def write(results, final=False):
        if args.json:
            out = dict(results, setup=dict(setup, seconds=round(time.time() - t0, 1), finished=final))
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))

    log = lambda line: print(f"[{time.time() - t0:6.0f} s] {line}", flush=True)
    if args.confirm:
        try:
            previous = json.loads(args.confirm.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: cannot read {args.confirm}: {e}") from None
        setup = dict(previous["setup"], sweep_seconds=previous["setup"]["seconds"], confirm_seeds=args.confirm_seeds)
        results = confirm(pipeline, excerpts, args.confirm_seeds, previous, args.confirm_top, log)
    else:
        results = sweep(pipeline, excerpts, args.seeds, grid, temperatures, steps, args.sampling_prompts, write, log)
    write(results, final=True)
    print(markdown(results))
    print("chosen:", results["chosen"])
    print("defaults:", json.dumps(results["defaults"]))
    if args.figure:
        figure(results, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
