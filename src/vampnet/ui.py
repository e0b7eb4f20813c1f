"""The web UI (`vampnet ui`): the studio's gradio page.

`Settings` holds what the controls set and declares the controls themselves (widget, range, place on the page);
the jobs themselves (pipelines, inputs, preview masks, results) are `vampnet.studio.Studio`'s, which holds no
gradio and no model logic; `build_app` lays out the gradio page from the declared controls and `launch` serves it
through gradio's queue. The page shows only the chosen mode's options (each mode's, as the mode registry declares
them), sets the codebook sliders' ranges from the chosen model, and keeps the preset menu and the prompt sliders in
step (a preset sets them; moving one away from it shows "custom"). Every endpoint is also an API (gradio client):
`/generate` and `/preview`, with the parameters named as in `Settings`. The model menu lists the shipped, official and fine-tuned models
(`vampnet.pretrained.available_models`); models share a loaded codec when their files do. The prompt and sampling
controls start at the chosen model's own defaults (its card's, `model_settings`), and the page says where they come
from."""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import signal
import threading
from dataclasses import asdict, dataclass, field, fields, replace

from . import audio, effects, envelopes, modes, options
from . import mode_registry as registry
from .control_options import ControlOptions
from .errors import OptionError, VampNetError
from .model_defaults import OPTIONS as CARD_OPTIONS
from .options import parse_ranges  # noqa: F401  (tests and callers take it from here)
from .pipeline import PipelineConfig
from .prompts import PromptConfig
from .sampling import SamplingConfig
from .schema import check_value, for_model, options_of, user_values
from .studio import Studio, StudioResult  # noqa: F401  (the page's jobs; importable from here as before)

MODES = registry.STUDIO_MODES
PRESET_CHOICES = ("custom", *modes.PRESETS)
DEFAULT_PRESET = "variation"  # what the prompt controls' defaults are (tests check that they agree)
PLAYERS = int(registry.VARIATIONS.shown_range[1])  # result players on the page: the variations slider's top
SECTIONS = {"": True, "what is kept from the input": True, "mode options": True, "how the model chooses": False,
            "model": False, "result file": False,
            "model: long audio and speed": False, "follow a loudness envelope": False}  # open?
RATES = ("input", "22050", "44100", "48000", "88200", "96000")
BIT_DEPTHS = ("input", "16", "24", "32")


@dataclass(frozen=True)
class Control:
    """How the studio shows one setting: its widget, label, section and row on the page, and the widget's range or
    choices. `shapes_mask`: the mask preview takes it."""

    kind: str  # slider | number | checkbox | radio | dropdown | text | audio
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


SCHEMA = {opt.name: opt for cls in (PromptConfig, SamplingConfig, effects.InputEffects, ControlOptions)
          for opt in options_of(cls)}
DECLARED = {**SCHEMA, **{opt.name: opt for opt in (*registry.OPTIONS, registry.VARIATIONS,
                                                     *options_of(PipelineConfig, "pipeline"))}}
# (the schema's prompt, sampling and input options, each mode's own (the registry's) and the pipeline's)


def _option(name: str, section: str, kind: str = "", **layout):
    """A Settings field for the schema's option `name`: its default, label, help, range or choices come from the
    schema (vampnet.schema); only where it sits on the page is said here (and its widget, where not the usual)."""
    opt = DECLARED[name]
    low, high = opt.shown_range
    kind = kind or ("checkbox" if opt.kind == "bool" else "text" if opt.kind == "str" and not opt.choices else
            "radio" if opt.choices else
            "slider" if low is not None and high is not None else "number")
    label = f"{opt.title} ({opt.unit})" if opt.unit else opt.title
    return _control(opt.default, kind, label, section, minimum=low, maximum=high, step=opt.step, choices=opt.choices,
                    info=opt.help, **layout)


_PROMPT, _MODE_OPTIONS, _SAMPLING, _MODEL, _FILE, _SPEED, _CONTROL = (s for s in SECTIONS if s)


