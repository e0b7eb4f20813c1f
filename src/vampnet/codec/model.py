"""The LAC/DAC-family codec: convolutional encoder, residual vector quantiser, HiFi-GAN-style decoder, and
loading/saving (official `.pth` from the original training code, or our safetensors format).

Architecture sizes always come from the checkpoint's configuration, never from constants here."""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, OptionError
from ..serialization import load_state_strict, read_checkpoint, save_safetensors
from .layers import Snake, WNConv1d, WNConvTranspose1d
from .quantize import ResidualVectorQuantizer

KIND = "codec"


@dataclass(frozen=True)
class CodecConfig:
    """Codec hyper-parameters, named as the official LAC constructor's keyword arguments."""

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    decoder_dim: int = 512
    decoder_rates: tuple[int, ...] = (4, 4, 4, 2, 2, 2)
    n_codebooks: int = 14
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: bool = False
    sample_rate: int = 44100

    def __post_init__(self):
        object.__setattr__(self, "encoder_rates", tuple(int(r) for r in self.encoder_rates))
        object.__setattr__(self, "decoder_rates", tuple(int(r) for r in self.decoder_rates))
        if not self.encoder_rates or not self.decoder_rates or min(self.encoder_rates + self.decoder_rates) < 1:
            raise CheckpointError(f"codec config has invalid rates: {self.encoder_rates} / {self.decoder_rates}")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise CheckpointError(f"codec encoder rates {self.encoder_rates} and decoder rates {self.decoder_rates} "
                                  "have different products, so frames would not map back to samples")
        if min(self.encoder_dim, self.decoder_dim, self.n_codebooks, self.codebook_size, self.codebook_dim) < 1:
            raise CheckpointError("codec config has a non-positive size")

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder_rates"] = list(self.encoder_rates)
        d["decoder_rates"] = list(self.decoder_rates)
        return d

    @property
    def hop_length(self) -> int:
        # LAC takes the hop from the decoder rates (DAC takes it from the encoder's)
        return math.prod(self.decoder_rates)

    @property
    def encoder_out_dim(self) -> int:
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    def encoder_context_frames(self) -> int:
        """Frames on each side that influence one encoder output frame (an upper bound of the receptive radius)."""
        radius, stride = 3, 1  # input conv k7
        for s in self.encoder_rates:
            radius += 3 * (1 + 3 + 9) * stride + 2 * s * stride  # dilated k7 residual units, strided conv k=2s
            stride *= s
        radius += stride  # output conv k3
        return math.ceil(radius / self.hop_length) + 1

    def decoder_context_frames(self) -> int:
        """Frames on each side that influence the samples of one decoded frame (upper bound)."""
        radius, upsampled = 3.0, 1  # input conv k7 at the frame rate
        for s in self.decoder_rates:
            upsampled *= s
            mrf = sum((11 - 1) // 2 * (d + 1) for d in (1, 3, 5))  # the widest chain: kernel 11, dilations 1/3/5
            radius += (2 * s + mrf) / upsampled
        radius += 3 / upsampled  # output conv k7
        return math.ceil(radius) + 1


class ResidualUnit(nn.Module):
    """Encoder residual unit: Snake -> dilated conv k7 -> Snake -> conv 1x1, added to the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim), WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation), Snake(dim), WNConv1d(dim, dim, 1)
        )

    def forward(self, x):
        y = self.block(x)
        # inference adds in place (a + b == b + a exactly): one full-rate buffer less per unit
        return x + y if torch.is_grad_enabled() else y.add_(x)


class EncoderBlock(nn.Module):
    """Three residual units at the input width, then a strided conv that doubles channels and divides time."""

    def __init__(self, dim_in: int, dim_out: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(dim_in, 1), ResidualUnit(dim_in, 3), ResidualUnit(dim_in, 9),
            Snake(dim_in), WNConv1d(dim_in, dim_out, 2 * stride, stride=stride, padding=stride // 2),
        )

    def forward(self, x):
        return self.block(x)


class Encoder(nn.Module):
    """Waveform (B, 1, N) -> continuous latents (B, encoder_dim * 2^len(rates), N / prod(rates))."""

    def __init__(self, dim: int, rates: tuple[int, ...]):
        super().__init__()
        layers = [WNConv1d(1, dim, 7, padding=3)]
        for stride in rates:
            layers.append(EncoderBlock(dim, dim * 2, stride))
            dim *= 2
        layers += [Snake(dim), WNConv1d(dim, dim, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        if torch.is_grad_enabled() or x.dtype == torch.float32:
            # float32 keeps the (B, C, N) layout: its numbers are the original's and BulkEncoder's, bit for bit
            return self.block(x)
        # reduced precision, inference: the decoder's (B, C, 1, N) channels-last layout (see Decoder.forward).
        # oneDNN's bfloat16 convolutions work channels last, and on (B, C, N) each one transposed its input and its
        # output (half of the full-size encoder's time on an AMX CPU; its bits were the same there, see tests)
        y = self.block(x.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        return y.squeeze(2).contiguous()


class MRFLayer(nn.Module):
    """One residual layer of a multi-receptive-field chain: Snake -> dilated conv k -> Snake -> conv k."""

    def __init__(self, dim: int, kernel: int, dilation: int):
        super().__init__()
        self.layer = nn.Sequential(
            Snake(dim), WNConv1d(dim, dim, kernel, dilation=dilation, padding=(kernel - 1) * dilation // 2),
            Snake(dim), WNConv1d(dim, dim, kernel, padding=(kernel - 1) // 2),
        )

    def forward(self, x):
        y = self.layer(x)
        # inference adds in place (a + b == b + a exactly): one full-rate buffer less per layer
        return x + y if torch.is_grad_enabled() else y.add_(x)


class MRFChain(nn.Module):
    """Three MRF layers of one kernel size with dilations 1, 3, 5."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.block = nn.ModuleList(MRFLayer(dim, kernel, d) for d in (1, 3, 5))

    def forward(self, x):
        for layer in self.block:
            x = layer(x)
        return x


class MultiReceptiveField(nn.Module):
    """Mean of three chains (kernels 3, 7, 11) run on the same input."""

    def __init__(self, dim: int):
        super().__init__()
        self.mrf_blocks = nn.ModuleList(MRFChain(dim, k) for k in (3, 7, 11))

    def forward(self, x):
        out = self.mrf_blocks[0](x)
        if not torch.is_grad_enabled():  # inference: the same sums in the same order, in place
            for chain in self.mrf_blocks[1:]:
                out.add_(chain(x))
            return out.div_(len(self.mrf_blocks))
        for chain in self.mrf_blocks[1:]:
            out = out + chain(x)
        return out / len(self.mrf_blocks)


class DecoderBlock(nn.Module):
    """Snake -> transposed conv (upsample by stride, halve channels) -> multi-receptive-field block."""

    def __init__(self, dim_in: int, dim_out: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim_in), WNConvTranspose1d(dim_in, dim_out, 2 * stride, stride=stride, padding=stride // 2),
            MultiReceptiveField(dim_out),
        )

    def forward(self, x):
        return self.block(x)


class Decoder(nn.Module):
    """Quantised latents (B, D, T) -> waveform (B, 1, T * prod(rates)) in [-1, 1]."""

    def __init__(self, input_dim: int, dim: int, rates: tuple[int, ...]):
        super().__init__()
        layers = [WNConv1d(input_dim, dim, 7, padding=3)]
        for j, stride in enumerate(rates):
            layers.append(DecoderBlock(dim // 2**j, dim // 2 ** (j + 1), stride))
        out_dim = dim // 2 ** len(rates)
        layers += [Snake(out_dim), WNConv1d(out_dim, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if torch.is_grad_enabled():
            return self.model(x)
        # inference: time as the width of a (B, C, 1, N) channels-last image. oneDNN's convolutions with few channels
        # over long signals (the last blocks: 16-64 channels at up to the sample rate) run several times faster in this
        # layout (BENCHMARKS.md, decode); the results differ from the (B, C, N) layout's by float rounding only
        y = self.model(x.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        return y.squeeze(2).contiguous()


class Codec(nn.Module):
    """Neural audio codec: `encode` waveforms to (B, K, T) int64 codes and `decode` codes back to waveforms.

    Long signals are processed in chunks of `chunk_frames` frames with enough context on each side to cover the
    convolutions' receptive field, so memory stays flat and the result equals whole-signal processing."""

    def __init__(self, config: CodecConfig, chunk_frames: int = 1024):
        super().__init__()
        self.config = config
        self.chunk_frames = chunk_frames
        self.encoder = Encoder(config.encoder_dim, config.encoder_rates)
        self.quantizer = ResidualVectorQuantizer(
            config.encoder_out_dim, config.n_codebooks, config.codebook_size, config.codebook_dim
        )
        self.decoder = Decoder(config.encoder_out_dim, config.decoder_dim, config.decoder_rates)

    # --- attributes users rely on -------------------------------------------------------------------------
    sample_rate = property(lambda self: self.config.sample_rate)
    hop_length = property(lambda self: self.config.hop_length)
    n_codebooks = property(lambda self: self.config.n_codebooks)
    codebook_size = property(lambda self: self.config.codebook_size)
    codebook_dim = property(lambda self: self.config.codebook_dim)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def frames(self, n_samples: int) -> int:
        """Number of code frames for n_samples of audio (after right-padding to a hop multiple)."""
        return math.ceil(n_samples / self.hop_length)

    # --- encode / decode ----------------------------------------------------------------------------------
    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad (B, 1, N) with zeros to a multiple of the hop length."""
        pad = self.frames(wav.shape[-1]) * self.hop_length - wav.shape[-1]
        return F.pad(wav, (0, pad)) if pad else wav

    def _check_wav(self, wav):
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != 1:
            raise OptionError(f"codec.encode expects a float tensor shaped (batch, 1, samples), got {_describe(wav)}")
        if wav.shape[-1] == 0:
            raise OptionError("codec.encode got an empty waveform")
        if not wav.is_floating_point():
            raise OptionError(f"codec.encode expects floating-point audio, got {wav.dtype}")

    def encode_latents(self, wav: torch.Tensor, n_quantizers: int | None = None) -> dict:
        """Full quantiser output for (B, 1, N) audio: z, codes, latents (see ResidualVectorQuantizer)."""
        self._check_wav(wav)
        param = next(self.encoder.parameters())
        z = self.encoder(self.pad(wav).to(param.device, param.dtype))
        return self.quantizer(z.float(), n_quantizers)  # codes are chosen in float32 whatever the encoder's dtype

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) float at `sample_rate` -> (B, K, ceil(N / hop)) int64 codes."""
        self._check_wav(wav)
        wav = self.pad(wav)
        hop, T = self.hop_length, wav.shape[-1] // self.hop_length
        ctx = self.config.encoder_context_frames()
        if T <= self.chunk_frames + 2 * ctx:
            return self.encode_latents(wav)["codes"]
        out = []
        for a in range(0, T, self.chunk_frames):
            b = min(a + self.chunk_frames, T)
            lo, hi = max(0, a - ctx), min(T, b + ctx)
            codes = self.encode_latents(wav[..., lo * hop: hi * hop])["codes"]
            out.append(codes[..., a - lo: b - lo])
        return torch.cat(out, -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, k, T) int codes (k <= n_codebooks) -> (B, 1, T * hop) float waveform."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.dtype.is_floating_point:
            raise OptionError(f"codec.decode expects integer codes shaped (batch, codebooks, frames), got {_describe(codes)}")
        if codes.shape[1] < 1 or codes.shape[1] > self.n_codebooks:
            raise OptionError(f"codec.decode got {codes.shape[1]} codebooks; this codec has {self.n_codebooks}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise OptionError(f"codes must lie in [0, {self.codebook_size}); got values in [{int(codes.min())}, {int(codes.max())}]")
        param = next(self.decoder.parameters())
        codes = codes.to(param.device)
        to_decoder = lambda c: self.quantizer.from_codes(c).to(param.dtype)
        T, hop = codes.shape[-1], self.hop_length
        ctx = self.config.decoder_context_frames()
        if T <= self.chunk_frames + 2 * ctx:
            return self.decoder(to_decoder(codes))
        out = []
        for a in range(0, T, self.chunk_frames):
            b = min(a + self.chunk_frames, T)
            lo, hi = max(0, a - ctx), min(T, b + ctx)
            wav = self.decoder(to_decoder(codes[..., lo:hi]))
            out.append(wav[..., (a - lo) * hop: (b - lo) * hop])
        return torch.cat(out, -1)

    def fingerprint(self) -> str:
        """A short hash of the weights: token files and datasets only fit the codec that made them."""
        h = hashlib.sha1()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # --- persistence --------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "Codec":
        """Load an official LAC `.pth` (architecture from metadata['kwargs']) or our safetensors codec."""
        ckpt = read_checkpoint(path)
        if ckpt.official:
            if ckpt.kind == "bare_state_dict" or "encoder_rates" not in ckpt.config:
                raise CheckpointError(f"{path} is not a codec checkpoint (its configuration has no encoder_rates)")
        elif ckpt.kind != KIND:
            raise CheckpointError(f"{path} is a '{ckpt.kind}' checkpoint, not a codec")
        config = CodecConfig.from_dict(ckpt.config)
        with torch.device("meta"):  # skip random initialisation: every weight comes from the file
            codec = cls(config)
        load_state_strict(codec, ckpt.state_dict, path, assign=True)
        return codec.to(device).eval()

    def save(self, path) -> None:
        """Write our safetensors format (weights + config), atomically."""
        save_safetensors(path, self.state_dict(), KIND, self.config.to_dict())


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
