"""The HARP endpoint: VampNet inside a DAW through HARP, the plug-in that sends a selected audio region to a gradio
app and drops the result back on the track (`vampnet ui --harp`; paste http://localhost:7860 into HARP).

HARP's client speaks plain gradio HTTP. It uploads the region (`POST /gradio_api/upload`, multipart field `files`;
the answer is a JSON list of server paths), asks for the model card and controls (`POST /gradio_api/call/controls`
with `{"data": []}`, then follows the server-sent events at `GET /gradio_api/call/controls/{event_id}`), sends the
region and the control values in the declared order (`POST /gradio_api/call/process`, the region as
`{"path": ..., "meta": {"_type": "gradio.FileData"}}`), follows the events until `complete` or `error`, downloads
each output whose `meta._type` is `gradio.FileData` from its `url`, and draws a `pyharp.LabelList` on the track;
`POST /gradio_api/call/cancel` stops the running job. The client is strict: the controls answer's first element
must be an object, and every output element an object carrying `meta`.

The controls answer (`controls_answer`), the documented schema:
  {"card": {"name", "description", "author", "tags": [str]},
   "inputs": [{"type": "audio_track", "label", "info", "required": true} (the region), the same with "required":
              false (an optional recording whose loudness envelope the vamp follows), then one object per control:
              slider/number_box: "minimum", "maximum", "step", "value" (numbers); toggle: "value" (bool);
              dropdown: "choices" ([label, value] pairs, as gradio writes them), "value", "multiselect" (false);
              text_box: "value" (str); every control also has "label", "info" and "required" (false)],
   "outputs": [{"type": "audio_track", ...}, {"type": "json", ...}]}
The process answer is `[vamp FileData, LabelList]`; the labels mark the spans whose lowest codebook was
regenerated (`label_type` "AudioLabel", `t` and `duration` in seconds, `label`, `description`, `color` ARGB).

This module only translates: the control values become the studio's `Settings` (the same prompt, sampling and
model path as the web page) and the job runs through `Studio.generate`. The controls start at the studio's model's
own defaults (its card's, `ui.model_settings`); a control HARP leaves empty takes the chosen model's."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import modes
from .errors import OptionError
from .studio import Studio
from .ui import CONTROL, DECLARED, SCHEMA, Control, Settings, guard, model_ranges, model_settings, widget

CARD = {
    "name": "VampNet",
    "description": ("Variations of the selected region by masked acoustic token modelling: a prompt keeps some of the "
                    "region's tokens and the model regenerates the rest. Presets go from subtle to wild; the periodic "
                    "prompt, upper codebooks and beats set what is kept. Models: the shipped one, the official weights "
                    "when downloaded, and your fine-tuned models."),
    "author": "Hugo Flores García, Prem Seetharaman, Rithesh Kumar, Bryan Pardo (VampNet); the vampnet package",
    "tags": ["vampnet", "music generation", "variation", "masked token modelling"],
}
LABEL_COLOR = (0xFF, 0x8C, 0x00)  # the regenerated spans' colour (orange), drawn half transparent
MIN_KEPT_S = 0.25                 # kept stretches shorter than this (a periodic prompt's frames) do not split a span


HARP_TYPES = {"slider": "slider", "number": "number_box", "checkbox": "toggle", "radio": "dropdown",
              "dropdown": "dropdown", "text": "text_box"}  # the studio's widget kinds -> HARP's control types


@dataclass(frozen=True)
class HarpControl:
    """One HARP control: the studio control it is (its Settings field, range, choices and default), shown with HARP's
    label and info."""

    name: str
    label: str
    info: str

    @property
    def studio(self) -> Control:
        return CONTROL[self.name]

    @property
    def type(self) -> str:  # slider | toggle | dropdown | number_box | text_box
        return HARP_TYPES[self.studio.kind]

    def describe(self, value, choices: tuple[str, ...] | None = None, maximum=None) -> dict:
        """The control as HARP's controls answer has it (`maximum`: the top the loaded model sets, if any)."""
        c = self.studio
        out = {"type": self.type, "label": self.label, "info": self.info, "required": False}
        if self.type in ("slider", "number_box"):
            top = c.maximum if maximum is None else maximum
            out.update(minimum=c.minimum, maximum=top, step=c.step, value=value if top is None else min(value, top))
        elif self.type == "dropdown":
            out.update(choices=[[x, x] for x in (choices or c.choices)], value=value, multiselect=False)
        elif self.type == "toggle":
            out.update(value=bool(value))
        else:
            out.update(value=str(value))
        return out


