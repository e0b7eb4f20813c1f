"""Codec training on tiny synthetic audio: spectral distances checked by hand, quantizer dropout, discriminator
shapes, the mel distance going down, exact resume, and two-process DDP equal to one process."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from vampnet.codec import Codec, CodecConfig
from vampnet.spectral import hz_to_mel, mel_filterbank, mel_spectrogram, mel_to_hz, multiscale_mel_distance, stft
from vampnet.train.codec_data import ExcerptSampler, draw_n_quantizers, list_audio
from vampnet.train.codec_trainer import CodecTrainConfig, CodecTrainer, load_codec_config, train_codec, vq_losses
from vampnet.train.discriminators import (Discriminator, DiscriminatorConfig, discriminator_loss,
                                          feature_matching_loss, generator_adversarial_loss)

SR = 16000
TINY_CODEC = dict(encoder_dim=4, encoder_rates=(2, 4, 8), decoder_dim=32, decoder_rates=(8, 4, 2), n_codebooks=4,
                  codebook_size=64, codebook_dim=4, sample_rate=SR)


def noise(n: int, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    return scale * torch.randn(1, 1, n, generator=torch.Generator().manual_seed(seed))


# --- spectral ------------------------------------------------------------------------------------------------------
def test_slaney_mel_scale_is_linear_below_1khz_and_inverts():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(200 / 3) == pytest.approx(1.0)
    assert hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above 1 kHz
    f = np.array([0.0, 50.0, 999.0, 1000.0, 4000.0, 22050.0])
    assert np.allclose(mel_to_hz(hz_to_mel(f)), f)


def test_mel_filters_are_unit_area_triangles_on_the_slaney_scale():
    n_fft = 4096
    fb = mel_filterbank(SR, n_fft, 40).double()
    assert fb.shape == (40, n_fft // 2 + 1) and (fb >= 0).all()
    bin_hz = SR / n_fft
    # each triangle has height 2 / base width, so area 1 in Hz (up to sampling the triangle at FFT bins)
    assert torch.allclose(fb.sum(1) * bin_hz, torch.ones(40, dtype=torch.float64), atol=0.02)
    edges = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), 42))
    peaks = fb.argmax(1).numpy() * bin_hz
    assert np.allclose(peaks, edges[1:-1], atol=bin_hz)


def test_stft_frames_and_sine_peak():
    t = torch.arange(SR) / SR
    x = torch.sin(2 * math.pi * 1000 * t)[None, None]
    spec = stft(x, 512)
    assert spec.shape == (1, 1, 257, 1 + SR // 128)
    assert int(spec.abs()[0, 0, :, 10].argmax()) == 1000 * 512 // SR
    mel = mel_spectrogram(x, SR, 512, 40)
    band = int(mel[0, 0, :, 10].argmax())
    edges = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), 42))
    assert edges[band] < 1000 < edges[band + 2]


def test_mel_distance_is_zero_for_identical_signals_and_symmetric():
    x, y = noise(8000, 0), noise(8000, 1)
    assert float(multiscale_mel_distance(x, x.clone(), SR)) == 0.0
    assert float(multiscale_mel_distance(x, y, SR)) == pytest.approx(float(multiscale_mel_distance(y, x, SR)), rel=1e-6)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_mel_distance_of_a_scaled_signal_is_the_analytic_value(scale):
    """For y = s x every mel magnitude scales by s, so each scale's log term is |2 log10 s| exactly (no bin is near
    the 1e-5 clamp for noise) and its magnitude term is |s - 1| times the mean mel magnitude of x."""
    x = noise(16000, 3)
    got = float(multiscale_mel_distance(x, scale * x, SR))
    expected = 0.0
    for n_mels, window in ((150, 2048), (80, 512)):
        mx = mel_spectrogram(x, SR, window, n_mels).double()
        assert mx.min() > 1e-5 / min(scale, 1.0)
        expected += 2 * abs(math.log10(scale)) + abs(scale - 1) * float(mx.mean())
    assert got == pytest.approx(expected, rel=1e-4)
    log_only = float(multiscale_mel_distance(x, scale * x, SR, mag_weight=0.0))
    assert log_only == pytest.approx(2 * 2 * abs(math.log10(scale)), rel=1e-4)


# --- quantizer dropout and VQ losses -----------------------------------------------------------------------------
def test_quantizer_dropout_uses_fewer_codebooks_for_part_of_the_batch():
    torch.manual_seed(0)
    codec = Codec(CodecConfig(**TINY_CODEC))
    K, B = codec.n_codebooks, 8
    n = draw_n_quantizers(B, K, 0.5, torch.Generator().manual_seed(1))
    assert n.shape == (B,) and n.min() >= 1 and n.max() <= K
    assert (n == K).sum() >= B // 2  # the other half drew a count in [1, K]
    assert any((draw_n_quantizers(B, K, 0.5, torch.Generator().manual_seed(s)) < K).any() for s in range(5))
    assert (draw_n_quantizers(B, K, 0.0, torch.Generator().manual_seed(1)) == K).all()

    z = codec.encoder(noise(64 * 10, 5).repeat(4, 1, 1) * torch.tensor([1.0, 0.5, 2.0, 1.5])[:, None, None])
    counts = torch.tensor([1, 2, K, 3])
    with torch.no_grad():
        q = codec.quantizer(z, counts)
        for b, k in enumerate(counts.tolist()):  # each item is exactly the first k stages of the codec's RVQ
            assert torch.equal(q["z"][b], codec.quantizer(z, k)["z"][b])
        # the VQ losses count, per item, the stages it uses: batch mean of sum_{i<k} MSE(z_e_i, vec_i)
        per_item = [k * F.mse_loss(*(codec.quantizer(z[b:b + 1], k)[key] for key in ("latents", "vecs")))
                    for b, k in enumerate(counts.tolist())]
        commitment, codebook = vq_losses(q["latents"], q["vecs"], K, counts)
        torch.testing.assert_close(commitment, torch.stack(per_item).mean())
        torch.testing.assert_close(vq_losses(q["latents"], q["vecs"], K)[0],
                                   K * F.mse_loss(q["latents"], q["vecs"], reduction="none").mean((1, 2)).mean())
    # training mode: straight-through forward value, VQ losses with gradients to the encoder side and the codebooks
    q = codec.quantizer(z, counts)
    commitment, codebook = vq_losses(q["latents"], q["vecs"], K, counts)
    assert commitment > 0 and torch.allclose(commitment, codebook)
    (commitment + codebook).backward()
    assert codec.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0
    assert codec.quantizer.quantizers[0].in_proj.weight_v.grad.abs().sum() > 0
    # stage K-1 is used by one item of four: its losses count for that item only
    assert codec.quantizer.quantizers[K - 1].codebook.weight.grad.abs().sum() > 0


# --- discriminators ------------------------------------------------------------------------------------------------
def test_discriminator_returns_feature_maps_and_logits_per_sub_discriminator():
    disc = Discriminator(DiscriminatorConfig(periods=(2, 3, 5), stft_windows=(256, 128), width=2))
    x = noise(1000, 0).repeat(2, 1, 1)
    with torch.no_grad():
        out = disc(x)
        fake = disc(0.5 * noise(1000, 1).repeat(2, 1, 1))
    assert len(out) == 5
    for maps in out:
        assert len(maps) == 6 and maps[-1].shape[:2] == (2, 1)
    assert out[1][0].shape[-1] == 3  # period 3 folds the waveform into 3 columns
    assert float(feature_matching_loss(out, out)) == 0.0
    assert float(discriminator_loss(out, fake)) > 0 and float(generator_adversarial_loss(fake)) > 0
    assert any("original0" in k for k in disc.state_dict())  # weight-normalised convolutions


@pytest.mark.parametrize("matmul_from", [10**6, 1], ids=["convolutions", "matrix-products"])
def test_period_discriminator_columns_as_1d_convolutions_equal_its_2d_convolutions(monkeypatch, matmul_from):
    """The period discriminator runs its (k, 1) convolutions as 1-D ones over each column (wide layers as one matrix
    product over their stacked taps); maps and gradients equal what its own Conv2d layers compute on the folded
    (B, C, N/p, p) map."""
    torch.manual_seed(0)
    from vampnet.train import discriminators
    from vampnet.train.discriminators import PeriodDiscriminator

    monkeypatch.setattr(discriminators, "MATMUL_MIN_CHANNELS", matmul_from)

    disc = PeriodDiscriminator(3, width=4)
    x = noise(1001, 0).repeat(2, 1, 1).requires_grad_(True)
    maps = disc(x)
    folded = F.pad(x, (0, 1), mode="reflect").view(2, 1, -1, 3)
    expected, h = [], folded
    for conv in disc.convs:
        h = F.leaky_relu(conv(h), 0.1)
        expected.append(h)
    expected.append(disc.post(h))
    assert [m.shape for m in maps] == [e.shape for e in expected] and maps[0].shape[-1] == 3
    for m, e in zip(maps, expected):
        torch.testing.assert_close(m, e, rtol=1e-5, atol=1e-6 * e.abs().max().item())
    grads = torch.autograd.grad(sum(m.square().mean() for m in maps), [x, disc.convs[2].parametrizations.weight.original1])
    grads_2d = torch.autograd.grad(sum(e.square().mean() for e in expected), [x, disc.convs[2].parametrizations.weight.original1])
    for g, g2 in zip(grads, grads_2d):
        torch.testing.assert_close(g, g2, rtol=1e-4, atol=1e-6 * g2.abs().max().item())


# --- training runs -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("codec_audio")
    t = np.arange(int(SR * 2.0)) / SR
    for i, f0 in enumerate((220.0, 330.0, 495.0)):
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.01 * f0 * t)
        x *= 0.6 + 0.4 * np.sin(2 * np.pi * (1 + i) * t)
        sf.write(folder / f"tone{i}.wav", x.astype(np.float32), SR)
    sf.write(folder / "silence.wav", np.zeros(SR, dtype=np.float32), SR)
    return folder


def test_excerpts_are_deterministic_loudness_normalised_and_never_silent(audio_dir):
    from vampnet import audio

    files = [p for p, _ in list_audio([audio_dir])]
    assert [p.name for p in files] == ["silence.wav", "tone0.wav", "tone1.wav", "tone2.wav"]
    sampler = ExcerptSampler(files, SR, 3200)
    for seed in range(12):
        x = sampler.excerpt(seed)
        assert x.shape == (1, 1, 3200) and torch.equal(x, sampler.excerpt(seed))
        assert audio.loudness(x, SR) == pytest.approx(-24.0, abs=0.1)
    with pytest.raises(Exception, match="LUFS"):
        ExcerptSampler(files[:1], SR, 3200).excerpt(0)


def tiny_run(audio_dir, out, **kw) -> CodecTrainConfig:
    base = dict(audio=[str(audio_dir)], output=str(out), **TINY_CODEC, excerpt_s=0.2, batch_size=4, max_steps=6,
                lr=3e-3, lr_decay=0.999, val_excerpts=3, val_excerpt_s=0.5, val_every=3, save_every=0,
                mel_windows=(64, 256, 1024), mel_bands=(10, 40, 80), disc_periods=(2, 3, 5, 7, 11),
                disc_stft_windows=(512, 256, 128), disc_width=2,
                bf16=False)  # float32 on every CPU: the exactness checks compare runs bit for bit
    base.update(kw)
    return CodecTrainConfig(**base)


def _log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_mel_distance_decreases_during_training(audio_dir, tmp_path):
    cfg = tiny_run(audio_dir, tmp_path / "run", max_steps=40, val_every=10, disc_start=20)
    final = train_codec(cfg, progress=False)
    rows = _log(tmp_path / "run")
    val = [(int(r["step"]), float(r["val_mel_distance"])) for r in rows if r["val_mel_distance"]]
    mel = [float(r["mel"]) for r in rows if r["mel"]]
    print("val mel distance by step:", val)
    print("train mel loss, steps 1-40:", [round(m, 3) for m in mel])
    assert [s for s, _ in val] == [0, 10, 20, 30, 40]
    assert val[-1][1] < 0.8 * val[0][1]
    assert np.mean(mel[-5:]) < np.mean(mel[:5])
    assert all(float(r["adv"]) == 0.0 for r in rows[1:21]) and all(float(r["adv"]) > 0 for r in rows[21:])
    assert final["step"] == 40
    codec = Codec.load(tmp_path / "run" / "latest" / "model.safetensors")
    assert codec.config == cfg.codec_config()
    for name in ("model.safetensors", "optimizer.safetensors", "discriminator.safetensors",
                 "discriminator_optimizer.safetensors", "trainer.json"):
        assert (tmp_path / "run" / "best" / name).is_file()


def _states(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for name in ("model", "optimizer", "discriminator", "discriminator_optimizer"):
        out.update({f"{name}/{k}": v for k, v in load_file(folder / f"{name}.safetensors").items()})
    return out


def test_resume_equals_uninterrupted_run(audio_dir, tmp_path):
    cfg = tiny_run(audio_dir, tmp_path / "full", max_steps=6, val_every=3, disc_start=2, save_every=3)
    train_codec(cfg, progress=False)
    half = cfg.replace(output=str(tmp_path / "half"), max_steps=3)
    train_codec(half, progress=False)
    train_codec(half.replace(max_steps=6), resume=True, progress=False)
    a, b = _states(tmp_path / "full" / "latest"), _states(tmp_path / "half" / "latest")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "half" / "latest" / "trainer.json").read_text())["step"] == 6
    assert (tmp_path / "full" / "step-0000003").is_dir()
    assert [r["loss"] for r in _log(tmp_path / "full")] == [r["loss"] for r in _log(tmp_path / "half")]


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile's CPU code needs a C++ compiler")
def test_compiled_codec_pass_trains_as_the_eager_one(audio_dir, tmp_path, monkeypatch):
    """`compile` runs the codec's training pass through torch.compile (kernels kept in $VAMPNET_HOME/compiled): the
    same losses step by step as the eager run, to fused kernels' rounding, and the same weights after them."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("VAMPNET_HOME", str(tmp_path / "home"))
    # one block each side keeps the graph, and its compile time, small; a small lr, because Adam's first updates are
    # about lr * sign(gradient), so a gradient near zero that rounds the other way moves its weight by 2 lr
    cfg = tiny_run(audio_dir, tmp_path / "eager", max_steps=3, val_every=3, disc_start=1, encoder_rates=(4,),
                   decoder_rates=(4,), lr=1e-5)
    train_codec(cfg, progress=False)
    compiled = CodecTrainer(cfg.replace(output=str(tmp_path / "compiled"), compile=True), progress=False)
    assert isinstance(compiled.forward_generator, torch._dynamo.eval_frame.OptimizedModule)
    start = {k: v.clone() for k, v in compiled.codec.state_dict().items()}
    train_codec(compiled.cfg, progress=False)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "home" / "compiled")
    assert any((tmp_path / "home" / "compiled").iterdir())
    eager_rows, compiled_rows = _log(tmp_path / "eager"), _log(tmp_path / "compiled")
    for key in ("loss", "mel", "adv", "val_mel_distance"):
        a = [float(r[key]) for r in eager_rows if r[key]]
        b = [float(r[key]) for r in compiled_rows if r[key]]
        assert len(a) == len(b) > 0 and np.allclose(a, b, rtol=1e-4), (key, a, b)
    a, b = _states(tmp_path / "eager" / "latest"), _states(tmp_path / "compiled" / "latest")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=7e-5) for k in a if k.startswith("model/"))
    # ... and every weight moved as in the eager run (a pass that trained against stale weights would not)
    eager_codec = Codec.load(tmp_path / "eager" / "latest" / "model.safetensors").state_dict()
    compiled_codec = Codec.load(tmp_path / "compiled" / "latest" / "model.safetensors").state_dict()
    moved = lambda state: torch.cat([(state[k] - start[k]).flatten() for k in start])
    d_eager, d_compiled = moved(eager_codec), moved(compiled_codec)
    assert d_eager.norm() > 0 and F.cosine_similarity(d_eager, d_compiled, dim=0) > 0.98


