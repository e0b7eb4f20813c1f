"""The web UI (`vampnet ui`): a gradio studio over the one Pipeline and the musical modes.

`Studio` turns the UI's settings into prompt and sampling configs and calls `Pipeline` / `vampnet.modes`, so
it holds no model logic and is testable without a browser; `build_app` lays out the gradio page around it
and `launch` serves it through gradio's queue. Every endpoint is also an API (gradio client): `/generate`
and `/preview`, with the parameters named as in `Settings`. The model menu lists the shipped, official and
fine-tuned models (`vampnet.pretrained.available_models`); models share a loaded codec when their files do."""
from __future__ import annotations

import functools
import math
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import audio
from .errors import AudioError, Cancelled, OptionError, VampNetError
from .pipeline import Pipeline, VampResult
from .precision import PRECISIONS
from .pretrained import available_models
from .prompts import PromptConfig, seconds_to_frames
from .sampling import DRAWS, SamplingConfig

MODES = ("vamp", "loop", "continue", "inpaint", "compress")
PRESET_CHOICES = ("custom", "subtle", "variation", "wild")
MAX_VARIATIONS = 4


@dataclass(frozen=True)
class Settings:
    """Everything the studio's controls set (the API's parameters have these names and defaults)."""

    mode: str = "vamp"
    preset: str = "custom"
    periodic: int = 7
    periodic_width: int = 1
    upper_codebooks: int = 3
    beats: bool = False
    downbeats: bool = False
    onsets: bool = False
    beat_before: float = 0.0
    beat_after: float = 0.02
    prefix: float = 0.0
    suffix: float = 0.0
    dropout: float = 0.0
    ranges: str = "1.0-2.0"
    continue_seconds: float = 5.0
    loop_seconds: float = 0.0
    compress_codebooks: int = 4
    compress_period: int = 1
    steps: int = 36
    temperature: float = 1.0
    mask_temperature: float = 10.5
    top_p: float = 0.0
    typical: bool = False
    seed: int = -1
    variations: int = 1
    draw: str = "fast"
    model: str = "small"
    precision: str = "fp32"

    def __post_init__(self):
        for name, choices in (("mode", MODES), ("preset", PRESET_CHOICES), ("draw", DRAWS), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise OptionError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not 1 <= int(self.variations) <= MAX_VARIATIONS:
            raise OptionError(f"variations must be 1 to {MAX_VARIATIONS}")

    @classmethod
    def from_values(cls, values: dict) -> "Settings":
        """From UI/API values (numbers arrive as floats; unknown keys are ignored, missing ones default)."""
        out = {}
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                value = values[f.name]
                try:
                    out[f.name] = (int(value) if f.type == "int" else float(value) if f.type == "float"
                                   else _to_bool(value) if f.type == "bool" else value)
                except (TypeError, ValueError):
                    kind = {"int": "a whole number", "float": "a number", "bool": "true or false"}[f.type]
                    raise OptionError(f"{f.name} must be {kind}, got {value!r}") from None
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)


