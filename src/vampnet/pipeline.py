"""The one flow every front end drives: audio -> codec tokens -> prompt mask -> coarse generation (windowed for
any length) -> coarse-to-fine (chunks batched) -> codec decode -> audio at the input's loudness, written at the
input's rate (see `VampResult.save`). `PipelineConfig` says how it runs (windows, chunks, precision, capture); its
fields are schema options, so every front end offers them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from . import audio
from . import precision as precision_mod
from .checkpoints import find_model_files
from .codec import Codec
from .controls import Control
from .devices import check_device
from .errors import CheckpointError, CodesFileError, OptionError
from .model import MaskedTransformer
from .model.lora import load_adapter
from .model_defaults import ModelDefaults, of_folders, of_source
from .pretrained import resolve
from .prompts import PromptConfig, seconds_to_frames
from .capture import MODES as CAPTURE_MODES
from .capture import CapturedSampler
from .sampling import SamplingConfig, generate_with_config, seeded_generator
from .schema import option
from .tokens import load_codes, save_codes

Progress = Callable[[str, int, int], None]  # (stage, done, total)

DEFAULT_C2F_SAMPLING = SamplingConfig(steps=2)  # the original app's coarse-to-fine settings


@dataclass(frozen=True)
class PipelineConfig:
    """How a pipeline runs its models: the coarse model's windows over long audio, the coarse-to-fine chunks and how
    many run at once, the precision the models compute in, and how the sampler runs. Each field is a schema option
    (vampnet.schema): the CLI's flags, the studio's controls and OSC's keys are made from them. A window's overlap
    must be shorter than the window; the pipeline checks that pair."""

    coarse_window_s: float = option(10.0, "the coarse model's context: longer audio is generated in windows this long",
                                    name="window", unit="s", minimum=0.1, slider=(1.0, 30.0), step=0.5)
    window_overlap_s: float = option(2.5, "how much consecutive windows overlap (each continues the one before)",
                                     name="overlap", unit="s", minimum=0.0, slider=(0.0, 5.0), step=0.1)
    c2f_chunk_s: float = option(3.0, "the fine codebooks are made in chunks of this length", name="c2f_chunk",
                                label="fine chunk", unit="s", minimum=0.1, slider=(0.5, 10.0), step=0.5)
    c2f_batch_size: int = option(16, "fine chunks made at once (more: faster on a GPU, more memory)",
                                 label="fine chunks at once", minimum=1, slider=(1, 64), step=1)
    precision: str = option("auto", "how the models compute: auto picks the fastest that stays within the "
                            "original's seed-to-seed spread on this machine (bf16 on CPUs with bf16 instructions); fp32 "
                            "gives the original's exact numbers; bf16 and int8 are faster where the hardware has them",
                            choices=precision_mod.PRECISIONS)
    capture: str = option("off", "how the sampler runs: off (eager, fastest on a CPU), static, compile "
                          "(torch.compile) or graph (CUDA graphs, CUDA only); all give the same tokens for a seed in "
                          "fp32", choices=("off", *CAPTURE_MODES))

    def __post_init__(self):
        if self.window_overlap_s < 0 or self.coarse_window_s <= 0 or self.c2f_chunk_s <= 0 or self.c2f_batch_size < 1:
            raise OptionError("window sizes must be positive and the overlap shorter than the window")
        precision_mod.check(self.precision)
        if self.capture != "off" and self.capture not in CAPTURE_MODES:
            raise OptionError(f"capture must be off or one of {', '.join(CAPTURE_MODES)}, got {self.capture!r}")


@dataclass
class Prepared:
    """An input signal as tokens, with its length at the codec rate, its loudness as given (all its channels, at
    its rate: what results are brought back to) and its rate and channels (what results are written as)."""

    codes: torch.Tensor  # (1, K, T)
    n_samples: int
    loudness: float
    source: audio.FileFormat | None = None


@dataclass
class VampResult:
    """A generated signal (at the codec rate and the input's loudness) with the tokens and mask that produced it,
    and what its input was (`source`: rate, channels, sample format where known), which its file defaults to."""

    audio: torch.Tensor  # (1, 1, samples) float32
    sample_rate: int
    codes: torch.Tensor  # (1, K, T) int64
    mask: torch.Tensor   # (1, K, T) bool, True = generated
    settings: dict = field(default_factory=dict)
    source: audio.FileFormat | None = None
    circular: bool = False  # a loop: resampled with its end before its start

    def save(self, path, options: audio.OutputOptions | None = None, *,
             source: audio.FileFormat | None = None) -> Path:
        """Write the result (WAV/FLAC/OGG/MP3 by extension) as `audio.output_format` says: by default at the rate of
        `source` (the input file's format, else the remembered one), mono, the input's 16/24-bit PCM else 24-bit."""
        fmt = audio.output_format(path, source or self.source or audio.FileFormat(self.sample_rate), options)
        return audio.save(path, self.audio, self.sample_rate, metadata=self.settings, fmt=fmt, circular=self.circular)


class Pipeline:
    """Codec + coarse transformer (+ optional coarse-to-fine transformer) and the flow between them."""

    def __init__(self, codec: Codec, coarse: MaskedTransformer | None = None, c2f: MaskedTransformer | None = None, *,
                 device: str | torch.device = "cpu", config: PipelineConfig | None = None,
                 defaults: ModelDefaults | None = None, **settings):
        """`config`: how it runs (PipelineConfig; default: its defaults); `settings`: PipelineConfig's fields by name
        (precision=..., coarse_window_s=...), which change `config`; `defaults`: the model's own prompt and sampling
        defaults (vampnet.model_defaults, from its card; default: none, the schema's), used where a call gives none."""
        config = replace(config or PipelineConfig(), **settings)
        if coarse is None and c2f is not None:
            raise CheckpointError("a coarse-to-fine model needs a coarse model beside it")
        if coarse is not None and coarse.n_conditioning_codebooks != 0:
            raise CheckpointError("the coarse model must have no conditioning codebooks (is it a coarse-to-fine model?)")
        # a coarse-to-fine model conditioned on fewer codebooks than the coarse model makes regenerates the ones
        # above its conditioning where the mask says generate, as the original does; it cannot invent missing ones
        if c2f is not None and c2f.n_conditioning_codebooks > coarse.n_codebooks:
            raise CheckpointError(f"the coarse-to-fine model is conditioned on {c2f.n_conditioning_codebooks} codebooks "
                                  f"but the coarse model makes only {coarse.n_codebooks}")
        if c2f is not None and c2f.n_codebooks < coarse.n_codebooks:
            raise CheckpointError(f"the coarse-to-fine model makes {c2f.n_codebooks} codebooks, fewer than the "
                                  f"coarse model's {coarse.n_codebooks}")
        n_codebooks = (c2f or coarse or codec).n_codebooks
        if n_codebooks > codec.n_codebooks:
            raise CheckpointError(f"the models use {n_codebooks} codebooks but the codec has {codec.n_codebooks}")
        if config.window_overlap_s >= config.coarse_window_s:
            raise OptionError("window sizes must be positive and the overlap shorter than the window")
        self.config = config
        self.device = check_device(device)
        # each model's mode ("auto": what this machine runs it fastest in, by its size); applied here, once; the
        # models are then used as they are
        chosen = self._choose(config.precision, codec, coarse, c2f)
        self.precisions = {part: mode for part, (mode, _) in chosen.items()}
        self.precision = self.precisions.get("coarse", self.precisions["codec"])  # the one results record
        self.precision_note = precision_mod.auto_note(chosen) or (
            precision_mod.bf16_note(self.device) if self.precision != "fp32" else None)
        self.codec = precision_mod.apply_to_codec(codec.to(self.device).eval(), self.precisions["codec"], self.device)
        self.coarse = (precision_mod.apply_to_transformer(coarse.to(self.device).eval(), self.precisions["coarse"])
                       if coarse is not None else None)
        self.c2f = (precision_mod.apply_to_transformer(c2f.to(self.device).eval(), self.precisions["c2f"])
                    if c2f is not None else None)
        self.n_codebooks = n_codebooks
        self.defaults = defaults or ModelDefaults()
        self.defaults.check_counts({"codebooks": n_codebooks})  # a card's codebook options within this model's
        # (a pipeline with only a codec serves encode/decode jobs)
        self.coarse_window = max(2, seconds_to_frames(config.coarse_window_s, self.frame_rate))
        self.window_overlap = min(self.coarse_window - 1, seconds_to_frames(config.window_overlap_s, self.frame_rate))
        self.c2f_chunk = max(1, seconds_to_frames(config.c2f_chunk_s, self.frame_rate))
        self.c2f_batch_size = config.c2f_batch_size
        # capture: "off" = the eager sampler (fastest on a CPU); "static" / "compile" / "graph" = the static-shape
        # sampler of vampnet.capture, as it is / through torch.compile / recorded as CUDA graphs (same tokens)
        self.capture = capture = config.capture
        self._captured = {part: CapturedSampler(model, capture) for part, model in (("coarse", self.coarse),
                          ("c2f", self.c2f)) if model is not None and capture != "off"}

    # --- construction ---------------------------------------------------------------------------------------
    def _choose(self, precision: str, codec, coarse, c2f) -> dict[str, tuple[str, str | None]]:
        """{part: (mode, why auto chose it)} for the codec and the transformers there are."""
        chosen = {"codec": precision_mod.choose(precision, self.device, None, codec_width=codec.config.decoder_dim)}
        for part, model in (("coarse", coarse), ("c2f", c2f)):
            if model is not None:
                chosen[part] = precision_mod.choose(precision, self.device, model.config.embedding_dim)
        return chosen

    def with_config(self, config: PipelineConfig) -> "Pipeline":
        """This pipeline's models run with another config (windows, chunks, capture); the precision must be the
        same, since the models were converted to it."""
        if config == self.config:
            return self
        chosen = self._choose(config.precision, self.codec, self.coarse, self.c2f)
        modes = {part: mode for part, (mode, _) in chosen.items()}
        if modes != self.precisions:  # "auto" is what it chose for these models
            raise OptionError(f"these models run in {self.precision}; load them again for {config.precision}")
        return Pipeline(self.codec, self.coarse, self.c2f, device=self.device, config=config, defaults=self.defaults)

    @classmethod
    def from_pretrained(cls, name=None, **options) -> "Pipeline":
        """A named model: None or "small" = the small model shipped inside the package (offline), "official" = the
        official weights fetched by `vampnet download`, a fine-tuned model's name (`vampnet finetune --name`), or a
        model folder. Options are `load`'s (explicit files win over the fine-tuned ones). The model's card sets its
        defaults (a fine-tuned model's: its base's, changed by its own card)."""
        source = resolve(name)
        return cls.load(source.base, **{"defaults": of_source(source), **source.load_options(), **options})

    @classmethod
    def load(cls, models=None, *, codec=None, coarse=None, c2f=None, lora=None, coarse_lora=None, c2f_lora=None,
             device="cpu", codec_cache: dict | None = None, **options) -> "Pipeline":
        """From a folder holding codec/coarse/c2f files (ours or official), or explicit paths (which win).

        `lora` is a folder of fine-tuned adapters (`coarse.lora.safetensors`, `c2f.lora.safetensors`, as written by
        `vampnet finetune`); `coarse_lora` / `c2f_lora` name single adapter files (ours or the original's).
        `codec_cache`: a dict shared between loads; a codec file already loaded for the same device and precision
        is reused from it rather than read again (models fine-tuned from one base share its codec). `options`:
        `config` (PipelineConfig) and its fields by name, as the constructor takes them, and `defaults`
        (ModelDefaults; default: the card.json of `models`, then of `lora`)."""
        files = find_model_files(models) if models is not None else {"codec": None, "coarse": None, "c2f": None}
        files.update({k: Path(v) for k, v in {"codec": codec, "coarse": coarse, "c2f": c2f}.items() if v is not None})
        if files["codec"] is None:
            raise CheckpointError("no codec given (give a model folder or --codec PATH)")
        defaults = options.pop("defaults", None) or of_folders(models, lora)
        config = replace(options.pop("config", None) or PipelineConfig(), **options)
        device = check_device(device)
        # the mode "auto" takes depends on the codec's size: a codec is cached under the precision asked for and
        # under the mode it runs in, so a request for that mode by name shares it too
        cache = codec_cache if codec_cache is not None else {}
        where = (str(Path(files["codec"]).resolve()), str(device))
        codec_model = cache.get((*where, config.precision))
        if codec_model is None:
            loaded = Codec.load(files["codec"], device)
            mode, _ = precision_mod.choose(config.precision, device, None, codec_width=loaded.config.decoder_dim)
            codec_model = cache.get((*where, mode)) or precision_mod.apply_to_codec(loaded, mode, device)
            cache[(*where, config.precision)] = cache[(*where, mode)] = codec_model
        adapters = {"coarse": coarse_lora, "c2f": c2f_lora}
        if lora is not None:
            if not Path(lora).is_dir():
                raise CheckpointError(f"LoRA folder not found: {lora}")
            for part in adapters:
                found = Path(lora) / f"{part}.lora.safetensors"
                adapters[part] = adapters[part] or (found if found.is_file() else None)
            if not any(adapters.values()):
                raise CheckpointError(f"{lora} holds no coarse.lora.safetensors or c2f.lora.safetensors")
        models = {}
        for part in ("coarse", "c2f"):
            if files[part] is None:
                if adapters[part] is not None:
                    raise CheckpointError(f"a {part} adapter was given but there is no {part} model")
                models[part] = None
                continue
            # each model is converted before the next is read, so at most one float32 model is in memory
            # beside the converted ones (the full-size models are 1.1-1.3 GB each in float32)
            model = MaskedTransformer.load(files[part], codec_model, device)
            if adapters[part] is not None:
                load_adapter(model, adapters[part])
            mode, _ = precision_mod.choose(config.precision, device, model.config.embedding_dim)
            models[part] = precision_mod.apply_to_transformer(model, mode)
        return cls(codec_model, models["coarse"], models["c2f"], device=device, config=config, defaults=defaults)

    def default_prompt(self) -> PromptConfig:
        """The prompt a vamp takes when none is given: the model card's defaults over the schema's."""
        return self.defaults.prompt()

    def default_sampling(self) -> SamplingConfig:
        """The coarse sampler's settings when none are given: the model card's defaults over the schema's."""
        return self.defaults.sampling()

    def default_c2f_sampling(self) -> SamplingConfig:
        """The coarse-to-fine sampler's when none are given: the original app's, drawing as the card's coarse sampler
        (as `options.sampling_configs` makes them; without a card, exactly DEFAULT_C2F_SAMPLING)."""
        return replace(DEFAULT_C2F_SAMPLING, draw=self.defaults.sampling().draw)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    # --- the steps ------------------------------------------------------------------------------------------
    def preprocess(self, wav: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, float]:
        """(1, C, N) at any rate -> ((1, 1, M) mono at the codec rate, loudness -24 LUFS, peak <= 1; input loudness)."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(0)
        if wav.dim() != 3 or wav.shape[0] != 1 or wav.shape[-1] == 0:
            raise OptionError(f"expected one non-empty signal shaped (1, channels, samples), got {tuple(wav.shape)}")
        wav = audio.resample(audio.to_mono(wav.float()), int(sample_rate), self.sample_rate)
        return audio.normalize_loudness(wav, self.sample_rate)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(1, 1, N) at the codec rate -> (1, K, T) codes of the codebooks the models use."""
        return self.codec.encode(wav.to(self.device))[:, : self.n_codebooks]

    def generate(self, codes: torch.Tensor, mask: torch.Tensor, sampling: SamplingConfig | None = None,
                 c2f_sampling: SamplingConfig | None = None, *, seed: int | None = None,
                 generator: torch.Generator | None = None, progress: Progress | None = None,
                 coarse_only: bool = False, control: Control | None = None) -> torch.Tensor:
        """Fill the masked tokens: coarse codebooks by windows, then the fine codebooks by batched chunks
        (`coarse_only`: the fine codebooks are returned as given, masked or not). `generator` may be a list of one
        generator per batch row: each row then gets the tokens it would get alone with its generator. `control`
        (vampnet.controls, one per frame of the codes, for every row) steers the coarse model where it is present,
        followed with `sampling.guidance`; the rest is free."""
        if self.coarse is None:
            raise CheckpointError("this pipeline has no coarse model, so it cannot generate (only encode/decode)")
        sampling = sampling or self.default_sampling()
        c2f_sampling = c2f_sampling or self.default_c2f_sampling()
        if codes.shape[1] != self.n_codebooks or mask.shape != codes.shape:
            raise OptionError(f"codes and mask must be shaped (B, {self.n_codebooks}, T)")
        generator = generator or seeded_generator(seed)
        if not isinstance(generator, torch.Generator) and len(generator) != codes.shape[0]:
            raise OptionError(f"{len(generator)} generators for a batch of {codes.shape[0]} rows")
        Kc = self.coarse.n_codebooks
        controls = None if control is None else self._control_rows(control, codes.shape[0], codes.shape[-1])
        coarse = self._generate_coarse(codes[:, :Kc], mask[:, :Kc], sampling, generator, progress, controls)
        coarse = torch.cat([coarse, codes[:, Kc:]], 1)  # without a c2f model there are no fine codebooks
        if self.c2f is None or coarse_only:
            return coarse
        return self._coarse_to_fine(coarse, mask, c2f_sampling, generator, progress)

    def _control_rows(self, control: Control, rows: int, frames: int):
        """A Control -> (features (rows, T, C), present (rows, T)) for the coarse model, checked against it."""
        if not isinstance(control, Control):
            raise OptionError(f"a control must be a vampnet.controls.Control, got {type(control).__name__}")
        if not getattr(self.coarse, "n_controls", 0):
            raise OptionError("this model was not trained with controls (fine-tune one: vampnet finetune --control loudness)")
        if len(control.names) != self.coarse.n_controls or control.n_frames != frames:
            raise OptionError(f"the control has {len(control.names)} channel(s) over {control.n_frames} frames; the "
                              f"model takes {self.coarse.n_controls} and the codes have {frames} frames")
        features = control.features().to(self.device)
        return features.expand(rows, -1, -1), control.present.to(self.device).expand(rows, -1)

    def _generate_coarse(self, codes, mask, sampling, generator, progress, controls=None):
        """Windows of the model's context; each keeps what earlier windows fixed, so no seams appear.

        A window commits its tokens up to half an overlap before its end (the rest had too little look-ahead);
        the next window starts an overlap before that end, so it sees committed tokens on its left."""
        T, W, O = codes.shape[-1], self.coarse_window, self.window_overlap
        codes, todo = codes.clone(), mask.clone()
        starts = window_starts(T, W, O)
        for n, start in enumerate(starts):
            end = min(start + W, T)
            last = n == len(starts) - 1
            commit_end = end if last else end - O // 2
            report = None if progress is None else (lambda i, s, n=n: progress("coarse", n * s + i, len(starts) * s))
            if not todo[..., start:end].any():  # nothing to generate here (e.g. the kept part of a continuation)
                if report:
                    report(sampling.steps, sampling.steps)
                continue
            streams = generator if isinstance(generator, torch.Generator) else [(g, 1) for g in generator]
            window = None if controls is None else tuple(c[:, start:end] for c in controls)  # the window's control
            out = self._sample("coarse", codes[..., start:end], todo[..., start:end], sampling, streams, report, window)
            codes[..., start:commit_end] = out[..., : commit_end - start]
            todo[..., start:commit_end] = False
        return codes

    def _coarse_to_fine(self, codes, mask, sampling, generator, progress):
        """All chunks of `c2f_chunk` frames go through the model as one batch (in groups of c2f_batch_size).

        Random numbers come in blocks of chunks, as a batch of one row takes them: one generator for the batch
        is read in groups of c2f_batch_size chunks, a generator per row in groups of that row's chunks; blocks
        never split, and consecutive blocks share a model call while they fit in c2f_batch_size."""
        B, K, T = codes.shape
        L = self.c2f_chunk
        n = math.ceil(T / L)
        pad = n * L - T
        codes = torch.nn.functional.pad(codes, (0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad), value=True)
        chunks = lambda x: x.view(B, K, n, L).permute(0, 2, 1, 3).reshape(B * n, K, L)
        c, m = chunks(codes), chunks(mask)
        size = self.c2f_batch_size
        if isinstance(generator, torch.Generator):
            blocks = [(generator, min(size, B * n - i)) for i in range(0, B * n, size)]
        else:
            blocks = [(g, min(size, n - i)) for g in generator for i in range(0, n, size)]
        calls = [[blocks[0]]]
        for block in blocks[1:]:
            if sum(rows for _, rows in calls[-1]) + block[1] <= size:
                calls[-1].append(block)
            else:
                calls.append([block])
        outs, first = [], 0
        for j, streams in enumerate(calls):
            report = None if progress is None else (lambda d, s, j=j: progress("coarse-to-fine", j * s + d, len(calls) * s))
            rows = sum(r for _, r in streams)
            outs.append(self._sample("c2f", c[first:first + rows], m[first:first + rows], sampling, streams, report))
            first += rows
        out = torch.cat(outs).view(B, n, K, L).permute(0, 2, 1, 3).reshape(B, K, n * L)
        return out[..., :T]

    def _sample(self, part, codes, mask, sampling, streams, progress, controls=None):
        """One sampling job of the coarse or coarse-to-fine model, through the captured sampler when one is on
        (it implements the fast draw without controls; the original draw and controlled jobs run eagerly).
        `controls`: (features, present) of a controlled coarse job."""
        captured = self._captured.get(part)
        if captured is not None and sampling.draw == "fast" and controls is None:
            return captured.generate(codes, mask, sampling, generator=streams, progress=progress)
        features, present = controls if controls is not None else (None, None)
        return generate_with_config(getattr(self, part), codes, mask, sampling, generator=streams, progress=progress,
                                    controls=features, control_mask=present)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """(1, K, T) codes -> (1, 1, samples) at the codec rate, cropped to n_samples when given."""
        wav = self.codec.decode(codes.to(self.device)).float().cpu()
        return wav[..., :n_samples] if n_samples is not None else wav

    # --- the whole job --------------------------------------------------------------------------------------
    def prepare(self, wav: torch.Tensor, sample_rate: int, progress: Progress | None = None) -> "Prepared":
        """Preprocess and encode a signal: its tokens plus what rendering needs (length, loudness)."""
        x, mono_loudness = self.preprocess(wav, sample_rate)
        if progress:
            progress("encode", 0, 1)
        codes = self.encode(x)
        if progress:
            progress("encode", 1, 1)
        wav = wav if wav.dim() == 3 else wav.unsqueeze(0)
        channels = wav.shape[1]
        # results get the loudness a meter reads on the input as given (a stereo file's, not its mono mix's)
        same = channels == 1 and int(sample_rate) == self.sample_rate
        loudness = mono_loudness if same or channels > len(audio.CHANNEL_WEIGHTS) else audio.loudness(wav.float(), sample_rate)
        return Prepared(codes, x.shape[-1], loudness, audio.FileFormat(int(sample_rate), channels))

    def render(self, codes: torch.Tensor, mask: torch.Tensor, *, n_samples: int | None, loudness: float,
               sampling: SamplingConfig | None = None, c2f_sampling: SamplingConfig | None = None,
               seed: int | None = None, generator: torch.Generator | None = None, progress: Progress | None = None,
               settings: dict | None = None, source: audio.FileFormat | None = None,
               control: Control | None = None) -> VampResult:
        """Generate the masked tokens, decode, and bring the result to `loudness` (LUFS); `source`: the input's
        format (Prepared.source), which the result's file defaults to; `control`: see `generate`."""
        sampling = sampling or self.default_sampling()
        c2f_sampling = c2f_sampling or self.default_c2f_sampling()
        generator = generator or seeded_generator(seed)
        out = self.generate(codes, mask, sampling, c2f_sampling, generator=generator, progress=progress, control=control)
        settings = settings if control is None else {**(settings or {}), "control": control_settings(control, sampling)}
        return self._finish(out, mask, n_samples, loudness, sampling, c2f_sampling, settings, progress, source)

    def _finish(self, out, mask, n_samples, loudness, sampling, c2f_sampling, settings, progress,
                source=None) -> VampResult:
        """Decode generated tokens, bring them to `loudness` and gather what made them."""
        if progress:
            progress("decode", 0, 1)
        y = audio.match_loudness(self.decode(out, n_samples), self.sample_rate, loudness)
        if progress:
            progress("decode", 1, 1)
        mixed = {"precisions": dict(self.precisions)} if len(set(self.precisions.values())) > 1 else {}
        info = {"precision": self.precision, **mixed, "sampling": sampling.to_dict(), "c2f_sampling": c2f_sampling.to_dict(),
                "generated_fraction": float(mask.float().mean()), **(settings or {})}
        return VampResult(y, self.sample_rate, out.cpu(), mask.cpu(), info, source)

    def vamp(self, wav: torch.Tensor, sample_rate: int, *, prompt: PromptConfig | None = None,
             sampling: SamplingConfig | None = None, c2f_sampling: SamplingConfig | None = None,
             seed: int | None = None, progress: Progress | None = None, control: Control | None = None) -> VampResult:
        """Vamp one signal: preprocess, encode, mask, generate, decode, restore the input's loudness."""
        return self.variations(wav, sample_rate, 1, prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling,
                               seed=seed, progress=progress, control=control)[0]

    def variations(self, wav: torch.Tensor, sample_rate: int, n: int, *, prompt: PromptConfig | None = None,
                   sampling: SamplingConfig | None = None, c2f_sampling: SamplingConfig | None = None,
                   seed: int | None = None, progress: Progress | None = None,
                   control: Control | None = None) -> list[VampResult]:
        """`n` vamps of one signal generated as one batch: variation i is `vamp(..., seed=seed + i)`, token for
        token (each batch row draws from its own seed's generator), at about the cost of one vamp on a GPU.
        In int8 on a CPU the activations are quantised with one scale per matrix product, shared by the batch's
        rows, so there a variation is an equally good vamp but not the same tokens as its single vamp."""
        if not isinstance(n, int) or n < 1:
            raise OptionError(f"the number of variations must be a positive integer, got {n!r}")
        prompt = prompt or self.default_prompt()
        seed = new_seed() if seed is None else seed
        generators = [seeded_generator(seed + i) for i in range(n)]
        prepared = self.prepare(wav, sample_rate, progress)
        masks = [prompt.build(prepared.codes, self.frame_rate, g).to(prepared.codes.device) for g in generators]
        codes, mask = prepared.codes.expand(n, -1, -1), torch.cat(masks)
        sampling = sampling or self.default_sampling()
        c2f_sampling = c2f_sampling or self.default_c2f_sampling()
        out = self.generate(codes, mask, sampling, c2f_sampling, generator=generators if n > 1 else generators[0],
                            progress=progress, control=control)  # (a control spans the input's frames)
        results = []
        for i in range(n):
            settings = {"seed": seed + i, "prompt": prompt.to_dict()}
            if control is not None:
                settings["control"] = control_settings(control, sampling)
            results.append(self._finish(out[i:i + 1], mask[i:i + 1], prepared.n_samples, prepared.loudness, sampling,
                                        c2f_sampling, settings, progress, prepared.source))
        return results

    def encode_file(self, src, dst) -> torch.Tensor:
        """Audio file -> token file (.npz) holding the codes and what decoding needs (length, loudness, and the
        input's rate, channels and sample format, which the decoded file defaults to)."""
        wav, sr = audio.load(src)
        prepared = self.prepare(wav, sr)
        codes = prepared.codes.cpu()
        save_codes(dst, codes, sample_rate=self.sample_rate, hop_length=self.codec.hop_length,
                   codebook_size=self.codec.codebook_size, n_samples=prepared.n_samples, loudness=prepared.loudness,
                   source=vars(audio.file_format(src)))
        return codes

    def decode_file(self, src, dst, options: audio.OutputOptions | None = None) -> Path:
        """Token file -> audio file at the original loudness, written as `VampResult.save` writes (the input's rate
        when the token file names it, else the codec's)."""
        codes, meta = load_codes(src)
        if (meta["sample_rate"], meta["hop_length"], meta["codebook_size"]) != (
                self.sample_rate, self.codec.hop_length, self.codec.codebook_size) or codes.shape[1] > self.codec.n_codebooks:
            raise CodesFileError(f"{src} was made by another codec ({meta['sample_rate']} Hz, hop {meta['hop_length']}, "
                                 f"{codes.shape[1]} x {meta['codebook_size']} codes)")
        try:
            found = meta.get("source") or {"sample_rate": self.sample_rate}
            source = audio.FileFormat(int(found["sample_rate"]), int(found.get("channels", 1)), found.get("subtype"))
        except (TypeError, KeyError, ValueError, AttributeError):
            raise CodesFileError(f"{src} names its input's format wrongly") from None
        fmt = audio.output_format(dst, source, options)
        wav = audio.match_loudness(self.decode(codes, meta["n_samples"]), self.sample_rate, meta["loudness"])
        return audio.save(dst, wav, self.sample_rate, fmt=fmt)

    def vamp_file(self, src, dst, *, output: audio.OutputOptions | None = None, **kwargs) -> VampResult:
        """Read `src`, vamp it, write `dst` atomically (WAV/FLAC/OGG/MP3 by extension; `output`: rate, channels,
        bit depth, by default the input's rate and sample format, mono)."""
        source = audio.file_format(src)
        audio.output_format(dst, source, output)  # a format the file cannot hold fails before the work
        wav, sr = audio.load(src)
        result = self.vamp(wav, sr, **kwargs)
        result.save(dst, output, source=source)
        return result


def control_settings(control: Control, sampling: SamplingConfig) -> dict:
    """What a result records of the control that steered it."""
    return {"names": list(control.names), "guidance": sampling.guidance,
            "present_frames": int(control.present.sum()), "frames": control.n_frames}


def new_seed() -> int:
    """A fresh random seed, reported with results so any of them can be reproduced."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def window_starts(T: int, W: int, O: int) -> list[int]:
    """Start frames of the coarse windows over T frames (window W, overlap O); the last window ends at T."""
    if T <= W:
        return [0]
    starts, start = [0], 0
    while start + W < T:
        start = min(start + W - O, T - W)
        starts.append(start)
    return starts
