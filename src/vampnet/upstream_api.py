"""Upstream VampNet's gradio API as it is (hugofloresgarcia/vampnet, `app.py`): `/vamp` and `/vamp_1`, served by
`vampnet ui` beside the studio's own endpoints, so a script written for the upstream app runs unchanged:

    Client(url).predict(input_audio=handle_file("in.wav"), sampletemp=1.0, top_p=0, periodic_p=7, dropout=0,
                        stretch_factor=1, onset_mask_width=0, typical_filtering=True, typical_mass=0.15,
                        typical_min_tokens=64, seed=0, model_choice="default", n_mask_codebooks=3, pitch_shift_amt=0,
                        sample_cutoff=1.0, sampling_steps=36, beat_mask_ms=0, num_feedback_steps=1, api_name="/vamp")

returns two vamps (audio files: the seeds SEED and SEED + 1, as unloop's two). Upstream binds `/vamp` to its page's
button and `/vamp_1` to its API button, the same job; both take the 19 parameters below, in this order, with
upstream's defaults and meanings. The 19th, `periodic_w` (the periodic prompt's width in frames, 1 or more), sits after
`periodic_p` as in upstream's app; unloop and most scripts leave it out, so it defaults to 1 and calls naming the
other 18 run unchanged. This module only translates: `PARAMS` maps each parameter onto our options (unloop
sends the same parameters under a few other names, so its table's entries are reused where the meaning is the
same), and the job runs on the studio's models (`Studio.pipeline`) through `Pipeline.variations` / `modes.stretch`.
A parameter left out takes upstream's default, not the model card's (vampnet.model_defaults): this API mirrors the
upstream app, whose scripts expect its defaults; the prompt and sampling configs are built here in full, so the
pipeline's own card defaults never apply to these jobs."""
from __future__ import annotations

import inspect
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from . import audio, effects, modes, options
from .studio import Studio
from .ui import guard
from .unloop import BEAT_BEFORE_S, N_VARIATIONS, PARAMS as UNLOOP_PARAMS, UNLOOP_PROMPT, Param, check_param

ENDPOINTS = ("vamp", "vamp_1")
_UNLOOP = {p.name: p for p in UNLOOP_PARAMS}


def _as(name: str, unloop_name: str, **changes) -> Param:
    """unloop's parameter of the same meaning, under the app's name (and its own range where it differs)."""
    return replace(_UNLOOP[unloop_name], name=name, **changes)


# The app's parameters after input_audio, in its order, each with upstream's default (what its control shows).
# Ranges are what our engine takes; they hold upstream's controls' ranges except stretch_factor (upstream's slider
# goes 0-8 in whole steps; ours stretches by any factor from 0.25 to 4) and sample_cutoff (upstream's slider stops
# at 0.9 but starts at 1.0).
PARAMS = (
    (_as("sampletemp", "temperature"), 1.0),
    (_as("top_p", "top_p"), 0.0),                                       # 0: off
    (_as("periodic_p", "periodic"), 7),                                 # keep every P-th frame (0: none)
    (Param("periodic_w", "prompt.periodic_width", int, 1), 1),          # frames in a row kept each time
    (_as("dropout", "dropout"), 0.0),
    (Param("stretch_factor", "job.stretch", float, *modes.STRETCH_RANGE), 1),
    (_as("onset_mask_width", "onset_mask_width"), 0),                  # frames kept each side of onsets (0: off)
    (_as("typical_filtering", "typical_filter"), True),
    (_as("typical_mass", "typical_mass"), 0.15),
    (_as("typical_min_tokens", "typical_min_tokens"), 64),
    (_as("seed", "seed"), 0),                                           # 0: a fresh seed
    (_as("model_choice", "model_choice"), "default"),                  # our model names; "default": our default
    (_as("n_mask_codebooks", "upper_codebook_mask"), 3),               # generate from this codebook up
    (Param("pitch_shift_amt", "job.pitch_shift", int, *effects.PITCH_RANGE), 0),  # semitones, before encoding
    (Param("sample_cutoff", "sampling.sample_cutoff", float, 0, 1), 1.0),
    (_as("sampling_steps", "sampling_steps"), 36),
    (_as("beat_mask_ms", "beat_mask_ms"), 0),                           # keep from 0.1 s before to this after beats
    (_as("num_feedback_steps", "num_feedback_steps", low=1), 1),       # vamps in all, each of the one before
)
NAMES = ("input_audio", *(p.name for p, _ in PARAMS))


@dataclass(frozen=True)
class Request:
    """One call in our terms: PromptConfig and SamplingConfig fields, and the job's own values."""

    prompt: dict
    sampling: dict
    job: dict