def _to_bool(value) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(value)
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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
        self.default_model = models or "small"
        self.device, self.max_seconds, self.keep_s = device, max_seconds, keep_s
        self._pipelines: dict[tuple[str, str], Pipeline] = {}
        self._codecs: dict = {}  # loaded codecs by file, shared by the models that use the same one
        if pipeline is not None:
            self._pipelines[(self.default_model, pipeline.precision)] = pipeline
        self._lock = threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="vampnet-ui-"))

    # --- pieces -----------------------------------------------------------------------------------------------
    def pipeline(self, model: str | None, precision: str) -> Pipeline:
        key = ((model or self.default_model).strip(), precision)
        with self._lock:  # jobs run in parallel threads; a model is loaded once
            if key not in self._pipelines:
                name = None if key[0] in ("small", "") else key[0]
                self._pipelines[key] = Pipeline.from_pretrained(name, device=self.device, precision=precision,
                                                                codec_cache=self._codecs)
            return self._pipelines[key]

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
        if seconds < 0.25:
            raise AudioError(f"the clip is only {seconds:.2f} s long; give at least 0.25 s")
        return wav, sr

    def prompt(self, s: Settings, wav=None, sr: int | None = None) -> PromptConfig:
        keep_times = ()
        if (s.beats or s.downbeats or s.onsets) and wav is not None:
            from .beats import prompt_times

            keep_times, _ = prompt_times(wav, sr, beats=s.beats, downbeats=s.downbeats, onsets=s.onsets)
        beat_prompt = dict(keep_times_s=tuple(keep_times), keep_before_s=s.beat_before, keep_after_s=s.beat_after)
        if s.preset != "custom":
            from .modes import preset

            return preset(s.preset, prefix_s=s.prefix, suffix_s=s.suffix, **beat_prompt)
        return PromptConfig(periodic_prompt=s.periodic, periodic_width=s.periodic_width, prefix_s=s.prefix,
                            suffix_s=s.suffix, upper_codebook_mask=s.upper_codebooks, dropout=s.dropout,
                            **beat_prompt)

    @staticmethod
    def sampling(s: Settings) -> tuple[SamplingConfig, SamplingConfig]:
        return (SamplingConfig(steps=s.steps, temperature=s.temperature, mask_temperature=s.mask_temperature,
                               top_p=s.top_p if s.top_p > 0 else None, typical_filtering=s.typical, draw=s.draw),
                SamplingConfig(steps=2, draw=s.draw))

    # --- preview ----------------------------------------------------------------------------------------------
    def preview(self, path, s: Settings) -> Path:
        """A PNG: the input's spectrogram above the mask the settings make over its token grid."""
        wav, sr = self.read_input(path)
        pipe = self.pipeline(s.model, s.precision)
        mono = audio.to_mono(wav)
        T = max(1, math.ceil(mono.shape[-1] / sr * pipe.frame_rate))
        grid = torch.zeros(1, pipe.n_codebooks, T, dtype=torch.long)
        mask, title = self._mask(grid, s, pipe, mono, sr)
        out = self._new_file("preview", ".png")
        _plot_preview(mono[0, 0] if mono.dim() == 3 else mono[0], sr, mask[0], pipe.frame_rate, title, out)
        return out

    def _mask(self, grid, s: Settings, pipe: Pipeline, wav, sr) -> tuple[torch.Tensor, str]:
        if s.mode == "compress":
            from .modes import kept_mask

            return ~kept_mask(grid.shape, s.compress_codebooks, s.compress_period), \
                f"compress: keep {s.compress_codebooks} codebooks every {s.compress_period} frame(s)"
        if s.mode == "continue":
            from .modes import continuation_grid

            _, mask = continuation_grid(grid, 0, seconds_to_frames(s.continue_seconds, pipe.frame_rate))
            return mask, f"continue: {s.continue_seconds:g} s after the clip"
        if s.mode == "inpaint":
            from .modes import inpaint_mask

            return inpaint_mask(grid, parse_ranges(s.ranges), pipe.frame_rate, grid.shape[-1] / pipe.frame_rate), \
                f"inpaint {s.ranges}"
        mask = self.prompt(s, wav, sr).build(grid, pipe.frame_rate, torch.Generator().manual_seed(0))
        return mask, f"{s.mode}: {100 * mask.float().mean():.0f}% of tokens generated"

    # --- generation -------------------------------------------------------------------------------------------
    def generate(self, path, s: Settings, progress=None, cancel: threading.Event | None = None) -> StudioResult:
        """Run the settings' mode on the clip at `path`. Setting `cancel` stops the job at its next sampling step
        (it raises Cancelled)."""
        started = time.time()
        self.sweep()
        if cancel is not None:
            if cancel.is_set():
                raise Cancelled("the job was cancelled")
            progress = _stoppable(progress, cancel)
        wav, sr = self.read_input(path)
        pipe = self.pipeline(s.model, s.precision)
        sampling, c2f_sampling = self.sampling(s)
        seed = s.seed if s.seed >= 0 else int(torch.randint(0, 2**31 - 1, (1,)).item())
        n = int(s.variations)
        from . import modes

        downloads: list[Path] = []
        if s.mode == "loop":
            result = modes.loop(pipe, wav, sr, variations=n, seconds=s.loop_seconds or None,
                                prompt=self.prompt(s, wav, sr), sampling=sampling, c2f_sampling=c2f_sampling,
                                seed=seed, progress=progress)
            results = result.variations
            chain = self._new_file("loop-chain", ".wav")
            audio.save(chain, result.chain, result.sample_rate)
            downloads.append(chain)
        elif s.mode == "compress":
            packed = self._new_file("compressed", ".vmpz")
            info = modes.compress(pipe, wav, sr, packed, codebooks=s.compress_codebooks, period=s.compress_period,
                                  progress=progress)
            downloads.append(packed)
            results = [modes.decompress(pipe, packed, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed + i,
                                        progress=progress) for i in range(n)]
            for r in results:
                r.settings.update(real_kbps=round(info.real_kbps, 3), nominal_kbps=round(info.nominal_kbps, 3))
        else:
            results = []
            for i in range(n):
                kw = dict(sampling=sampling, c2f_sampling=c2f_sampling, seed=seed + i, progress=progress)
                if s.mode == "continue":
                    results.append(modes.continue_audio(pipe, wav, sr, seconds=s.continue_seconds, **kw))
                elif s.mode == "inpaint":
                    results.append(modes.inpaint(pipe, wav, sr, parse_ranges(s.ranges), **kw))
                else:
                    results.append(pipe.vamp(wav, sr, prompt=self.prompt(s, wav, sr), **kw))
        files = []
        for i, r in enumerate(results):
            f = self._new_file(f"{s.mode}-{seed + i}", ".wav")
            r.save(f)
            files.append(f)
        settings = {**s.to_dict(), "seed": seed, "seeds": [seed + i for i in range(len(files))],
                    "precision": pipe.precision, "results": [r.settings for r in results],
                    "timing": {"started": round(started, 3), "seconds": round(time.time() - started, 3)}}
        return StudioResult(files, files + downloads, settings, list(results))

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


