"""The studio's jobs, apart from its gradio page (vampnet.ui): loaded pipelines (models loaded once per precision),
input checks, the mapping from the page's `Settings` to prompt and sampling configs, the preview of a mode's mask,
running a job through the mode registry, and the private folder its results go to. Ranges that depend on the model
(its codebooks) are checked against the model the job uses, and errors name the controls by their labels, not by
the command line's flags. Each model's own defaults (its card's, `model_defaults`) are what the front ends start
its controls at and what a setting not sent takes. No gradio here: OSC, unloop and tests drive a Studio directly."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import audio, effects, options
from . import mode_registry as registry
from .control_options import ControlOptions, clip_control
from .controls import Control, loudness_from_audio, pearson
from .devices import check_device
from .envelopes import plot_envelopes
from .errors import AudioError, Cancelled, OptionError
from .model_defaults import ModelDefaults, of_model
from .pipeline import Pipeline, PipelineConfig, VampResult
from .pretrained import available_models
from .prompts import PromptConfig, seconds_to_frames
from .sampling import SamplingConfig
from .schema import check_value, config_values, for_model, in_labels, options_of

if TYPE_CHECKING:  # the page's settings; only their fields are read here
    from .ui import Settings


@dataclass
class StudioResult:
    """What one Generate produced: audio files (one per variation), files to download, the settings used, and
    the results themselves (tokens and the mask of what was generated)."""

    audio: list[Path]
    downloads: list[Path]
    settings: dict
    results: list[VampResult] = field(default_factory=list)


class Studio:
    """The UI's jobs without gradio: loaded pipelines (one per model and precision), input checks, and the
    mapping from Settings to the pipeline's prompt/sampling configs and modes. Results go to a private folder
    whose files older than `keep_s` are removed as new jobs arrive (and all of it by `close`)."""

    def __init__(self, models: str | None = None, *, device: str = "cpu", max_seconds: float = 120.0,
                 keep_s: float = 3600.0, pipeline: Pipeline | None = None):
        check_device(device)  # an absent device is refused at start, not at the first job
        self.default_model = models or "small"
        self.device, self.max_seconds, self.keep_s = device, max_seconds, keep_s
        self._pipelines: dict[tuple[str, str], Pipeline] = {}  # (model, precision): its models, loaded
        self._configured: dict[tuple[str, PipelineConfig], Pipeline] = {}  # those models under other settings
        self._codecs: dict = {}  # loaded codecs by file, shared by the models that use the same one
        if pipeline is not None:  # a pipeline given serves its precision as asked (e.g. auto) and as it runs
            for precision in {pipeline.config.precision, pipeline.precision}:
                self._pipelines[(self.default_model, precision)] = pipeline
        self._lock = threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="vampnet-ui-"))

    # --- pieces -----------------------------------------------------------------------------------------------
    def pipeline(self, model: str | None, settings: PipelineConfig | str | None = None) -> Pipeline:
        """The pipeline of `model`: its models loaded once per precision;
        `settings` is a precision, or a whole PipelineConfig (windows, chunks, capture too: the loaded models run
        under it); None: the default precision."""
        config = settings if isinstance(settings, PipelineConfig) else PipelineConfig(
            **({} if settings is None else {"precision": settings}))
        name = (model or self.default_model).strip()
        with self._lock:  # jobs run in parallel threads; a model is loaded once
            if (name, config.precision) not in self._pipelines:
                self._pipelines[(name, config.precision)] = Pipeline.from_pretrained(
                    None if name in ("small", "") else name, device=self.device, precision=config.precision,
                    codec_cache=self._codecs)
            loaded = self._pipelines[(name, config.precision)]
            if not isinstance(settings, PipelineConfig):
                return loaded
            if (name, config) not in self._configured:
                self._configured[(name, config)] = loaded.with_config(config)
            return self._configured[(name, config)]

    def model_defaults(self, model: str | None) -> ModelDefaults:
        """The defaults `model`'s card sets (vampnet.model_defaults): a loaded pipeline's, else read from its card
        (without loading the model)."""
        name = (model or self.default_model).strip()
        with self._lock:
            loaded = next((pipe for (n, _), pipe in self._pipelines.items() if n == name), None)
        return loaded.defaults if loaded is not None else of_model(None if name in ("small", "") else name)

    def models(self) -> list[str]:
        """The model menu: the shipped, official (when downloaded) and fine-tuned models, and the default one."""
        names = available_models()
        return names if self.default_model in names else [self.default_model, *names]

    def read_input(self, path) -> tuple[torch.Tensor, int]:
        if not path:
            raise AudioError("upload or record some audio first")
        wav, sr = audio.load(path, max_seconds=self.max_seconds + 1)  # a long file is not decoded whole
        seconds = wav.shape[-1] / sr
        if seconds > self.max_seconds:
            raise AudioError(f"the clip is longer than {self.max_seconds:g} s, the most this studio takes")
        return wav, sr  # as short as the command line takes (an empty file is refused by audio.load)

    def model_counts(self, model: str | None, precision: str | None = None) -> dict:
        """The counts of `model` that cap some options' ranges (schema `model_max`): its codebooks."""
        return _counts(self.pipeline(model, precision))

    def prompt(self, s: Settings, wav=None, sr: int | None = None):
        """The prompt of a vamp or loop (beats are tracked in `wav`). A preset takes the controls it leaves to the
        user, and those it sets where they are not at the model's defaults (as the command line's flags change a
        preset); "custom" takes every prompt control."""
        fields = config_values(PromptConfig, s.to_dict())
        if s.preset != "custom":
            defaults = self.model_defaults(s.model).prompt()
            fields = {k: v for k, v in fields.items() if k in options.KEPT_BY_PRESETS or v != getattr(defaults, k)}
        prompt, _ = options.vamp_prompt(None if s.preset == "custom" else s.preset, wav=wav, sample_rate=sr,
                                        beats=s.beats, downbeats=s.downbeats, onsets=s.onsets, **fields)
        return prompt

    @staticmethod
    def sampling(s: Settings) -> tuple[SamplingConfig, SamplingConfig]:
        return options.sampling_configs(**config_values(SamplingConfig, s.to_dict()))

    @staticmethod
    def pipeline_config(s: Settings) -> PipelineConfig:
        return PipelineConfig(**config_values(PipelineConfig, s.to_dict()))

    @staticmethod
    def input_effects(s: Settings) -> effects.InputEffects:
        return effects.InputEffects.from_values(s.to_dict())

    @staticmethod
    def control_options(s: Settings) -> ControlOptions:
        return ControlOptions.from_values(s.to_dict())

    def control(self, s: Settings, pipe: Pipeline, wav, sr: int) -> Control | None:
        """The loudness control the settings give for this clip (None: none); errors name the page's controls."""
        try:
            return clip_control(pipe, wav, sr, self.control_options(s))
        except OptionError as e:
            raise OptionError(in_labels(str(e), options_of(ControlOptions))) from None

    def follow_report(self, control: Control, results: list[VampResult], pipe: Pipeline) -> dict:
        """How closely the results followed the control: each one's Pearson correlation of the requested and the
        produced loudness (dB per frame, over the controlled frames), and a plot of the first one's."""
        present = control.present.numpy()
        produced = [loudness_from_audio(r.audio, r.sample_rate, pipe.codec).values[:control.n_frames, 0].numpy()
                    for r in results]
        wanted = control.values[:, 0].numpy()
        rs = []
        for p in produced:
            n = min(p.size, control.n_frames)
            r = pearson(wanted[:n][present[:n]], p[:n][present[:n]])
            rs.append(None if r != r else round(r, 3))  # (nan: a flat envelope has no correlation)
        shown = "undefined (a flat envelope)" if rs[0] is None else f"{rs[0]:.2f}"
        plot = plot_envelopes(control, produced[0], pipe.frame_rate, self._new_file("loudness", ".png"),
                              f"loudness: requested and produced (Pearson r = {shown})")
        return {"pearson": rs, "plot": str(plot)}

    # --- preview ----------------------------------------------------------------------------------------------
    def preview(self, path, s: Settings) -> Path:
        """A PNG: the input's spectrogram above the mask the settings make over its token grid."""
        with _named_as_controls(s.mode):
            return self._preview(path, s)

    def _preview(self, path, s: Settings) -> Path:
        wav, sr = self.read_input(path)
        pipe = self.pipeline(s.model, self.pipeline_config(s))
        self.check_for_model(s, pipe)
        mono = audio.to_mono(wav)
        frames = max(1, seconds_to_frames(mono.shape[-1] / sr, pipe.frame_rate))
        grid = torch.zeros(1, pipe.n_codebooks, frames, dtype=torch.long)
        mask, title = self.preview_mask(grid, s, pipe.frame_rate, mono, sr)
        out = self._new_file("preview", ".png")
        _plot_preview(mono[0, 0] if mono.dim() == 3 else mono[0], sr, mask[0], pipe.frame_rate, title, out)
        return out

    def preview_mask(self, grid, s: Settings, frame_rate: float, wav=None, sr=None) -> tuple[torch.Tensor, str]:
        """The mask the settings' mode makes over `grid` (the clip's token grid), and a title saying what it is."""
        mode = registry.mode(s.mode)
        prompt = self.prompt(s, wav, sr) if mode.studio_prompt else None
        return mode.preview(mode.options_from(s.to_dict()), grid, frame_rate, prompt, torch.Generator().manual_seed(0))

    # --- generation -------------------------------------------------------------------------------------------
    def generate(self, path, s: Settings, progress=None, cancel: threading.Event | None = None) -> StudioResult:
        """Run the settings' mode on the clip at `path`. Setting `cancel` stops the job at its next sampling step
        (it raises Cancelled)."""
        with _named_as_controls(s.mode):
            return self._generate(path, s, progress, cancel)

    def _generate(self, path, s: Settings, progress, cancel) -> StudioResult:
        started = time.time()
        self.sweep()
        if cancel is not None:
            if cancel.is_set():
                raise Cancelled("the job was cancelled")
            progress = _stoppable(progress, cancel)
        wav, sr = self.read_input(path)
        wav = effects.apply(self.input_effects(s), wav, sr)  # before encoding, as upstream's pitch shift
        source, suffix = audio.file_format(path), f".{s.file_type}"
        audio.output_format(f"result{suffix}", source, s.output())  # a format the file cannot hold fails first
        pipe = self.pipeline(s.model, self.pipeline_config(s))
        self.check_for_model(s, pipe)
        sampling, c2f_sampling = self.sampling(s)
        seed = options.seed_or_new(s.seed)
        mode = registry.mode(s.mode)
        control = self.control(s, pipe, wav, sr)
        mode.check_control(control)
        outcome = mode.run(registry.Job(
            pipe, wav, sr, mode.options_from(s.to_dict()), prompt=self.prompt(s, wav, sr) if mode.studio_prompt else None,
            sampling=sampling, c2f_sampling=c2f_sampling, seed=seed, variations=int(s.variations), progress=progress,
            output_rate=s.output().sample_rate or source.sample_rate,  # loops made at the rate written: exact
            new_file=self._new_file, control=control))
        results, downloads = outcome.results, list(outcome.files)
        if outcome.chain is not None:  # a loop's variations chained, to download beside them
            downloads.insert(0, outcome.chain.save_chain(self._new_file("loop-chain", suffix), s.output(), source=source))
        files = []
        for i, r in enumerate(results):
            r.settings.update({"pitch_shift": s.pitch_shift} if s.pitch_shift else {})  # the file says it was shifted
            f = self._new_file(f"{s.mode}-{seed + i}", suffix)
            r.save(f, s.output(), source=source)
            files.append(f)
        settings = {**s.to_dict(), "seed": seed, "seeds": [seed + i for i in range(len(files))],
                    "precision_used": pipe.precision,  # what `precision` (e.g. auto) ran as
                    **({"precision_chosen": pipe.precision_note} if pipe.precision_note else {}),
                    "results": [r.settings for r in results],
                    "timing": {"started": round(started, 3), "seconds": round(time.time() - started, 3)}}
        if control is not None:  # how closely it was followed, with a plot (the page shows it)
            settings["loudness_follow"] = self.follow_report(control, results, pipe)
            downloads.append(Path(settings["loudness_follow"]["plot"]))
        return StudioResult(files, files + downloads, settings, list(results))

    @staticmethod
    def check_for_model(s: Settings, pipe: Pipeline) -> None:
        """Options whose range the model sets (its codebooks) checked against `pipe`'s model, as the page's sliders
        show them; an OptionError naming the control otherwise."""
        mode = registry.mode(s.mode)
        counts, values = _counts(pipe), s.to_dict()
        for opt in (*(options_of(PromptConfig) if mode.studio_prompt else ()), *options_of(mode.options)):
            if opt.model_max and values.get(opt.name) is not None:
                check_value(for_model(opt, counts), values[opt.name])

    # --- housekeeping -----------------------------------------------------------------------------------------
    def _new_file(self, stem: str, suffix: str) -> Path:
        return Path(tempfile.mkstemp(prefix=f"{stem}-", suffix=suffix, dir=self.folder)[1])

    def sweep(self) -> None:
        """Remove result files older than keep_s (gradio keeps its own copies of what it served)."""
        cutoff = time.time() - self.keep_s
        for f in self.folder.glob("*"):
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except OSError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _counts(pipe: Pipeline) -> dict:
    return {"codebooks": pipe.n_codebooks}


