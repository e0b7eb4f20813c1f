"""bfloat16 inference of the masked transformer on CPUs with bf16 instructions (AMX-BF16, AVX512-BF16) through
oneDNN's prepacked matrix products, the kernels torch's own compiler uses for frozen CPU models.

`F.linear` with a bf16 weight reorders that weight into the blocked layout of the AMX/AVX512 kernels on every call;
here each weight is reordered once, when the model is converted. Attention's q, k and v become one product, and
the feed-forward's GELU and gating run inside its products (oneDNN post-ops), so the gate's activations never make
a separate pass over memory. Measured on a Xeon with AMX, one thread: the full-size 20-layer coarse forward (575
frames) 1.22-1.26x faster than the plain bf16 cast (0.54-0.65 s against 0.66-0.79 s), with logits as close to float32
(BENCHMARKS.md). The norms' learned scales go into the products after them (`fold_norm_scales`): fewer passes, and
the numbers within bf16's rounding.

Used by `precision.apply_to_transformer` for bf16 on such CPUs; a model converted here runs only on the CPU and
cannot be trained or saved (as every converted model)."""
from __future__ import annotations

import copy
import itertools
import weakref
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import GEGLUFeedForward, MaskedTransformer, RMSNorm, SelfAttention, TransformerLayer

ROWS_HINT = 1024  # rows (batch x frames) the weight layout is chosen for; any number of rows works


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether this torch has oneDNN's prepacked linear kernels, this CPU runs them in bf16, and they compute what
    F.linear does here (checked once on a small product: these are torch's internal operators, whose signatures
    may change between releases; any failure means the plain bf16 path)."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        g = torch.Generator().manual_seed(0)
        x, w = (torch.randn(8, 64, generator=g).bfloat16(), torch.randn(48, 64, generator=g).bfloat16())
        layer = nn.Linear(64, 48, bias=False)
        layer.weight.data = w
        want = F.linear(x, w).float()
        got = PackedLinear(layer)(x).float()
        fused = torch.ops.mkldnn._linear_pointwise.binary(x, _linear(x, _pack(w), None, "gelu", "tanh"), _pack(w), None,
                                                           "mul").float()
        expected = want * F.gelu(want, approximate="tanh")  # the feed-forward's two post-ops
        return bool(torch.allclose(got, want, rtol=2e-2, atol=2e-2) and torch.allclose(fused, expected, rtol=5e-2, atol=5e-2))
    except (AttributeError, RuntimeError, TypeError):
        return False


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(torch.bfloat16).contiguous(), ROWS_HINT)


def _linear(x, packed, bias=None, activation="none", algorithm=""):
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, activation, [], algorithm)


# torch.compile cannot trace oneDNN's opaque packed weights: a compiled graph calls each prepacked layer through
# this opaque op with the layer's number instead, and fuses everything around it (as precision.Int8Linear does)
_LAYERS: "weakref.WeakValueDictionary[int, _Prepacked]" = weakref.WeakValueDictionary()
_numbers = itertools.count()


@torch.library.custom_op("vampnet::prepacked", mutates_args=())
def _prepacked_op(x: torch.Tensor, layer: int) -> torch.Tensor:
    return _LAYERS[layer].compute(x)


@_prepacked_op.register_fake
def _(x, layer):
    return x.new_empty(*x.shape[:-1], _LAYERS[layer].out_features)


class _Prepacked(nn.Module):
    """A layer whose weights are prepacked: `compute(x)` (bf16 in, bf16 out, `out_features` wide)."""

    out_features: int

    def _register(self):
        self._number = next(_numbers)
        _LAYERS[self._number] = self

    def forward(self, x):
        if torch.compiler.is_compiling():
            return _prepacked_op(x, self._number)
        return self.compute(x)

    def __deepcopy__(self, memo):
        # the packed weights are opaque (no storage to copy) and never written: a copy shares them
        clone = copy.copy(self)
        clone.__dict__.update({k: copy.copy(v) for k, v in self.__dict__.items() if isinstance(v, dict)})
        clone._register()
        return clone


