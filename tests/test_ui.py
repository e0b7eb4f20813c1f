"""The web studio: its jobs without a browser (tiny model), then the real app in headless Chromium and through
the gradio API with concurrent requests (shipped model)."""
from __future__ import annotations

import concurrent.futures
import contextlib
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

from conftest import ROOT, free_port, served_app, sine_mix
from vampnet import AudioError, OptionError, modes
from vampnet.audio import OutputOptions
from vampnet.mode_registry import VARIATIONS
from vampnet.ui import MODES, PLAYERS, Settings, Studio, parse_ranges

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
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 22050)
    for path, words in ((None, "upload"), (not_audio, "cannot read"), (long, "longer than 10 s"), (empty, "no samples")):
        with pytest.raises(AudioError, match=words):
            studio.generate(path, Settings(steps=1))
    with pytest.raises(OptionError):
        Settings(mode="remix")
    with pytest.raises(OptionError, match=r"variations \(variations\) must be from 1 to 64, got 65"):
        Settings(variations=VARIATIONS.maximum + 1)
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
    for i in range(PLAYERS):
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


def test_each_mode_shows_the_options_its_registry_entry_declares():
    from vampnet import mode_registry as registry
    from vampnet.schema import options_of
    from vampnet.ui import CONTROL, MODE_CONTROLS

    for mode in MODES:
        assert MODE_CONTROLS[mode] == tuple(o.name for o in options_of(registry.MODES[mode].options)), mode
    owned = [n for own in MODE_CONTROLS.values() for n in own]
    assert len(owned) == len(set(owned))  # no control shows under two modes
    assert {c.name for c in CONTROL.values() if c.section == "mode options"} == set(owned)


def test_codebook_ranges_come_from_the_model_and_errors_name_the_control(studio, clip):
    """The tiny model has 4 codebooks: the codebook controls stop there, and more is an error naming the control
    by its label (as the page shows it), never the command line's flag."""
    from vampnet import mode_registry as registry
    from vampnet.schema import in_labels, options_of
    from vampnet.ui import CONTROL, MODEL_BOUND, model_ranges

    assert set(MODEL_BOUND) == {"upper_codebooks", "keep_codebooks", "compress_codebooks"}
    assert model_ranges(studio.model_counts(None)) == dict.fromkeys(MODEL_BOUND, 4)
    assert model_ranges({"codebooks": 14}) == dict.fromkeys(MODEL_BOUND, 14)  # the official model's
    # choosing a model sets the sliders' tops from it (and brings a value beyond them down to the top; the others'
    # values are left alone: an update sends only what it names)
    pytest.importorskip("gradio")
    from vampnet.ui import build_app

    app = build_app(studio)
    by_elem = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
    (chosen,) = [d for d in app.fns.values() if (by_elem["model"]._id, "change") in d.targets]
    assert chosen.outputs == [by_elem[n] for n in MODEL_BOUND]
    sliders = chosen.fn("small", "fp32", 3, 0, 12)
    assert [(u.maximum, u.constructor_args.get("value")) for u in sliders] == [(4, None), (4, None), (4, 4)]
    label = CONTROL["compress_codebooks"].label
    with pytest.raises(OptionError) as caught:
        studio.generate(clip, Settings(mode="compress", compress_codebooks=5, steps=1))
    assert str(caught.value) == f"{label} (compress_codebooks) must be from 1 to 4, got 5"
    with pytest.raises(OptionError, match=CONTROL["upper_codebooks"].label):
        studio.preview(clip, Settings(upper_codebooks=6))
    # the modes' own messages are written for the command line; the studio names its controls instead
    compress = options_of(registry.CompressOptions)
    assert in_labels("--codebooks must be in 1..8", compress) == f'"{label}" must be in 1..8'
    assert in_labels("--window must be positive", compress) == "--window must be positive"  # not an option here
    with pytest.raises(OptionError) as caught:
        studio.generate(clip, Settings(mode="continue", continue_seconds=0, steps=1))
    assert str(caught.value) == (f'continue needs "{CONTROL["continue_seconds"].label.split(" (")[0]}" and/or '
                                 f'"{CONTROL["continue_before"].label.split(" (")[0]}" greater than 0')


def test_the_preset_menu_and_the_prompt_controls_agree():
    """The page starts on the default preset, whose values are the prompt controls' defaults; moving a control away
    from the preset shows "custom", and a preset's values show "that preset"."""
    from vampnet.ui import DEFAULT_PRESET, PRESET_CONTROLS, matching_preset, preset_values

    defaults = Settings()
    assert defaults.preset == DEFAULT_PRESET
    assert preset_values(DEFAULT_PRESET) == {n: getattr(defaults, n) for n in PRESET_CONTROLS}
    assert matching_preset(DEFAULT_PRESET, {n: getattr(defaults, n) for n in PRESET_CONTROLS}) == DEFAULT_PRESET
    assert matching_preset(DEFAULT_PRESET, {**preset_values(DEFAULT_PRESET), "periodic": 5}) == "custom"
    assert matching_preset("custom", preset_values("wild")) == "wild"
    assert set(PRESET_CONTROLS) == {"periodic", "periodic_width", "random_roll", "upper_codebooks", "dropout",
                                    "random_intensity"}