# the controls a musician reaches for first, in this order; then every other schema option, so a DAW reaches them
# all. Labels and help are the schema's (or, for the studio's own controls, the studio's): nothing is restated here.
FIRST = ("preset", "periodic", "upper_codebooks", "beats", "dropout", "temperature", "steps", "seed", "model",
         "precision")
TRACK_OPTIONS = ("loudness_from",)  # taken from HARP's second track, not a control


def _harp_control(name: str) -> HarpControl:
    opt = SCHEMA.get(name) or DECLARED.get(name)
    label, info = (opt.title, opt.help) if opt is not None else (CONTROL[name].label, CONTROL[name].info or "")
    return HarpControl(name, label[:1].upper() + label[1:], info)


CONTROLS = tuple(_harp_control(name) for name in (*FIRST, *(n for n in SCHEMA if n not in FIRST
                                                              and n not in TRACK_OPTIONS)))
INPUT_TRACK = {"type": "audio_track", "label": "Input audio", "info": "the region to vary", "required": True}
# HARP takes several audio tracks, each required or not (pyharp's `.harp_required(False)`): an optional second one
# is the recording whose loudness envelope the vamp follows (with a model that has a control input)
CONTROL_TRACK = {"type": "audio_track", "label": "Follow the loudness of", "required": False,
                 "info": "optional: a recording whose swells and drops the vamp follows (stretched over the region); "
                         "needs a model with a control input"}
OUTPUTS = [
    {"type": "audio_track", "label": "Vamp", "info": "the variation, as long as the region", "required": True},
    {"type": "json", "label": "Regenerated", "info": "the spans the model regenerated"},
]


def controls_answer(studio: Studio) -> dict:
    """What `controls` answers: the model card, the inputs (the track, then each control), the outputs."""
    defaults = starting_settings(studio)
    tops = model_ranges(studio.model_counts(studio.default_model))  # the codebook sliders end at the model's count
    inputs = [INPUT_TRACK, CONTROL_TRACK]
    for c in CONTROLS:
        inputs.append(c.describe(getattr(defaults, c.name), tuple(studio.models()) if c.name == "model" else None,
                                 tops.get(c.name)))
    return {"card": CARD, "inputs": inputs, "outputs": OUTPUTS}


def settings_from_controls(studio: Studio, values, loudness_from=None) -> Settings:
    """The studio's Settings for HARP's control values (in CONTROLS order) and its second track (`loudness_from`,
    a path or None): one vamp of the region."""
    values = list(values)
    if len(values) != len(CONTROLS):
        raise OptionError(f"HARP sent {len(values)} control values; this endpoint declares {len(CONTROLS)}")
    given = {c.name: v for c, v in zip(CONTROLS, values) if v is not None and v != ""}
    track = {"loudness_from": str(loudness_from)} if loudness_from else {}
    model = given.get("model") or studio.default_model
    return Settings.from_values({"model": model, **given, **track, "mode": "vamp", "variations": 1},
                                model_settings(studio, model))  # a control left empty: the model's default


def starting_settings(studio: Studio) -> Settings:
    """What HARP's controls start at: the studio's model's defaults (its card's, else the schema's)."""
    return Settings.from_values({"model": studio.default_model}, model_settings(studio))


def regenerated_spans(mask: torch.Tensor, frame_rate: float, min_kept_s: float = MIN_KEPT_S) -> list[tuple[int, int]]:
    """[start, end) frames of the spans whose lowest codebook was generated, for a (K, T) mask (True = generated).
    Kept stretches shorter than `min_kept_s` (e.g. a periodic prompt's single frames) do not split a span; when
    the lowest codebook is kept throughout, the spans of any generated token are given instead."""
    row = mask[0] if mask[0].any() else mask.any(0)
    frames = row.nonzero().flatten().tolist()
    spans: list[list[int]] = []
    min_gap = max(1, round(min_kept_s * frame_rate))
    for f in frames:
        if spans and f - spans[-1][1] < min_gap:
            spans[-1][1] = f + 1
        else:
            spans.append([f, f + 1])
    return [(a, b) for a, b in spans]