class PackedLinear(_Prepacked):
    """An nn.Linear with its bf16 weight prepacked for oneDNN; input and output bf16."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = _pack(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).clone()
        self._register()

    def compute(self, x):
        return _linear(x, self.packed, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, prepacked bf16"


class _PackedGate(_Prepacked):
    """The feed-forward's first half fused: (x Wv) * gelu_tanh(x Wg), in two products with oneDNN post-ops."""

    def __init__(self, w_in: nn.Linear, half: int):
        super().__init__()
        self.out_features = half
        self.value, self.gate = _pack(w_in.weight[:half]), _pack(w_in.weight[half:])
        self._register()

    def compute(self, x):
        gate = _linear(x, self.gate, None, "gelu", "tanh")
        return torch.ops.mkldnn._linear_pointwise.binary(x, gate, self.value, None, "mul")


class PackedSelfAttention(nn.Module):
    """SelfAttention with q, k and v in one prepacked product (the same numbers as three)."""

    def __init__(self, attn: SelfAttention):
        super().__init__()
        self.n_heads = attn.n_heads
        qkv = nn.Linear(attn.q.in_features, 3 * attn.q.out_features, bias=False)
        qkv.weight = nn.Parameter(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]).detach(), requires_grad=False)
        self.qkv, self.out = PackedLinear(qkv), PackedLinear(attn.out)

    def forward(self, x, bias):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class PackedGEGLU(nn.Module):
    """GEGLUFeedForward as fused products: h = (x Wv) * gelu_tanh(x Wg), then w_out."""

    def __init__(self, ff: GEGLUFeedForward):
        super().__init__()
        self.gated, self.w_out = _PackedGate(ff.w_in, ff.w_out.in_features), PackedLinear(ff.w_out)

    def forward(self, x):
        return self.w_out(self.gated(x))


class UnitRMSNorm(nn.Module):
    """An RMSNorm whose learned scale has gone into the products it feeds (`fold_norm_scales`): x * rsqrt(mean(x^2)
    + eps), the mean of float32 squares in one reduction, the product in the input's dtype. On a bf16 row of 1280
    one thread took 0.49 ms against 1.42 ms for RMSNorm's float32 passes."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
        return x * torch.rsqrt(norm.square_().div_(x.shape[-1]).add_(self.eps)).to(x.dtype)


@torch.no_grad()
def fold_norm_scales(model: nn.Module) -> nn.Module:
    """Move each RMSNorm's learned scale into the columns of the products that read the norm (attention's q, k, v;
    the feed-forward's w_in; the final norm's classifier), in place, and leave a `UnitRMSNorm`: (x w) W^T =
    x (W diag w)^T. Done before the bf16 cast, the folded weights are rounded once. Norms that feed anything but
    plain linear layers stay as they are."""
    def fold(parent, name, consumers):
        norm = getattr(parent, name)
        if type(norm) is RMSNorm and all(type(m) is nn.Linear for m in consumers):
            for m in consumers:  # a new tensor: the weight may be a read-only mapping of its checkpoint
                m.weight = nn.Parameter(m.weight * norm.weight.to(m.weight.dtype), requires_grad=False)
            setattr(parent, name, UnitRMSNorm(norm.eps))

    for m in list(model.modules()):
        if type(m) is TransformerLayer:
            if type(m.attn) is SelfAttention:
                fold(m, "attn_norm", (m.attn.q, m.attn.k, m.attn.v))
            if type(m.ff) is GEGLUFeedForward:
                fold(m, "ff_norm", (m.ff.w_in,))
        elif isinstance(m, MaskedTransformer):
            fold(m, "norm", (m.classifier,))
    return model


def pack_for_cpu(model: nn.Module) -> nn.Module:
    """Replace the attention blocks, feed-forward blocks and every other plain nn.Linear of a bf16 model (biases
    included) by their prepacked forms, in place. Blocks whose layers are not plain (an unmerged adapter) stay."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is SelfAttention and all(type(m) is nn.Linear for m in (child.q, child.k, child.v, child.out)):
                setattr(parent, name, PackedSelfAttention(child))
            elif type(child) is GEGLUFeedForward and type(child.w_in) is nn.Linear and type(child.w_out) is nn.Linear:
                setattr(parent, name, PackedGEGLU(child))
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear(child))
    return model