def test_a_preset_takes_the_prompt_controls_moved_from_their_defaults(studio):
    """As the command line's flags change a preset: the default preset with a moved control is that control's
    value; a named preset with the controls at their defaults is the preset's prompt."""
    assert studio.prompt(Settings(periodic=5)) == modes.preset("variation", periodic_prompt=5)
    assert studio.prompt(Settings()) == studio.prompt(Settings(preset="custom"))
    assert studio.prompt(Settings(preset="wild", suffix=0.5)) == modes.preset("wild", suffix_s=0.5)
    assert studio.prompt(Settings(preset="wild", periodic=5)).periodic_prompt == 5


def test_clips_shorter_than_a_quarter_second_are_taken_as_the_command_line_takes_them(studio, tmp_path):
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, sine_mix(0.05, 22050), 22050)
    result = studio.generate(tiny, Settings(steps=1, seed=0))
    data, sr = sf.read(result.audio[0])
    assert sr == 22050 and len(data) == round(0.05 * 22050)


def test_loops_of_bars_are_as_long_as_the_tracked_bars(studio, tmp_path):
    """120 BPM clicks, every 4th accented: 2 bars are 4.0 s, and each loop is exactly the region the tracker's
    downbeats give (the beat tracker quantises to its frames: within 50 ms of 4 s)."""
    pytest.importorskip("librosa")
    sr = 22050
    x = 0.05 * sine_mix(6.5, sr)
    for k in range(12):  # clicks at 0.5, 1.0, ... 6.0 s
        start, n = int((0.5 + 0.5 * k) * sr), sr // 70
        x[start:start + n] += (1.0 if k % 4 == 0 else 0.4) * np.hanning(2 * n)[n:] * np.sin(np.arange(n) * 0.7)
    clicks = tmp_path / "clicks.wav"
    sf.write(clicks, x.astype(np.float32), sr)
    result = studio.generate(clicks, Settings(mode="loop", loop_bars=2, steps=1, seed=0))
    loop = result.results[0].settings
    assert abs(loop["loop_seconds"] - 4.0) < 0.05 and loop["loop_start_s"] < 1.0
    assert sf.info(str(result.audio[0])).frames == modes.loop_samples(loop["loop_seconds"], sr)
    with pytest.raises(OptionError) as caught:  # more bars than the clip holds: named as the page names them
        studio.generate(clicks, Settings(mode="loop", loop_bars=9, steps=1))
    assert str(caught.value).startswith('"loop length in bars" 9: the tracker found')


def test_variations_have_one_limit_for_the_command_line_and_the_studio(studio, clip):
    """One declaration (mode_registry.VARIATIONS): the CLI's --variations and the studio's API take up to its maximum,
    the studio's slider shows up to its slider's top, and the page has a player for each of those."""
    gr = pytest.importorskip("gradio")  # noqa: F841
    import typer.main

    from vampnet.cli import register_commands
    from vampnet.ui import CONTROL, build_app

    commands = {c.name: c for c in typer.main.get_command(register_commands()).commands.values()}
    for name in ("vamp", "loop"):
        (param,) = [p for p in commands[name].params if p.name == "variations"]
        assert param.max == VARIATIONS.maximum == 64, name
    assert CONTROL["variations"].maximum == PLAYERS == 16
    assert Settings(variations=64).variations == 64
    app = build_app(studio)
    fn = next(d.fn for d in app.fns.values() if d.api_name == "generate")
    values = {**Settings().to_dict(), "variations": PLAYERS + 1, "steps": 1, "seed": 0}
    *players, downloads, settings = fn(str(clip), *values.values())
    assert len(players) == PLAYERS and all(players) and len(downloads) == PLAYERS + 1
    assert settings["seeds"] == list(range(PLAYERS + 1))


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


@contextlib.contextmanager
def chromium_page(url: str, width: int, height: int):
    """A page of headless Debian Chromium at `url`, `width` x `height`, once the Generate button is there."""
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.wait_for_selector("#generate")
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, sine_mix(2.0, 22050), 22050)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_browser_uploads_generates_and_plays(server, short_clip):
    with chromium_page(server, 1300, 1100) as page:
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


@pytest.mark.slow
def test_four_concurrent_api_requests_all_complete(server, short_clip):
    client_mod = pytest.importorskip("gradio_client")

    def job(seed):
        client = client_mod.Client(server, verbose=False)
        return client.predict(audio=client_mod.handle_file(str(short_clip)), steps=8, seed=seed, api_name="/generate")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(4), timeout=300))
    for seed, out in enumerate(results):
        first, *rest = out[:PLAYERS]
        assert rest == [None] * (PLAYERS - 1)
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


# --- the page as a musician sees it (tiny model, headless Chromium) --------------------------------------------

