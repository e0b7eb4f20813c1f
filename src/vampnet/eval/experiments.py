"""The paper's three experiments as conditions that turn one input excerpt into one output signal.

`run(pipeline, data_dirs, experiment, out)` picks excerpts deterministically, writes the preprocessed input as
`baseline/NNNN.wav` and every condition's output as `<condition>/NNNN.wav`, and skips files that exist, so an
interrupted run resumes. `eval.scoring` turns such a folder into tables and plots.

Experiments:
  sampling-steps    periodic prompt P = 16 (every codebook kept at every 16th frame), coarse steps 1 ... 72;
  gen-compression   codec round trip, coarse-to-fine only, (Nk, P) = keep the first Nk codebooks at every P-th
                    frame and generate the rest, token-noise baselines (random tokens replaced, one coarse pass),
                    and Opus at the bitrates of the token conditions that Opus reaches: targets below its lowest
                    (OPUS_MIN_KBPS, 6 kbit/s) all give one stream, so they are one condition, opus_6kbps;
  musical-sampling  beat-driven prompt (75 ms of context around each beat), a periodic prompt that keeps the
                    same share of frames as that beat prompt, and inpainting with 0.5 s and 1.0 s of context.
Where the original's script differs from the paper we follow the paper and say so: its (Nk, P) conditions
overwrite the codebook mask with a periodic mask over all codebooks, so Nk had no effect there."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import audio, prompts
from ..beats import track_beats
from ..errors import OptionError
from ..pipeline import Pipeline
from ..sampling import SamplingConfig, seeded_generator
from ..serialization import atomic_path
from .opus import OPUS_MIN_KBPS, opus_roundtrip

EXCERPT_S = 10.0
BASELINE = "baseline"
MANIFEST = "experiment.json"


@dataclass(frozen=True)
class Condition:
    """One way of producing an output from an input excerpt."""

    name: str
    kind: str                       # reconstructed | coarse2fine | kept | noise | opus | steps | beats | inpaint
    params: dict = field(default_factory=dict)
    trim_s: float = 0.0             # context seconds at both ends left out of scoring (inpainting)

    def bitrate_kbps(self, pipeline: Pipeline) -> float | None:
        """Token bitrate of the condition (10 bits x kept codebooks x frame rate / period), None when not a
        compression condition. Opus conditions report their real bitrate when scored."""
        bits = math.log2(pipeline.codec.codebook_size) * pipeline.frame_rate / 1000
        if self.kind == "reconstructed":
            return bits * pipeline.n_codebooks
        if self.kind == "coarse2fine":
            return bits * pipeline.coarse.n_codebooks
        if self.kind == "kept":
            return bits * self.params["codebooks"] / self.params["period"]
        if self.kind == "opus":
            return self.params["kbps"]
        return None


KEPT = ((1, 1), (4, 4), (4, 16), (4, 32))
NOISE = (0.25, 0.5, 0.75)
STEPS = (1, 4, 12, 36, 64, 72)


def conditions(experiment: str, pipeline: Pipeline) -> tuple[Condition, ...]:
    """The conditions of a named experiment for this pipeline (Opus bitrates follow its token rate)."""
    if experiment == "sampling-steps":
        return tuple(Condition(f"steps_{s}", "steps", {"steps": s, "period": 16}) for s in STEPS)
    if experiment == "gen-compression":
        out = [Condition("reconstructed", "reconstructed"), Condition("coarse2fine", "coarse2fine")]
        out += [Condition(f"{n}_codebooks_downsampled_{p}x", "kept", {"codebooks": n, "period": p}) for n, p in KEPT]
        out += [Condition(f"token_noise_{r}", "noise", {"ratio": r}) for r in NOISE]
        rates = sorted({round(max(OPUS_MIN_KBPS, c.bitrate_kbps(pipeline)), 2)
                        for c in out if c.kind in ("reconstructed", "kept")})
        out += [Condition(f"opus_{r:g}kbps", "opus", {"kbps": r}) for r in rates]
        return tuple(out)
    if experiment == "musical-sampling":
        return (Condition("beat_driven", "beats", {"before_s": 0.0375, "after_s": 0.0375}),
                Condition("periodic_matched", "beats", {"before_s": 0.0375, "after_s": 0.0375, "matched_periodic": True}),
                Condition("inpaint_0.5s", "inpaint", {"context_s": 0.5}, trim_s=0.5),
                Condition("inpaint_1.0s", "inpaint", {"context_s": 1.0}, trim_s=1.0))
    raise OptionError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")


EXPERIMENTS = ("sampling-steps", "gen-compression", "musical-sampling")


# --- excerpts ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Excerpt:
    source: str       # path relative to its data folder's parent (as audio.find_audio names it)
    start_s: float


def select_excerpts(data_dirs, max_excerpts: int, seed: int = 0, excerpt_s: float = EXCERPT_S) -> list[Excerpt]:
    """Candidate excerpt positions, up to 4 x `max_excerpts`: every whole `excerpt_s` slot of every file, shuffled
    by `seed` (the same files and seed give the same list; the loudness check happens when the audio is read)."""
    files = audio.find_audio(data_dirs)
    if not files:
        raise OptionError(f"no audio files in {', '.join(map(str, data_dirs))}")
    slots = []
    for path, rel in files:
        try:
            n = int(audio.duration(path) // excerpt_s)
        except Exception:
            continue
        slots += [Excerpt(rel, k * excerpt_s) for k in range(n)]
    order = torch.randperm(len(slots), generator=torch.Generator().manual_seed(seed)).tolist()
    return [slots[i] for i in order][: 4 * max_excerpts]  # spares for the excerpts the loudness check rejects


# --- generation ----------------------------------------------------------------------------------------------------
def _generate(pipeline: Pipeline, codes, mask, seed: int, sampling: SamplingConfig | None = None,
              c2f: bool = True) -> torch.Tensor:
    generator = seeded_generator(seed)
    sampling = sampling or SamplingConfig()
    return pipeline.generate(codes, mask, sampling, generator=generator, coarse_only=not c2f)


def render_condition(pipeline: Pipeline, cond: Condition, x: torch.Tensor, codes: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, float | None]:
    """The (1, 1, N) output of `cond` for the preprocessed excerpt x (codec rate, -24 LUFS) and its codes, with the
    measured bitrate in kbit/s for Opus conditions (None for the others)."""
    if cond.kind == "opus":
        return opus_roundtrip(x, pipeline.sample_rate, cond.params["kbps"])
    return _render_tokens(pipeline, cond, x, codes, seed), None


def _render_tokens(pipeline: Pipeline, cond: Condition, x: torch.Tensor, codes: torch.Tensor, seed: int) -> torch.Tensor:
    """The conditions made from tokens: reconstruction, generation with a prompt, token noise."""
    n = x.shape[-1]
    if cond.kind == "reconstructed":
        return pipeline.decode(codes, n)
    if cond.kind == "coarse2fine":
        mask = prompts.full(codes)
        mask[:, : pipeline.coarse.n_codebooks] = False
        return pipeline.decode(pipeline.generate(codes, mask, generator=seeded_generator(seed)), n)
    if cond.kind == "kept":
        mask = prompts.periodic(codes, cond.params["period"]) | _upper(codes, cond.params["codebooks"])
        return pipeline.decode(_generate(pipeline, codes, mask, seed), n)
    if cond.kind == "noise":
        mask = prompts.linear_random(codes, cond.params["ratio"], seeded_generator(seed))
        return pipeline.decode(_generate(pipeline, codes, mask, seed, SamplingConfig(steps=1), c2f=False), n)
    if cond.kind == "steps":
        mask = prompts.periodic(codes, cond.params["period"])
        return pipeline.decode(_generate(pipeline, codes, mask, seed, SamplingConfig(steps=cond.params["steps"])), n)
    if cond.kind == "beats":
        mask = beat_mask(pipeline, x, codes, cond.params)
        return pipeline.decode(_generate(pipeline, codes, mask, seed), n)
    if cond.kind == "inpaint":
        ctx = prompts.seconds_to_frames(cond.params["context_s"], pipeline.frame_rate)
        mask = prompts.prefix_suffix(codes, ctx, ctx)
        return pipeline.decode(_generate(pipeline, codes, mask, seed), n)
    raise OptionError(f"unknown condition kind {cond.kind!r}")


def _upper(codes, first: int) -> torch.Tensor:
    """True for codebooks >= first (always generated), False below."""
    mask = torch.zeros_like(codes, dtype=torch.bool)
    mask[:, first:] = True
    return mask


def beat_mask(pipeline: Pipeline, x: torch.Tensor, codes: torch.Tensor, params: dict) -> torch.Tensor:
    """Keep every codebook around each tracked beat; with matched_periodic, a periodic prompt keeping the same
    share of frames instead (the paper's comparison at a similar token budget)."""
    beats = track_beats(x, pipeline.sample_rate).select("beats", 1)
    mask = prompts.around_times(codes, beats.tolist(), pipeline.frame_rate, params["before_s"], params["after_s"])
    if not params.get("matched_periodic"):
        return mask
    kept = max(1e-6, float((~mask[0, 0]).float().mean()))
    return prompts.periodic(codes, max(1, round(1 / kept)))


# --- the run -------------------------------------------------------------------------------------------------------
def run(pipeline: Pipeline, data_dirs, experiment: str, out, *, max_excerpts: int = 50, seed: int = 0,
        excerpt_s: float = EXCERPT_S, models_name: str = "", progress: bool = True) -> dict:
    """Write baseline and condition audio for `experiment` into `out` (resumable); returns counts.
    Excerpts are `excerpt_s` long (the paper: 10 s, the coarse model's context)."""
    if not 2.5 <= excerpt_s <= 60:
        raise OptionError(f"excerpt length {excerpt_s} s is outside 2.5..60 s")
    conds = conditions(experiment, pipeline)
    if pipeline.coarse is None and any(c.kind not in ("reconstructed", "opus") for c in conds):
        raise OptionError("this experiment needs a coarse model (give a model folder with coarse and c2f)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"experiment": experiment, "seed": seed, "max_excerpts": max_excerpts, "models": models_name,
                "sample_rate": pipeline.sample_rate, "excerpt_s": excerpt_s, "conditions": [asdict(c) for c in conds]}
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text())
        keys = ("experiment", "seed", "models", "sample_rate", "excerpt_s")
        same = {k: old.get(k) for k in keys} == {k: settings[k] for k in keys}
        if not same:
            raise OptionError(f"{out} holds another run ({old.get('experiment')}, seed {old.get('seed')}, models "
                              f"{old.get('models')!r}); use a new folder")
        excerpts = [Excerpt(**e) for e in old["excerpts"]]
    else:
        excerpts = _loud_excerpts(pipeline, data_dirs, max_excerpts, seed, excerpt_s)
    settings["excerpts"] = [asdict(e) for e in excerpts]
    settings["bitrates"] = {c.name: c.bitrate_kbps(pipeline) for c in conds}
    with atomic_path(manifest) as tmp:  # first, so a resumed run reuses these excerpts
        tmp.write_text(json.dumps(settings, indent=2))
    roots = {Path(d).name: Path(d) for d in data_dirs}
    written = 0
    bar = tqdm(total=len(excerpts) * (len(conds) + 1), desc=f"eval {experiment}", disable=not progress)
    for i, ex in enumerate(excerpts):
        name = f"{i:04d}.wav"
        todo = [c for c in conds if not (out / c.name / name).exists()]
        if not todo and (out / BASELINE / name).exists():
            bar.update(len(conds) + 1)
            continue
        x = _read_excerpt(pipeline, roots, ex, excerpt_s)
        audio.save(out / BASELINE / name, x, pipeline.sample_rate)
        bar.update(1 + len(conds) - len(todo))
        codes = pipeline.encode(x)
        for c in todo:
            y, real_kbps = render_condition(pipeline, c, x, codes, seed=seed * 1_000_003 + i)
            if real_kbps is not None:
                _record_bitrate(out / c.name / "bitrates.json", name, real_kbps)
            audio.save(out / c.name / name, y[..., : x.shape[-1]], pipeline.sample_rate)
            written += 1
            bar.update(1)
    bar.close()
    return {"excerpts": len(excerpts), "conditions": len(conds), "written": written}


