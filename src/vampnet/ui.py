"""The web UI (`vampnet ui`): the studio's gradio page.

`Settings` holds what the controls set and declares the controls themselves (widget, range, place on the page);
the jobs themselves (pipelines, inputs, preview masks, results) are `vampnet.studio.Studio`'s, which holds no
gradio and no model logic; `build_app` lays out the gradio page from the declared controls and `launch` serves it
through gradio's queue. Every endpoint is also an API (gradio client): `/generate` and `/preview`, with the
parameters named as in `Settings`. The model menu lists the shipped, official and fine-tuned models
(`vampnet.pretrained.available_models`); models share a loaded codec when their files do."""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import signal
import threading
from dataclasses import asdict, dataclass, field, fields

from . import audio, effects, modes
from . import mode_registry as registry
from .errors import OptionError, VampNetError
from .options import parse_ranges  # noqa: F401  (tests and callers take it from here)
from .precision import PRECISIONS
from .prompts import PromptConfig
from .sampling import SamplingConfig
from .schema import options_of
from .studio import Studio, StudioResult  # noqa: F401  (the page's jobs; importable from here as before)

MODES = registry.STUDIO_MODES
PRESET_CHOICES = ("custom", *modes.PRESETS)
MAX_VARIATIONS = 4
SECTIONS = {"": True, "prompt: what is kept": True, "mode options": False, "sampling": False, "model": False,
            "result file": False}  # open?
RATES = ("input", "22050", "44100", "48000", "88200", "96000")
BIT_DEPTHS = ("input", "16", "24", "32")


@dataclass(frozen=True)
class Control:
    """How the studio shows one setting: its widget, label, section and row on the page, and the widget's range or
    choices. `shapes_mask`: the mask preview takes it."""

    kind: str  # slider | number | checkbox | radio | dropdown | text
    label: str
    section: str = ""
    row: str | None = None  # the controls of one section that share a row name sit side by side
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    shapes_mask: bool = True
    name: str = ""  # the Settings field (filled in from it)
    info: str | None = None  # a line under the label (the schema's help)


def _control(default, kind: str, label: str, section: str = "", **widget):
    """A Settings field and the control that sets it, declared together."""
    return field(default=default, metadata={"control": Control(kind, label, section, **widget)})


SCHEMA = {opt.name: opt for cls in (PromptConfig, SamplingConfig, effects.InputEffects) for opt in options_of(cls)}
_DECLARED = {**SCHEMA, **{opt.name: opt for opt in registry.OPTIONS}}  # and each mode's own (the registry's)


def _option(name: str, section: str, **layout):
    """A Settings field for the schema's option `name`: its default, label, help, range or choices come from the
    schema (vampnet.schema); only where it sits on the page is said here."""
    opt = _DECLARED[name]
    low, high = opt.shown_range
    kind = ("checkbox" if opt.kind == "bool" else "text" if opt.kind == "str" and not opt.choices else
            "radio" if opt.choices else
            "slider" if low is not None and high is not None else "number")
    label = f"{opt.title} ({opt.unit})" if opt.unit else opt.title
    return _control(opt.default, kind, label, section, minimum=low, maximum=high, step=opt.step, choices=opt.choices,
                    info=opt.help, **layout)


_PROMPT, _MODE_OPTIONS, _SAMPLING, _MODEL, _FILE = (s for s in SECTIONS if s)


