"""Numeric precision of the models, applied once when they are loaded: `fp32` (exact: reproduces the reference
outputs), `bf16` (bfloat16 weights and activations, fast on CPUs with bf16 instructions), `int8` (the transformers'
linear layers with int8 weights and dynamically quantised int8 activations: torch's fused x86 kernels on CPU,
torchao elsewhere; the codec runs in bf16 where the CPU has bf16 instructions, else fp32, since int8 convolutions
do not pay on CPU).

Norms, softmax, sampling and the codec's vector quantiser stay in float32 in every mode."""
from __future__ import annotations

import itertools
import os
import warnings
import weakref
from contextlib import contextmanager
from functools import lru_cache

import torch
from torch import nn

from .codec.model import DecoderBlock
from .errors import OptionError
from .model import packed as packed_kernels
from .quiet import quiet_torchao

PRECISIONS = ("auto", "fp32", "bf16", "int8")
MODES = PRECISIONS[1:]  # what "auto" resolves to, and what the models are converted to
ENV = "VAMPNET_PRECISION"  # when set, what "auto" resolves to


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_mode(precision: str) -> str:
    """`precision` as a mode the models can be converted to ("auto" is resolved by `choose` first)."""
    if check(precision) == "auto":
        raise OptionError("precision auto must be resolved for a device first (vampnet.precision.choose)")
    return precision


BF16_MIN_WIDTH = 512  # transformers narrower than this gain nothing from bf16 or int8 on a CPU
CODEC_BF16_MIN_WIDTH = 512  # codecs with a narrower decoder (the shipped one: 256) lose time to bf16's set-up


def choose(precision: str, device: torch.device | str = "cpu", width: int | None = BF16_MIN_WIDTH, *,
           codec_width: int | None = None) -> tuple[str, str | None]:
    """The mode one model runs in on `device`, and why when "auto" chose it (else None). `width`: a transformer's
    embedding width; None: the codec, whose decoder is `codec_width` wide (None: not known).

    "auto" takes the fastest mode measured to stay within the fp32 seed-to-seed spread of the shipped model's vamps
    (BENCHMARKS.md, 2026-12-05): for transformers BF16_MIN_WIDTH wide or more, bf16 on CPUs with bf16 instructions
    (AMX: the full-size 10 s vamp 3.3x faster than fp32; AVX512-BF16: 2.0x), int8 on CPUs with VNNI but no bf16
    (its VNNI kernels: 2.0x at full size), else fp32 (emulated bf16 is slower than fp32; int8 without VNNI gained
    1.1x at full size). Narrower transformers (the shipped 192- and 256-wide ones ran as fast in bf16 as in fp32)
    stay fp32. The codec runs bf16 on AMX CPUs when its decoder is CODEC_BF16_MIN_WIDTH wide or more (the official
    codec, channels last: a first encode + decode of 10 s 8.2-8.6 s against 9.9-10.7 s in fp32, later ones 2.4x
    faster; BENCHMARKS.md, 2026-12-06), else fp32 (the shipped codec's first call was slower in bf16; AVX512-BF16
    without AMX is not measured).
    On GPUs fp32 until a GPU run measures the others. The environment variable VAMPNET_PRECISION, when set, is what
    "auto" means instead, for every model."""
    check(precision)
    if precision != "auto":
        return precision, None
    forced = os.environ.get(ENV, "").strip()
    if forced:  # the user's standing choice for "auto" (e.g. fp32 everywhere for outputs identical to the original)
        if forced not in MODES:
            raise OptionError(f"{ENV} must be one of {', '.join(MODES)}, got {forced!r}")
        return forced, None  # chosen by the user, as a precision given is: nothing to say
    device = torch.device(device)
    if width is None:
        if device.type == "cpu" and (codec_width or 0) >= CODEC_BF16_MIN_WIDTH and cpu_has_amx():
            return "bf16", f"AMX, and a codec {codec_width} wide"
        return "fp32", "the faster modes do not pay for this codec"
    if device.type != "cpu":
        return "fp32", f"the faster modes are not measured on {device.type} yet"
    if width < BF16_MIN_WIDTH:
        return "fp32", f"under {BF16_MIN_WIDTH} wide the faster modes do not pay"
    if cpu_has_bf16():
        return "bf16", "native on this CPU (AMX/AVX512-BF16)"
    if cpu_has_vnni() and fused_int8_available():
        return "int8", "this CPU's VNNI kernels (no bf16 instructions)"
    return "fp32", "this CPU has no bf16 or VNNI instructions"