@pytest.fixture(scope="module")
def tiny_page(tiny_pipeline):
    """The studio's page on the tiny model (4 codebooks), served in this process on a free localhost port."""
    pytest.importorskip("gradio")
    from vampnet.ui import build_app

    studio = Studio(pipeline=tiny_pipeline, max_seconds=10)
    try:
        with served_app(build_app(studio)) as url:
            yield url
    finally:
        studio.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_shows_what_a_musician_needs_without_scrolling(tiny_page, short_clip):
    """At 1400x1000: Generate is in view without scrolling; each mode shows its own options only (as the mode
    registry declares them); the codebook sliders stop at the model's 4 codebooks; a bad value is an error that
    names the control by its label; the preset menu starts on a real preset. Saves the screenshot for the README
    (docs/img/studio.png) where VAMPNET_UI_SCREENSHOT says."""
    from vampnet.ui import CONTROL, DEFAULT_PRESET, MODE_CONTROLS, preset_values

    with chromium_page(tiny_page, 1400, 1000) as page:
        box = page.locator("#generate").bounding_box()
        assert page.evaluate("window.scrollY") == 0 and box["y"] + box["height"] <= 1000, box
        # the preset menu starts on a real preset, whose values the prompt controls show
        assert page.locator("#preset input").input_value() == DEFAULT_PRESET
        shown = page.locator("#periodic input[type=number]").input_value()
        assert float(shown) == preset_values(DEFAULT_PRESET)["periodic"]
        # moving a prompt control away from the preset shows "custom"; choosing a preset sets the controls
        periodic = page.locator("#periodic input[type=number]")
        periodic.fill("5")
        periodic.press("Enter")
        page.wait_for_function("() => document.querySelector('#preset input').value === 'custom'")
        for name, value in (("wild", "13"), (DEFAULT_PRESET, "7")):
            page.locator("#preset input").click()
            page.locator(f"[data-testid=dropdown-option][aria-label='{name}']").click()
            page.wait_for_function(f"() => document.querySelector('#periodic input[type=number]').value === '{value}'")
        # each mode shows its own options and no other mode's
        every = {n for own in MODE_CONTROLS.values() for n in own}
        for mode, own in MODE_CONTROLS.items():
            page.locator("#mode label", has_text=mode).first.click()
            for name in every:
                expect = name in own
                page.wait_for_function(f"() => {{ const e = document.getElementById('{name}');"
                                       f" return !!(e && e.offsetParent) === {str(expect).lower()}; }}", timeout=5000)
        # the codebook sliders stop at the model's codebooks (the tiny model has 4); the prompt's show with the
        # modes that take a prompt
        for mode, name in (("compress", "compress_codebooks"), ("vamp", "upper_codebooks"), ("vamp", "keep_codebooks")):
            page.locator("#mode label", has_text=mode).first.click()
            assert page.locator(f"#{name} input[type=range]").get_attribute("max") == "4", name
        # a vamp, for the picture
        page.locator("#input-audio input[type=file]").first.set_input_files(str(short_clip))
        page.wait_for_selector("#input-audio audio", state="attached", timeout=30000)
        page.click("#generate")
        page.wait_for_selector("#result-0 a[href*='gradio_api/file=']", state="attached", timeout=120000)
        shot = os.environ.get("VAMPNET_UI_SCREENSHOT")  # how docs/img/studio.png is made
        if shot:
            page.wait_for_timeout(2000)  # the result's player draws its waveform
            page.screenshot(path=shot)
        # a bad value: an error naming the control as the page labels it, not a command-line flag
        page.locator("#mode label", has_text="continue").first.click()
        seconds = page.locator("#continue_seconds input[type=number]")
        seconds.fill("0")
        seconds.press("Enter")
        page.click("#generate")
        toast = page.wait_for_selector(".toast-body", timeout=60000).inner_text()
        title = CONTROL["continue_seconds"].label.split(" (")[0]  # the label, without its unit
        assert f'"{title}"' in toast and "--" not in toast, toast


def test_the_studio_stretches_by_its_factor_and_feeds_loops_back(studio, clip):
    n_in = sf.info(str(clip)).frames
    stretched = studio.generate(clip, Settings(mode="stretch", stretch_factor=2.0, steps=2, seed=1))
    assert abs(len(sf.read(stretched.audio[0])[0]) / n_in - 2.0) < 0.02  # the duration changes by the factor
    once = studio.generate(clip, Settings(mode="loop", loop_seconds=1.0, steps=2, seed=3))
    fed = studio.generate(clip, Settings(mode="loop", loop_seconds=1.0, steps=2, seed=3, loop_feedback=1))
    assert fed.results[0].settings["feedback"] == 1 and once.results[0].settings["feedback"] == 0
    assert len(sf.read(fed.audio[0])[0]) == len(sf.read(once.audio[0])[0])  # the same loop, vamped once more
    assert not np.array_equal(sf.read(fed.audio[0])[0], sf.read(once.audio[0])[0])
