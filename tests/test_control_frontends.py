"""The loudness control through every front end (issue 28, "using it"): the CLI's --loudness-from/--loudness, the
Python API (`clip_control`), the studio's /generate (a second upload, a curve, a drawing), HARP's second track
and OSC's keys all hand the pipeline the same Control; bad input gives one-line errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import save_model_folder, served_app, sine_mix
from vampnet import OptionError
from vampnet.cli import main
from vampnet.control_options import CURVE_FORMAT, ControlOptions, clip_control
from vampnet.controls import Control, loudness_from_curve, loudness_from_file
from vampnet.envelopes import editor_image, sketch_curve, sketch_levels
from vampnet.pipeline import Pipeline

CURVE = "0.2:-40, 0.8:-12, 1.4:-50"


@pytest.fixture(scope="module")
def controlled_folder(tmp_path_factory, tiny_pipeline):
    """The tiny models with a loudness input on the coarse model (a non-zero projection), saved as a model folder."""
    coarse = copy.deepcopy(tiny_pipeline.coarse)
    coarse.add_controls(1)
    with torch.no_grad():
        coarse.control.proj.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(0))
    return save_model_folder(tmp_path_factory.mktemp("controlled") / "model", tiny_pipeline.codec, coarse,
                             tiny_pipeline.c2f)


@pytest.fixture(scope="module")
def controlled(controlled_folder):
    return Pipeline.load(controlled_folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 2 s clip at 22.05 kHz, and a 3 s 'drum take' at 44.1 kHz that swells, whose envelope the vamps follow."""
    folder = tmp_path_factory.mktemp("control-audio")
    sf.write(folder / "clip.wav", sine_mix(2.0, 22050), 22050)
    t = np.arange(3 * 44100) / 44100
    sf.write(folder / "drums.wav", (0.02 + 0.5 * t / 3) * np.sin(2 * np.pi * 220 * t), 44100)
    return {"clip": folder / "clip.wav", "drums": folder / "drums.wav"}


def received(monkeypatch, method: str) -> list:
    """The `control` keyword each call of Pipeline.`method` receives (the call still runs)."""
    seen, real = [], getattr(Pipeline, method)

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("control"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, method, spy)
    return seen


def assert_same(a: Control, b: Control):
    assert a is not None and b is not None
    assert torch.equal(a.values, b.values) and torch.equal(a.present, b.present) and a.names == b.names


def api_control(pipe, clip, **given) -> Control:
    wav, sr = sf.read(clip, dtype="float32", always_2d=True)
    return clip_control(pipe, torch.from_numpy(wav.T.copy()), sr, **given)


# --- the Python API ---------------------------------------------------------------------------------------------

def test_the_api_builds_the_engines_control_for_a_clip(controlled, files):
    frames = controlled.prepare(*_load(files["clip"])).codes.shape[-1]
    from_file = api_control(controlled, files["clip"], loudness_from=str(files["drums"]), loudness_fit="align")
    assert_same(from_file, loudness_from_file(files["drums"], frames, controlled.codec, "align"))
    from_curve = api_control(controlled, files["clip"], loudness=CURVE)
    assert_same(from_curve, loudness_from_curve(CURVE, frames, controlled.frame_rate))
    # a range: the control is present only at frames whose centre lies in it, the values unchanged
    ranged = api_control(controlled, files["clip"], loudness=CURVE, loudness_range="0.5-1")
    centres = (torch.arange(frames) + 0.5) / controlled.frame_rate
    assert torch.equal(ranged.present, from_curve.present & (centres >= 0.5) & (centres < 1))
    assert torch.equal(ranged.values, from_curve.values)
    assert api_control(controlled, files["clip"]) is None  # nothing given: no control
    result = controlled.vamp(*_load(files["clip"]), seed=0, control=ranged)
    assert result.settings["control"]["present_frames"] == int(ranged.present.sum())


def _load(path):
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(wav.T.copy()), sr


