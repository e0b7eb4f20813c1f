"""The `vampnet` command end to end on the fixture models, and its errors: one line, non-zero exit, no traceback,
no output file left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SET_A, sine_mix

EXE = Path(sys.executable).parent / "vampnet"


def run(*args, timeout=300, env=None):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def assert_clean_failure(proc, output: Path | None = None):
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and ("error" in lines[-1].lower())
    if output is not None:
        assert not output.exists()
        assert not list(output.parent.glob(f".{output.name}.*"))  # no temporary file left either


def test_vamp_writes_audio_of_the_input_duration(wav_file, tmp_path):
    out = tmp_path / "out.wav"
    proc = run("vamp", wav_file, "-o", out, "--models", SET_A, "--seed", 1, "--steps", 3, "--c2f-steps", 2,
               "--periodic", 5, "--prefix", 0.5, "--top-p", 0.9, "-q")
    assert proc.returncode == 0, proc.stderr
    y, sr = sf.read(out)
    assert sr == 44100 and len(y) == sf.info(str(wav_file)).frames and np.isfinite(y).all()
    assert "seed 1" in proc.stderr


def test_same_seed_gives_the_same_file_with_either_sampler_or_in_a_batch(wav_file, tmp_path):
    """Three processes: the eager sampler, the static-shape one, and two variations in one batch (seeds 5 and 6):
    the same output for seed 5 (the seed fixes every random number)."""
    for name, extra in (("a.wav", ["--capture", "off"]), ("b.wav", ["--capture", "static"]), ("c.wav", ["--variations", 2])):
        assert run("vamp", wav_file, "-o", tmp_path / name, "--models", SET_A, "--seed", 5, "--steps", 2, *extra,
                   "-q").returncode == 0
    a = sf.read(tmp_path / "a.wav")[0]
    assert np.array_equal(a, sf.read(tmp_path / "b.wav")[0]) and np.array_equal(a, sf.read(tmp_path / "c-1.wav")[0])
    assert not (tmp_path / "c.wav").exists() and not np.array_equal(a, sf.read(tmp_path / "c-2.wav")[0])


def test_encode_decode_round_trip(wav_file, tmp_path):
    assert run("encode", wav_file, "-o", tmp_path / "c.npz", "--models", SET_A).returncode == 0
    with np.load(tmp_path / "c.npz") as f:
        assert f["codes"].shape[:2] == (1, 6)
    assert run("decode", tmp_path / "c.npz", "-o", tmp_path / "d.wav", "--codec", SET_A / "codec.pth").returncode == 0
    assert sf.info(str(tmp_path / "d.wav")).frames == sf.info(str(wav_file)).frames


def test_convert_folder_then_vamp_with_converted_models_gives_identical_output(wav_file, tmp_path):
    assert run("convert", SET_A, "-o", tmp_path / "ours").returncode == 0
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["c2f.safetensors", "coarse.safetensors", "codec.safetensors"]
    for models, name in ((SET_A, "off.wav"), (tmp_path / "ours", "ours.wav")):
        assert run("vamp", wav_file, "-o", tmp_path / name, "--models", models, "--seed", 3, "--steps", 3, "-q").returncode == 0
    assert np.array_equal(sf.read(tmp_path / "off.wav")[0], sf.read(tmp_path / "ours.wav")[0])


def test_convert_single_file_and_info(tmp_path):
    assert run("convert", SET_A / "coarse.pth", "-o", tmp_path / "coarse.safetensors", "--codec", SET_A / "codec.pth").returncode == 0
    proc = run("info", tmp_path / "coarse.safetensors")
    info = json.loads(proc.stdout)
    assert info["kind"] == "transformer" and info["config"]["n_codebooks"] == 4 and info["format"].startswith("vampnet")
    info = json.loads(run("info", SET_A / "codec.pth").stdout)
    assert info["kind"] == "codec" and info["config"]["n_codebooks"] == 6
    assert_clean_failure(run("convert", SET_A / "coarse.pth", "-o", tmp_path / "x.safetensors"))  # needs --codec


def test_missing_input(tmp_path):
    out = tmp_path / "o.wav"
    assert_clean_failure(run("vamp", tmp_path / "nope.wav", "-o", out, "--models", SET_A), out)


def test_corrupt_and_empty_audio(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00junk")
    out = tmp_path / "o.wav"
    assert_clean_failure(run("vamp", bad, "-o", out, "--models", SET_A), out)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 44100)
    assert_clean_failure(run("vamp", empty, "-o", out, "--models", SET_A), out)


@pytest.mark.parametrize("args", [["--steps", "0"], ["--temperature", "-1"], ["--top-p", "2"], ["--dropout", "1.5"],
                                  ["--range", "3-1"], ["--range", "abc"], ["--periodic", "-2"]])
def test_bad_option_values(wav_file, tmp_path, args):
    out = tmp_path / "o.wav"
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", SET_A, *args), out)


def test_wrong_checkpoint_kind_and_missing_models(wav_file, tmp_path):
    out = tmp_path / "o.wav"
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", SET_A, "--coarse", SET_A / "codec.pth"), out)
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", tmp_path / "nowhere"), out)
    # no --models means the shipped model (tested in test_shipped_model); "official" before a download fails clearly
    env = {**os.environ, "VAMPNET_HOME": str(tmp_path / "home")}
    proc = run("vamp", wav_file, "-o", out, "--models", "official", env=env)
    assert_clean_failure(proc, out)
    assert "vampnet download" in proc.stderr
    assert_clean_failure(run("info", wav_file))


def test_unsupported_output_extension(wav_file, tmp_path):
    out = tmp_path / "o.m4a"  # MP3 is written now; AAC is not
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", SET_A), out)


def test_vamp_writes_the_inputs_format_or_the_one_asked_for(tmp_path):
    src = tmp_path / "in48.wav"
    sf.write(src, np.stack([sine_mix(1.0, 48000)] * 2, 1), 48000, subtype="PCM_16")
    common = ["--models", SET_A, "--seed", 1, "--steps", 2, "-q"]
    assert run("vamp", src, "-o", tmp_path / "default.wav", *common).returncode == 0
    info = sf.info(str(tmp_path / "default.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (48000, 1, "PCM_16", 48000)
    proc = run("vamp", src, "-o", tmp_path / "asked", "--format", "flac", "--sample-rate", 44100, "--channels", 2,
               "--bit-depth", 24, *common)
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(tmp_path / "asked.flac"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 2, "PCM_24", 44100)


@pytest.mark.parametrize("name, options", [("x.wav", ["--format", "flac"]), ("x.flac", ["--bit-depth", 32]),
                                           ("x.wav", ["--channels", 3]), ("x.wav", ["--format", "aac"])])
def test_an_output_format_the_file_cannot_hold_fails_cleanly(wav_file, tmp_path, name, options):
    out = tmp_path / name
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", SET_A, *options), out)


def test_existing_output_survives_a_failed_run(wav_file, tmp_path):
    out = tmp_path / "keep.wav"
    sf.write(out, sine_mix(0.5), 44100)
    before = out.read_bytes()
    assert_clean_failure(run("vamp", wav_file, "-o", out, "--models", SET_A, "--coarse", SET_A / "codec.pth"))
    assert out.read_bytes() == before


def test_corrupt_token_file(tmp_path):
    bad = tmp_path / "c.npz"
    bad.write_bytes(b"PK\x03\x04 nonsense")
    assert_clean_failure(run("decode", bad, "-o", tmp_path / "o.wav", "--models", SET_A), tmp_path / "o.wav")


def test_mode_commands_end_to_end(wav_file, tmp_path):
    common = ["--models", SET_A, "--seed", "0", "--steps", "2", "-q"]
    assert run("loop", wav_file, "-o", tmp_path / "loop.wav", "--variations", "2", "--seconds", "1", "--repeats", "1", *common).returncode == 0
    assert sorted(p.name for p in tmp_path.glob("loop*.wav")) == ["loop-1.wav", "loop-2.wav", "loop.wav"]
    assert sf.info(str(tmp_path / "loop-1.wav")).duration == pytest.approx(1.0, abs=0.02)
    assert run("continue", wav_file, "-o", tmp_path / "cont.wav", "--seconds", "1", *common).returncode == 0
    assert sf.info(str(tmp_path / "cont.wav")).duration == pytest.approx(3.5, abs=0.03)
    assert run("inpaint", wav_file, "-o", tmp_path / "inp.wav", "--start", "0.5", "--end", "1", *common).returncode == 0
    proc = run("compress", wav_file, "-o", tmp_path / "c.vmpz", "--codebooks", "2", "--period", "4", "--models", SET_A)
    assert proc.returncode == 0 and "kbps" in proc.stdout
    real = float(proc.stdout.split("bitrate ")[1].split(" kbps")[0])
    assert real == pytest.approx((tmp_path / "c.vmpz").stat().st_size * 8 / 2.5 / 1000, rel=1e-3)
    assert run("decompress", tmp_path / "c.vmpz", "-o", tmp_path / "d.wav", *common).returncode == 0
    assert sf.info(str(tmp_path / "d.wav")).frames == sf.info(str(wav_file)).frames
    assert run("vamp", wav_file, "-o", tmp_path / "p.wav", "--preset", "wild", *common).returncode == 0


def test_mode_command_errors(wav_file, tmp_path):
    assert_clean_failure(run("continue", wav_file, "-o", tmp_path / "c.wav", "--models", SET_A), tmp_path / "c.wav")
    assert_clean_failure(run("inpaint", wav_file, "-o", tmp_path / "i.wav", "--start", "1", "--models", SET_A), tmp_path / "i.wav")
    assert_clean_failure(run("inpaint", wav_file, "-o", tmp_path / "i.wav", "--start", "9", "--end", "10", "--models", SET_A),
                         tmp_path / "i.wav")
    assert_clean_failure(run("loop", wav_file, "-o", tmp_path / "l.wav", "--preset", "loud", "--models", SET_A), tmp_path / "l.wav")
    assert_clean_failure(run("compress", wav_file, "-o", tmp_path / "c.wav", "--models", SET_A))
    (tmp_path / "bad.vmpz").write_bytes(b"VAMPNETZ\x01")
    assert_clean_failure(run("decompress", tmp_path / "bad.vmpz", "-o", tmp_path / "d.wav", "--models", SET_A), tmp_path / "d.wav")


def test_precision_option_is_honoured_and_recorded_in_the_file(wav_file, tmp_path):
    out = tmp_path / "bf16.wav"
    assert run("vamp", wav_file, "-o", out, "--models", SET_A, "--seed", 0, "--steps", 2, "--precision", "bf16", "-q").returncode == 0
    with sf.SoundFile(str(out)) as f:
        settings = json.loads(f.comment)
    assert settings["precision"] == "bf16" and settings["seed"] == 0
    assert_clean_failure(run("vamp", wav_file, "-o", tmp_path / "x.wav", "--models", SET_A, "--precision", "fp8"), tmp_path / "x.wav")


def test_beat_prompt_keeps_tokens_at_tracked_beats(tmp_path):
    """120 BPM clicks: the prompt's kept times are the tracked beats, and the kept tokens sit at those frames."""
    sr = 44100
    x = np.zeros(int(sr * 4.0), dtype=np.float32)
    for k in range(8):
        start = int((0.25 + 0.5 * k) * sr)
        x[start:start + 400] += np.hanning(800)[400:].astype(np.float32) * np.sin(np.arange(400) * 0.9)
    sf.write(tmp_path / "clicks.wav", x, sr)
    out = tmp_path / "b.wav"
    proc = run("vamp", tmp_path / "clicks.wav", "-o", out, "--models", SET_A, "--beats", "--periodic", "0",
               "--beat-tracker", "librosa", "--seed", 0, "--steps", 2, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "tracker librosa" in proc.stderr
    with sf.SoundFile(str(out)) as f:
        times = json.loads(f.comment)["prompt"]["keep_times_s"]
    truth = 0.25 + 0.5 * np.arange(8)
    assert len(times) >= 6 and all(np.min(np.abs(truth - t)) < 0.05 for t in times)


def test_stretch_and_prompt_options_on_mode_commands(wav_file, tmp_path):
    common = ["--models", SET_A, "--seed", "0", "--steps", "2", "-q"]
    assert run("stretch", wav_file, "-o", tmp_path / "s.wav", "--factor", "2", *common).returncode == 0
    assert sf.info(str(tmp_path / "s.wav")).duration == pytest.approx(5.0, abs=0.03)
    for factor, seconds in (("1.5", 3.75), ("0.5", 1.25)):  # any factor in 0.25-4, slower or faster
        proc = run("stretch", wav_file, "-o", tmp_path / "f.wav", "--factor", factor, *common)
        assert proc.returncode == 0, proc.stderr
        assert sf.info(str(tmp_path / "f.wav")).frames == round(2.5 * 44100 * float(factor)) == round(seconds * 44100)
    assert run("inpaint", wav_file, "-o", tmp_path / "i.wav", "--start", "0.5", "--end", "2", "--periodic", "3",
               "--upper-codebooks", "2", *common).returncode == 0
    with sf.SoundFile(str(tmp_path / "i.wav")) as f:
        prompt = json.loads(f.comment)["prompt"]
    assert prompt["periodic_prompt"] == 3 and prompt["upper_codebook_mask"] == 2
    assert run("loop", wav_file, "-o", tmp_path / "l.wav", "--variations", "1", "--periodic", "5", "--repeats", "1", *common).returncode == 0


def test_every_command_is_mapped_to_the_module_that_registers_it():
    from vampnet.cli import COMMAND_MODULES, register_commands
    app = register_commands()
    registered = {(c.name or c.callback.__name__.replace("_", "-")): c.callback.__module__ for c in app.registered_commands}
    registered.update({g.name: g.typer_instance.registered_commands[0].callback.__module__ for g in app.registered_groups})
    assert set(registered) == set(COMMAND_MODULES)
    assert {name: module.rsplit(".", 1)[1] for name, module in registered.items()} == COMMAND_MODULES


@pytest.mark.parametrize("command,loaded,not_loaded", [
    ("vamp", "vampnet.cli.generate", ("vampnet.cli.training", "vampnet.train", "vampnet.corpus", "vampnet.cli.serve",
                                      "vampnet.cli.evaluate", "vampnet.eval")),
    ("train", "vampnet.cli.training", ("vampnet.cli.generate", "vampnet.cli.serve", "vampnet.cli.evaluate")),
    ("eval", "vampnet.cli.evaluate", ("vampnet.cli.training", "vampnet.corpus")),
])
def test_a_command_imports_only_its_own_command_module(command, loaded, not_loaded):
    code = ("import sys; from vampnet.cli import main; rc = main([sys.argv[1], '--help']); "
            "print(rc, *sorted(m for m in sys.modules if m.startswith('vampnet')))")
    proc = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=120)
    rc, *modules = proc.stdout.strip().splitlines()[-1].split()
    assert rc == "0" and loaded in modules
    assert not [m for m in modules if m.startswith(not_loaded)]


