"""Upstream VampNet's gradio API (vampnet.upstream_api): a script written for the upstream app calls `/vamp` and
`/vamp_1` through gradio_client with upstream's parameter names (the 18 unloop sends; the app's 19th, periodic_w,
is optional) and gets two playable vamps; bad values are one
line naming the parameter; each parameter lands on the option of the same meaning. The server is the studio page
with the endpoints (`vampnet ui`'s app) on a tiny model, bound to 127.0.0.1."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import served_app, sine_mix
from vampnet.ui import Studio, build_app
from vampnet.upstream_api import NAMES, add_endpoints, parse

gr = pytest.importorskip("gradio")
client_mod = pytest.importorskip("gradio_client")

# a call as upstream's README-style scripts make it: every parameter by name, upstream's defaults but few steps
UPSTREAM_CALL = dict(sampletemp=1.0, top_p=0.0, periodic_p=7, dropout=0.0, stretch_factor=1, onset_mask_width=0,
                     typical_filtering=True, typical_mass=0.15, typical_min_tokens=64, seed=3, model_choice="default",
                     n_mask_codebooks=3, pitch_shift_amt=0, sample_cutoff=1.0, sampling_steps=2, beat_mask_ms=0,
                     num_feedback_steps=1)


@pytest.fixture(scope="module")
def server(tiny_pipeline):
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        with served_app(build_app(studio, extensions=[add_endpoints]), concurrency=1) as url:
            yield url
    finally:
        studio.close()


@pytest.fixture(scope="module")
def client(server):
    return client_mod.Client(server, verbose=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upstream") / "in.wav"
    sf.write(path, sine_mix(1.0, 22050), 22050)
    return path


def playable(path) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32")
    assert sr == 22050 and np.isfinite(data).all() and np.abs(data).max() > 0
    return data


@pytest.mark.parametrize("api_name", ["/vamp", "/vamp_1"])
def test_an_upstream_script_gets_two_playable_vamps(client, clip, api_name):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api_name]
    assert [p["parameter_name"] for p in info["parameters"]] == list(NAMES)  # upstream's names, in its order
    assert NAMES[3:6] == ("periodic_p", "periodic_w", "dropout")  # where upstream's app has its 19th
    first, second = client.predict(input_audio=client_mod.handle_file(str(clip)), **UPSTREAM_CALL, api_name=api_name)
    a, b = playable(first), playable(second)
    assert len(a) == len(b) == 22050  # the input's length
    assert not np.array_equal(a, b)   # two vamps (seeds 3 and 4), not one twice


def test_stretch_and_feedback_run_as_upstream_asks(client, clip):
    first, second = client.predict(input_audio=client_mod.handle_file(str(clip)),
                                   **{**UPSTREAM_CALL, "stretch_factor": 2, "num_feedback_steps": 2}, api_name="/vamp")
    assert len(playable(first)) == len(playable(second)) == 2 * 22050


@pytest.mark.parametrize("changes,message", [
    ({"pitch_shift_amt": 13}, "pitch_shift_amt must be at least -12 and at most 12, got 13"),
    ({"n_mask_codebooks": 2.5}, "n_mask_codebooks must be a whole number, got 2.5"),
    ({"model_choice": "nowhere"}, "model not found: nowhere"),
])
def test_a_bad_value_is_a_one_line_error_naming_it(client, clip, changes, message):
    with pytest.raises(client_mod.exceptions.AppError) as caught:
        client.predict(input_audio=client_mod.handle_file(str(clip)), **{**UPSTREAM_CALL, **changes}, api_name="/vamp")
    assert message in str(caught.value) and "Traceback" not in str(caught.value)


def test_each_parameter_lands_on_the_option_of_the_same_meaning():
    request = parse({**UPSTREAM_CALL, "sampletemp": 0.8, "top_p": 0, "periodic_p": 5, "periodic_w": 2, "dropout": 0.25,
                     "stretch_factor": 2, "onset_mask_width": 4, "typical_filtering": False, "typical_mass": 0.2,
                     "typical_min_tokens": 8, "seed": 0, "model_choice": "mine", "n_mask_codebooks": 2,
                     "pitch_shift_amt": -5, "sample_cutoff": 0.5, "sampling_steps": 12, "beat_mask_ms": 50,
                     "num_feedback_steps": 3})
    assert request.prompt == {"periodic_prompt": 5, "periodic_width": 2, "dropout": 0.25, "upper_codebook_mask": 2}
    assert parse(UPSTREAM_CALL).prompt["periodic_width"] == 1  # left out (as unloop does): upstream's default
    assert request.sampling == {"temperature": 0.8, "top_p": None, "typical_filtering": False, "typical_mass": 0.2,
                                "typical_min_tokens": 8, "sample_cutoff": 0.5, "steps": 12}
    assert request.job == {"stretch": 2.0, "onset_width": 4, "seed": None, "model": "mine", "pitch_shift": -5,
                           "beat_after_s": 0.05, "feedback": 2}
    assert parse({"model_choice": "default"}).job["model"] is None  # upstream's "default": our default model


def test_model_choice_takes_our_model_names(tiny_pipeline, models_home, clip):
    """upstream's "default", the shipped name and a fine-tuned model of the models folder ($VAMPNET_HOME/models)."""
    from vampnet.upstream_api import vamp

    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        for name in ("default", "small", "mine"):
            files = vamp(studio, clip, parse({**UPSTREAM_CALL, "model_choice": name}))
            assert len(files) == 2 and all(len(playable(f)) == 22050 for f in files)
        assert ("mine", "auto") in studio._pipelines  # the fine-tuned model was loaded (default precision), not the default again
    finally:
        studio.close()


def test_two_feedback_steps_equal_vamping_the_first_vamp_again(tiny_pipeline, clip):
    from vampnet import options
    from vampnet.upstream_api import UNLOOP_PROMPT, vamp
    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        request = parse({**UPSTREAM_CALL, "num_feedback_steps": 2})
        fed_back = [playable(f) for f in vamp(studio, clip, request)]
        wav, sr = studio.read_input(clip)
        prompt = options.with_changes(UNLOOP_PROMPT, **request.prompt)
        sampling, c2f_sampling = options.sampling_configs(**request.sampling)
        kw = dict(prompt=prompt, sampling=sampling, c2f_sampling=c2f_sampling)
        for i, first in enumerate(tiny_pipeline.variations(wav, sr, 2, seed=3, **kw)):
            again = tiny_pipeline.vamp(first.audio, first.sample_rate, seed=3 + i, **kw)
            assert np.abs(fed_back[i] - again.audio[0, 0, : len(fed_back[i])].numpy()).max() < 1e-4  # 24-bit file
            assert np.abs(fed_back[i] - first.audio[0, 0, : len(fed_back[i])].numpy()).max() > 1e-2  # not the first vamp
    finally:
        studio.close()
