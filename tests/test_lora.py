"""LoRA: adapters train alone (the base stays frozen), round-trip through their file, merge by W + B A * scaling,
and the original's bare LoRA files load by the original's rule."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SET_A

from vampnet import CheckpointError, MaskedTransformer, Pipeline
from vampnet.model.lora import load_adapter, read_adapter


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, ours_dir):
    """A LoRA fine-tune of the fixture models on a few seconds of tones, through the public entry point."""
    from test_train import write_tones

    from vampnet.train.finetune import finetune

    root = tmp_path_factory.mktemp("ft")
    write_tones(root / "audio", n=4, seconds=2.0)
    written = finetune([root / "audio"], ours_dir, root / "out", steps=8, lora_rank=4, batch_size=2, excerpt_s=1.0,
                       progress=False)
    return root / "out", written


def test_finetune_writes_adapters_only_and_they_change_only_adapted_layers(finetuned, ours_dir):
    out, written = finetuned
    assert set(written) == {"coarse", "c2f"}
    adapters, scaling = read_adapter(written["coarse"])
    assert scaling == pytest.approx(16.0 / 4)
    assert all(a.shape[0] == 4 and b.shape[1] == 4 for a, b in adapters.values())
    assert {n.split(".", 2)[2] for n in adapters} == {"attn.q", "attn.v", "attn.out", "ff.w_in", "ff.w_out"}
    base = MaskedTransformer.load(ours_dir / "coarse.safetensors")
    tuned = MaskedTransformer.load(ours_dir / "coarse.safetensors")
    load_adapter(tuned, written["coarse"])
    b, t = base.state_dict(), tuned.state_dict()
    changed = {k for k in b if not torch.equal(b[k], t[k])}
    assert changed and all(any(k.startswith(n + ".") for n in adapters) for k in changed)
    for name, (a, bb) in adapters.items():
        assert torch.allclose(t[name + ".weight"], b[name + ".weight"] + bb @ a * scaling, atol=1e-6)
    # the training checkpoint holds the adapter, not a full model copy
    assert not (out / "coarse-run" / "latest" / "model.safetensors").exists()


def test_pipeline_loads_base_plus_adapters(finetuned, ours_dir, tmp_path):
    out, _ = finetuned
    sf.write(tmp_path / "in.wav", np.sin(np.linspace(0, 800, 44100)).astype(np.float32) * 0.3, 44100)
    base = Pipeline.load(ours_dir)
    tuned = Pipeline.load(ours_dir, lora=out)
    assert not torch.equal(base.coarse.layers[0].attn.q.weight, tuned.coarse.layers[0].attn.q.weight)
    assert torch.equal(base.coarse.layers[0].attn.k.weight, tuned.coarse.layers[0].attn.k.weight)
    res = tuned.vamp_file(tmp_path / "in.wav", tmp_path / "out.wav", seed=0)
    assert res.audio.shape[-1] == 44100


def test_original_bare_lora_file_merges_with_one_over_rank(set_a, codec_a, tmp_path):
    g = torch.Generator().manual_seed(0)
    bare = {}
    for proj, shape in (("self_attn.w_qs", (64, 64)), ("feed_forward.w_2", (64, 128))):
        bare[f"transformer.layers.1.{proj}.lora_A"] = torch.randn(8, shape[1], generator=g)
        bare[f"transformer.layers.1.{proj}.lora_B"] = torch.randn(shape[0], 8, generator=g)
    torch.save(bare, tmp_path / "lora.pth")
    base = MaskedTransformer.load(set_a / "coarse.pth", codec_a)
    tuned = MaskedTransformer.load(set_a / "coarse.pth", codec_a)
    load_adapter(tuned, tmp_path / "lora.pth")
    a, b = bare["transformer.layers.1.self_attn.w_qs.lora_A"], bare["transformer.layers.1.self_attn.w_qs.lora_B"]
    assert torch.allclose(tuned.layers[1].attn.q.weight, base.layers[1].attn.q.weight + b @ a / 8, atol=1e-5)
    a, b = bare["transformer.layers.1.feed_forward.w_2.lora_A"], bare["transformer.layers.1.feed_forward.w_2.lora_B"]
    assert torch.allclose(tuned.layers[1].ff.w_out.weight, base.layers[1].ff.w_out.weight + b @ a / 8, atol=1e-5)
    assert torch.equal(tuned.layers[1].attn.k.weight, base.layers[1].attn.k.weight)


def test_bad_lora_files_are_named(set_a, codec_a, tmp_path):
    model = MaskedTransformer.load(set_a / "coarse.pth", codec_a)
    torch.save({"transformer.layers.0.self_attn.w_ks.lora_A": torch.zeros(8, 64),
                "transformer.layers.0.self_attn.w_ks.lora_B": torch.zeros(64, 8)}, tmp_path / "k.pth")
    with pytest.raises(CheckpointError, match="w_ks"):
        load_adapter(model, tmp_path / "k.pth")
    torch.save({"transformer.layers.0.self_attn.w_qs.lora_A": torch.zeros(8, 64)}, tmp_path / "half.pth")
    with pytest.raises(CheckpointError, match="only one"):
        load_adapter(model, tmp_path / "half.pth")
    with pytest.raises(CheckpointError, match="not a LoRA"):
        load_adapter(model, SET_A / "coarse.pth")


def test_finetune_command_prints_only_its_own_lines(tmp_path):
    """peft loads torchao, which logs kernel-loading failures and makes torch warn about enum registration: none of
    that reaches the user (a fresh process, since torchao speaks only when first imported)."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import sine_mix

    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"take{i}.wav", sine_mix(1.5, 22050, seed=i), 22050)
    exe = Path(sys.executable).parent / "vampnet"
    proc = subprocess.run([str(exe), "finetune", str(audio), "-o", str(tmp_path / "out"), "--steps", "1",
                           "--excerpt", "1", "--batch-size", "2", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["coarse", "c2f", "use it with --models " + str(tmp_path / "out")]


def test_finetune_with_the_loudness_control_on_official_format_weights(set_a, tmp_path):
    """The official model's control recipe (`vampnet finetune --control loudness`), end to end on the reference
    fixtures' random weights in the official .pth format: LoRA adapters plus the new control projection, which
    the adapter file carries and a pipeline loading the fine-tune gains, and a vamp that follows an envelope."""
    from test_train import write_tones

    from vampnet.cli import main
    from vampnet.controls import loudness_from_curve, loudness_from_file
    from vampnet.model.lora import read_control
    from vampnet.sampling import SamplingConfig

    write_tones(tmp_path / "audio", n=4, seconds=2.0)
    out = tmp_path / "out"
    assert main(["finetune", str(tmp_path / "audio"), "--base", str(set_a), "-o", str(out), "--steps", "6",
                 "--lora-rank", "2", "--batch-size", "2", "--excerpt", "1", "--control", "loudness", "-q"]) == 0
    control = read_control(out / "coarse.lora.safetensors")
    assert set(control) == {"control.proj.weight", "control.proj.bias"}
    assert control["control.proj.weight"].shape == (64, 1) and control["control.proj.weight"].abs().max() > 0
    assert read_control(out / "c2f.lora.safetensors") is None  # the fine codebooks are not controlled
    adapters, _ = read_adapter(out / "coarse.lora.safetensors")
    assert all(a.shape[0] == 2 for a, _ in adapters.values())

    pipe = Pipeline.load(set_a, lora=out)
    assert pipe.coarse.n_controls == 1 and pipe.c2f.n_controls == 0
    assert torch.equal(pipe.coarse.control.proj.weight.cpu(), control["control.proj.weight"])
    wav, sr = sf.read(tmp_path / "audio" / "tone0.wav", dtype="float32")
    prepared = pipe.prepare(torch.from_numpy(wav)[None, None], sr)
    T = prepared.codes.shape[-1]
    for envelope in (loudness_from_file(tmp_path / "audio" / "tone3.wav", T, pipe.codec),
                     loudness_from_curve("0.5:-40, 1.5:-15", T, pipe.frame_rate)):
        result = pipe.render(prepared.codes, torch.ones_like(prepared.codes, dtype=torch.bool),
                             n_samples=prepared.n_samples, loudness=prepared.loudness, seed=0, control=envelope,
                             sampling=SamplingConfig(steps=4, guidance=2.0))
        assert result.audio.shape[-1] == prepared.n_samples
        assert result.settings["control"]["present_frames"] == int(envelope.present.sum())
    assert main(["finetune", str(tmp_path / "audio"), "--base", str(set_a), "-o", str(tmp_path / "x"),
                 "--control", "chroma", "-q"]) != 0
