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
        """x (B, C, N), or (B, C, 1, N) in the decoder's inference layout."""
        alpha = self.alpha if x.dim() == 3 else self.alpha.unsqueeze(-1)
        if torch.is_grad_enabled():
            return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
        # inference: the same operations in the same order (bit-identical), without three temporaries
        y = torch.mul(alpha, x).sin_()
        return y.mul_(y).mul_((alpha + 1e-9).reciprocal()).add_(x)


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


def weight_norm(module: nn.Module, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """W = g * v / ||v|| (norms over all dimensions but the first) with `torch._weight_norm`. In inference (no
    gradients) it is computed once and kept on `module` while v and g stay the same tensors with the same contents
    (a load, a cast or an optimiser step changes their storage or version): the same kernel, so the same values."""
    if torch.compiler.is_compiling():
        # the cache's checks (inference flags, pointers, versions) cannot be traced: a compiled inference pass reads
        # the weight its caller cached before compiling (vampnet.capture); a compiled training pass (gradients on)
        # must compute it in the graph, or it would train against whatever an earlier validation left cached
        cached = getattr(module, "_cached_weight", None)
        return torch._weight_norm(v, g, 0) if cached is None or torch.is_grad_enabled() else cached[1]
    if torch.is_grad_enabled() or v.is_inference() or g.is_inference():  # (inference tensors have no version)
        return torch._weight_norm(v, g, 0)
    key = (v.data_ptr(), g.data_ptr(), v._version, g._version, v.dtype, v.device)
    cached = getattr(module, "_cached_weight", None)
    if cached is None or cached[0] != key:
        cached = (key, torch._weight_norm(v, g, 0), {})  # the dict keeps other layouts of the same weight
        module._cached_weight = cached
    return cached[1]


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
        return weight_norm(self, self.weight_v, self.weight_g)

    def weight_2d(self) -> torch.Tensor:
        """The weight as a (.., .., 1, kernel) 2-D kernel in channels-last layout (the decoder's inference layout),
        cached with `weight`."""
        weight = self.weight()
        cached = getattr(self, "_cached_weight", None)
        if cached is None or cached[1] is not weight:  # not cached (gradients on)
            return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if "2d" not in cached[2]:
            cached[2]["2d"] = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return cached[2]["2d"]


class WNConv1d(_WeightNormed):
    """Conv1d with weight normalisation; weight_v is [out, in, kernel]."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__()
        self._init_weight_norm((c_out, c_in, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x):
        """x (B, C, N), or (B, C, 1, N) channels-last (the decoder's inference layout)."""
        if x.dim() == 4:
            return F.conv2d(x, self.weight_2d(), self.bias, (1, self.stride), (0, self.padding), (1, self.dilation))
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(_WeightNormed):
    """ConvTranspose1d with weight normalisation; weight_v is [in, out, kernel], so the norm is per *input* channel."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0):
        super().__init__()
        self._init_weight_norm((c_in, c_out, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.stride, self.padding = stride, padding

    def forward(self, x):
        """x (B, C, N), or (B, C, 1, N) channels-last (the decoder's inference layout)."""
        if x.dim() == 4:
            return F.conv_transpose2d(x, self.weight_2d(), self.bias, (1, self.stride), (0, self.padding))
        return F.conv_transpose1d(x, self.weight(), self.bias, self.stride, self.padding)