def auto_note(chosen: dict[str, tuple[str, str | None]]) -> str | None:
    """One line saying what "auto" chose for each part ({part: (mode, why)}) and why; None when it chose nothing
    but fp32 (the exact numbers, as without it: nothing to say)."""
    if not any(why for _, why in chosen.values()) or all(mode == "fp32" for mode, _ in chosen.values()):
        return None
    groups: dict[tuple[str, str], list[str]] = {}
    for part, (mode, why) in chosen.items():
        groups.setdefault((mode, why or ""), []).append(part)
    said = "; ".join(f"{' and '.join(parts)} {mode}" + (f" ({why})" if why else "") for (mode, why), parts in groups.items())
    return f"precision auto: {said}; --precision fp32 for the original's exact numbers"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (Linux's /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), ()))
    except OSError:
        return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (the matrix units of recent Xeons)."""
    return "amx_bf16" in cpu_flags()


def bf16_note(device: torch.device) -> str | None:
    """A warning to show when bf16 will be slow (emulated) on this machine, else None."""
    if device.type == "cpu" and not cpu_has_bf16():
        return "this CPU has no bf16 instructions (AVX512-BF16/AMX): bf16 runs emulated and may be slower than fp32"
    return None


def apply_to_codec(codec, precision: str, device: torch.device):
    """Convolutional encoder and decoder in the compute dtype; the quantiser stays float32 (codes are chosen there),
    and so does the decoder's last stage (its last upsampling block, final Snake and output convolution): in
    bfloat16 those layers nearest the waveform added most of the error on quiet passages of the shipped model
    (mel distance to the input 2.93 in fp32 -> 4.06 on one validation clip; 3.15 with this stage in float32,
    3.84 with only the output convolution in float32). It costs part of the decode's speed-up (0.94 -> 0.73 s
    instead of 0.52 s for 10 s on the shipped model)."""
    if _already(codec, precision):
        return codec
    dtype = codec_dtype(precision, device)
    codec.encoder.to(dtype)
    codec.decoder.to(dtype)
    if dtype != torch.float32:
        layers = list(codec.decoder.model)
        blocks = [i for i, m in enumerate(layers) if isinstance(m, DecoderBlock)]
        tail = layers[blocks[-1]:] if blocks else layers[-3:]
        for m in tail:
            m.to(torch.float32)
        tail[0].register_forward_pre_hook(lambda _module, args: tuple(a.float() for a in args))
        release_file_pages(codec)
    codec.precision = precision
    return codec


def codec_dtype(precision: str, device: torch.device) -> torch.dtype:
    check_mode(precision)
    if precision == "bf16" or (precision == "int8" and (device.type != "cpu" or cpu_has_bf16())):
        return torch.bfloat16
    return torch.float32


# A converted model on the CPU pads its frames to a multiple of this (MaskedTransformer.pad_frames_to): torch's CPU
# attention runs faster there (one thread, 20 heads of 64: bf16 575 frames 8.0 ms, padded to 576 6.2 ms; 1001 -> 1008
# 24.7 -> 17.9 ms; float32 1.1-1.2x), the full-size bf16 forward 1.10x, int8 1.08x (BENCHMARKS.md, 2026-12-06 day).
# float32 is never padded: it keeps the original's bits.
CPU_FRAME_MULTIPLE = 16


def apply_to_transformer(model, precision: str, *, packed: bool | None = None):
    """Cast (bf16) or quantise (int8) a loaded transformer for inference. It can no longer be saved.

    bf16 on a CPU with bf16 instructions runs through oneDNN's prepacked products (`model.packed`, the norm scales
    folded into them) unless `packed` is False (None: wherever they are available). On the CPU the frames are
    padded to CPU_FRAME_MULTIPLE for attention."""
    if _already(model, precision) or precision == "fp32":
        return model
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    packing = precision == "bf16" and on_cpu and packed is not False and cpu_has_bf16() and packed_kernels.available()
    model.fold_for_inference()
    if packing:
        packed_kernels.fold_norm_scales(model)  # before the cast: the folded weights are rounded once
    model = model.to(torch.bfloat16) if precision == "bf16" else quantize_linears(model)
    if packing:
        packed_kernels.pack_for_cpu(model)
    if on_cpu:
        model.pad_frames_to = CPU_FRAME_MULTIPLE
    release_file_pages(model)
    model.precision = precision
    return model


def _already(model, precision: str) -> bool:
    """Whether `model` is in `precision` already (a mode is applied once: converting twice would quantise twice);
    a model converted to another mode is refused."""
    check_mode(precision)
    current = getattr(model, "precision", "fp32")
    if current != precision and current != "fp32":
        raise OptionError(f"this model was converted to {current} already; load it again for {precision}")
    return current == precision


@torch.no_grad()
def release_file_pages(module) -> None:
    """Give the plain tensors a conversion left unchanged (norms, biases, the quantiser) memory of their own.

    A weight loaded from a memory-mapped checkpoint keeps the whole mapping alive, and with it every page the
    conversion read: the float32 originals of all converted weights would stay resident beside their bf16/int8
    copies (the full-size int8 vamp peaked at 6.3 GB that way)."""
    for m in module.modules():
        for name, p in m._parameters.items():
            if p is not None and type(p.data) is torch.Tensor:
                p.data = p.data.clone()
        for name, b in m._buffers.items():
            if b is not None and type(b) is torch.Tensor:
                m._buffers[name] = b.clone()


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies 8-bit integers into 32-bit sums without saturating (AVX512-VNNI / AVX-VNNI)."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def int8_engine() -> str:
    """The quantised engine the int8 layers are packed for: oneDNN's on CPUs with AMX-INT8 (its kernels use the AMX
    tiles: on a Sapphire Rapids class Xeon the full-size coarse forward ran 1.43x faster than with fbgemm's VNNI
    kernels, 488 against 699 ms, logits as close to fp32), else torch's x86 engine (fbgemm)."""
    engines = torch.backends.quantized.supported_engines
    return "onednn" if "amx_int8" in cpu_flags() and "onednn" in engines else "x86"