def label_list(mask: torch.Tensor, frame_rate: float, precision: str | None = None) -> dict:
    """A pyharp LabelList (as JSON) marking the regenerated spans of a (K, T) mask; each says the precision the
    models ran in, when given (what "auto" chose)."""
    r, g, b = LABEL_COLOR
    color = (round(0.5 * 255) << 24) + (r << 16) + (g << 8) + b
    lowest_kept = not mask[0].any()
    labels = []
    for a, e in regenerated_spans(mask, frame_rate):
        share = float(mask[:, a:e].float().mean())
        labels.append({"label_type": "AudioLabel", "t": round(a / frame_rate, 4), "duration": round((e - a) / frame_rate, 4),
                       "label": "detail regenerated" if lowest_kept else "regenerated",
                       "description": f"{100 * share:.0f}% of the tokens here were generated, the rest kept from the input"
                                      + (f" ({precision})" if precision else ""),
                       "color": color})
    return {"meta": {"_type": "pyharp.LabelList"}, "labels": labels}


class HarpEndpoint:
    """HARP's three calls over one Studio: `controls`, `process` (one vamp, cancellable) and `cancel` (stops every
    running HARP job: HARP's cancel names none)."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._lock = threading.Lock()
        self._running: set[threading.Event] = set()

    def controls(self) -> dict:
        return controls_answer(self.studio)

    def process(self, audio_path, loudness_path, *values) -> tuple[str, dict]:
        settings = settings_from_controls(self.studio, values, loudness_path)
        with self._job() as cancel:
            result = self.studio.generate(audio_path, settings, cancel=cancel)
        frame_rate = self.studio.pipeline(settings.model, Studio.pipeline_config(settings)).frame_rate
        return str(result.audio[0]), label_list(result.results[0].mask[0], frame_rate, result.settings["precision_used"])

    def cancel(self) -> int:
        """Stop the running jobs at their next sampling step; returns how many were running."""
        with self._lock:
            for flag in self._running:
                flag.set()
            return len(self._running)

    @contextmanager
    def _job(self):
        flag = threading.Event()
        with self._lock:
            self._running.add(flag)
        try:
            yield flag
        finally:
            with self._lock:
                self._running.discard(flag)


def add_endpoint(studio: Studio) -> HarpEndpoint:
    """Add HARP's `controls`, `process` and `cancel` API endpoints (and a section showing them) to the gradio
    Blocks being built; call it inside `with blocks:`."""
    import gradio as gr

    endpoint = HarpEndpoint(studio)
    defaults = starting_settings(studio)
    with gr.Accordion("HARP endpoint (for the DAW plug-in)", open=False):
        gr.Markdown("Paste this page's address (e.g. http://localhost:7860) into HARP's model box. These controls "
                    "are what HARP shows; **process** runs them here too.")
        audio = gr.Audio(type="filepath", label=INPUT_TRACK["label"], elem_id="harp-input")
        loudness = gr.Audio(type="filepath", label=CONTROL_TRACK["label"], elem_id="harp-loudness")
        widgets = [widget(gr, c.studio, getattr(defaults, c.name), label=c.label, info=c.info,
                          choices=studio.models() if c.name == "model" else None) for c in CONTROLS]
        with gr.Row():
            process_btn = gr.Button("process", variant="primary", elem_id="harp-process")
            cancel_btn = gr.Button("cancel", elem_id="harp-cancel")
            controls_btn = gr.Button("controls", elem_id="harp-controls")
        out_audio = gr.Audio(type="filepath", label=OUTPUTS[0]["label"], interactive=False)
        out_labels = gr.JSON(label=OUTPUTS[1]["label"])
        shown = gr.JSON(label="controls answer", visible=True)
    controls_btn.click(guard(endpoint.controls), None, shown, api_name="controls", concurrency_limit=None)
    process_btn.click(guard(endpoint.process), [audio, loudness, *widgets], [out_audio, out_labels], api_name="process")
    cancel_btn.click(guard(lambda: {"cancelled": endpoint.cancel()}), None, shown, api_name="cancel",
                     concurrency_limit=None)
    return endpoint
