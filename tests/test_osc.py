"""The OSC bridge on localhost: a looper's messages go in over UDP, the written files' paths come back; variations
queued ahead answer /next at once; bad requests get one-line /vampnet/error replies. Tiny model."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import osc_receive as receive, osc_send as send, sine_mix
from vampnet.ui import Settings, Studio

pytest.importorskip("pythonosc")

from vampnet.osc import make_server  # noqa: E402

TIMEOUT = 60.0


@pytest.fixture
def bridge(tiny_pipeline, tmp_path):
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    server, bridge = make_server(studio, tmp_path / "out", host="127.0.0.1", port=0, ahead=1)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address, bridge, studio
    finally:
        server.shutdown()
        bridge.close()
        server.server_close()
        studio.close()
        thread.join(10)


@pytest.fixture
def looper(udp_peer):
    """The looper's socket (conftest's udp_peer)."""
    return udp_peer


@pytest.fixture
def loop_file(tmp_path) -> Path:
    path = tmp_path / "recorded loop.wav"
    sf.write(path, sine_mix(1.5, 22050, seed=3), 22050)
    return path


def test_a_loop_comes_back_as_the_path_of_the_written_variation(bridge, looper, loop_file):
    target, _, studio = bridge
    send(looper, "/vampnet/loop", target, str(loop_file), "steps", 4, "seed", 3)
    address, (out, source, seed, precision) = receive(looper)
    assert address == "/vampnet/result" and source == str(loop_file) and seed == 3
    assert precision == "fp32"  # the precision the models ran in (the tests pin auto to fp32)
    data, sr = sf.read(out)
    assert sr == 22050 and np.isfinite(data).all()
    assert len(data) == sf.info(str(loop_file)).frames == 1.5 * sr  # the whole clip, looped, to the sample
    # the same job through the studio gives the same audio: the bridge only translates
    direct = studio.generate(loop_file, Settings(mode="loop", steps=4, seed=3))
    assert np.array_equal(data, sf.read(direct.audio[0])[0])


def test_next_is_answered_from_the_variations_queued_ahead(bridge, looper, loop_file):
    target, state, _ = bridge
    send(looper, "/vampnet/ahead", target, 2)
    send(looper, "/vampnet/loop", target, str(loop_file), "steps", 2, "seed", 10)
    address, (first, _, seed, _) = receive(looper)
    assert address == "/vampnet/result" and seed == 10
    deadline = time.monotonic() + TIMEOUT
    while len(state.ready) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    queued = list(state.ready)
    assert [s for _, s, _ in queued] == [11, 12] and all(p.is_file() for p, _, _ in queued)
    send(looper, "/vampnet/next", target)
    address, (out, _, seed, precision) = receive(looper)
    assert address == "/vampnet/result" and (Path(out), seed, precision) == queued[0]  # already written: no wait
    assert Path(out) != Path(first) and not np.array_equal(sf.read(out)[0], sf.read(first)[0])
    # new options make the queued variations stale: the next one follows them
    send(looper, "/vampnet/next", target, "preset", "wild", "seed", 40)
    address, (out, _, seed, _) = receive(looper)
    assert address == "/vampnet/result" and seed == 40


def test_a_new_loop_replaces_the_old_ones_queue(bridge, looper, loop_file, tmp_path):
    target, state, _ = bridge
    other = tmp_path / "second.wav"
    sf.write(other, sine_mix(1.0, 22050, seed=9), 22050)
    send(looper, "/vampnet/loop", target, str(loop_file), "steps", 2, "seed", 0)
    assert receive(looper)[0] == "/vampnet/result"
    send(looper, "/vampnet/loop", target, str(other), "steps", 2, "seed", 5)
    address, (out, source, seed, _) = receive(looper)
    assert address == "/vampnet/result" and source == str(other) and seed == 5
    assert abs(sf.info(out).duration - 1.0) < 0.01
    send(looper, "/vampnet/next", target)
    assert receive(looper)[1][1:3] == [str(other), 6]


def test_bad_requests_get_one_line_errors(bridge, looper, loop_file, tmp_path):
    target, _, _ = bridge
    send(looper, "/vampnet/next", target)
    assert receive(looper) == ("/vampnet/error", ["no loop yet: send /vampnet/loop PATH first"])
    for args, words in (((str(loop_file), "tempo", 120), "unknown option 'tempo'"),
                        ((str(loop_file), "steps"), "key/value pairs"),
                        ((str(loop_file), "mode", "inpaint"), "mode must be one of loop, vamp"),
                        ((str(loop_file), "steps", "many"), "steps must be a whole number")):
        send(looper, "/vampnet/loop", target, *args)
        address, (message,) = receive(looper)
        assert address == "/vampnet/error" and words in message, message
    send(looper, "/vampnet/loop", target, str(tmp_path / "missing.wav"))
    address, (message,) = receive(looper)
    assert address == "/vampnet/error" and "not found" in message and "\n" not in message
    send(looper, "/vampnet/ahead", target, 99)
    assert receive(looper)[0] == "/vampnet/error"
    send(looper, "/vampnet/remix", target)
    assert receive(looper)[1][0].startswith("unknown message /vampnet/remix")


def test_osc_command_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    from vampnet.cli import main

    assert main(["osc", "--models", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model not found") and "Traceback" not in "\n".join(err)
