"""The web studio: its jobs without a browser (tiny model), then the real app in headless Chromium and through
the gradio API with concurrent requests (shipped model)."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, free_port, sine_mix
from vampnet import AudioError, OptionError, modes
from vampnet.audio import OutputOptions
from vampnet.ui import MAX_VARIATIONS, MODES, Settings, Studio, parse_ranges

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def studio(tiny_pipeline, tmp_path):
    s = Studio(pipeline=tiny_pipeline, max_seconds=10)
    yield s
    s.close()
    assert not s.folder.exists()  # closing removes every result file


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, sine_mix(2.0, 22050), 22050)
    return path


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_writes_one_playable_file_per_variation(studio, clip, mode):
    s = Settings(mode=mode, steps=2, variations=2, seed=5, continue_seconds=1.0, loop_seconds=1.0, ranges="0.5-1.0")
    result = studio.generate(clip, s)
    assert len(result.audio) == 2 and result.settings["seeds"] == [5, 6]
    for f in result.audio:
        data, sr = sf.read(f)
        assert sr == 22050 and len(data) > 0 and np.isfinite(data).all()
    extra = {"loop": ".wav", "compress": ".vmpz"}.get(mode)
    assert len(result.downloads) == 2 + (extra is not None)
    if extra:
        assert result.downloads[-1].suffix == extra
    # the settings shown with a result rebuild the same settings (the "reuse" button)
    assert Settings.from_values(result.settings) == s
    again = studio.generate(clip, Settings.from_values(result.settings))
    assert np.array_equal(sf.read(again.audio[0])[0], sf.read(result.audio[0])[0])


def test_results_are_written_as_the_result_file_settings_ask(studio, tmp_path):
    clip48 = tmp_path / "clip48.wav"
    sf.write(clip48, sine_mix(1.0, 48000), 48000, subtype="PCM_24")
    default = sf.info(str(studio.generate(clip48, Settings(steps=2, seed=1)).audio[0]))
    assert (default.samplerate, default.channels, default.subtype) == (48000, 1, "PCM_24")  # the input's
    asked = Settings(steps=2, seed=1, file_type="flac", sample_rate="44100", channels="stereo", bit_depth="16")
    path = studio.generate(clip48, asked).audio[0]
    info = sf.info(str(path))
    assert path.suffix == ".flac" and (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
    looped = studio.generate(clip48, Settings(mode="loop", steps=2, seed=1, file_type="flac"))
    assert [f.suffix for f in looped.downloads] == [".flac", ".flac"]  # the loop and the chain of loops
    assert Settings.from_values({"sample_rate": 48000, "bit_depth": 16.0}).output() == OutputOptions(48000, 1, 16)
    with pytest.raises(OptionError, match="FLAC holds 16- or 24-bit"):
        studio.generate(clip48, Settings(steps=2, file_type="flac", bit_depth="32"))


def test_preview_draws_the_mask_of_the_settings(studio, clip):
    png = studio.preview(clip, Settings(periodic=4))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = torch.zeros(1, 4, 20, dtype=torch.long)
    grid_mask, title = studio.preview_mask(grid, Settings(periodic=4), studio.pipeline(None, "fp32").frame_rate)
    assert "generated" in title and not grid_mask[0, :3, ::4].any() and grid_mask[0, 3].all()


def test_bad_inputs_give_one_line_errors(studio, clip, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(22050 * 12, dtype=np.float32), 22050)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32), 22050)
    for path, words in ((None, "upload"), (not_audio, "cannot read"), (long, "longer than 10 s"), (short, "at least")):
        with pytest.raises(AudioError, match=words):
            studio.generate(path, Settings(steps=1))
    with pytest.raises(OptionError):
        Settings(mode="remix")
    with pytest.raises(OptionError):
        Settings(variations=MAX_VARIATIONS + 1)
    with pytest.raises(OptionError, match="START-END"):
        studio.generate(clip, Settings(mode="inpaint", ranges="one to two"))
    assert parse_ranges("1-2, 3.5-4") == [(1.0, 2.0), (3.5, 4.0)]


def test_old_result_files_are_swept(studio, clip):
    first = studio.generate(clip, Settings(steps=1, seed=0)).audio[0]
    os.utime(first, (time.time() - 2 * studio.keep_s,) * 2)
    studio.generate(clip, Settings(steps=1, seed=1))
    assert not first.exists()


def test_gradio_errors_are_messages_not_tracebacks(studio, clip, tmp_path):
    gr = pytest.importorskip("gradio")
    from vampnet.ui import build_app

    import inspect

    app = build_app(studio)
    fn = next(d.fn for d in app.fns.values() if d.api_name == "generate")
    # the API's parameters are the audio plus every Settings field, in order
    assert list(inspect.signature(fn).parameters)[:-1] == ["audio", *Settings().to_dict()]
    with pytest.raises(gr.Error, match="cannot read"):
        bad = tmp_path / "bad.wav"
        bad.write_text("x")
        fn(str(bad), *Settings().to_dict().values())


def test_use_as_input_puts_each_result_into_the_input_of_the_next_job(studio, clip):
    gr = pytest.importorskip("gradio")
    from vampnet.ui import build_app

    app = build_app(studio)
    by_elem = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
    result = studio.generate(str(clip), Settings(variations=2, steps=2, seed=3)).audio
    for i in range(MAX_VARIATIONS):
        button, player = by_elem[f"use-{i}"], by_elem[f"result-{i}"]
        wired = [d for d in app.fns.values() if (button._id, "click") in d.targets]
        assert len(wired) == 1 and wired[0].inputs == [player] and wired[0].outputs == [by_elem["input-audio"]]
    use = next(d.fn for d in app.fns.values() if (by_elem["use-1"]._id, "click") in d.targets)
    assert use(str(result[1])) == str(result[1])
    with pytest.raises(gr.Error, match="generate something first"):
        use(None)


def test_the_studio_runs_each_mode_through_the_registry(studio, clip, monkeypatch):
    from dataclasses import replace

    from vampnet import mode_registry as registry

    jobs = []
    original = registry.MODES["continue"]

    def spy(job):
        jobs.append(job)
        return original.run(job)

    monkeypatch.setitem(registry.MODES, "continue", replace(original, run=spy))
    result = studio.generate(str(clip), Settings(mode="continue", continue_seconds=0.5, variations=2, steps=2, seed=7))
    assert len(jobs) == 1 and jobs[0].options == registry.ContinueOptions(seconds=0.5) and jobs[0].variations == 2
    assert [r.settings["seed"] for r in result.results] == [7, 8]  # its variations policy: one run per seed


# --- the real app ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`vampnet ui` on the shipped model, two jobs at a time, on a free localhost port."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from vampnet.cli import run; run()", "ui", "--port", str(port),
                                 "--concurrency", "2"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vampnet ui exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("vampnet ui did not start within 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, sine_mix(2.0, 22050), 22050)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_browser_uploads_generates_and_plays(server, short_clip):
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(server)
            page.wait_for_selector("#generate")
            page.locator("#input-audio input[type=file]").first.set_input_files(str(short_clip))
            page.wait_for_selector("#input-audio audio", state="attached", timeout=30000)
            page.click("#preview")  # the mask picture appears before generating
            page.wait_for_selector("#mask img", timeout=60000)
            page.click("#generate")
            link = page.wait_for_selector("#result-0 a[href*='gradio_api/file=']", state="attached", timeout=180000)
            # the browser decodes the served result: it is real audio of the clip's length
            seconds = link.evaluate("""async a => {
                const buf = await (await fetch(a.href)).arrayBuffer();
                return (await new OfflineAudioContext(1, 1, 22050).decodeAudioData(buf)).duration; }""")
            assert abs(seconds - 2.0) < 0.1
            # and its player plays it
            page.click("#result-0 button[aria-label='Play']")
            page.wait_for_selector("#result-0 button[aria-label='Pause']", timeout=10000)
            shot = os.environ.get("VAMPNET_UI_SCREENSHOT")  # how docs/img/ui.png is made
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_four_concurrent_api_requests_all_complete(server, short_clip):
    client_mod = pytest.importorskip("gradio_client")

    def job(seed):
        client = client_mod.Client(server, verbose=False)
        return client.predict(audio=client_mod.handle_file(str(short_clip)), steps=8, seed=seed, api_name="/generate")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(4), timeout=300))
    for seed, out in enumerate(results):
        first, *rest = out[:MAX_VARIATIONS]
        assert rest == [None] * (MAX_VARIATIONS - 1)
        data, sr = sf.read(first)
        assert sr == 22050 and abs(len(data) / sr - 2.0) < 0.05
        assert out[-1]["seeds"] == [seed]


def test_ui_command_refuses_a_missing_model_folder_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-c", "from vampnet.cli import run; run()", "ui", "--models",
                           str(tmp_path / "nowhere"), "--port", str(free_port())], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "error:" in done.stderr.strip().splitlines()[-1]


def test_inpaint_keeps_every_token_outside_its_ranges_whatever_the_prompt_controls(studio, clip):
    """The studio's mode that takes ranges regenerates only inside them: the prompt controls (upper codebooks,
    dropout) do not reach outside, where every token of every codebook is the input's."""
    s = Settings(mode="inpaint", ranges="0.5-1.0, 1.5-1.7", upper_codebooks=0, dropout=0.5, steps=1, seed=0)
    result = studio.generate(clip, s).results[0]
    pipe = studio.pipeline(None, "fp32")
    wav, sr = studio.read_input(clip)
    codes = pipe.prepare(wav, sr).codes
    outside = ~modes.inpaint_mask(codes, [(0.5, 1.0), (1.5, 1.7)], pipe.frame_rate, 2.0)[0, 0]
    assert outside.any() and not result.mask[..., outside].any()
    assert torch.equal(result.codes[..., outside], codes[..., outside])