@contextlib.contextmanager
def _named_as_controls(mode_name: str):
    """Errors written for the command line (a mode's `--codebooks`) name the mode's controls by their labels."""
    try:
        yield
    except OptionError as e:
        mode = registry.MODES.get(mode_name)
        shown = in_labels(str(e), options_of(mode.options, mode.name)) if mode else str(e)
        if shown == str(e):
            raise
        raise OptionError(shown) from None


def _stoppable(progress, cancel: threading.Event):
    def report(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("the job was cancelled")
        if progress is not None:
            progress(stage, done, total)
    return report


def _plot_preview(wav: torch.Tensor, sr: int, mask: torch.Tensor, frame_rate: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    seconds = wav.shape[-1] / sr
    n_fft = 1024
    spec = torch.stft(wav.float(), n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True).abs()
    ax1.imshow(20 * torch.log10(spec + 1e-5).numpy(), origin="lower", aspect="auto", cmap="magma",
               extent=(0, seconds, 0, sr / 2000), vmin=-80)
    ax1.set_ylabel("kHz")
    ax1.set_title("input spectrogram")
    K, T = mask.shape
    ax2.imshow(mask.float().numpy(), origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1.4,
               extent=(0, T / frame_rate, -0.5, K - 0.5), interpolation="nearest")
    ax2.set_ylabel("codebook")
    ax2.set_xlabel("seconds")
    ax2.set_title(f"mask (dark = generated, light = kept): {title}")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
