"""The HARP endpoint, driven over plain HTTP exactly as HARP's client drives it (no gradio client): upload the
region, ask for the controls, process with the values in the declared order, follow the server-sent events,
download each FileData output and read the LabelList; cancel; a bad file. The server is the studio page with the
HARP endpoint (`vampnet ui --harp`'s app) on a tiny model, bound to 127.0.0.1."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import served_app, sine_mix
from vampnet.harp import CONTROLS, add_endpoint, regenerated_spans
from vampnet.ui import Settings, Studio, build_app

gr = pytest.importorskip("gradio")

TIMEOUT = 60  # seconds any one request or event stream may take

# The documented controls schema (README, "HARP"): the keys each kind of entry must carry, with their types.
NUMBER = (int, float)
SCHEMA = {
    "audio_track": {"label": str, "info": str, "required": bool},
    "slider": {"label": str, "info": str, "required": bool, "minimum": NUMBER, "maximum": NUMBER, "step": NUMBER,
               "value": NUMBER},
    "number_box": {"label": str, "info": str, "required": bool, "minimum": NUMBER, "maximum": NUMBER, "step": NUMBER,
                   "value": NUMBER},
    "toggle": {"label": str, "info": str, "required": bool, "value": bool},
    "dropdown": {"label": str, "info": str, "required": bool, "choices": list, "value": str, "multiselect": bool},
    "text_box": {"label": str, "info": str, "required": bool, "value": str},
    "json": {"label": str, "info": str},
}


# --- HARP's client, in plain HTTP ------------------------------------------------------------------------------

def _upload(base: str, path: Path) -> str:
    """POST /gradio_api/upload with the file as multipart field `files`; the first path of the JSON list."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        paths = json.loads(r.read())
    assert isinstance(paths, list) and paths
    return paths[0]