def _stoppable(progress, cancel: threading.Event):
    def report(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("the job was cancelled")
        if progress is not None:
            progress(stage, done, total)
    return report


def parse_ranges(text: str) -> list[tuple[float, float]]:
    """'1-2, 3.5-4' -> [(1.0, 2.0), (3.5, 4.0)]."""
    out = []
    for part in str(text).replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            a, b = (float(x) for x in part.split("-"))
        except ValueError:
            raise OptionError(f"ranges are START-END in seconds separated by commas, e.g. 1-2, 3.5-4; got {part.strip()!r}") from None
        out.append((a, b))
    if not out:
        raise OptionError("inpaint needs at least one range, e.g. 1-2")
    return out


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


# --- gradio ----------------------------------------------------------------------------------------------------

def guard(fn):
    """For gradio handlers: VampNet errors become one-line messages; anything else too, never a stack trace.
    (functools.wraps keeps the signature, whose parameter names gradio shows as the API's.)"""
    import gradio as gr

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VampNetError as e:
            raise gr.Error(str(e)) from None
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001  (a bug still reaches the user as one line)
            raise gr.Error(f"unexpected error: {type(e).__name__}: {e}") from None
    return wrapped


def build_app(studio: Studio, extensions=()):
    """The gradio Blocks of the studio (not launched). Each of `extensions` is called as `extension(studio)` inside
    the Blocks to add its endpoints (the HARP endpoint is one)."""
    import gradio as gr

    d = Settings()

    keep = max(1, int(studio.keep_s))  # gradio's own copies and uploads go as our results do
    with gr.Blocks(title="VampNet studio", delete_cache=(min(600, keep), keep)) as app:
        gr.Markdown("## VampNet studio\nUpload or record a clip, choose a mode and a prompt, and generate. "
                    f"Clips up to {studio.max_seconds:g} s.")
        with gr.Row():
            with gr.Column(scale=1):
                inp = gr.Audio(sources=["upload", "microphone"], type="filepath", label="input audio", elem_id="input-audio")
                mode = gr.Radio(list(MODES), value=d.mode, label="mode")
                with gr.Accordion("prompt: what is kept", open=True):
                    preset = gr.Dropdown(list(PRESET_CHOICES), value=d.preset, label="preset (custom: the sliders below)")
                    with gr.Row():
                        periodic = gr.Slider(0, 32, d.periodic, step=1, label="periodic: keep every P-th frame (0: none)")
                        periodic_width = gr.Slider(1, 8, d.periodic_width, step=1, label="width of each kept frame")
                    upper = gr.Slider(0, 14, d.upper_codebooks, step=1, label="generate codebooks from this index up")
                    with gr.Row():
                        beats = gr.Checkbox(d.beats, label="keep beats")
                        downbeats = gr.Checkbox(d.downbeats, label="keep downbeats")
                        onsets = gr.Checkbox(d.onsets, label="keep onsets")
                    with gr.Row():
                        beat_before = gr.Number(d.beat_before, label="context before beats (s)", minimum=0)
                        beat_after = gr.Number(d.beat_after, label="context after beats (s)", minimum=0)
                    with gr.Row():
                        prefix = gr.Number(d.prefix, label="keep the first (s)", minimum=0)
                        suffix = gr.Number(d.suffix, label="keep the last (s)", minimum=0)
                        dropout = gr.Slider(0, 1, d.dropout, step=0.05, label="dropout of kept frames")
                with gr.Accordion("mode options", open=False):
                    ranges = gr.Textbox(d.ranges, label="inpaint: ranges in seconds (1-2, 3.5-4)")
                    continue_seconds = gr.Number(d.continue_seconds, label="continue: seconds to add", minimum=0)
                    loop_seconds = gr.Number(d.loop_seconds, label="loop: length in seconds (0: whole clip)", minimum=0)
                    with gr.Row():
                        compress_codebooks = gr.Slider(1, 14, d.compress_codebooks, step=1, label="compress: codebooks kept")
                        compress_period = gr.Slider(1, 32, d.compress_period, step=1, label="compress: every N-th frame")
                with gr.Accordion("sampling", open=False):
                    with gr.Row():
                        steps = gr.Slider(1, 72, d.steps, step=1, label="steps")
                        temperature = gr.Slider(0, 2, d.temperature, step=0.05, label="temperature")
                        mask_temperature = gr.Slider(0, 20, d.mask_temperature, step=0.5,
                                                     label="mask temperature (randomness of the decoding order)")
                    with gr.Row():
                        top_p = gr.Slider(0, 1, d.top_p, step=0.01, label="top-p (0: off)")
                        typical = gr.Checkbox(d.typical, label="typical sampling")
                    with gr.Row():
                        seed = gr.Number(d.seed, label="seed (-1: random)", precision=0)
                        variations = gr.Slider(1, MAX_VARIATIONS, d.variations, step=1, label="variations")
                        draw = gr.Radio(list(DRAWS), value=d.draw, label="draw")
                with gr.Accordion("model", open=False):
                    model = gr.Dropdown(studio.models(), value=studio.default_model, allow_custom_value=True,
                                        label="model: small (shipped), official (downloaded), your fine-tuned "
                                              "models, or a folder path", elem_id="model")
                    precision = gr.Radio(list(PRECISIONS), value=d.precision, label="precision")
                with gr.Row():
                    preview_btn = gr.Button("preview mask", elem_id="preview")
                    go = gr.Button("generate", variant="primary", elem_id="generate")
            with gr.Column(scale=1):
                mask_img = gr.Image(label="prompt mask over the token grid", type="filepath", interactive=False,
                                    elem_id="mask")
                outs = [gr.Audio(label=f"result {i + 1}", type="filepath", interactive=False, visible=i == 0,
                                 elem_id=f"result-{i}") for i in range(MAX_VARIATIONS)]
                files = gr.File(label="downloads", file_count="multiple", interactive=False)
                shown = gr.JSON(label="settings of these results")
                reuse = gr.Button("reuse these settings")

        controls = [mode, preset, periodic, periodic_width, upper, beats, downbeats, onsets, beat_before, beat_after,
                    prefix, suffix, dropout, ranges, continue_seconds, loop_seconds, compress_codebooks, compress_period,
                    steps, temperature, mask_temperature, top_p, typical, seed, variations, draw, model, precision]
        names = [f.name for f in fields(Settings)]
        assert len(controls) == len(names)

        def generate(audio, mode, preset, periodic, periodic_width, upper_codebooks, beats, downbeats, onsets,
                     beat_before, beat_after, prefix, suffix, dropout, ranges, continue_seconds, loop_seconds,
                     compress_codebooks, compress_period, steps, temperature, mask_temperature, top_p, typical, seed,
                     variations, draw, model, precision, progress=gr.Progress()):
            values = {k: v for k, v in locals().items() if k not in ("audio", "progress")}
            report = lambda stage, done, total: progress(done / max(total, 1), desc=stage)
            result = studio.generate(audio, Settings.from_values(values), progress=report)
            players = [str(f) for f in result.audio] + [None] * (MAX_VARIATIONS - len(result.audio))
            return (*players, [str(f) for f in result.downloads], result.settings)

        def show_players(settings):  # UI only: the API returns plain file paths (None for unused slots)
            n = len((settings or {}).get("seeds", [])) or 1
            return [gr.Audio(visible=i < n) for i in range(MAX_VARIATIONS)]

        def preview(audio, mode, preset, periodic, periodic_width, upper_codebooks, beats, downbeats, onsets,
                    beat_before, beat_after, prefix, suffix, dropout, ranges, continue_seconds, compress_codebooks,
                    compress_period, model):  # what shapes the mask; sampling settings do not
            values = {k: v for k, v in locals().items() if k != "audio"}
            return str(studio.preview(audio, Settings.from_values(values)))

        def reuse_settings(settings):
            if not settings:
                raise gr.Error("generate something first")
            s = Settings.from_values(settings)
            return [getattr(s, n) for n in names]

        go.click(guard(generate), [inp, *controls], [*outs, files, shown], api_name="generate").then(
            show_players, shown, outs, api_name=False)
        mask_controls = [mode, preset, periodic, periodic_width, upper, beats, downbeats, onsets, beat_before, beat_after,
                         prefix, suffix, dropout, ranges, continue_seconds, compress_codebooks, compress_period, model]
        preview_btn.click(guard(preview), [inp, *mask_controls], mask_img, api_name="preview")
        reuse.click(guard(reuse_settings), shown, controls, api_name=False)
        # models fine-tuned while the studio runs appear when the page is (re)loaded
        app.load(lambda: gr.Dropdown(choices=studio.models()), None, model, api_name=False)
        for extend in extensions:
            extend(studio)
    return app


def launch(models: str | None = None, *, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
           concurrency: int = 1, max_seconds: float = 120.0, max_file_mb: float = 50.0, queue_size: int = 32,
           keep_s: float = 3600.0, preload: bool = True, extensions=()) -> None:
    """Serve the studio (blocks until stopped). `concurrency` jobs run at once; others wait in gradio's queue.
    Results stay downloadable for `keep_s`; then they (and gradio's copies and uploads) are deleted, and all of them
    when the server stops, by Ctrl+C or SIGTERM. `extensions`: as `build_app`'s."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise OptionError("the web UI needs gradio: pip install 'vampnet[ui]'") from None
    if keep_s < 1:
        raise OptionError("results must be kept at least 1 s (--keep-minutes)")
    # SIGTERM (a service manager stopping us) takes the Ctrl+C path: gradio closes its server and deletes its
    # cache, and the finally below removes our results
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    studio = Studio(models, device=device, max_seconds=max_seconds, keep_s=keep_s)
    try:
        if preload:
            studio.pipeline(None, "fp32")  # a bad --models fails here, before the server starts
        app = build_app(studio, extensions)
        app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
        app.launch(server_name=host, server_port=port, max_file_size=f"{max_file_mb:g}mb", show_error=True, quiet=True)
    finally:
        studio.close()