@dataclass(frozen=True)
class Settings:
    """Everything the studio's controls set, and the controls themselves (the page, the API's parameters with these
    names and defaults, the preview's inputs and the HARP endpoint's ranges are all made from these fields)."""

    mode: str = _control("vamp", "radio", "mode", choices=MODES,
                         info="; ".join(f"{m}: {registry.MODES[m].help}" for m in MODES))
    preset: str = _control(DEFAULT_PRESET, "dropdown", "preset", _PROMPT, choices=PRESET_CHOICES,
                           info="a starting point for the controls below: subtle stays close to the input, wild "
                                "wanders off; the upstream app's presets too (the -beat ones keep the beats); "
                                "custom: your own settings")
    periodic: int = _option("periodic", _PROMPT, row="periodic")
    periodic_width: int = _option("periodic_width", _PROMPT, row="periodic")
    random_roll: bool = _option("random_roll", _PROMPT)
    upper_codebooks: int = _option("upper_codebooks", _PROMPT, row="codebooks")
    keep_codebooks: int = _option("keep_codebooks", _PROMPT, row="codebooks")
    beats: bool = _control(False, "checkbox", "keep the beats", _PROMPT, row="beats",
                           info="also keep the input at each beat the tracker finds (with the context below)")
    downbeats: bool = _control(False, "checkbox", "keep the first beat of each bar", _PROMPT, row="beats")
    onsets: bool = _control(False, "checkbox", "keep the note starts", _PROMPT, row="beats")
    beat_before: float = _option("beat_before", _PROMPT, row="context")
    beat_after: float = _option("beat_after", _PROMPT, row="context")
    onset_width: int = _option("onset_width", _PROMPT)
    prefix: float = _option("prefix", _PROMPT, row="ends")
    suffix: float = _option("suffix", _PROMPT, row="ends")
    dropout: float = _option("dropout", _PROMPT, row="random")
    random_intensity: float = _option("random_intensity", _PROMPT, row="random")
    ranges: str = _option("ranges", _MODE_OPTIONS)
    continue_seconds: float = _option("continue_seconds", _MODE_OPTIONS, row="continue")
    loop_seconds: float = _option("loop_seconds", _MODE_OPTIONS, row="loop", shapes_mask=False)
    compress_codebooks: int = _option("compress_codebooks", _MODE_OPTIONS, row="compress")
    compress_period: int = _option("compress_period", _MODE_OPTIONS, row="compress")
    steps: int = _option("steps", _SAMPLING, row="steps", shapes_mask=False)
    temperature: float = _option("temperature", _SAMPLING, row="steps", shapes_mask=False)
    mask_temperature: float = _option("mask_temperature", _SAMPLING, row="order", shapes_mask=False)
    sample_cutoff: float = _option("sample_cutoff", _SAMPLING, row="order", shapes_mask=False)
    top_k: int = _option("top_k", _SAMPLING, row="filter", shapes_mask=False)
    top_p: float = _option("top_p", _SAMPLING, row="filter", shapes_mask=False)
    typical: bool = _option("typical", _SAMPLING, shapes_mask=False)
    typical_mass: float = _option("typical_mass", _SAMPLING, row="typical", shapes_mask=False)
    typical_min_tokens: int = _option("typical_min_tokens", _SAMPLING, row="typical", shapes_mask=False)
    seed: int = _control(-1, "number", "seed (-1: a new one each time)", _SAMPLING, row="seed", minimum=-1,
                         maximum=2**31 - 2, step=1, shapes_mask=False,
                         info="the same seed and settings give the same result")
    variations: int = _option("variations", _SAMPLING, row="seed", shapes_mask=False)
    draw: str = _option("draw", _SAMPLING, shapes_mask=False)
    model: str = _control("small", "dropdown", "model", _MODEL, info="small (comes with vampnet), official "
                          "(downloaded), your fine-tuned models, or a folder path")
    precision: str = _option("precision", _MODEL, shapes_mask=False)
    file_type: str = _control("wav", "radio", "file type", _FILE, row="file", choices=tuple(audio.writable_formats()),
                              shapes_mask=False)
    sample_rate: str = _control("input", "dropdown", "sample rate (Hz)", _FILE, row="file", choices=RATES,
                                shapes_mask=False)
    channels: str = _control("mono", "radio", "channels (stereo: the mono result on both, 3 dB lower each)", _FILE,
                             row="file", choices=("mono", "stereo"), shapes_mask=False)
    bit_depth: str = _control("input", "radio", "bits (WAV/FLAC; input: its 16/24-bit, else 24; 32: float)", _FILE,
                              row="file", choices=BIT_DEPTHS, shapes_mask=False)
    pitch_shift: int = _option("pitch_shift", "", shapes_mask=False)  # the new ones last: the API's order is kept
    loop_bars: int = _option("loop_bars", _MODE_OPTIONS, row="loop", shapes_mask=False)
    continue_before: float = _option("continue_before", _MODE_OPTIONS, row="continue")
    window: float = _option("window", _SPEED, row="window", shapes_mask=False)
    overlap: float = _option("overlap", _SPEED, row="window", shapes_mask=False)
    c2f_chunk: float = _option("c2f_chunk", _SPEED, row="fine", shapes_mask=False)
    c2f_batch_size: int = _option("c2f_batch_size", _SPEED, row="fine", shapes_mask=False)
    capture: str = _option("capture", _SPEED, shapes_mask=False)
    guidance: float = _option("guidance", _SAMPLING, row="guidance", shapes_mask=False)  # after: the order is kept
    loudness_from: str = _option("loudness_from", _CONTROL, "audio", shapes_mask=False)  # a second upload
    loudness: str = _option("loudness", _CONTROL, shapes_mask=False)
    loudness_fit: str = _option("loudness_fit", _CONTROL, row="fit", shapes_mask=False)
    loudness_range: str = _option("loudness_range", _CONTROL, row="fit", shapes_mask=False)
    loop_feedback: int = _option("loop_feedback", _MODE_OPTIONS, row="loop", shapes_mask=False)  # new ones last
    stretch_factor: float = _option("stretch_factor", _MODE_OPTIONS, row="stretch")

    def __post_init__(self):
        for c in CONTROLS:
            if c.choices and getattr(self, c.name) not in c.choices:
                raise OptionError(f"{c.name} must be one of {', '.join(c.choices)}, got {getattr(self, c.name)!r}")
        check_value(registry.VARIATIONS, self.variations)  # the command line's limit: the API takes as many

    def output(self) -> audio.OutputOptions:
        """The result file's options (what "input" leaves to the input's format)."""
        number = lambda v: None if v == "input" else int(v)  # noqa: E731
        return audio.OutputOptions(number(self.sample_rate), 2 if self.channels == "stereo" else 1,
                                   number(self.bit_depth))

    @classmethod
    def from_values(cls, values: dict, defaults: dict | None = None) -> "Settings":
        """From UI/API values (numbers arrive as floats; unknown keys are ignored, missing ones default: to
        `defaults` where it has them (a model's, `model_settings`), else to the fields' own)."""
        values = {**(defaults or {}), **{k: v for k, v in values.items() if v is not None}}
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
# each studio mode's own controls, as the mode registry declares its options
MODE_CONTROLS = {m: tuple(o.name for o in options_of(registry.MODES[m].options) if o.name in CONTROL) for m in MODES}
# the prompt controls a preset sets (the others it leaves to the user)
PRESET_CONTROLS = tuple(o.name for o in options_of(PromptConfig)
                        if o.name in CONTROL and o.field not in options.KEPT_BY_PRESETS)