def test_preloaded_excerpts_match_reading_from_disk_and_workers_build_the_same_batches(audio_dir, tmp_path):

    files = [p for p, _ in list_audio([audio_dir])]
    disk, memory = ExcerptSampler(files, SR, 3200), ExcerptSampler(files, SR, 3200, preload=True)
    assert torch.equal(disk.lengths, memory.lengths)
    for i in range(len(files)):  # memory holds 16-bit samples: off by at most half a step (the file's peak / 32767)
        step = memory.cache[i][1]
        for start in (0, 777):
            assert (disk.read(i, start) - memory.read(i, start)).abs().max() <= step / 2 * 1.001 + 1e-7
    for seed in range(6):  # same file, start and gain; only that rounding differs
        torch.testing.assert_close(disk.excerpt(seed), memory.excerpt(seed), atol=1e-3, rtol=0)
    assert memory.cache[0][0].dtype == torch.int16
    cfg = tiny_run(audio_dir, tmp_path / "run", preload=True)
    plain = CodecTrainer(cfg, progress=False)
    ahead = CodecTrainer(cfg.replace(num_workers=2), progress=False)
    for (x0, n0), (x1, n1), step in zip(plain.batches(3), ahead.batches(3), range(3, 7)):
        assert torch.equal(x0, x1) and torch.equal(n0, n1)
        assert torch.equal(x0, plain.batch(step)[0])


