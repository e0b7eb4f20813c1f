"""FAD embeddings: the shipped CREPE weights are the pretrained pitch network (it names the pitch of a tone),
VGGish's front end follows its definition, a user's VGGish port file loads, and scoring names its embedding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vampnet import CheckpointError, OptionError
from vampnet.eval.embeddings import (Crepe, CrepeEmbedding, VGGish, VGGishEmbedding, crepe_frames, get_embedding,
                                     vggish_examples, vggish_log_mel, vggish_mel_matrix)
from vampnet.eval.fad import embedding_distance


def tone(f0: float, seconds: float = 1.0, sr: int = 22050) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (0.5 * torch.sin(2 * math.pi * f0 * t) + 0.2 * torch.sin(2 * math.pi * 2 * f0 * t)).view(1, 1, -1)


def crepe_bin_frequency(index) -> float:
    """The pitch (Hz) of CREPE's output bin `index`: 360 bins 20 cents apart from 1997.38 cents above 10 Hz."""
    cents = 1997.3794084376191 + 20 * float(index)
    return 10 * 2 ** (cents / 1200)


@pytest.mark.parametrize("f0", [110.0, 261.63, 440.0, 987.77])
def test_shipped_crepe_weights_name_the_pitch_of_a_tone(f0):
    model = Crepe.pretrained()
    with torch.inference_mode():
        activation = model(crepe_frames(tone(f0), 22050, 0.1))[2:-2].mean(0)  # frames away from the edges
    found = crepe_bin_frequency(activation.argmax())
    assert abs(1200 * math.log2(found / f0)) < 25  # within about one 20-cent bin
    assert float(activation.max()) > 0.5


def melody(seed: int, seconds: int = 4, sr: int = 22050) -> torch.Tensor:
    """One-second notes of random pitch in an octave above 220 Hz, with a second harmonic."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(sr * seconds) / sr
    x = torch.zeros_like(t)
    for k in range(seconds):
        f = 220 * 2 ** (int(torch.randint(0, 12, (1,), generator=g)) / 12)
        note = (t >= k) & (t < k + 1)
        x[note] = 0.4 * torch.sin(2 * math.pi * f * t[note]) + 0.2 * torch.sin(2 * math.pi * 2 * f * t[note])
    return x.view(1, 1, -1)


def test_crepe_embedding_grows_with_degradation_and_with_musical_change():
    embed = CrepeEmbedding(hop_s=0.05)
    ref = np.concatenate([embed(melody(s), 22050) for s in range(4)])
    assert ref.shape == (4 * 81, 272) and np.isfinite(ref).all()
    assert embedding_distance(ref, ref) == pytest.approx(0.0, abs=1e-6)
    distances = []
    for snr_db in (30, 10, 0):
        noisy = []
        for s in range(4):
            x = melody(s)
            n = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + s))
            noisy.append(embed(x + n * x.std() / n.std() / 10 ** (snr_db / 20), 22050))
        distances.append(embedding_distance(ref, np.concatenate(noisy)))
    other = embedding_distance(ref, np.concatenate([embed(melody(s + 10), 22050) for s in range(4)]))
    assert 0 < distances[0] < distances[1] < distances[2] < other


def test_vggish_front_end_follows_its_definition():
    sr = 16000
    mel = vggish_log_mel(torch.sin(2 * math.pi * 1000 * torch.arange(sr) / sr), sr)
    assert mel.shape == (98, 64)  # 1 + (16000 - 400) // 160 frames of 25 ms every 10 ms
    W = vggish_mel_matrix()
    assert W.shape == (257, 64) and (W[0] == 0).all() and W.max() <= 1
    centres = (np.arange(257) * 8000 / 256) @ W / W.sum(0)  # each band's centre of mass in Hz
    band = int(mel.mean(0).argmax())
    assert abs(centres[band] - 1000) < 60 and 125 < centres[0] < 200 and 7000 < centres[-1] < 7500
    assert float(mel.min()) >= math.log(0.01) - 1e-6  # log(mel + 0.01)
    assert vggish_examples(torch.zeros(int(2.5 * sr)), sr).shape == (2, 1, 96, 64)  # 0.96 s examples, no overlap


def test_vggish_loads_a_port_weights_file_and_refuses_others(tmp_path):
    weights = tmp_path / "vggish.pth"
    torch.save(VGGish().state_dict(), weights)  # the PyTorch port's layout: features.N / embeddings.N
    x = torch.randn(1, 1, 3 * 22050) * 0.1
    out = get_embedding("vggish", weights)(x, 22050)
    assert out.shape == (3, 128)
    # the original evaluation's embedding is the last linear layer before its ReLU; the ReLU is optional
    with_relu = VGGishEmbedding(weights, activation=True)(x, 22050)
    assert np.allclose(with_relu, np.maximum(out, 0), atol=1e-6) and (out < 0).any()
    model = VGGish()
    model.load_state_dict(torch.load(weights))
    assert np.allclose(model(vggish_examples(x, 22050)).detach().numpy(), with_relu, atol=1e-6)
    with pytest.raises(CheckpointError, match="embedding-weights"):
        get_embedding("vggish")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a VGGish"):
        VGGishEmbedding(bad)
    with pytest.raises(OptionError):
        get_embedding("clap")