def test_help_and_unknown_commands_see_every_command():
    listing = run("--help")
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in ("vamp", "tokenize", "ui", "eval", "prepare-corpus"))
    unknown = run("vampp")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr and "Traceback" not in unknown.stderr


def _commands():
    """(command words, click command) for every command of the `vampnet` app, groups expanded."""
    import typer

    from vampnet.cli import register_commands

    def walk(command, words):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*words, name])
        else:
            yield words, command

    return list(walk(typer.main.get_command(register_commands()), []))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA, so --device cuda is no error here")
def test_every_command_refuses_an_absent_cuda_device_in_one_line(wav_file, tmp_path, capsys):
    from vampnet.cli import main

    folder = tmp_path / "audio"
    folder.mkdir()
    codes = tmp_path / "codes.npz"
    codes.write_bytes(b"")  # never read: the device is refused first
    out = tmp_path / "out.wav"
    args = {
        "vamp": [wav_file, "-o", out], "loop": [wav_file, "-o", out], "continue": [wav_file, "-o", out, "--seconds", "1"],
        "inpaint": [wav_file, "-o", out, "--start", "0.5", "--end", "1"], "stretch": [wav_file, "-o", out],
        "compress": [wav_file, "-o", tmp_path / "c.vmpz"], "decompress": [codes, "-o", out],
        "encode": [wav_file, "-o", tmp_path / "e.npz"], "decode": [codes, "-o", out],
        "tokenize": [folder, "-o", tmp_path / "tokens"], "finetune": [folder, "-o", tmp_path / "tuned"],
        "ui": [], "osc": [], "eval run": ["--data", folder, "--experiment", "sampling-steps", "-o", tmp_path / "ev"],
    }
    with_device = [" ".join(words) for words, command in _commands() if any("--device" in p.opts for p in command.params)]
    assert sorted(with_device) == sorted(args)
    for name, rest in args.items():
        assert main([*name.split(), *map(str, rest), "--device", "cuda"]) == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: device 'cuda' is not available here: "), (name, err)
        assert "Traceback" not in "\n".join(err) and not out.exists()
    from vampnet import OptionError, Pipeline
    with pytest.raises(OptionError, match="device 'cuda' is not available here"):
        Pipeline.from_pretrained(device="cuda")
    with pytest.raises(OptionError, match="not a torch device"):
        Pipeline.from_pretrained(device="gpu")