def test_time_limit_stops_early_and_saves_latest(audio_dir, tmp_path):
    final = train_codec(tiny_run(audio_dir, tmp_path / "run", max_steps=1000, val_every=500, time_limit_s=1e-9),
                        progress=False)
    assert final["step"] == 1 and "val_mel_distance" in final
    assert json.loads((tmp_path / "run" / "latest" / "trainer.json").read_text())["step"] == 1


def test_config_file_errors_name_the_key(tmp_path):
    from vampnet import OptionError

    (tmp_path / "bad.yaml").write_text("audio: x\noutput: y\nlearning_rate: 3\n")
    with pytest.raises(OptionError, match="learning_rate"):
        load_codec_config(tmp_path / "bad.yaml")
    cfg = load_codec_config(None, ["audio=/data/music", "output=o", "encoder_rates=[2, 4]", "decoder_rates=[4,2]"])
    assert cfg.audio == ("/data/music",) and cfg.encoder_rates == (2, 4)
    with pytest.raises(OptionError, match="rates"):
        CodecTrainConfig(encoder_rates=(2, 4), decoder_rates=(2, 2))


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(audio_dir, tmp_path):
    """Losses agree to float rounding; whole weights are not compared because the nearest-code choice and Adam's
    first steps (update ~ lr * sign(gradient)) turn rounding differences into visible ones within a few steps."""
    cfg = tiny_run(audio_dir, tmp_path / "single", max_steps=3, val_every=3, disc_start=0)
    train_codec(cfg, progress=False)
    (tmp_path / "run.yaml").write_text(json.dumps({**cfg.to_dict(), "output": str(tmp_path / "ddp")}))
    script = tmp_path / "launch.py"
    script.write_text("import sys\nfrom vampnet.train.codec_trainer import load_codec_config, train_codec\n"
                      "train_codec(load_codec_config(sys.argv[1]), progress=False)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
                           str(script), str(tmp_path / "run.yaml")], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((tmp_path / "ddp" / "final.json").read_text())
    assert final["max_rank_divergence"] == 0.0 and final["max_rank_divergence_disc"] == 0.0
    single, ddp = _log(tmp_path / "single")[1:], _log(tmp_path / "ddp")[1:]
    assert [r["step"] for r in ddp] == ["1", "2", "3"]
    for a, b in zip(single, ddp):
        for key in ("loss", "mel", "waveform", "adv", "feature", "commitment", "disc_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4), (a["step"], key)
    Codec.load(tmp_path / "ddp" / "latest" / "model.safetensors")


def test_a_fine_tune_resumes_without_its_init_file(audio_dir, tmp_path):
    import shutil

    train_codec(tiny_run(audio_dir, tmp_path / "base", max_steps=1, val_every=1), progress=False)
    init = tmp_path / "init.safetensors"
    shutil.copy(tmp_path / "base" / "latest" / "model.safetensors", init)
    cfg = tiny_run(audio_dir, tmp_path / "tune", max_steps=4, val_every=2, init=str(init))
    train_codec(cfg.replace(output=str(tmp_path / "whole")), progress=False)
    train_codec(cfg.replace(max_steps=2), progress=False)
    init.unlink()
    train_codec(cfg, resume=True, progress=False)
    a, b = _states(tmp_path / "whole" / "latest"), _states(tmp_path / "tune" / "latest")
    assert all(torch.equal(a[k], b[k]) for k in a)