@contextmanager
def _quantized_engine(name: str):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def fused_int8_available() -> bool:
    """Whether torch's x86 quantised kernels (fbgemm) are built in: they quantise the activations inside the
    matrix product, where torchao's CPU path runs the quantisation as separate element-wise passes."""
    return hasattr(torch.ops.quantized, "linear_dynamic") and "x86" in torch.backends.quantized.supported_engines


# torch.compile cannot trace fbgemm's packed weights (a TorchScript object): a compiled graph calls this opaque op
# with the layer's number instead, and fuses everything around it
_INT8_LAYERS: "weakref.WeakValueDictionary[int, Int8Linear]" = weakref.WeakValueDictionary()
_int8_numbers = itertools.count()


@torch.library.custom_op("vampnet::int8_linear", mutates_args=())
def _int8_linear_op(x: torch.Tensor, layer: int) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic(x, _INT8_LAYERS[layer]._packed, False)


@_int8_linear_op.register_fake
def _(x, layer):
    return x.new_empty(*x.shape[:-1], _INT8_LAYERS[layer].out_features)


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (symmetric, one scale per output row) and activations quantised to 8 bits
    per call (one scale and zero point per tensor), in one fused CPU kernel (`quantized::linear_dynamic`).
    Input and output are float32.

    Without VNNI the kernels add pairs of 8-bit products into 16-bit sums, which saturate when both factors are
    near full scale (2 x 255 x 127 > 32767). The weights then use 7 bits (2 x 255 x 63 fits), the activations
    keep all 8: on the shipped and random models this halves the logits' error against float32 compared with
    the kernels' own remedy, 7-bit activations (coarse 0.086 -> 0.050, coarse-to-fine 0.049 -> 0.030 relative),
    because the per-tensor activation scale, not the per-row weight scale, is the coarser of the two."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        self.weight_bits = 8 if cpu_has_vnni() else 7
        scale = (w.abs().amax(1) / (2 ** (self.weight_bits - 1) - 1)).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # quantised tensors are deprecated in torch, the kernels are not
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        with _quantized_engine(int8_engine()):  # the packed weights keep the engine they were packed for
            self._packed = torch.ops.quantized.linear_prepack(qw, bias)
        self.engine = int8_engine()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._register()

    def _register(self):
        self._number = next(_int8_numbers)
        _INT8_LAYERS[self._number] = self

    def __getstate__(self):
        # the packed weights travel unpacked and are packed again for this layer's engine: packed objects copied
        # on their own would be packed for whatever engine is global then (other kernels, other rounding)
        state = dict(self.__dict__)
        state["_packed"] = torch.ops.quantized.linear_unpack(self._packed)
        return state

    def __setstate__(self, state):  # a copy (deepcopy, pickle) is a layer of its own
        state = dict(state)
        weight, bias = state.pop("_packed")
        super().__setstate__(state)
        with _quantized_engine(self.engine):
            self._packed = torch.ops.quantized.linear_prepack(weight, bias)
        self._register()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return _int8_linear_op(x, self._number)
        return torch.ops.quantized.linear_dynamic(x, self._packed, False)  # 8-bit activations

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, weight_bits={self.weight_bits}, "
                f"engine={self.engine}")


def quantize_linears(module):
    """Every nn.Linear of `module` -> int8 weights x dynamically quantised int8 activations, in place: torch's
    fused x86 kernels on CPU, else torchao."""
    on_cpu = all(p.device.type == "cpu" for p in module.parameters())
    if on_cpu and fused_int8_available():
        for parent in list(module.modules()):
            for name, child in parent.named_children():
                if type(child) is nn.Linear:
                    setattr(parent, name, Int8Linear(child))
        return module
    with quiet_torchao():
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError:
            raise OptionError("int8 precision needs torchao: pip install 'vampnet[fast]' (or torchao)") from None
        quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return module
