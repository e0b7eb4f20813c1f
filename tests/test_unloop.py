"""`vampnet osc --unloop` on localhost, the test playing the unloop Max patch's role: heartbeat, /process on a
48 kHz loop with a tail past the loop length, /process-result with two 48 kHz files whose tails are the input's,
/error for bad paths and arguments (the bridge keeps serving), /cleanup of our files only. Tiny model."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import osc_receive as receive, osc_send as send, sine_mix
from vampnet import OptionError, modes, options
from vampnet.ui import Studio

pytest.importorskip("pythonosc")

from vampnet import unloop  # noqa: E402

LOOP_MS, TAIL_S = 1000.0, 0.3


@pytest.fixture
def patch(udp_peer):
    """The Max patch's socket (conftest's udp_peer)."""
    return udp_peer


@pytest.fixture
def bridge(tiny_pipeline, tmp_path, patch):
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    server, state = unloop.make_unloop_server(studio, tmp_path / "out", host="127.0.0.1", port=0,
                                              reply_port=patch.getsockname()[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address, state
    finally:
        server.shutdown()
        state.close()
        server.server_close()
        studio.close()
        thread.join(10)


@pytest.fixture
def recording(tmp_path) -> Path:
    """What the patch records: a 48 kHz loop of LOOP_MS with TAIL_S more past it."""
    path = tmp_path / "unloop recording.wav"
    sf.write(path, sine_mix(LOOP_MS / 1000 + TAIL_S, 48000, seed=4), 48000)
    return path


def process_args(query_id, path, **changes):
    values = dict(model_choice="default", periodic=7, dropout=0.0, seed=3, looplength_ms=LOOP_MS, typical_filter=1,
                  typical_mass=0.15, typical_min_tokens=64, upper_codebook_mask=3, onset_mask_width=0,
                  sampling_steps=4, temperature=1.0, top_p=0.0, beat_mask_ms=0.0, num_feedback_steps=1)
    values.update(changes)
    return [query_id, "vampnet", str(path), *(values[p.name] for p in unloop.PARAMS)]


def receive_until(sock, wanted: tuple[str, ...], limit: int = 2000) -> tuple[str, list, list]:
    """The first reply at one of `wanted` addresses, and the replies before it."""
    before = []
    for _ in range(limit):
        address, args = receive(sock)
        if address in wanted:
            return address, args, before
        before.append((address, args))
    raise AssertionError(f"no {wanted} among {limit} replies")


def test_the_patch_gets_two_48k_vamps_of_its_loop_with_the_tail_appended_unchanged(bridge, patch, recording,
                                                                                     tiny_pipeline):
    target, state = bridge
    send(patch, "/heartbeat", target)
    assert receive(patch) == ("/heartbeat", ["pong"])
    send(patch, "/process", target, *process_args(7, recording))
    address, args, before = receive_until(patch, ("/process-result", "/error"))
    assert address == "/process-result", args
    assert args[0] == 7 and len(args) == 3
    assert ("/log", ["query 7 has been processed"]) in before
    assert [a for a, _ in before].count("/progress") >= 2 and all(p[0] == 7 for a, p in before if a == "/progress")
    source, sr = sf.read(recording, dtype="float32")
    n_loop, n_tail = 48000, len(source) - 48000
    outs = []
    for path in args[1:]:
        data, rate = sf.read(path, dtype="float32")
        assert rate == 48000 and data.ndim == 1 and len(data) == n_loop + n_tail
        assert np.array_equal(data[n_loop:], source[n_loop:])  # the audio past the loop length, unchanged
        outs.append(data)
    assert not np.allclose(outs[0][:n_loop], outs[1][:n_loop])            # two variations (seeds 3 and 4)
    # the bridge only translates: the same loop job run directly gives the same loops
    prompt = options.with_changes(unloop.UNLOOP_PROMPT, periodic_prompt=7, dropout=0.0, upper_codebook_mask=3)
    sampling, c2f = options.sampling_configs(steps=4, temperature=1.0, typical_filtering=True, typical_mass=0.15,
                                             typical_min_tokens=64, top_p=None)
    direct = modes.loop(tiny_pipeline, torch.from_numpy(source[:n_loop]).view(1, 1, -1), 48000, variations=2,
                        prompt=prompt, output_rate=48000, sampling=sampling, c2f_sampling=c2f, seed=3)
    for out, v in zip(outs, direct.variations):
        assert np.array_equal(out[:n_loop], v.audio[0, 0].numpy())
    assert sf.info(recording).frames == len(source)  # the recording itself is left as it was


def test_bad_paths_and_arguments_get_error_and_the_bridge_keeps_serving(bridge, patch, recording, tmp_path):
    target, _ = bridge
    missing = tmp_path / "no such take.wav"
    send(patch, "/process", target, *process_args(1, missing))
    address, (message,), _ = receive_until(patch, ("/error", "/process-result"))
    assert address == "/error" and str(missing) in message and "\n" not in message
    for changes, words in (({"typical_mass": 2.0}, "typical_mass must be above 0 and at most 1, got 2"),
                           ({"looplength_ms": 0.0}, "looplength_ms must be above 0"),
                           ({"sampling_steps": 2.5}, "sampling_steps must be a whole number"),
                           ({"periodic": "often"}, "periodic must be a number")):
        send(patch, "/process", target, *process_args(2, recording, **changes))
        address, (message,) = receive(patch)
        assert address == "/error" and words in message, message
    send(patch, "/process", target, 3, "vampnet", str(recording))
    address, (message,) = receive(patch)
    assert address == "/error" and f"takes {unloop.N_ARGS} arguments" in message
    send(patch, "/process", target, *process_args(4, recording, looplength_ms=5000.0))
    address, (message,), _ = receive_until(patch, ("/error", "/process-result"))
    assert address == "/error" and "longer than the recording (1300 ms)" in message
    send(patch, "/process", target, *process_args(5, recording, model_choice="no-such-model"))
    address, (message,), _ = receive_until(patch, ("/error", "/process-result"))
    assert address == "/error" and "model not found: no-such-model" in message
    send(patch, "/tempo", target, 120)
    assert receive(patch)[1][0].startswith("unknown message /tempo")
    send(patch, "/heartbeat", target)
    assert receive(patch) == ("/heartbeat", ["pong"])


def test_cleanup_deletes_our_result_files_and_nothing_else(bridge, patch, recording):
    target, state = bridge
    send(patch, "/process", target, *process_args("a", recording, sampling_steps=2))
    _, (_, first, second), _ = receive_until(patch, ("/process-result",))
    send(patch, "/cleanup", target, first)
    assert receive(patch) == ("/log", [f"deleted {Path(first).resolve()}"])
    assert not Path(first).exists() and Path(second).is_file()
    send(patch, "/cleanup", target, str(recording))
    address, (message,) = receive(patch)
    assert address == "/error" and "not a file this bridge wrote" in message and recording.is_file()
    send(patch, "/cleanup", target, first)  # already gone: no longer ours
    assert receive(patch)[0] == "/error"


def test_each_unloop_argument_maps_onto_our_option_in_our_units():
    query = unloop.parse_process(process_args(9, "/tmp/x.wav", seed=0, looplength_ms=1500, typical_filter=0,
                                              top_p=0.9, beat_mask_ms=50, onset_mask_width=5, num_feedback_steps=3,
                                              model_choice="mine"))
    assert query.prompt == dict(periodic_prompt=7, dropout=0.0, upper_codebook_mask=3)
    assert query.sampling == dict(typical_filtering=False, typical_mass=0.15, typical_min_tokens=64, steps=4,
                                  temperature=1.0, top_p=0.9)
    assert query.job == dict(model="mine", seed=None, loop_seconds=1.5, onset_width=5, beat_after_s=0.05, feedback=2)
    off = unloop.parse_process(process_args(9, "/tmp/x.wav", seed=12, top_p=0, num_feedback_steps=0))
    assert off.sampling["top_p"] is None and off.job["seed"] == 12 and off.job["feedback"] == 0
    assert off.job["model"] is None  # "default": the bridge's default model
    with pytest.raises(OptionError, match="client_type 'sketch2sound'"):
        unloop.parse_process([9, "sketch2sound", *process_args(9, "x")[2:]])


def test_beat_and_onset_masks_and_feedback_reach_the_loop_job(bridge, patch, recording, monkeypatch):
    target, _ = bridge
    seen = {}
    loop = modes.loop

    def fake_times(wav, sample_rate, *, beats=False, onsets=False, tracker="auto"):
        seen["tracked"] = wav.shape[-1] / sample_rate  # only the loop is tracked, not the tail
        return ((0.25, 0.75), []) if beats else ((0.5,), [])

    def spy(*args, **kwargs):
        seen.update(prompt=kwargs["prompt"], feedback=kwargs["feedback"])
        return loop(*args, **kwargs)

    monkeypatch.setattr(options, "prompt_times", fake_times)
    monkeypatch.setattr(modes, "loop", spy)
    send(patch, "/process", target, *process_args(8, recording, beat_mask_ms=50, onset_mask_width=2,
                                                  num_feedback_steps=2, sampling_steps=2))
    address, args, _ = receive_until(patch, ("/process-result", "/error"))
    assert address == "/process-result", args
    p = seen["prompt"]
    assert seen["tracked"] == LOOP_MS / 1000 and seen["feedback"] == 1
    assert (p.keep_times_s, p.keep_before_s, p.keep_after_s) == ((0.25, 0.75), unloop.BEAT_BEFORE_S, 0.05)
    assert (p.onset_times_s, p.onset_width, p.random_roll) == ((0.5,), 2, True)



def test_feedback_vamps_the_loop_again(tiny_pipeline):
    """num_feedback_steps 2 (our feedback 1): the loop is vamped a second time, so other tokens come out."""
    wav = torch.from_numpy(sine_mix(1.0, 22050, seed=1)).view(1, 1, -1)
    kw = dict(variations=1, sampling=options.sampling_configs(steps=2)[0], seed=5)
    once, twice = (modes.loop(tiny_pipeline, wav, 22050, feedback=f, **kw).variations[0].codes for f in (0, 1))
    assert not torch.equal(once, twice)


def test_osc_unloop_command_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    from vampnet.cli import main

    assert main(["osc", "--unloop", "--models", str(tmp_path / "nowhere"), "--listen-port", "18001"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model not found") and "Traceback" not in "\n".join(err)
