"""Bulk encoding for dataset building: exactly the codes (and latents) of `Codec.encode`, with less CPU work.

`Codec.encode` runs each layer over the whole batch and excerpt and re-derives every weight-normalised kernel on
each call. On a CPU the encoder's early layers (16-32 channels at 11-22 kHz) then stream activations of tens of MB
through memory once per operation (Snake alone is five passes) and the arithmetic waits for memory. `BulkEncoder`
  - folds each weight norm into a plain kernel once (the same `torch._weight_norm` values, so the same numbers),
  - runs the encoder on pieces of about `max_batch` signals x `tile_frames` frames, each with the receptive-field
    context `Codec.encode` uses for long signals, so a piece's activations stay in cache through all layers.
Identical numbers need identical kernels: torch picks a convolution algorithm by shape (for one signal, small
inputs of at most 20480 values go to its native kernel instead of oneDNN), and the two round differently. So a
piece never changes which side of those rules a layer falls on: a batch of several signals is split into
pieces of at least two, and a piece is at least `tile_frames` long (the last takes the remainder), with
`tile_frames` >= 81 so that even the last layer (256 channels here) of a one-signal piece holds over 20480
values whenever the whole signal does. Within those rules the latents are bit-identical to `Codec.encode` (tests
check it on pieces, batches and odd lengths; BENCHMARKS.md on hours of music).
This takes less CPU time per second of audio than `Codec.encode` (how much: BENCHMARKS.md, tokenisation). Other
layouts (channels-last convolutions) were faster still but round differently and flip some codes, so they are
not used. The codec itself is not changed."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from .layers import WNConv1d

MIN_TILE_FRAMES = 81  # see the module's docstring


class _FoldedConv(nn.Module):
    """A weight-normalised 1-D convolution with its kernel computed once."""

    def __init__(self, conv: WNConv1d):
        super().__init__()
        self.register_buffer("weight", conv.weight().detach())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach())
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


def _fold(module: nn.Module) -> nn.Module:
    """Replace, in place, every WNConv1d below `module` by its folded copy; the containers and their forward logic
    (residual sums) stay as the codec defines them."""
    for name, child in module.named_children():
        if isinstance(child, WNConv1d):
            setattr(module, name, _FoldedConv(child))
        else:
            _fold(child)
    return module


class BulkEncoder(nn.Module):
    """`bulk(wav)` -> the codes of `codec.encode(wav)` for (B, 1, N) float audio at the codec's rate.

    Holds a frozen float32 copy of the codec's encoder and quantiser (make a new one after the codec's weights
    change). Use it under `torch.inference_mode()`."""

    def __init__(self, codec, tile_frames: int = 256, max_batch: int = 2):
        super().__init__()
        if tile_frames < MIN_TILE_FRAMES or max_batch < 2:
            raise OptionError(f"tile_frames must be >= {MIN_TILE_FRAMES} and max_batch >= 2, got {tile_frames} and {max_batch}")
        self.hop = codec.hop_length
        self.context = codec.config.encoder_context_frames()
        self.tile_frames, self.max_batch = int(tile_frames), int(max_batch)
        with torch.no_grad():
            self.encoder = _fold(copy.deepcopy(codec.encoder).float()).eval()
            self.quantizer = _fold(copy.deepcopy(codec.quantizer).float()).eval()
        self.requires_grad_(False)

    def latents(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> encoder output (B, D, ceil(N / hop)), piece by piece."""
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != 1 or not wav.is_floating_point():
            raise OptionError(f"the encoder expects float audio shaped (batch, 1, samples), got {getattr(wav, 'shape', wav)}")
        if wav.shape[-1] == 0:
            raise OptionError("the encoder got an empty waveform")
        hop, ctx, T = self.hop, self.context, -(-wav.shape[-1] // self.hop)
        wav = F.pad(wav.to(self.weight_device, torch.float32), (0, T * hop - wav.shape[-1]))  # as Codec.pad
        rows = []
        for i, j in _spans(wav.shape[0], self.max_batch, min_last=2):
            x, pieces = wav[i:j], []
            for a, b in _spans(T, self.tile_frames, min_last=self.tile_frames):
                lo, hi = max(0, a - ctx), min(T, b + ctx)
                pieces.append(self.encoder(x[..., lo * hop: hi * hop])[..., a - lo: b - lo])
            rows.append(torch.cat(pieces, -1))
        return torch.cat(rows)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) float at the codec's rate -> (B, K, ceil(N / hop)) int64 codes."""
        return self.quantizer(self.latents(wav))["codes"]

    @property
    def weight_device(self) -> torch.device:
        return next(self.encoder.buffers()).device


def _spans(n: int, size: int, min_last: int) -> list[tuple[int, int]]:
    """[0, n) in consecutive spans of `size`; a last span shorter than `min_last` joins the one before."""
    spans = [(a, min(a + size, n)) for a in range(0, n, size)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < min_last:
        spans[-2:] = [(spans[-2][0], n)]
    return spans
