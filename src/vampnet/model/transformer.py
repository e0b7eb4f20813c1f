"""The masked bidirectional transformer of VampNet (one class for "coarse" and "coarse-to-fine").

Read top to bottom: codebook embedding -> N pre-norm layers (relative-position self-attention, GEGLU
feed-forward) -> final RMSNorm -> weight-normalised classifier giving logits for every non-conditioning codebook.
Loading reads official `coarse.pth` / `c2f.pth` files (their LoRA deltas merged into the weights) or our safetensors format.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..codec.layers import embedding, randn, weight_norm
from ..errors import CheckpointError, OptionError
from ..serialization import load_state_strict, read_checkpoint, save_safetensors
from .official import convert_official_state

KIND = "transformer"


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of a masked transformer; names follow the official VampNet keyword arguments."""

    n_codebooks: int = 4
    n_conditioning_codebooks: int = 0
    vocab_size: int = 1024
    latent_dim: int = 8
    embedding_dim: int = 1280
    n_heads: int = 20
    n_layers: int = 20
    dropout: float = 0.1
    num_buckets: int = 32
    max_distance: int = 128
    n_controls: int = 0  # control channels (vampnet.controls) added to the embeddings; 0: the original model
    # each token also gets a learned vector of its own (per codebook, MASK included), added to the projection of its
    # codec vector: the original embeds a token only through its codec vector (8 numbers), which a small model
    # must first learn to tell apart. False: the original model (our format only; official files never have it)
    token_tables: bool = False

    def __post_init__(self):
        if self.embedding_dim % self.n_heads:
            raise CheckpointError(f"embedding_dim {self.embedding_dim} is not divisible by n_heads {self.n_heads}")
        if not 0 <= self.n_conditioning_codebooks < self.n_codebooks:
            raise CheckpointError(
                f"n_conditioning_codebooks must be in [0, n_codebooks); got {self.n_conditioning_codebooks} of {self.n_codebooks}")
        if min(self.vocab_size, self.latent_dim, self.n_layers, self.n_heads) < 1:
            raise CheckpointError("transformer config has a non-positive size")
        if not isinstance(self.n_controls, int) or self.n_controls < 0:
            raise CheckpointError(f"n_controls must be a non-negative integer, got {self.n_controls!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_official_kwargs(cls, kwargs: dict) -> "TransformerConfig":
        """Translate the original VampNet constructor kwargs, refusing variants this engine does not implement."""
        if kwargs.get("r_cond_dim", 0) not in (0, None):
            raise CheckpointError("official checkpoints with r_cond_dim != 0 are not supported (the original asserts 0)")
        if kwargs.get("noise_mode", "mask") != "mask":
            raise CheckpointError(f"unsupported noise_mode {kwargs.get('noise_mode')!r} (only 'mask' exists)")
        if kwargs.get("flash_attn", False):
            raise CheckpointError("checkpoints saved with flash_attn=True use other parameter names and are not supported")
        if kwargs.get("ctrl_dims"):
            raise CheckpointError("checkpoints with control signals (ctrl_dims) are not supported")
        return cls.from_dict({**kwargs, "latent_dim": kwargs.get("latent_dim", 8)})

    def to_dict(self) -> dict:
        """The fields; n_controls and token_tables only when set, so files without them are written as before."""
        d = asdict(self)
        for optional in ("n_controls", "token_tables"):
            if not d[optional]:
                del d[optional]
        return d

    @property
    def n_predict_codebooks(self) -> int:
        return self.n_codebooks - self.n_conditioning_codebooks


# --- building blocks ----------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (eps 1e-6), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * y).to(x.dtype)


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128, device=None) -> torch.Tensor:
    """(T, T) bucket index of rel = key - query, bidirectional T5 bucketing evaluated in float32 like the original."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    dist = rel.abs()
    max_exact = half // 2
    large = max_exact + (
        torch.log(dist.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).long()
    large = large.clamp(max=half - 1)
    return bucket + torch.where(dist < max_exact, dist, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias from bucketed relative positions, shared by every layer (computed once per length)."""

    def __init__(self, n_heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        self.table = embedding(num_buckets, n_heads)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self._cache: dict = {}

    def forward(self, length: int, pad: int = 0) -> torch.Tensor:
        """-> (1, H, T + pad, T + pad) additive attention bias, cached per length in eval mode (the table is fixed
        there). The `pad` frames after the T real ones are keys no query attends to (bias -inf)."""
        if self.training or torch.is_grad_enabled():
            return self._compute(length, pad)
        key = (length, pad, self.table.weight.device, self.table.weight.dtype)
        if key not in self._cache:
            if len(self._cache) >= 8:  # bound the memory of many different lengths
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._compute(length, pad)
        return self._cache[key]

    def train(self, mode: bool = True):
        self._cache = {}  # weights may change while training, and are replaced on load
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = {}
        return super()._load_from_state_dict(*args, **kwargs)

    def _compute(self, length: int, pad: int = 0) -> torch.Tensor:
        buckets = relative_position_buckets(length + pad, self.num_buckets, self.max_distance, self.table.weight.device)
        bias = self.table(buckets).permute(2, 0, 1).unsqueeze(0).contiguous()  # a view would be copied per layer
        if pad:
            bias[..., length:] = float("-inf")
        return bias


class SelfAttention(nn.Module):
    """Multi-head self-attention (no biases) with an additive relative-position bias, via SDPA."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x, bias):
        B, T, D = x.shape
        heads = lambda t: t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, d)
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class GEGLUFeedForward(nn.Module):
    """w_in to 4D, split into value (first half) and gate (second half), value * gelu_tanh(gate), w_out to D."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.w_in = nn.Linear(dim, 4 * dim, bias=False)
        self.w_out = nn.Linear(2 * dim, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        value, gate = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(self.drop(value * F.gelu(gate, approximate="tanh")))


class TransformerLayer(nn.Module):
    """Pre-norm residual layer: x + attn(norm(x)); x + ff(norm(x))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.embedding_dim)
        self.attn = SelfAttention(cfg.embedding_dim, cfg.n_heads, cfg.dropout)
        self.ff_norm = RMSNorm(cfg.embedding_dim)
        self.ff = GEGLUFeedForward(cfg.embedding_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias):
        x = x + self.drop(self.attn(self.attn_norm(x), bias))
        return x + self.drop(self.ff(self.ff_norm(x)))


class CodebookEmbedding(nn.Module):
    """Codes (B, K, T) -> (B, T, D): each token's codec codebook vector (or its codebook's learned MASK latent),
    concatenated over codebooks and projected to the model width; with `token_tables`, plus a learned vector per
    token of each codebook (zero at first, so the model starts as one without them)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        K, V, L = cfg.n_codebooks, cfg.vocab_size, cfg.latent_dim
        self.register_buffer("codebooks", torch.zeros(K, V, L))  # frozen copy of the codec's codebooks
        self.mask_latent = nn.Parameter(randn(K, L))
        self.proj = nn.Linear(K * L, cfg.embedding_dim)
        if cfg.token_tables:  # row k * (V + 1) + v: token v of codebook k (v = V: MASK)
            self.tables = nn.Embedding(K * (V + 1), cfg.embedding_dim)
            if not self.tables.weight.is_meta:
                nn.init.zeros_(self.tables.weight)

    def latents(self, codes):
        """(B, K, T) -> (B, T, K*L); channel i*L + j is dim j of codebook i, as in the original."""
        K = self.codebooks.shape[0]
        table = torch.cat([self.codebooks, self.mask_latent.unsqueeze(1)], dim=1)  # (K, V+1, L)
        lat = table[torch.arange(K, device=codes.device)[None, :, None], codes]  # (B, K, T, L)
        return lat.permute(0, 2, 1, 3).flatten(2)

    def forward(self, codes):
        x = self.proj(self.latents(codes))
        if hasattr(self, "tables"):
            K, V1 = self.codebooks.shape[0], self.codebooks.shape[1] + 1
            rows = codes + (torch.arange(K, device=codes.device) * V1)[None, :, None]
            x = x + self.tables(rows).sum(1).to(x.dtype)
        return x


class ControlProjection(nn.Module):
    """Per-frame control features (B, T, C) -> (B, T, D) added to the token embeddings where the control is present
    (B, T). Zero-initialised, so a model that gains it behaves as before until it is trained."""

    def __init__(self, n_controls: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(n_controls, dim)
        if not self.proj.weight.is_meta:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, controls, present):
        weight = getattr(self.proj, "weight", None)  # (an int8 layer of precision.py takes float32)
        dtype = weight.dtype if isinstance(weight, torch.Tensor) and weight.is_floating_point() else torch.float32
        return self.proj(controls.to(dtype)) * present.unsqueeze(-1).to(dtype)


class WeightNormLinear(nn.Module):
    """Linear layer with weight normalisation (g * v / ||v|| per output row), used by the classifier."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        v = randn(dim_out, dim_in)
        if not v.is_meta:  # (no arithmetic on the meta device: see codec.layers.randn)
            v = v / math.sqrt(dim_in)
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.empty(dim_out, 1) if v.is_meta else v.norm(dim=1, keepdim=True).clone())
        self.bias = nn.Parameter(torch.zeros(dim_out))

    def weight(self):
        return weight_norm(self, self.weight_v, self.weight_g)  # computed once per parameter state in inference

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)


# --- the model ----------------------------------------------------------------------------------------------

class MaskedTransformer(nn.Module):
    """Bidirectional transformer over a (B, K, T) token grid; predicts the K - C non-conditioning codebooks.

    Token id `vocab_size` is MASK. `model(codes)` returns logits (B, K - C, T, vocab_size). A model with
    `n_controls` > 0 also takes per-frame control features (B, T, n_controls) and where they are present (B, T);
    frames without a control (or calls without one) get nothing added, as in a model without controls."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embedding = CodebookEmbedding(config)
        if config.n_controls:  # (absent otherwise: the state dict keys stay the original's)
            self.control = ControlProjection(config.n_controls, config.embedding_dim)
        self.rel_bias = RelativePositionBias(config.n_heads, config.num_buckets, config.max_distance)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.embedding_dim)
        # rows ordered (codebook, token): row c * V + v is token v of predicted codebook c
        self.classifier = WeightNormLinear(config.embedding_dim, config.n_predict_codebooks * config.vocab_size)

    n_codebooks = property(lambda self: self.config.n_codebooks)
    n_conditioning_codebooks = property(lambda self: self.config.n_conditioning_codebooks)
    n_predict_codebooks = property(lambda self: self.config.n_predict_codebooks)
    vocab_size = property(lambda self: self.config.vocab_size)
    mask_token = property(lambda self: self.config.vocab_size)

    n_controls = property(lambda self: self.config.n_controls)

    # Inference may run on a sequence padded to a multiple of this many frames: the padded frames are keys that no
    # query attends to, so the real frames' outputs are unchanged up to rounding. 1 (no padding) keeps float32
    # bit-identical to the original; bf16 and int8 on the CPU set 16 (precision.CPU_FRAME_MULTIPLE).
    pad_frames_to: int = 1

    def hidden(self, codes: torch.Tensor, controls: torch.Tensor | None = None,
               control_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, T) codes (and optional controls (B, T, C), present (B, T)) -> (B, T, D) final hidden states."""
        self._check_codes(codes)
        x = self.embedding(codes).to(self.rel_bias.table.weight.dtype)
        if controls is not None:
            present = self._control_mask(codes, controls, control_mask)
            x = x + self.control(controls, present).to(x.dtype)
        T = codes.shape[-1]
        pad = -T % self.pad_frames_to
        bias = self.rel_bias(T, pad).to(x.dtype)  # cast once for every layer
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x[:, :T] if pad else x)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """(..., D) hidden states -> (..., P, V) logits."""
        return self.classifier(h).unflatten(-1, (self.n_predict_codebooks, self.vocab_size))

    def forward(self, codes: torch.Tensor, controls: torch.Tensor | None = None,
                control_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, T) codes with MASK = vocab_size (optional controls, see `hidden`) -> (B, P, T, V) logits."""
        return self.classify(self.hidden(codes, controls, control_mask)).permute(0, 2, 1, 3)

    def _control_mask(self, codes, controls, control_mask):
        """The checked present mask (B, T) of a control input (all frames when None)."""
        B, _, T = codes.shape
        if not self.n_controls:
            raise OptionError("this model takes no control input (it was trained without controls)")
        if not isinstance(controls, torch.Tensor) or tuple(controls.shape) != (B, T, self.n_controls):
            raise OptionError(f"controls must be shaped (batch, frames, {self.n_controls}) = {(B, T, self.n_controls)}, "
                              f"got {tuple(controls.shape) if isinstance(controls, torch.Tensor) else type(controls).__name__}")
        if control_mask is None:
            return torch.ones(B, T, dtype=torch.bool, device=codes.device)
        if tuple(control_mask.shape) != (B, T):
            raise OptionError(f"the control mask must be shaped (batch, frames) = {(B, T)}, got {tuple(control_mask.shape)}")
        return control_mask.bool()

    def set_dropout(self, p: float) -> None:
        """Train with dropout probability p (attention, feed-forward, residual) from now on; a training setting more
        than an architecture, so a run may choose it for the model it starts from."""
        if not 0 <= p < 1:
            raise OptionError(f"dropout must be in [0, 1), got {p}")
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif isinstance(module, SelfAttention):
                module.dropout = p
        self.config = replace(self.config, dropout=p)

    def add_controls(self, n_controls: int) -> None:
        """Give a control-free model a zero-initialised control projection (a fine-tune that adds controls)."""
        if self.n_controls:
            if self.n_controls != n_controls:
                raise CheckpointError(f"this model takes {self.n_controls} controls, not {n_controls}")
            return
        weight = self.norm.weight
        self.control = ControlProjection(n_controls, self.config.embedding_dim).to(weight.device)
        self.config = replace(self.config, n_controls=n_controls)

    def _check_codes(self, codes):
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.dtype.is_floating_point:
            raise OptionError(f"expected integer codes shaped (batch, {self.n_codebooks}, frames), got "
                              f"{tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        if codes.shape[1] != self.n_codebooks:
            raise OptionError(f"this model takes {self.n_codebooks} codebooks, got {codes.shape[1]}")
        if codes.shape[2] == 0:
            raise OptionError("codes have no frames")

    def fold_for_inference(self) -> None:
        """Replace the weight-normalised classifier by a plain linear layer with the same effective weight
        (one less computation per forward, and quantisable). Training and saving are refused afterwards."""
        if isinstance(self.classifier, WeightNormLinear):
            with torch.no_grad():
                weight = self.classifier.weight()
                folded = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
                folded.weight.copy_(weight)
                folded.bias.copy_(self.classifier.bias)
            self.classifier = folded
        self.inference_only = True

    # --- persistence ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, codec=None, device: str | torch.device = "cpu", check_codec: bool = True) -> "MaskedTransformer":
        """Load an official coarse/c2f `.pth` (needs the codec, whose codebooks embed the tokens) or our format.
        With a codec, the model must embed that codec's codebook vectors (unless `check_codec` is False: a
        training run that re-embeds an init model for a fine-tuned codec checks for itself)."""
        ckpt = read_checkpoint(path)
        if not ckpt.official:
            if ckpt.kind != KIND:
                raise CheckpointError(f"{path} is a '{ckpt.kind}' checkpoint, not a transformer")
            with torch.device("meta"):  # skip random initialisation: every weight comes from the file
                model = cls(TransformerConfig.from_dict(ckpt.config))
            load_state_strict(model, ckpt.state_dict, path, assign=True)
        else:
            if ckpt.kind == "bare_state_dict":
                raise CheckpointError(f"{path} holds only a bare state dict (a LoRA file?); load the base model first")
            if "embedding_dim" not in ckpt.config or "n_codebooks" not in ckpt.config:
                raise CheckpointError(f"{path} is not a VampNet transformer checkpoint (no embedding_dim/n_codebooks)")
            if codec is None:
                raise CheckpointError(f"{path} is an official checkpoint: loading it needs the codec (its codebooks)")
            config = TransformerConfig.from_official_kwargs(ckpt.config)
            with torch.device("meta"):
                model = cls(config)
            state = convert_official_state(ckpt.state_dict, config, codec, source=path)
            load_state_strict(model, state, path, assign=True)
        if codec is not None and check_codec:
            _check_compatible(model, codec, path)
        return model.to(device).eval()

    def save(self, path) -> None:
        """Write our safetensors format (weights, the codec codebooks it embeds with, config), atomically."""
        if getattr(self, "inference_only", False):
            raise CheckpointError("this model was converted for inference (precision mode); save the fp32 model instead")
        save_safetensors(path, self.state_dict(), KIND, self.config.to_dict())


def _check_compatible(model: "MaskedTransformer", codec, path) -> None:
    """The model embeds tokens with the codec's codebooks: sizes must fit and the vectors must be the same."""
    cfg = model.config
    if cfg.vocab_size != codec.codebook_size or cfg.latent_dim != codec.codebook_dim or cfg.n_codebooks > codec.n_codebooks:
        raise CheckpointError(
            f"{path} does not fit the codec: model has {cfg.n_codebooks} codebooks of {cfg.vocab_size} x {cfg.latent_dim}, "
            f"codec has {codec.n_codebooks} of {codec.codebook_size} x {codec.codebook_dim}")
    codec_books = torch.stack([q.codebook.weight.detach().float().cpu() for q in codec.quantizer.quantizers[: cfg.n_codebooks]])
    if not torch.allclose(model.embedding.codebooks.float().cpu(), codec_books):
        raise CheckpointError(f"{path} was made with another codec (its codebook vectors differ from this codec's)")
