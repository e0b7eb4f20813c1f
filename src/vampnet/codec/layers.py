"""The codec's building blocks: Snake activation, weight-normalised (transposed) 1-D convolutions, embeddings.

Weight normalisation keeps the official parameter names `weight_g`/`weight_v` (legacy torch weight_norm) and
evaluates W = g * v / ||v|| with `torch._weight_norm`, the same kernel the original calls, so results are exact."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Snake(nn.Module):
    """Snake activation y = x + sin(alpha x)^2 / (alpha + 1e-9), one alpha per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)
        # inference: the same operations in the same order (bit-identical), without three temporaries
        y = torch.mul(self.alpha, x).sin_()
        return y.mul_(y).mul_((self.alpha + 1e-9).reciprocal()).add_(x)


# A model built on the meta device (to be loaded: no initialisation, no memory) must not run the meta kernels that
# torch implements in Python (normal_, norm, div, ...): the first one imports torch._dynamo and sympy, about a
# second of a command's start-up. These helpers initialise as torch does, and skip it on the meta device.

def randn(*shape: int) -> torch.Tensor:
    """torch.randn(*shape) (the same draws), uninitialised on the meta device."""
    t = torch.empty(shape)
    return t if t.is_meta else t.normal_()


def embedding(num: int, dim: int) -> nn.Embedding:
    """nn.Embedding with its usual N(0, 1) initialisation, uninitialised on the meta device."""
    return nn.Embedding(num, dim, _weight=randn(num, dim))


class _WeightNormed(nn.Module):
    """Holds `weight_g` (norm per output slice of dim 0) and `weight_v` (direction) and combines them."""

    def _init_weight_norm(self, shape: tuple[int, ...]):
        v = torch.empty(shape)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_v = nn.Parameter(v)
        g_shape = (shape[0],) + (1,) * (len(shape) - 1)
        # (the norm is skipped on the meta device: see `randn`)
        g = torch.empty(g_shape) if v.is_meta else v.flatten(1).norm(dim=1).view(g_shape).clone()
        self.weight_g = nn.Parameter(g)

    def weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)


class WNConv1d(_WeightNormed):
    """Conv1d with weight normalisation; weight_v is [out, in, kernel]."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__()
        self._init_weight_norm((c_out, c_in, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x):
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(_WeightNormed):
    """ConvTranspose1d with weight normalisation; weight_v is [in, out, kernel], so the norm is per *input* channel."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0):
        super().__init__()
        self._init_weight_norm((c_in, c_out, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.conv_transpose1d(x, self.weight(), self.bias, self.stride, self.padding)