@pytest.mark.parametrize("given,message", [
    ({"loudness": CURVE, "loudness_from": "x.wav"}, "not both"),
    ({"loudness": "0:-30, soon:-10"}, CURVE_FORMAT),
    ({"loudness": CURVE, "loudness_range": "3-1"}, "START-END"),
    ({"loudness": CURVE, "loudness_range": "1.5-2"}, "controls no frame"),  # the curve ends at 1.4 s
    ({"loudness": CURVE, "loudness_range": "1-1.1"}, None),  # a range the curve covers is fine
])
def test_bad_control_input_is_one_line_errors(controlled, files, given, message):
    if message is None:
        assert api_control(controlled, files["clip"], **given).present.any()
        return
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        api_control(controlled, files["clip"], **given)
    assert "\n" not in str(caught.value)


# --- the command line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,given", [
    (["--loudness-from", "DRUMS", "--loudness-fit", "align"], {"loudness_from": "DRUMS", "loudness_fit": "align"}),
    (["--loudness", CURVE, "--loudness-range", "0.5-1.2"], {"loudness": CURVE, "loudness_range": "0.5-1.2"}),
])
def test_vamp_flags_hand_the_pipeline_the_apis_control(controlled, controlled_folder, files, tmp_path, monkeypatch,
                                                       flags, given):
    seen = received(monkeypatch, "variations")
    flags = [str(files["drums"]) if f == "DRUMS" else f for f in flags]
    given = {k: str(files["drums"]) if v == "DRUMS" else v for k, v in given.items()}
    code = main(["vamp", str(files["clip"]), "-o", str(tmp_path / "out.wav"), "--models", str(controlled_folder),
                 "--seed", "0", "--steps", "2", "--guidance", "2", "-q", *flags])
    assert code == 0 and len(seen) == 1
    assert_same(seen[0], api_control(controlled, files["clip"], **given))


def test_inpaint_takes_the_control_too(controlled, controlled_folder, files, tmp_path, monkeypatch):
    seen = received(monkeypatch, "render")
    code = main(["inpaint", str(files["clip"]), "-o", str(tmp_path / "out.wav"), "--models", str(controlled_folder),
                 "--start", "0.5", "--end", "1.5", "--seed", "0", "--steps", "2", "-q", "--loudness", CURVE])
    assert code == 0
    assert_same(seen[0], api_control(controlled, files["clip"], loudness=CURVE))


@pytest.mark.parametrize("flags,message", [
    (["--loudness", CURVE, "--loudness-from", "DRUMS"], "give a loudness file (--loudness-from) or a loudness curve "
                                                         "(--loudness), not both"),
    (["--loudness", "loud then soft"], CURVE_FORMAT),
    (["--loudness", CURVE, "--models", "PLAIN"], "this model has no control input, so it cannot follow a loudness "
                                                 "envelope; use the bundled --models small-loudness, or make one with "
                                                 "`vampnet finetune --control loudness`"),
])
def test_bad_control_flags_end_in_one_error_line(controlled_folder, tiny_models, files, tmp_path, capsys, flags,
                                                 message):
    names = {"DRUMS": str(files["drums"]), "PLAIN": str(tiny_models["base"])}
    flags = [names.get(f, f) for f in flags]
    models = [] if "--models" in flags else ["--models", str(controlled_folder)]
    out = tmp_path / "out.wav"
    code = main(["vamp", str(files["clip"]), "-o", str(out), *models, "--steps", "2", "-q", *flags])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_commands_that_cannot_follow_a_control_do_not_offer_it():
    import typer.main

    from vampnet.cli import register_commands

    commands = {c.name: c for c in typer.main.get_command(register_commands()).commands.values()}
    flags = {name: {f for p in c.params for f in p.opts} for name, c in commands.items()}
    assert {"--loudness-from", "--loudness", "--loudness-fit", "--loudness-range"} <= flags["vamp"] & flags["inpaint"]
    assert "--loudness" not in flags["loop"] | flags["continue"] | flags["stretch"]