def test_every_option_of_every_command_has_help_text():
    missing = [f"{' '.join(words)} {param.opts[0] if param.opts else param.name}"
               for words, command in _commands() for param in command.params if not (param.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def test_vamp_help_at_80_columns_keeps_option_names_whole_and_the_help_column_wide():
    """Each panel's table sizes its own columns: no option name is cut, and every option's help starts at least
    22 of the 80 columns before the right edge (one shared table of ~55 options left it 17)."""
    proc = run("vamp", "--help", env={**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    vamp = next(command for words, command in _commands() if words == ["vamp"])
    widths = {}
    for param in vamp.params:
        if param.param_type_name != "option":
            continue
        name = param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]
        row = next((line for line in lines if f" {name} " in line), None)
        assert row is not None, f"{name} is not shown whole"
        first_word = param.help.split()[0]
        widths[name] = len(row) - 1 - row.index(first_word, row.index(name) + len(name))
    assert min(widths.values()) >= 22, sorted(widths.items(), key=lambda kv: kv[1])[:5]


@pytest.mark.parametrize("command,extra", [("vamp", []), ("loop", []), ("continue", ["--seconds", "1"]),
                                           ("inpaint", ["--start", "0.5", "--end", "1"]), ("stretch", [])])
def test_pipeline_flags_reach_the_pipeline_every_generating_command_loads(command, extra, wav_file, tmp_path,
                                                                          monkeypatch, capsys):
    """--window, --overlap, --c2f-chunk, --c2f-batch-size, --precision and --capture (schema flags of PipelineConfig)
    become the config each command loads its pipeline with (stopped there: no model is run)."""
    from vampnet import OptionError, PipelineConfig
    from vampnet.cli import generate, main

    loaded = []

    def fake_load(models, *args, config=None, **kwargs):
        loaded.append(config)
        raise OptionError("stopped after the pipeline's config")

    monkeypatch.setattr(generate, "load_pipeline", fake_load)
    flags = ["--window", "3", "--overlap", "1", "--c2f-chunk", "2", "--c2f-batch-size", "4", "--precision", "bf16",
             "--capture", "static"]
    assert main([command, str(wav_file), "-o", str(tmp_path / "out.wav"), *extra, *flags]) == 1
    assert capsys.readouterr().err.strip().endswith("stopped after the pipeline's config")
    assert loaded == [PipelineConfig(coarse_window_s=3.0, window_overlap_s=1.0, c2f_chunk_s=2.0, c2f_batch_size=4,
                                     precision="bf16", capture="static")]