def preset_values(name: str) -> dict:
    """What the preset `name` sets the prompt controls it sets to."""
    values = user_values(modes.PRESETS[name])
    return {n: values[n] for n in PRESET_CONTROLS}


def matching_preset(current: str, values: dict) -> str:
    """The preset the prompt controls' `values` show: `current` while they still match it, else the first preset
    they match, else "custom"."""
    for name in (current, *modes.PRESETS):
        if name in modes.PRESETS and all(values[n] == v for n, v in preset_values(name).items()):
            return name
    return "custom"


# the controls a model's card may set (vampnet.model_defaults: the prompt's and the sampler's)
CARD_CONTROLS = tuple(c.name for c in CONTROLS if any(c.name in names for names in CARD_OPTIONS.values()))


def model_settings(studio: Studio, model: str | None = None) -> dict:
    """The controls' values `model`'s card sets (none: {}), and, where it sets prompt controls a preset sets, the
    preset they show (the default preset where they match it, else another they match, else "custom", so that
    `Studio.prompt` takes them)."""
    values = {n: v for n, v in studio.model_defaults(model).by_name().items() if n in CONTROL}
    if any(n in values for n in PRESET_CONTROLS):
        base = Settings()
        values["preset"] = matching_preset(DEFAULT_PRESET, {n: values.get(n, getattr(base, n)) for n in PRESET_CONTROLS})
    return values