# --- the studio, HARP and OSC ------------------------------------------------------------------------------------

@pytest.fixture
def studio(controlled):
    from vampnet.ui import Studio

    s = Studio(pipeline=controlled, max_seconds=10)
    yield s
    s.close()


def generate_api(studio):
    """The studio's /generate endpoint function (what gradio's API calls), with the parameters named."""
    pytest.importorskip("gradio")
    from vampnet.ui import build_app

    app = build_app(studio)
    return next(d.fn for d in app.fns.values() if d.api_name == "generate")


@pytest.mark.parametrize("how", ["upload", "curve"])
def test_studio_generate_follows_a_second_upload_or_a_curve(studio, controlled, files, monkeypatch, how):
    from vampnet.ui import Settings

    seen = received(monkeypatch, "variations")
    given = {"loudness_from": str(files["drums"])} if how == "upload" else {"loudness": CURVE}
    values = {**Settings().to_dict(), "steps": 2, "seed": 0, "variations": 2, "guidance": 1.5, **given}
    *players, downloads, settings = generate_api(studio)(str(files["clip"]), *values.values())
    assert_same(seen[0], api_control(controlled, files["clip"], **given))
    follow = settings["loudness_follow"]
    assert len(follow["pearson"]) == 2 and all(-1 <= r <= 1 for r in follow["pearson"])
    assert follow["plot"] in map(str, downloads) and open(follow["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert settings["results"][0]["control"]["guidance"] == 1.5
    from vampnet.ui import show_follow

    plot, status = show_follow(settings)
    assert plot == follow["plot"] and f"{follow['pearson'][0]:.2f}" in status


def test_the_gradio_api_takes_the_second_file_as_an_upload(studio, controlled, files, monkeypatch):
    """Over HTTP, as a gradio client calls it: the loudness file goes up as a second upload and the job follows it."""
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    from vampnet.ui import build_app

    seen = received(monkeypatch, "variations")
    with served_app(build_app(studio)) as url:
        client = Client(url, verbose=False)
        *_, settings = client.predict(audio=handle_file(str(files["clip"])), loudness_from=handle_file(str(files["drums"])),
                                      steps=2, seed=0, api_name="/generate")
    assert_same(seen[0], api_control(controlled, files["clip"], loudness_from=str(files["drums"])))
    assert len(settings["loudness_follow"]["pearson"]) == 1


def test_studio_errors_name_its_controls_and_modes_that_cannot_follow(studio, files, tiny_pipeline):
    from vampnet.ui import Settings, Studio

    with pytest.raises(OptionError, match='"loudness curve \\(time_s:dB\\)"'):
        studio.generate(str(files["clip"]), Settings(loudness=CURVE, loudness_from=str(files["drums"])))
    with pytest.raises(OptionError, match="loop cannot follow a loudness envelope \\(vamp, inpaint can\\)"):
        studio.generate(str(files["clip"]), Settings(mode="loop", loudness=CURVE, steps=2))
    plain = Studio(pipeline=tiny_pipeline)
    try:
        with pytest.raises(OptionError, match="no control input"):
            plain.generate(str(files["clip"]), Settings(loudness=CURVE, steps=2))
    finally:
        plain.close()


def test_harp_takes_a_second_track_as_the_control(studio, controlled, files, monkeypatch):
    from vampnet import harp
    from vampnet.ui import Settings

    answer = harp.controls_answer(studio)
    tracks = [e for e in answer["inputs"] if e["type"] == "audio_track"]
    assert answer["inputs"][:2] == tracks and [t["required"] for t in tracks] == [True, False]
    names = [c.name for c in harp.CONTROLS]
    assert {"loudness", "loudness_fit", "loudness_range", "guidance"} <= set(names) and "loudness_from" not in names
    defaults = Settings()
    values = [2 if c.name == "steps" else 0 if c.name == "seed" else getattr(defaults, c.name) for c in harp.CONTROLS]
    seen = received(monkeypatch, "variations")
    path, labels = harp.HarpEndpoint(studio).process(str(files["clip"]), str(files["drums"]), *values)
    assert_same(seen[0], api_control(controlled, files["clip"], loudness_from=str(files["drums"])))
    harp.HarpEndpoint(studio).process(str(files["clip"]), None,
                                      *[CURVE if c.name == "loudness" else v for c, v in zip(harp.CONTROLS, values)])
    assert_same(seen[1], api_control(controlled, files["clip"], loudness=CURVE))


def test_osc_keys_reach_the_job_with_a_file_or_a_curve(studio, controlled, files, monkeypatch):
    from vampnet import osc
    from vampnet.ui import Settings

    assert {"loudness_from", "loudness", "loudness_fit", "loudness_range"} <= set(osc.OPTIONS)
    seen = received(monkeypatch, "variations")
    for given in ({"loudness_from": str(files["drums"]), "loudness_fit": "align"}, {"loudness": CURVE}):
        args = [x for kv in given.items() for x in kv]
        settings = osc.parse_options(args, Settings(mode="vamp", steps=2, seed=0))
        studio.generate(str(files["clip"]), settings)
        assert_same(seen[-1], api_control(controlled, files["clip"], **given))


def test_the_reachability_of_control_options(files):
    """Every control option given by name becomes ControlOptions' field (the schema section front ends share)."""
    options = ControlOptions.from_values({"loudness": CURVE, "loudness_fit": "align", "loudness_range": "1-2",
                                          "loudness_from": "a.wav", "steps": 3})
    assert options == ControlOptions("a.wav", CURVE, "align", "1-2") and options.given
    assert not ControlOptions().given


# --- the drawn envelope -------------------------------------------------------------------------------------------

def test_a_drawn_straight_line_reads_its_height_as_db():
    """A 100-pixel canvas: a two-pixel line whose centre is 30 % down reads -18 dB (top 0, bottom -60) in the
    columns it crosses; undrawn columns are NaN; the curve spans the clip from left to right."""
    layer = np.zeros((100, 200, 4), np.uint8)  # a layer: transparent but for the stroke
    layer[29:31, 50:150] = (0, 0, 0, 255)        # rows 29 and 30: centre at 30.0 px from the top
    levels = sketch_levels(layer)
    assert np.allclose(levels[50:150], -18.0) and np.isnan(levels[:50]).all() and np.isnan(levels[150:]).all()
    # a sloped line on a white composite (no alpha): each column reads its own height
    white = np.full((60, 120, 3), 255, np.uint8)
    rows = np.arange(120) // 2                   # falls one row every two columns: 0 dB at the left
    white[rows, np.arange(120)] = 0
    assert np.allclose(sketch_levels(white), -60.0 * (rows + 0.5) / 60)
    curve = sketch_curve(editor_image({"background": None, "layers": [layer], "composite": None}), 4.0, max_points=3)
    assert curve == "1.010:-18.0, 2.010:-18.0, 2.990:-18.0"  # columns 50, 100, 149 of 200, over a 4 s clip
    with pytest.raises(OptionError, match="draw the loudness envelope"):
        sketch_curve(np.zeros((10, 10, 4), np.uint8), 4.0)


def test_a_drawing_becomes_the_curve_box_text_for_the_clip(studio, files):
    from vampnet.ui import drawn_curve

    layer = np.zeros((180, 600, 4), np.uint8)
    layer[89:91, :] = (0, 0, 0, 255)  # the middle: -30 dB over the whole 2 s clip
    curve = drawn_curve(studio, str(files["clip"]), {"background": None, "layers": [layer], "composite": None})
    points = [tuple(map(float, p.split(":"))) for p in curve.split(", ")]
    assert points[0] == (round(0.5 / 600 * 2, 3), -30.0) and points[-1][0] == round(599.5 / 600 * 2, 3)
    assert all(db == -30.0 for _, db in points) and len(points) == 64