def parse(values: dict) -> Request:
    """The app's parameters by name -> a Request; a value out of place is an OptionError naming the parameter."""
    sections: dict[str, dict] = {"prompt": {}, "sampling": {}, "job": {}}
    for p, default in PARAMS:
        value = values.get(p.name, default)
        value = str(value if value is not None else default) if p.kind is str else check_param(p, value)
        section, name = p.option.split(".")
        sections[section][name] = p.convert(value)
    return Request(sections["prompt"], sections["sampling"], sections["job"])


def vamp(studio: Studio, path, request: Request, progress=None) -> list[Path]:
    """The app's job: two vamps of the clip at `path` (pitch shifted, stretched and fed back as asked), as files."""
    job = request.job
    studio.sweep()  # results older than the studio keeps them go, as with its own jobs
    wav, sr = studio.read_input(path)
    source = audio.file_format(path)
    wav = effects.pitch_shift(wav, sr, job["pitch_shift"])
    pipe = studio.pipeline(job["model"])
    sampling, c2f_sampling = options.sampling_configs(**request.sampling)
    seed = options.seed_or_new(job["seed"])
    base = options.with_changes(UNLOOP_PROMPT, **request.prompt)  # upstream's periodic prompt is rolled at random

    def prompt_for(clip, rate, factor=1.0):  # beats and onsets are tracked in what is vamped
        prompt, _ = options.with_tracked_times(base, audio.to_mono(clip), rate, beat_before_s=BEAT_BEFORE_S,
                                               beat_after_s=job["beat_after_s"], onset_width=job["onset_width"])
        return replace(prompt, keep_times_s=tuple(t * factor for t in prompt.keep_times_s),
                       onset_times_s=tuple(t * factor for t in prompt.onset_times_s))

    kw = dict(sampling=sampling, c2f_sampling=c2f_sampling, progress=progress)
    if job["stretch"] == 1:
        results = pipe.variations(wav, sr, N_VARIATIONS, prompt=prompt_for(wav, sr), seed=seed, **kw)
    else:
        results = [modes.stretch(pipe, wav, sr, job["stretch"], prompt=prompt_for(wav, sr, job["stretch"]),
                                 seed=seed + i, **kw) for i in range(N_VARIATIONS)]
    for _ in range(job["feedback"]):  # each vamp vamped again
        results = [pipe.vamp(r.audio, r.sample_rate, prompt=prompt_for(r.audio, r.sample_rate), seed=r.settings["seed"],
                             **kw) for r in results]
    files = []
    for r in results:
        r.settings.update(upstream_api=dict(job))  # the file says how it was made
        out = Path(tempfile.mkstemp(prefix=f"vamp-{r.settings['seed']}-", suffix=".wav", dir=studio.folder)[1])
        r.save(out, source=source)
        files.append(out)
    return files


def add_endpoints(studio: Studio) -> None:
    """Add `/vamp` and `/vamp_1` (and a closed section showing their controls) to the gradio Blocks being built;
    call it inside `with blocks:` (ui.build_app's extensions)."""
    import gradio as gr

    def run(*values):  # gradio passes its progress tracker after the values
        progress = values[len(NAMES)] if len(values) > len(NAMES) else None
        report = None if progress is None else (lambda stage, done, total: progress(done / max(total, 1), desc=stage))
        files = vamp(studio, values[0], parse(dict(zip(NAMES[1:], values[1:len(NAMES)]))), report)
        return tuple(str(f) for f in files)

    # gradio names the API's parameters after the function's
    run.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in NAMES]
        + [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
    with gr.Accordion("upstream app's API (/vamp, /vamp_1)", open=False):
        gr.Markdown("Scripts written for the upstream VampNet app call these endpoints with its parameter names; "
                    "each call returns two vamps.")
        inputs = [gr.Audio(type="filepath", label="input_audio")]
        for p, default in PARAMS:  # plain boxes: our table checks the ranges and names the parameter in its errors
            if p.name == "typical_filtering":
                inputs.append(gr.Checkbox(default, label=p.name))
            elif p.kind is str:
                inputs.append(gr.Dropdown(["default", *studio.models()], value=default, label=p.name,
                                          allow_custom_value=True))
            else:
                inputs.append(gr.Number(default, label=p.name))  # no rounding: 2.5 codebooks is an error
        outputs = [gr.Audio(type="filepath", label=f"output audio {i + 1}", interactive=False)
                   for i in range(N_VARIATIONS)]
        buttons = [gr.Button(f"/{name}") for name in ENDPOINTS]
    for button, name in zip(buttons, ENDPOINTS):
        button.click(guard(run), inputs, outputs, api_name=name)