def defaults_note(studio: Studio, model: str | None = None) -> str:
    """What the page says about where the controls' defaults come from, for `model`."""
    return f"defaults of this model: {studio.model_defaults(model).describe()}"


# the controls whose range the loaded model sets (schema `model_max`: the codebook sliders)
MODEL_BOUND = tuple(c.name for c in CONTROLS if c.name in DECLARED and DECLARED[c.name].model_max)
# what choosing a model sets besides those: the other controls its card may set, and the preset they show
SET_BY_MODEL = (*(n for n in CARD_CONTROLS if n not in MODEL_BOUND), "preset")


def model_ranges(counts: dict) -> dict:
    """The top of each MODEL_BOUND control for a model's `counts` (Studio.model_counts)."""
    return {n: for_model(DECLARED[n], counts).shown_range[1] for n in MODEL_BOUND}


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
    if c.kind == "audio":  # an audio file the job reads (a path; empty: none)
        return gr.Audio(value or None, sources=["upload"], type="filepath", label=shown["label"],
                        elem_id=extra.get("elem_id"))
    return gr.Textbox(str(value), **shown)


def _named(names, fn):
    """`fn(*values)` with a signature naming its parameters: gradio shows them as the API's. A trailing parameter
    whose default is gr.Progress gets gradio's progress tracker after the values."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                            default=d) for n, d in names])
    return fn


def build_app(studio: Studio, extensions=()):
    """The gradio Blocks of the studio (not launched). Each of `extensions` is called as `extension(studio)` inside
    the Blocks to add its endpoints (the HARP endpoint is one).

    Two columns: the input, the mode and its options, the buttons and the results on the left (Generate shows
    without scrolling); the prompt, sampling, model and file settings on the right."""
    import gradio as gr

    names = [c.name for c in CONTROLS]
    keep = max(1, int(studio.keep_s))  # gradio's own copies and uploads go as our results do
    try:  # the controls start at the model's own defaults (its card's)
        d = Settings.from_values({"model": studio.default_model}, model_settings(studio))
        note = defaults_note(studio)
        tops = model_ranges(studio.model_counts(d.model, d.precision))
    except VampNetError:  # the model loads (and says what is wrong) at the first job
        d, note, tops = Settings(model=studio.default_model), "", {}
    made = {}  # the widget of each control, by name

    def place(controls) -> None:
        for row, in_row in itertools.groupby(controls, lambda c: c.row):
            with gr.Row() if row else contextlib.nullcontext():
                for c in in_row:
                    shown = replace(c, maximum=tops[c.name]) if c.name in tops else c
                    made[c.name] = widget(gr, shown, getattr(d, c.name), elem_id=c.name, info=c.info,
                                          choices=studio.models() if c.name == "model" else None)

    in_section = {section: [c for c in CONTROLS if c.section == section] for section in SECTIONS}
    of_mode = {name for names_ in MODE_CONTROLS.values() for name in names_}
    with gr.Blocks(title="VampNet studio", delete_cache=(min(600, keep), keep)) as app:
        gr.Markdown(f"## VampNet studio\nUpload or record a clip (up to {studio.max_seconds:g} s), choose a mode, "
                    "and generate.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                inp = gr.Audio(sources=["upload", "microphone"], type="filepath", label="input audio",
                               elem_id="input-audio")
                place(in_section[""])
                groups = {}  # each mode's options, shown only while that mode is chosen
                for mode, own in MODE_CONTROLS.items():
                    if own:
                        with gr.Group(visible=mode == d.mode, elem_id=f"options-{mode}") as groups[mode]:
                            place([CONTROL[n] for n in own])
                place([c for c in in_section[_MODE_OPTIONS] if c.name not in of_mode])
                with gr.Row():
                    preview_btn = gr.Button("preview what is kept", elem_id="preview")
                    go = gr.Button("generate", variant="primary", elem_id="generate")
                outs, uses = [], []  # each result, with a button that makes it the next job's input
                for i in range(PLAYERS):
                    outs.append(gr.Audio(label=f"result {i + 1}", type="filepath", interactive=False, visible=i == 0,
                                         elem_id=f"result-{i}"))
                    uses.append(gr.Button("use as input", size="sm", visible=i == 0, elem_id=f"use-{i}"))
                files = gr.File(label="downloads", file_count="multiple", interactive=False)
                mask_img = gr.Image(label="what is kept (light) and made new (dark), over the input", type="filepath",
                                    interactive=False, elem_id="mask")
            with gr.Column(scale=1):
                accordions = {}
                for section, open_ in SECTIONS.items():
                    if section not in ("", _MODE_OPTIONS) and in_section[section]:
                        with gr.Accordion(section, open=open_, elem_id=f"section-{len(accordions)}",
                                          visible=section != _PROMPT or registry.MODES[d.mode].studio_prompt
                                          ) as accordions[section]:
                            place(in_section[section])
                            if section == _MODEL:  # where the prompt and sampling controls' defaults come from
                                made["defaults_note"] = gr.Markdown(note, elem_id="model-defaults")
                            if section == _CONTROL:
                                follow = _follow_widgets(gr)
                shown = gr.JSON(label="settings of these results")
                reuse = gr.Button("reuse these settings")
        controls = [made[n] for n in names]

        def generate(audio, *values):
            progress = values[len(names)] if len(values) > len(names) else None
            report = None if progress is None else (lambda stage, done, total: progress(done / max(total, 1), desc=stage))
            result = studio.generate(audio, Settings.from_values(dict(zip(names, values))), progress=report)
            players = [str(f) for f in result.audio[:PLAYERS]] + [None] * (PLAYERS - len(result.audio[:PLAYERS]))
            return (*players, [str(f) for f in result.downloads], result.settings)

        def show_players(settings):  # UI only: the API returns plain file paths (None for unused slots)
            n = len((settings or {}).get("seeds", [])) or 1
            return [gr.Audio(visible=i < n) for i in range(PLAYERS)] + [gr.Button(visible=i < n) for i in range(PLAYERS)]

        masking = [c.name for c in CONTROLS if c.shapes_mask]  # sampling settings do not shape the mask

        def preview(audio, *values):
            return str(studio.preview(audio, Settings.from_values(dict(zip(masking, values)))))

        def reuse_settings(settings):
            if not settings:
                raise gr.Error("generate something first")
            s = Settings.from_values(settings)
            return [getattr(s, n) or None if CONTROL[n].kind == "audio" else getattr(s, n) for n in names]

        def show_mode(mode):  # only the chosen mode's options, and the prompt where the mode takes one
            return [gr.Group(visible=m == mode) for m in groups] + \
                [gr.Accordion(visible=registry.MODES[mode].studio_prompt if s == _PROMPT else True) for s in accordions]

        def set_ranges(model, precision, *values):  # the codebook sliders go as far as the chosen model's codebooks
            top = model_ranges(studio.model_counts(model, precision))  # (a value is changed only beyond the top, so
            # that a model chosen on the page, whose defaults set_defaults writes, sees no race between the two)
            return [gr.Slider(maximum=top[n], **({"value": top[n]} if v > top[n] else {}))
                    for n, v in zip(MODEL_BOUND, values)]

        def set_defaults(model, precision):  # a model chosen on the page: the controls start at its defaults
            top = model_ranges(studio.model_counts(model, precision))
            s = Settings.from_values({"model": model}, model_settings(studio, model))
            return ([gr.Slider(maximum=top[n], value=min(getattr(s, n), top[n])) for n in MODEL_BOUND]
                    + [getattr(s, n) for n in SET_BY_MODEL] + [defaults_note(studio, model)])

        def from_preset(preset):  # a preset shows its values on the controls it sets
            values = preset_values(preset) if preset in modes.PRESETS else {}
            return [values.get(n, gr.skip()) for n in PRESET_CONTROLS]

        def which_preset(preset, *values):  # a control moved away from the preset shows "custom"
            return matching_preset(preset, dict(zip(PRESET_CONTROLS, values)))

        api = inspect.Parameter.empty
        # every setting has its default (a second audio file's is None, which lets an API call leave it out)
        defaults = [(n, None if CONTROL[n].kind == "audio" else getattr(d, n)) for n in names]
        generate = _named([("audio", api), *defaults, ("progress", gr.Progress())], generate)
        preview = _named([("audio", api), *((n, api) for n in masking)], preview)
        go.click(guard(generate), [inp, *controls], [*outs, files, shown], api_name="generate").then(
            show_players, shown, [*outs, *uses], api_name=False).then(
            show_follow, shown, [follow["plot"], follow["status"]], api_name=False)
        follow["use"].click(guard(lambda audio, drawing: drawn_curve(studio, audio, drawing)), [inp, follow["sketch"]],
                            made["loudness"], api_name=False)
        for out, use in zip(outs, uses):
            use.click(guard(use_as_input), out, inp, api_name=False)
        preview_btn.click(guard(preview), [inp, *(controls[names.index(n)] for n in masking)], mask_img,
                          api_name="preview")
        reuse.click(guard(reuse_settings), shown, controls, api_name=False)
        made["mode"].change(show_mode, made["mode"], [*groups.values(), *accordions.values()], api_name=False,
                            queue=False)
        # any change of the model (reused settings too) sets the codebook sliders' top; one chosen on the page also
        # sets the controls its card may set to its defaults, and says where they come from
        bounded = [made[n] for n in MODEL_BOUND]
        made["model"].change(guard(set_ranges), [made["model"], made["precision"], *bounded], bounded, api_name=False)
        made["model"].input(guard(set_defaults), [made["model"], made["precision"]],
                            [*bounded, *(made[n] for n in SET_BY_MODEL), made["defaults_note"]], api_name=False)
        set_by_preset = [made[n] for n in PRESET_CONTROLS]
        made["preset"].input(from_preset, made["preset"], set_by_preset, api_name=False, queue=False)
        for control in set_by_preset:
            control.input(which_preset, [made["preset"], *set_by_preset], made["preset"], api_name=False, queue=False)
        # models fine-tuned while the studio runs appear when the page is (re)loaded
        app.load(lambda: gr.Dropdown(choices=studio.models()), None, made["model"], api_name=False)
        for extend in extensions:
            extend(studio)
    return app


def _follow_widgets(gr) -> dict:
    """The envelope drawing (a fixed canvas spanning the clip: top TOP_DB, bottom BOTTOM_DB), the button that
    writes it into the curve box, and where a result's followed envelope is shown."""
    top, bottom = envelopes.TOP_DB, envelopes.BOTTOM_DB
    sketch = gr.Sketchpad(canvas_size=(envelopes.SKETCH_WIDTH, envelopes.SKETCH_HEIGHT), fixed_canvas=True,
                          type="numpy", elem_id="loudness-sketch",
                          label=f"or draw it: left to right the clip, top {top:g} dB, bottom {bottom:g} dB")
    use = gr.Button("use the drawing as the curve", size="sm", elem_id="use-sketch")
    status = gr.Markdown(elem_id="loudness-status")
    plot = gr.Image(label="loudness: requested and produced", type="filepath", interactive=False,
                    elem_id="loudness-plot")
    return {"sketch": sketch, "use": use, "status": status, "plot": plot}


def drawn_curve(studio: Studio, audio_path, drawing) -> str:
    """The loudness curve a drawing gives over the input clip's length (what "use the drawing" writes)."""
    wav, sr = studio.read_input(audio_path)
    return envelopes.sketch_curve(envelopes.editor_image(drawing), wav.shape[-1] / sr)


def show_follow(settings):
    """The plot and the line saying how closely the first result followed the loudness control (none: empty)."""
    follow = (settings or {}).get("loudness_follow")
    if not follow:
        return None, ""
    r = follow["pearson"][0]
    return follow["plot"], ("loudness followed: Pearson r = " + ("undefined (flat)" if r is None else f"{r:.2f}") +
                            " between the requested and the produced envelope")


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
            studio.pipeline(None)  # a bad --models fails here, before the server starts
        app = build_app(studio, extensions)
        app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
        app.launch(server_name=host, server_port=port, max_file_size=f"{max_file_mb:g}mb", show_error=True, quiet=True)
    finally:
        studio.close()
