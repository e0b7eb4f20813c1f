"""Discriminators and GAN losses for codec training (the DAC recipe, written from its description).

* Multi-period discriminator: for each period p the waveform (B, 1, N) is folded into a 2-D map (B, 1, N/p, p), so
  samples p apart sit in one column; 2-D convolutions with kernels (k, 1) then judge each column, i.e. the
  periodic structure at that period.
* Multi-resolution STFT discriminator: for each window length the complex STFT (real and imaginary parts as two
  channels, (B, 2, frames, bins)) is judged by 2-D convolutions that stride over frequency.

Every convolution is weight-normalised; LeakyReLU(0.1) between layers. Each sub-discriminator returns its
feature maps (every hidden activation) and its logits (the last map). Losses are least-squares GAN losses and an
L1 feature-matching loss, summed over sub-discriminators."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..spectral import stft


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the combined discriminator; `width` scales every channel count (32 is DAC's size)."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    stft_windows: tuple[int, ...] = (2048, 1024, 512)
    width: int = 32

    def __post_init__(self):
        object.__setattr__(self, "periods", tuple(int(p) for p in self.periods))
        object.__setattr__(self, "stft_windows", tuple(int(w) for w in self.stft_windows))
        if self.width < 1 or any(p < 1 for p in self.periods) or any(w < 4 for w in self.stft_windows):
            raise ValueError(f"invalid discriminator sizes: {self}")
        if not self.periods and not self.stft_windows:
            raise ValueError("the discriminator needs at least one period or one STFT window")


def _wn_conv2d(c_in, c_out, kernel, stride=(1, 1), padding=(0, 0)) -> nn.Module:
    return weight_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding))


class PeriodDiscriminator(nn.Module):
    """Judges the waveform folded at one period: (B, 1, N) -> (B, 1, N/p', p) patch logits."""

    def __init__(self, period: int, width: int = 32):
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 16 * width, 32 * width, 32 * width]
        self.convs = nn.ModuleList(
            _wn_conv2d(chans[i], chans[i + 1], (5, 1), (3, 1) if i < 4 else (1, 1), (2, 0)) for i in range(5)
        )
        self.post = _wn_conv2d(chans[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        B, C, N = x.shape
        pad = (-N) % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < N else "constant")
        x = x.view(B, C, -1, self.period)  # (B, 1, N/p, p): column j holds samples j, j+p, j+2p, ...
        # A (k, 1) kernel never mixes columns, so each column is a 1-D signal: the columns go into the batch and
        # the layers run as 1-D convolutions of the same weights (the same sums; oneDNN's bfloat16 backward of
        # these 2-D convolutions ran 3.5x slower than the 1-D ones on an AMX CPU). The maps are returned as views
        # in the (B, C, N/p', p) layout.
        x = x.permute(0, 3, 1, 2).reshape(B * self.period, C, -1)
        unfold = lambda y: y.view(B, self.period, y.shape[1], y.shape[2]).permute(0, 2, 3, 1)
        maps = []
        for conv in self.convs:
            x = F.leaky_relu(_as_1d(conv, x), 0.1)
            maps.append(unfold(x))
        maps.append(unfold(_as_1d(self.post, x)))
        return maps


# Wide layers on a CPU run as one matrix product over their stacked taps instead of oneDNN's convolution: at the
# period discriminator's shapes (a few thousand positions, 512-1024 channels, kernel 5) the product is 1.8-2x
# faster forward + backward in bf16 (1024 -> 1024 on 352 x 13: 609 -> 309 ms, one AMX core) and 1.1-1.3x in fp32,
# but slower for narrow layers (128 -> 512: 0.8x).
MATMUL_MIN_CHANNELS = 256


def _as_1d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A Conv2d with a (k, 1) kernel applied to (B, C, N) as the 1-D convolution it is along N."""
    w = conv.weight.squeeze(-1)
    if x.device.type == "cpu" and min(w.shape[:2]) >= MATMUL_MIN_CHANNELS and conv.dilation[0] == 1:
        return _conv1d_by_matmul(x, w, conv.bias, conv.stride[0], conv.padding[0])
    return F.conv1d(x, w, conv.bias, conv.stride[0], conv.padding[0], conv.dilation[0])


def _conv1d_by_matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int):
    """F.conv1d(x, w, bias, stride, padding) as a single product: the k shifted, strided views of the padded input
    side by side, (B * N_out, k * C_in), times the weight laid out tap-major, (k * C_in, C_out)."""
    B, C, N = x.shape
    c_out, _, k = w.shape
    n_out = (N + 2 * padding - k) // stride + 1
    rows = F.pad(x, (padding, padding)).transpose(1, 2)  # (B, N + 2 padding, C)
    taps = torch.cat([rows[:, j: j + stride * (n_out - 1) + 1: stride] for j in range(k)], dim=-1)
    weight = w.permute(0, 2, 1).reshape(c_out, k * C).t()
    flat = taps.reshape(B * n_out, k * C)
    y = flat @ weight if bias is None else torch.addmm(bias, flat, weight)
    return y.view(B, n_out, c_out).transpose(1, 2)


class STFTDiscriminator(nn.Module):
    """Judges one STFT resolution: (B, 1, N) -> complex STFT as (B, 2, frames, bins) -> patch logits."""

    def __init__(self, window_length: int, width: int = 32):
        super().__init__()
        self.window_length = window_length
        self.convs = nn.ModuleList([
            _wn_conv2d(2, width, (3, 9), padding=(1, 4)),
            _wn_conv2d(width, width, (3, 9), (1, 2), (1, 4)),
            _wn_conv2d(width, width, (3, 9), (1, 2), (1, 4)),
            _wn_conv2d(width, width, (3, 9), (1, 2), (1, 4)),
            _wn_conv2d(width, width, (3, 3), padding=(1, 1)),
        ])
        self.post = _wn_conv2d(width, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        spec = stft(x[:, 0].float(), self.window_length)  # (B, bins, frames) complex
        x = torch.view_as_real(spec).permute(0, 3, 2, 1).to(x.dtype)  # (B, 2, frames, bins)
        maps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            maps.append(x)
        maps.append(self.post(x))
        return maps


class Discriminator(nn.Module):
    """All sub-discriminators: forward (B, 1, N) -> one list of feature maps per sub-discriminator (logits last).

    The input is centred and scaled to a peak of 0.8 first, so the discriminators judge shape, not level."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, config.width) for p in config.periods]
            + [STFTDiscriminator(w, config.width) for w in config.stft_windows]
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        x = x - x.mean(dim=-1, keepdim=True)
        x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return [d(x) for d in self.discriminators]


# --- losses (least squares GAN, feature matching) ---------------------------------------------------------------
def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators of mean((D(real) - 1)^2) + mean(D(fake)^2) (pass fake outputs of detached audio)."""
    loss = 0.0
    for r, f in zip(real, fake):
        loss = loss + (r[-1].float() - 1).pow(2).mean() + f[-1].float().pow(2).mean()
    return loss


def generator_adversarial_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators of mean((D(fake) - 1)^2)."""
    loss = 0.0
    for f in fake:
        loss = loss + (f[-1].float() - 1).pow(2).mean()
    return loss


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators and hidden layers of mean|features(fake) - features(real)| (real detached)."""
    loss = 0.0
    for r, f in zip(real, fake):
        for a, b in zip(r[:-1], f[:-1]):
            loss = loss + F.l1_loss(b.float(), a.detach().float())
    return loss