def _post(base: str, name: str, data: list) -> str:
    """POST /gradio_api/call/NAME with {"data": [...]}; the event id."""
    req = urllib.request.Request(f"{base}/gradio_api/call/{name}", data=json.dumps({"data": data}).encode(),
                                 method="POST", headers={"Content-Type": "application/json", "Accept": "*/*"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return json.loads(r.read())["event_id"]


def _events(base: str, name: str, event_id: str) -> tuple[str, object, list[str]]:
    """Follow GET /gradio_api/call/NAME/EVENT_ID until `complete` or `error`: (that event, its data, all events)."""
    seen, event = [], None
    with urllib.request.urlopen(f"{base}/gradio_api/call/{name}/{event_id}", timeout=TIMEOUT) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                seen.append(event)
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.split(":", 1)[1].strip()), seen
    raise AssertionError(f"the stream ended without complete or error (events: {seen})")


def _call(base: str, name: str, data: list):
    return _events(base, name, _post(base, name, data))


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
        return r.read()


def _values(controls: dict, **changes) -> list:
    """The control values HARP sends: each control's declared value, in the declared order, some changed."""
    labels = {c.name: c.label for c in CONTROLS}
    by_label = {labels[k]: v for k, v in changes.items()}
    return [by_label.get(c["label"], c["value"]) for c in controls["inputs"][2:]]  # after the two tracks


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


# --- the server ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_pipeline):
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        with served_app(build_app(studio, extensions=[add_endpoint]), concurrency=1) as url:
            yield url.rstrip("/"), studio
    finally:
        studio.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("harp") / "region.wav"
    sf.write(path, sine_mix(2.0, 22050), 22050)
    return path


# --- tests ---------------------------------------------------------------------------------------------------------

def test_controls_answer_is_an_object_that_follows_the_documented_schema(server, models_home):
    base, studio = server
    event, data, _ = _call(base, "controls", [])
    assert event == "complete" and isinstance(data, list) and isinstance(data[0], dict)  # an object, not a string
    answer = data[0]
    assert set(answer) == {"card", "inputs", "outputs"}
    card = answer["card"]
    assert all(isinstance(card[k], str) and card[k] for k in ("name", "description", "author"))
    assert isinstance(card["tags"], list) and all(isinstance(t, str) for t in card["tags"])
    for entry in answer["inputs"] + answer["outputs"]:
        keys = SCHEMA[entry["type"]]
        for key, kind in keys.items():
            assert isinstance(entry[key], kind), (entry, key)
        if entry["type"] in ("slider", "number_box"):
            assert entry["minimum"] <= entry["value"] <= entry["maximum"] and entry["step"] > 0
        if entry["type"] == "dropdown":  # gradio's (label, value) pairs, which HARP reads
            assert all(isinstance(c, list) and len(c) == 2 for c in entry["choices"])
            assert entry["value"] in [c[1] for c in entry["choices"]]
    tracks = [e for e in answer["inputs"] if e["type"] == "audio_track"]
    assert answer["inputs"][:2] == tracks and [t["required"] for t in tracks] == [True, False]  # region, loudness
    assert [e["type"] for e in answer["outputs"]] == ["audio_track", "json"]
    # what a musician needs, with the studio's defaults
    labels = {e["label"]: e for e in answer["inputs"][2:]}
    from vampnet.harp import CONTROLS
    from vampnet.ui import SCHEMA as OPTION_SCHEMA
    from vampnet.harp import FIRST
    assert [e["label"] for e in answer["inputs"][2:12]] == [c.label for c in CONTROLS[:len(FIRST)]]
    assert [c.name for c in CONTROLS[:len(FIRST)]] == list(FIRST)  # the musician's controls first
    assert labels["Keep one frame in every"]["info"] == OPTION_SCHEMA["periodic"].help  # the schema's words
    assert labels["Make new from layer"]["maximum"] == 4  # the codebook sliders end at the model's codebooks
    # then every other prompt and sampling option of the schema, so a DAW reaches them all
    from vampnet.harp import TRACK_OPTIONS
    assert set(OPTION_SCHEMA) - set(TRACK_OPTIONS) <= {c.name for c in CONTROLS}
    assert len(answer["inputs"]) == 2 + len(CONTROLS)
    d = Settings()
    assert labels["Keep one frame in every"]["value"] == d.periodic and labels["Steps"]["value"] == d.steps
    # the model menu: the shipped model and the fine-tuned one made for these tests
    assert [c[0] for c in labels["Model"]["choices"]] == ["small", "small-loudness", "mine"]
    # the three calls HARP makes exist, and process takes the tracks and then these controls, in this order
    with urllib.request.urlopen(f"{base}/gradio_api/info", timeout=TIMEOUT) as r:
        endpoints = json.loads(r.read())["named_endpoints"]
    assert {"/controls", "/process", "/cancel"} <= set(endpoints)
    assert [p["label"] for p in endpoints["/process"]["parameters"]] == [e["label"] for e in answer["inputs"]]


def test_process_returns_the_studio_vamp_and_labels_as_harp_reads_them(server, clip, models_home):
    base, studio = server
    controls = _call(base, "controls", [])[1][0]
    remote = _upload(base, clip)
    values = _values(controls, steps=4, seed=3)
    event, outputs, seen = _call(base, "process", [_file(remote), None, *values])
    assert event == "complete", outputs
    # every output element is an object with meta (HARP rejects the whole result otherwise)
    assert all(isinstance(o, dict) and isinstance(o.get("meta"), dict) for o in outputs)
    files = [o for o in outputs if o["meta"]["_type"] == "gradio.FileData"]
    lists = [o for o in outputs if o["meta"]["_type"] == "pyharp.LabelList"]
    assert len(files) == 1 and len(lists) == 1
    data, sr = sf.read(_bytes_file(studio, files[0]["url"]))
    assert sr == 22050 and len(data) == 2 * 22050
    # exactly the studio's vamp with the same settings: HARP is a translation, not another path
    direct = studio.generate(clip, Settings(steps=4, seed=3))
    assert np.array_equal(data, sf.read(direct.audio[0])[0])
    # the labels: the default prompt (every 7th frame kept) regenerates the whole region as one span
    labels = lists[0]["labels"]
    assert len(labels) == 1
    label = labels[0]
    assert label["label_type"] == "AudioLabel" and label["label"] == "regenerated"
    frame_rate = studio.pipeline(None, "fp32").frame_rate
    assert label["t"] == pytest.approx(1 / frame_rate, abs=1e-3)  # frame 0 is a kept frame
    assert label["t"] + label["duration"] == pytest.approx(2.0, abs=1.5 / frame_rate)
    assert isinstance(label["color"], int) and label["color"] >> 24 == 128
    assert "generated" in label["description"]


def test_process_with_the_fine_tuned_model_differs_from_the_base(server, clip, models_home):
    base, studio = server
    controls = _call(base, "controls", [])[1][0]
    remote = _upload(base, clip)
    outs = {}
    for model in ("small", "mine"):
        event, outputs, _ = _call(base, "process", [_file(remote), None, *_values(controls, steps=4, seed=1, model=model)])
        assert event == "complete", outputs
        outs[model] = sf.read(_bytes_file(studio, outputs[0]["url"]))[0]
    assert outs["small"].shape == outs["mine"].shape and not np.array_equal(outs["small"], outs["mine"])


def _bytes_file(studio, url: str) -> Path:
    path = Path(studio.folder) / f"{uuid.uuid4().hex}.wav"
    path.write_bytes(_download(url))
    return path


def test_process_returns_the_region_at_its_own_rate_and_sample_format(server, tmp_path, models_home):
    base, studio = server
    region = tmp_path / "region48.wav"
    sf.write(region, sine_mix(1.0, 48000), 48000, subtype="PCM_24")  # a DAW session at 48 kHz, 24 bits
    controls = _call(base, "controls", [])[1][0]
    event, outputs, _ = _call(base, "process", [_file(_upload(base, region)), None, *_values(controls, steps=2, seed=1)])
    assert event == "complete", outputs
    returned = _bytes_file(studio, outputs[0]["url"])
    info = sf.info(str(returned))
    assert (info.samplerate, info.frames, info.subtype) == (48000, 48000, "PCM_24")


def test_a_bad_file_and_a_bad_model_reach_harp_as_one_line_messages(server, tmp_path, clip, models_home):
    base, _ = server
    controls = _call(base, "controls", [])[1][0]
    bad = tmp_path / "region.wav"
    bad.write_text("not audio at all")
    event, data, _ = _call(base, "process", [_file(_upload(base, bad)), None, *_values(controls)])
    assert event == "error" and "cannot read" in data["error"]
    assert "Traceback" not in data["error"] and "\n" not in data["error"]
    event, data, _ = _call(base, "process", [_file(_upload(base, clip)), None, *_values(controls, model="nobody")])
    assert event == "error" and "nobody" in data["error"] and "mine" in data["error"]  # names what exists


def test_cancel_stops_the_running_job(server, clip, tiny_pipeline, monkeypatch, models_home):
    base, _ = server
    calls = []
    hidden = tiny_pipeline.coarse.hidden

    def slow_hidden(*args, **kwargs):  # each coarse step takes 50 ms, so the job runs for seconds
        calls.append(time.monotonic())
        time.sleep(0.05)
        return hidden(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.coarse, "hidden", slow_hidden)
    controls = _call(base, "controls", [])[1][0]
    remote = _upload(base, clip)
    event_id = _post(base, "process", [_file(remote), None, *_values(controls, steps=72, seed=0)])
    result: dict = {}
    follower = threading.Thread(target=lambda: result.update(out=_events(base, "process", event_id)))
    follower.start()
    deadline = time.monotonic() + TIMEOUT
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls, "the job never started"
    event, data, _ = _call(base, "cancel", [])
    assert event == "complete" and data[0] == {"cancelled": 1}
    follower.join(TIMEOUT)
    assert not follower.is_alive()
    event, data, _ = result["out"]
    assert event == "error" and "cancelled" in data["error"]
    stopped = len(calls)
    time.sleep(0.3)
    assert len(calls) == stopped < 72  # no step ran after the cancel; the job had 72 steps to go


def test_regenerated_spans_bridge_short_kept_frames_and_stop_at_kept_stretches():
    frame_rate = 10.0  # kept stretches of 0.25 s (2 frames here) or more split a span
    mask = torch.ones(4, 40, dtype=torch.bool)
    mask[:, ::7] = False        # a periodic prompt's single kept frames: bridged
    mask[:, 20:26] = False      # 0.6 s kept in the middle: two spans
    mask[1:, 30:] = True
    mask[0, 35:] = False        # the lowest codebook kept at the end: the span stops at 35
    assert regenerated_spans(mask, frame_rate) == [(1, 20), (26, 35)]
    detail = torch.zeros(4, 10, dtype=torch.bool)
    detail[2:] = True           # only upper codebooks generated: the spans of any generated token
    assert regenerated_spans(detail, frame_rate) == [(0, 10)]
    assert regenerated_spans(torch.zeros(4, 10, dtype=torch.bool), frame_rate) == []