@dataclass(frozen=True)
class Settings:
    """Everything the studio's controls set, and the controls themselves (the page, the API's parameters with these
    names and defaults, the preview's inputs and the HARP endpoint's ranges are all made from these fields)."""

    mode: str = _control("vamp", "radio", "mode", choices=MODES)
    preset: str = _control("custom", "dropdown", "preset (custom: the sliders below)", _PROMPT, choices=PRESET_CHOICES)
    periodic: int = _option("periodic", _PROMPT, row="periodic")
    periodic_width: int = _option("periodic_width", _PROMPT, row="periodic")
    random_roll: bool = _option("random_roll", _PROMPT, row="periodic")
    upper_codebooks: int = _option("upper_codebooks", _PROMPT, row="codebooks")
    keep_codebooks: int = _option("keep_codebooks", _PROMPT, row="codebooks")
    beats: bool = _control(False, "checkbox", "keep beats", _PROMPT, row="beats")
    downbeats: bool = _control(False, "checkbox", "keep downbeats", _PROMPT, row="beats")
    onsets: bool = _control(False, "checkbox", "keep onsets", _PROMPT, row="beats")
    beat_before: float = _option("beat_before", _PROMPT, row="context")
    beat_after: float = _option("beat_after", _PROMPT, row="context")
    onset_width: int = _option("onset_width", _PROMPT, row="context")
    prefix: float = _option("prefix", _PROMPT, row="ends")
    suffix: float = _option("suffix", _PROMPT, row="ends")
    dropout: float = _option("dropout", _PROMPT, row="random")
    random_intensity: float = _option("random_intensity", _PROMPT, row="random")
    ranges: str = _option("ranges", _MODE_OPTIONS)
    continue_seconds: float = _option("continue_seconds", _MODE_OPTIONS)
    loop_seconds: float = _option("loop_seconds", _MODE_OPTIONS, shapes_mask=False)
    compress_codebooks: int = _option("compress_codebooks", _MODE_OPTIONS, row="compress")
    compress_period: int = _option("compress_period", _MODE_OPTIONS, row="compress")
    steps: int = _option("steps", _SAMPLING, row="steps", shapes_mask=False)
    temperature: float = _option("temperature", _SAMPLING, row="steps", shapes_mask=False)
    mask_temperature: float = _option("mask_temperature", _SAMPLING, row="steps", shapes_mask=False)
    sample_cutoff: float = _option("sample_cutoff", _SAMPLING, row="steps", shapes_mask=False)
    top_k: int = _option("top_k", _SAMPLING, row="filter", shapes_mask=False)
    top_p: float = _option("top_p", _SAMPLING, row="filter", shapes_mask=False)
    typical: bool = _option("typical", _SAMPLING, row="typical", shapes_mask=False)
    typical_mass: float = _option("typical_mass", _SAMPLING, row="typical", shapes_mask=False)
    typical_min_tokens: int = _option("typical_min_tokens", _SAMPLING, row="typical", shapes_mask=False)
    seed: int = _control(-1, "number", "seed (-1: random)", _SAMPLING, row="seed", minimum=-1, maximum=2**31 - 2,
                         step=1, shapes_mask=False)
    variations: int = _control(1, "slider", "variations", _SAMPLING, row="seed", minimum=1, maximum=MAX_VARIATIONS,
                               step=1, shapes_mask=False)
    draw: str = _option("draw", _SAMPLING, row="seed", shapes_mask=False)
    model: str = _control("small", "dropdown", "model: small (shipped), official (downloaded), your fine-tuned models, "
                          "or a folder path", _MODEL)
    precision: str = _control("fp32", "radio", "precision", _MODEL, choices=PRECISIONS, shapes_mask=False)
    file_type: str = _control("wav", "radio", "file type", _FILE, row="file", choices=tuple(audio.writable_formats()),
                              shapes_mask=False)
    sample_rate: str = _control("input", "dropdown", "sample rate (Hz)", _FILE, row="file", choices=RATES,
                                shapes_mask=False)
    channels: str = _control("mono", "radio", "channels (stereo: the mono result on both, 3 dB lower each)", _FILE,
                             row="file", choices=("mono", "stereo"), shapes_mask=False)
    bit_depth: str = _control("input", "radio", "bits (WAV/FLAC; input: its 16/24-bit, else 24; 32: float)", _FILE,
                              row="file", choices=BIT_DEPTHS, shapes_mask=False)
    pitch_shift: int = _option("pitch_shift", "", shapes_mask=False)  # last: the API's positional order is kept
    guidance: float = _option("guidance", _SAMPLING, row="guidance", shapes_mask=False)  # after: the order is kept

    def __post_init__(self):
        for c in CONTROLS:
            if c.choices and getattr(self, c.name) not in c.choices:
                raise OptionError(f"{c.name} must be one of {', '.join(c.choices)}, got {getattr(self, c.name)!r}")
        if not 1 <= int(self.variations) <= MAX_VARIATIONS:
            raise OptionError(f"variations must be 1 to {MAX_VARIATIONS}")

    def output(self) -> audio.OutputOptions:
        """The result file's options (what "input" leaves to the input's format)."""
        number = lambda v: None if v == "input" else int(v)  # noqa: E731
        return audio.OutputOptions(number(self.sample_rate), 2 if self.channels == "stereo" else 1,
                                   number(self.bit_depth))

    @classmethod
    def from_values(cls, values: dict) -> "Settings":
        """From UI/API values (numbers arrive as floats; unknown keys are ignored, missing ones default)."""
        out = {}
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                value = values[f.name]
                try:
                    out[f.name] = (int(value) if f.type == "int" else float(value) if f.type == "float"
                                   else _to_bool(value) if f.type == "bool" else _to_text(value))
                except (TypeError, ValueError):
                    kind = {"int": "a whole number", "float": "a number", "bool": "true or false"}[f.type]
                    raise OptionError(f"{f.name} must be {kind}, got {value!r}") from None
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)