def _record_bitrate(path: Path, name: str, kbps: float) -> None:
    values = json.loads(path.read_text()) if path.is_file() else {}
    values[name] = kbps
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=1))


def _read_excerpt(pipeline: Pipeline, roots: dict, ex: Excerpt, excerpt_s: float) -> torch.Tensor:
    root, rel = ex.source.split("/", 1)
    path = roots[root] / rel
    wav, sr = audio.load(path, offset_s=ex.start_s, max_seconds=excerpt_s)
    x, _ = pipeline.preprocess(wav, sr)
    n = int(round(excerpt_s * pipeline.sample_rate))
    return torch.nn.functional.pad(x, (0, max(0, n - x.shape[-1])))[..., :n]


def _loud_excerpts(pipeline: Pipeline, data_dirs, max_excerpts: int, seed: int, excerpt_s: float) -> list[Excerpt]:
    """The first `max_excerpts` shuffled slots whose audio is louder than -40 LUFS (silence says nothing)."""
    roots = {Path(d).name: Path(d) for d in data_dirs}
    if len(roots) != len(list(data_dirs)):
        raise OptionError("data folders must have different names (excerpts are recorded by folder name)")
    chosen = []
    for ex in select_excerpts(data_dirs, max_excerpts, seed, excerpt_s):
        root, rel = ex.source.split("/", 1)
        wav, sr = audio.load(roots[root] / rel, offset_s=ex.start_s, max_seconds=excerpt_s)
        loud = audio.loudness(audio.to_mono(wav), sr)
        if math.isfinite(loud) and loud >= -40:
            chosen.append(ex)
        if len(chosen) == max_excerpts:
            break
    if not chosen:
        raise OptionError("no excerpt louder than -40 LUFS in the data folders")
    return chosen