CONTROLS = tuple(Control(**{**asdict(f.metadata["control"]), "name": f.name}) for f in fields(Settings))
CONTROL = {c.name: c for c in CONTROLS}


def _to_text(value):
    """A choice given as a number (an OSC message's or API call's 48000 for "48000") as its text."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return str(int(value)) if is_number and value == int(value) else value


def _to_bool(value) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(value)
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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


def widget(gr, c: Control, value, *, label: str | None = None, info: str | None = None, choices=None, **extra):
    """The gradio component of a control (HARP's endpoint shows its controls with its own labels and infos)."""
    shown = dict(label=label or c.label, info=info, **extra)
    if c.kind == "slider":
        return gr.Slider(c.minimum, c.maximum, value, step=c.step, **shown)
    if c.kind == "number":
        limits = {k: v for k, v in (("minimum", c.minimum), ("maximum", c.maximum), ("step", c.step)) if v is not None}
        return gr.Number(value, precision=0 if c.step == 1 else None, **limits, **shown)
    if c.kind == "checkbox":
        return gr.Checkbox(bool(value), **shown)
    if c.kind == "radio":
        return gr.Radio(list(c.choices), value=value, **shown)
    if c.kind == "dropdown":  # the model menu also takes models fine-tuned after start-up, and folder paths
        return gr.Dropdown(list(choices or c.choices), value=value, allow_custom_value=c.name == "model", **shown)
    return gr.Textbox(str(value), **shown)


def _named(names, fn):
    """`fn(*values)` with a signature naming its parameters: gradio shows them as the API's. A trailing parameter
    whose default is gr.Progress gets gradio's progress tracker after the values."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                            default=d) for n, d in names])
    return fn


def build_app(studio: Studio, extensions=()):
    """The gradio Blocks of the studio (not launched). Each of `extensions` is called as `extension(studio)` inside
    the Blocks to add its endpoints (the HARP endpoint is one)."""
    import gradio as gr

    d = Settings(model=studio.default_model)
    names = [c.name for c in CONTROLS]
    keep = max(1, int(studio.keep_s))  # gradio's own copies and uploads go as our results do
    with gr.Blocks(title="VampNet studio", delete_cache=(min(600, keep), keep)) as app:
        gr.Markdown("## VampNet studio\nUpload or record a clip, choose a mode and a prompt, and generate. "
                    f"Clips up to {studio.max_seconds:g} s.")
        with gr.Row():
            with gr.Column(scale=1):
                inp = gr.Audio(sources=["upload", "microphone"], type="filepath", label="input audio", elem_id="input-audio")
                controls = []
                for section, in_section in itertools.groupby(CONTROLS, lambda c: c.section):
                    with gr.Accordion(section, open=SECTIONS[section]) if section else contextlib.nullcontext():
                        for row, in_row in itertools.groupby(in_section, lambda c: c.row):
                            with gr.Row() if row else contextlib.nullcontext():
                                controls += [widget(gr, c, getattr(d, c.name), elem_id=c.name, info=c.info,
                                                    choices=studio.models() if c.name == "model" else None)
                                             for c in in_row]
                with gr.Row():
                    preview_btn = gr.Button("preview mask", elem_id="preview")
                    go = gr.Button("generate", variant="primary", elem_id="generate")
            with gr.Column(scale=1):
                mask_img = gr.Image(label="prompt mask over the token grid", type="filepath", interactive=False,
                                    elem_id="mask")
                outs, uses = [], []  # each result, with a button that makes it the next job's input
                for i in range(MAX_VARIATIONS):
                    outs.append(gr.Audio(label=f"result {i + 1}", type="filepath", interactive=False, visible=i == 0,
                                         elem_id=f"result-{i}"))
                    uses.append(gr.Button("use as input", size="sm", visible=i == 0, elem_id=f"use-{i}"))
                files = gr.File(label="downloads", file_count="multiple", interactive=False)
                shown = gr.JSON(label="settings of these results")
                reuse = gr.Button("reuse these settings")

        def generate(audio, *values):
            progress = values[len(names)] if len(values) > len(names) else None
            report = None if progress is None else (lambda stage, done, total: progress(done / max(total, 1), desc=stage))
            result = studio.generate(audio, Settings.from_values(dict(zip(names, values))), progress=report)
            players = [str(f) for f in result.audio] + [None] * (MAX_VARIATIONS - len(result.audio))
            return (*players, [str(f) for f in result.downloads], result.settings)

        def show_players(settings):  # UI only: the API returns plain file paths (None for unused slots)
            n = len((settings or {}).get("seeds", [])) or 1
            return [gr.Audio(visible=i < n) for i in range(MAX_VARIATIONS)] + \
                [gr.Button(visible=i < n) for i in range(MAX_VARIATIONS)]

        masking = [c.name for c in CONTROLS if c.shapes_mask]  # sampling settings do not shape the mask

        def preview(audio, *values):
            return str(studio.preview(audio, Settings.from_values(dict(zip(masking, values)))))

        def reuse_settings(settings):
            if not settings:
                raise gr.Error("generate something first")
            s = Settings.from_values(settings)
            return [getattr(s, n) for n in names]

        api = inspect.Parameter.empty
        generate = _named([("audio", api), *((n, api) for n in names), ("progress", gr.Progress())], generate)
        preview = _named([("audio", api), *((n, api) for n in masking)], preview)
        go.click(guard(generate), [inp, *controls], [*outs, files, shown], api_name="generate").then(
            show_players, shown, [*outs, *uses], api_name=False)
        for out, use in zip(outs, uses):
            use.click(guard(use_as_input), out, inp, api_name=False)
        preview_btn.click(guard(preview), [inp, *(controls[names.index(n)] for n in masking)], mask_img,
                          api_name="preview")
        reuse.click(guard(reuse_settings), shown, controls, api_name=False)
        # models fine-tuned while the studio runs appear when the page is (re)loaded
        app.load(lambda: gr.Dropdown(choices=studio.models()), None, controls[names.index("model")], api_name=False)
        for extend in extensions:
            extend(studio)
    return app


def use_as_input(result):
    """What a result's "use as input" button gives the input player: the result's file (the next job's input)."""
    if not result:
        raise OptionError("generate something first")
    return result


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
