"""Audio files and signal conditioning: read, write (atomically) in the format a result should have, mono,
resample (soxr), loudness (ITU-R BS.1770) and a true-peak limiter that brings a result to a loudness without
going over full scale.

The only module that touches audio files. Waveforms are float32 torch tensors shaped (batch, channels, samples)
with the sample rate carried beside them."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import AudioError, OptionError, first_line
from .schema import option
from .serialization import atomic_path

TARGET_LUFS = -24.0
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}  # MP3: where libsndfile has it
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif"}  # what find_audio collects


def load(path, max_seconds: float | None = None, offset_s: float = 0.0) -> tuple[torch.Tensor, int]:
    """Read an audio file -> ((1, channels, samples) float32, sample rate), from `offset_s` seconds on and at most
    `max_seconds` long. Raises AudioError with the reason."""
    import soundfile as sf  # audio I/O loads on use: training from tokens runs where it is not installed

    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file, got a folder: {path}")
    try:
        info = sf.info(str(path))
        frames = -1 if max_seconds is None else int(max_seconds * info.samplerate)
        start = max(0, int(offset_s * info.samplerate))
        data, sr = sf.read(str(path), frames=frames, start=start, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile reports every failure as a RuntimeError/LibsndfileError with a message
        reason = first_line(e, last=True)
        raise AudioError(f"cannot read audio {path}: {reason}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file has no samples: {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file contains NaN or infinite samples: {path}")
    return torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0), int(sr)


@dataclass(frozen=True)
class FileFormat:
    """What an audio file holds: its sample rate, channels and libsndfile sample format (`subtype`: PCM_16, PCM_24,
    FLOAT, VORBIS, MPEG_LAYER_III...; None where unknown, e.g. for a signal given as a tensor)."""

    sample_rate: int
    channels: int = 1
    subtype: str | None = None


@dataclass(frozen=True)
class OutputOptions:
    """What a user asks of a result file; None keeps the default: the input's sample rate, mono, and the input's
    sample format where it is 16- or 24-bit PCM, else 24-bit. `bit_depth` 32 is 32-bit float (WAV only);
    `file_type` (wav, flac, ogg, mp3) must agree with the file name's extension. Schema options (the CLI's flags)."""

    sample_rate: int | None = option(None, "the result's sample rate in Hz (default: the input's)", kind="int",
                                     unit="Hz", minimum=1000, maximum=384000)
    channels: int | None = option(None, "1 (default) or 2: the mono result on both channels, each 3 dB lower so the "
                                  "file keeps the input's loudness", kind="int", minimum=1, maximum=2)
    bit_depth: int | None = option(None, "16 | 24 | 32 (float, WAV only); default: the input's when it is 16- or "
                                   "24-bit PCM, else 24", kind="int", minimum=16, maximum=32)
    file_type: str | None = option(None, "the result's file type (default: the output name's extension)", kind="str",
                                   name="format", choices=tuple(ext[1:] for ext in WRITE_FORMATS))


BIT_DEPTHS = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
LOSSY = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}  # their own sample format, no bit depth
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_SUBTYPE = "PCM_24"


def file_format(path) -> FileFormat:
    """The sample rate, channels and sample format of an audio file, without reading its samples."""
    import soundfile as sf  # see load()

    try:
        info = sf.info(os.fspath(path))
    except Exception as e:
        raise AudioError(f"cannot read audio {path}: {first_line(e, last=True)}") from None
    return FileFormat(int(info.samplerate), int(info.channels), info.subtype)


def writable_formats() -> list[str]:
    """The file types results can be written as here (their extensions without the dot): MP3 needs libsndfile >= 1.1."""
    import soundfile as sf  # see load()

    have = sf.available_formats()
    return [ext[1:] for ext, fmt in WRITE_FORMATS.items() if fmt in have]


def output_format(path, source: FileFormat, options: OutputOptions | None = None) -> FileFormat:
    """The format a result written to `path` gets: the container from the extension, the rest from `options`,
    defaulting to `source` (the input): its rate, mono, its sample format where that is 16/24-bit PCM, else 24-bit.
    OptionError for a combination the container cannot hold."""
    options = options or OutputOptions()
    container = _container(path)
    if options.file_type is not None and WRITE_FORMATS.get(f".{options.file_type}") != container:
        raise OptionError(f"output {path} does not end in .{options.file_type}, the file type asked for")
    rate = int(options.sample_rate or source.sample_rate)
    if not 1000 <= rate <= 384000:
        raise OptionError(f"the sample rate must be 1000 to 384000 Hz, got {rate}")
    if container == "MP3" and rate not in MP3_RATES:
        raise OptionError(f"MP3 files hold {', '.join(map(str, MP3_RATES))} Hz, not {rate} Hz (set the sample rate)")
    channels = int(options.channels or 1)
    if channels not in (1, 2):
        raise OptionError(f"results are mono (1 channel) or the mono signal on 2 channels, got {channels}")
    if container in LOSSY:
        if options.bit_depth is not None:
            raise OptionError(f"{container} files have no bit depth; it applies to WAV and FLAC")
        return FileFormat(rate, channels, LOSSY[container])
    if options.bit_depth is not None and options.bit_depth not in BIT_DEPTHS:
        raise OptionError(f"the bit depth must be 16, 24 or 32 (float), got {options.bit_depth}")
    if options.bit_depth is not None:
        subtype = BIT_DEPTHS[options.bit_depth]
    else:
        subtype = source.subtype if source.subtype in ("PCM_16", "PCM_24") else DEFAULT_SUBTYPE
    if container == "FLAC" and subtype == "FLOAT":
        raise OptionError("FLAC holds 16- or 24-bit samples; write WAV for 32-bit float")
    return FileFormat(rate, channels, subtype)


def _container(path) -> str:
    import soundfile as sf  # see load()

    suffix = Path(path).suffix.lower()
    fmt = WRITE_FORMATS.get(suffix)
    if fmt is None or fmt not in sf.available_formats():
        raise AudioError(f"cannot write '{suffix}' files; use one of {', '.join('.' + f for f in writable_formats())}")
    return fmt


def save(path, wav: torch.Tensor, sample_rate: int, metadata: dict | None = None, *, fmt: FileFormat | None = None,
         circular: bool = False) -> Path:
    """Write (1, channels, samples) or (channels, samples) audio atomically; the container from the extension.

    Without `fmt` the signal is written as it is (WAV as 32-bit float). With `fmt` (see `output_format`) it is
    resampled to its rate (exactly round(N * rate / sample_rate) samples; `circular`: a loop, resampled with its end
    before its start), a mono signal written on 2 channels gets each copy 3 dB lower (so the file's BS.1770
    loudness stays the same), and samples beyond full scale are clipped (after `limit` there are none but
    resampling's last fractions of a dB)."""
    import soundfile as sf  # see load()

    path = Path(path)
    container = _container(path)
    data = wav.detach().float().cpu()
    if data.dim() == 3:
        if data.shape[0] != 1:
            raise AudioError("save writes one signal at a time (batch size 1)")
        data = data[0]
    if not torch.isfinite(data).all():
        raise AudioError("refusing to write audio with NaN or infinite samples")
    subtype = "FLOAT" if container == "WAV" else None
    if fmt is not None:
        data = resample(data[None], int(sample_rate), fmt.sample_rate, circular=circular)[0]
        if data.shape[0] != fmt.channels:
            data = to_mono(data[None])[0].expand(fmt.channels, -1) / math.sqrt(fmt.channels)
        data = data.clamp(-1.0, 1.0)
        sample_rate, subtype = fmt.sample_rate, fmt.subtype
    data = np.ascontiguousarray(data.numpy().T)
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=data.shape[1], format=container,
                          subtype=subtype) as f:
            if metadata and container not in LOSSY:
                f.comment = _metadata_comment(metadata)
            f.write(data)
    return path


def _metadata_comment(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, default=str)[:2000]


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, 1, N) by averaging channels."""
    return wav.mean(dim=1, keepdim=True) if wav.shape[1] != 1 else wav


def resample(wav: torch.Tensor, sr_in: int, sr_out: int, *, circular: bool = False) -> torch.Tensor:
    """High-quality resampling with soxr; (B, C, N) at sr_in -> (B, C, round(N * sr_out / sr_in)) at sr_out.
    `circular`: the signal is a loop, filtered as if its end came before its start (no edge at the joint)."""
    if sr_in == sr_out:
        return wav
    import soxr  # see load()

    n = wav.shape[-1]
    if circular and n:
        step = sr_in // math.gcd(sr_in, sr_out)  # a pad of whole steps starts the loop on an output sample
        pad = step * -(-min(sr_in // 20, 4 * n) // step)  # at least 50 ms of the loop on each side (soxr's filter)
        padded = wav[..., torch.arange(-pad, n + pad) % n]
        start = pad * sr_out // sr_in
        return resample(padded, sr_in, sr_out)[..., start:start + round(n * sr_out / sr_in)]
    out = [soxr.resample(w.T.numpy().astype(np.float32), sr_in, sr_out, quality="HQ").T for w in wav.cpu()]
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).float()


def resample_periodic(wav: torch.Tensor, n: int) -> torch.Tensor:
    """One period of a periodic signal (..., N) -> the same period in exactly `n` samples, by band-limited
    interpolation in the frequency domain (the spectrum cut or zero-padded). Exact for periodic signals, and the
    result is periodic again, so a loop resampled this way keeps its seam; soxr would treat the ends as edges."""
    N = wav.shape[-1]
    if n < 1 or N < 1:
        raise AudioError(f"cannot resample a period of {N} samples to {n}")
    if n == N:
        return wav.clone()
    spec = torch.fft.rfft(wav.double(), dim=-1)[..., : min(N, n) // 2 + 1].clone()
    if min(N, n) % 2 == 0:  # the shorter length's Nyquist bin: a cosine there is split (or folded) between +-N/2
        spec[..., -1] = spec[..., -1].real * (0.5 if n > N else 2.0)
    return (torch.fft.irfft(spec, n=n, dim=-1) * (n / N)).to(wav.dtype)


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4: K-weighting, 400 ms blocks overlapping by 75 %, gates at
    -70 LUFS and 10 LU below the ungated mean) of a (1, C, N) signal, C <= 5; -inf for silence.

    The same filters and block boundaries as pyloudnorm's default meter (its values agree to ~1e-12 LU), computed
    with numpy alone: pyloudnorm's filtering needs scipy.signal, whose import would add a large share of torch's
    import time to every `vampnet vamp`. Clips shorter than one gating block are measured by their mean square instead."""
    x = wav[0].double().cpu().numpy()  # (C, N)
    if x.shape[0] > len(CHANNEL_WEIGHTS):
        raise AudioError(f"loudness is defined for at most {len(CHANNEL_WEIGHTS)} channels, got {x.shape[0]}")
    if x.shape[1] < int(0.4 * sample_rate) + 1:
        ms = float(np.mean(x**2))
        return -0.691 + 10 * math.log10(ms) if ms > 0 else -math.inf
    return _gated_loudness(_k_weighted(x, sample_rate), sample_rate)


def _k_weighted(x: np.ndarray, sample_rate: int) -> np.ndarray:
    for b, a in _k_weighting(float(sample_rate)):
        x = _biquad(b, a, x)
    return x


def _gated_loudness(y: np.ndarray, sample_rate: int) -> float:
    """BS.1770's gated integrated loudness of K-weighted (C, N) signals, N at least one 400 ms block."""
    block = 0.4 * sample_rate
    n_blocks = int(np.round((y.shape[1] / sample_rate - 0.4) / (0.4 * 0.25))) + 1
    bounds = [(int(0.4 * (j * 0.25) * sample_rate), int(0.4 * (j * 0.25 + 1) * sample_rate)) for j in range(n_blocks)]
    z = np.array([[(1.0 / block) * np.sum(np.square(ch[lo:hi])) for lo, hi in bounds] for ch in y])  # (C, blocks)
    weights = np.array(CHANNEL_WEIGHTS[: y.shape[0]])[:, None]
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10((weights * z).sum(0))
        above_abs = block_lufs >= -70.0
        if not above_abs.any():
            return -math.inf
        relative = -0.691 + 10 * np.log10((weights[:, 0] * z[:, above_abs].mean(1)).sum()) - 10.0
        gated = (block_lufs > relative) & (block_lufs > -70.0)
        if not gated.any():
            return -math.inf
        return float(-0.691 + 10 * np.log10((weights[:, 0] * z[:, gated].mean(1)).sum()))


CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 channel gains: L, R, C, Ls, Rs


def _k_weighting(rate: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's K-weighting as two biquads (b, a), a[0] = 1: a +4 dB high shelf at 1500 Hz (Q 1/sqrt 2), then a
    high pass at 38 Hz (Q 0.5), from the audio-EQ-cookbook formulas (the design pyloudnorm's meter uses)."""
    A = 10 ** (4.0 / 40)
    w0 = 2 * np.pi * 1500.0 / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * (1 / np.sqrt(2)))
    shelf_b = np.array([A * ((A + 1) + (A - 1) * cos + 2 * np.sqrt(A) * alpha), -2 * A * ((A - 1) + (A + 1) * cos),
                        A * ((A + 1) + (A - 1) * cos - 2 * np.sqrt(A) * alpha)])
    shelf_a = np.array([(A + 1) - (A - 1) * cos + 2 * np.sqrt(A) * alpha, 2 * ((A - 1) - (A + 1) * cos),
                        (A + 1) - (A - 1) * cos - 2 * np.sqrt(A) * alpha])
    w0 = 2 * np.pi * 38.0 / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * 0.5)
    hp_b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
    hp_a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return [(shelf_b / shelf_a[0], shelf_a / shelf_a[0]), (hp_b / hp_a[0], hp_a / hp_a[0])]


def _biquad(b: np.ndarray, a: np.ndarray, x: np.ndarray, block: int = 256) -> np.ndarray:
    """Filter (C, N) signals by one biquad from rest, without a Python loop per sample: the feed-forward part
    directly; the recursion w[n] = v[n] - a1 w[n-1] - a2 w[n-2] block by block, each block's response from rest
    as one matrix product with the recursion's impulse response, plus the response to the state the previous block
    left (carried from block to block: one 2x2 step per block)."""
    C, N = x.shape
    v = b[0] * x
    v[:, 1:] += b[1] * x[:, :-1]
    v[:, 2:] += b[2] * x[:, :-2]
    M = np.array([[-a[1], -a[2]], [1.0, 0.0]])  # (w[n], w[n-1]) = M (w[n-1], w[n-2]) + (v[n], 0)
    powers = [np.eye(2)]
    for _ in range(block):
        powers.append(M @ powers[-1])
    h = np.array([p[0, 0] for p in powers[:block]])  # impulse response of the recursion
    lags = np.arange(block)[:, None] - np.arange(block)[None, :]
    toeplitz = np.where(lags >= 0, h[lags.clip(min=0)], 0.0)  # toeplitz[m, j] = h[m - j]
    from_state = np.array([p[0] for p in powers[1:]])  # (block, 2): w[m] gets from_state[m] @ state before the block
    n_blocks = -(-N // block)
    vb = np.zeros((C, n_blocks * block))
    vb[:, :N] = v
    w = vb.reshape(C, n_blocks, block) @ toeplitz.T  # each block's response from rest
    ends = w[:, :, [block - 1, block - 2]]  # (C, blocks, 2): the state each block leaves, from rest
    carry = from_state[[block - 1, block - 2]]  # how the state before a block shows in the state it leaves
    before = np.zeros((C, n_blocks, 2))
    for k in range(1, n_blocks):
        before[:, k] = ends[:, k - 1] + before[:, k - 1] @ carry.T
    w += before @ from_state.T
    return w.reshape(C, -1)[:, :N]


def normalize_loudness(wav: torch.Tensor, sample_rate: int, target: float = TARGET_LUFS,
                       measured: float | None = None) -> tuple[torch.Tensor, float]:
    """Scale to `target` LUFS, then down to a peak of at most 1. Returns (audio, its loudness before).
    `measured`: the loudness of `wav` when the caller has it already (it is not measured again)."""
    before = loudness(wav, sample_rate) if measured is None else measured
    if math.isfinite(before):
        wav = wav * 10 ** ((target - before) / 20)
    return limit_peak(wav), before


def limit_peak(wav: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Scale down (never up) so that max |x| <= peak (the models' input; results go through `match_loudness`)."""
    m = float(wav.abs().max()) if wav.numel() else 0.0
    return wav * (peak / m) if m > peak else wav


# --- the true-peak limiter ---------------------------------------------------------------------------------------
TRUE_PEAK_CEILING_DB = -1.0  # EBU R128's ceiling: room for resampling and lossy encoding below full scale
LOOKAHEAD_S = 0.005          # the gain falls over this time before a peak
RELEASE_DB_PER_S = 200.0     # and rises at most this fast after it (a 6 dB reduction recovers in 30 ms)
MAX_MAKEUP_DB = 6.0          # the most match_loudness raises a signal beyond its plain gain to make up for limiting
LIMITER_BLOCK = 16           # samples per step of the gain curve (interpolated between steps)
OVERSAMPLING = 4             # BS.1770-4 annex 2: true peak from the signal oversampled 4 times


def true_peak(wav: torch.Tensor, sample_rate: int) -> float:
    """The true peak (linear) of a (1, C, N) or (C, N) signal: the largest magnitude of it oversampled 4 times."""
    x = (wav[0] if wav.dim() == 3 else wav).double().cpu().numpy()
    return float(_peak_envelope(x, sample_rate).max()) if x.size else 0.0


def limit(wav: torch.Tensor, sample_rate: int, *, circular: bool = False) -> torch.Tensor:
    """A true-peak limiter: (1, C, N) audio with no true peak above TRUE_PEAK_CEILING_DB, touched only where it
    goes over (lookahead: the gain falls smoothly within LOOKAHEAD_S before a peak, then rises at RELEASE_DB_PER_S).
    `circular`: a loop, whose end anticipates the peaks at its start."""
    gain = _limiter(wav[0].double().cpu().numpy(), sample_rate, circular)
    return (wav * torch.from_numpy(gain(0.0)).to(wav.dtype)).float()


def match_loudness(wav: torch.Tensor, sample_rate: int, target: float, *, circular: bool = False) -> torch.Tensor:
    """Bring (1, C, N) audio to the integrated loudness `target` (LUFS, e.g. the input's) with no true peak over
    TRUE_PEAK_CEILING_DB: a gain, and the limiter on what then goes over. Limiting lowers the loudness, so the gain
    is raised until the limited signal measures `target` (within 0.05 LU, at most MAX_MAKEUP_DB beyond the plain
    gain). Silence, or a target of -inf, is only limited."""
    x = wav[0].double().cpu().numpy()
    long = x.shape[1] >= int(0.4 * sample_rate) + 1
    if long and x.shape[0] <= len(CHANNEL_WEIGHTS):
        weighted = _k_weighted(x, sample_rate)
        now = _gated_loudness(weighted, sample_rate)
    else:
        now = loudness(wav, sample_rate)
    if not (math.isfinite(now) and math.isfinite(target)):
        return limit(wav, sample_rate, circular=circular)
    gain = _limiter(x, sample_rate, circular)
    if long:
        # the K-weighting is a linear filter whose response is far shorter than the limiter's gain changes, so the
        # weighted signal's energy per limiter block is computed once and each trial gain weighs it: a trial costs
        # no filtering and no pass over the samples
        power = (weighted**2 * np.array(CHANNEL_WEIGHTS[: x.shape[0]])[:, None]).sum(0)
        energy = np.add.reduceat(power, np.arange(0, x.shape[1], LIMITER_BLOCK))
        measure = lambda db: _block_loudness(energy, gain(db, blocks=True), sample_rate)  # noqa: E731
    else:
        measure = lambda db: loudness(torch.from_numpy(x * gain(db))[None], sample_rate)  # noqa: E731
    plain = target - now
    db, got = plain, measure(plain)
    previous = None
    for _ in range(8):  # secant steps: the loudness rises with the gain, more slowly once the limiter works
        if abs(target - got) < 0.05:
            break
        slope = 1.0 if previous is None or db == previous[0] else (got - previous[1]) / (db - previous[0])
        previous = (db, got)
        db = min(plain + MAX_MAKEUP_DB, db + (target - got) / min(1.0, max(0.1, slope)))
        if db == previous[0]:
            break
        got = measure(db)
    return torch.from_numpy(x * gain(db)).float()[None]


def _block_loudness(energy: np.ndarray, gains: np.ndarray, sample_rate: int) -> float:
    """BS.1770's gated loudness from the channel-weighted K-weighted energy of each limiter block and the gain on
    it (each block counted in the 100 ms quarter of gating block where it starts)."""
    quarter = 0.1 * sample_rate
    parts = np.bincount((np.arange(energy.size) * LIMITER_BLOCK / quarter).astype(int), energy * gains**2)
    n_blocks = int(np.round((energy.size * LIMITER_BLOCK / sample_rate - 0.4) / 0.1)) + 1
    z = np.convolve(parts, np.ones(4), "valid")[:max(1, n_blocks)] / (4 * quarter)
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10 * np.log10(z)
        if not (lufs >= -70).any():
            return -math.inf
        relative = -0.691 + 10 * np.log10(z[lufs >= -70].mean()) - 10.0
        gated = (lufs > relative) & (lufs > -70)
        return float(-0.691 + 10 * np.log10(z[gated].mean())) if gated.any() else -math.inf


def _limiter(x: np.ndarray, sample_rate: int, circular: bool):
    """For (C, N) audio: a function from a gain in dB to the per-sample gains (that gain included; or, `blocks`,
    one per LIMITER_BLOCK samples) under which its true peak stays at the ceiling, the same for every channel.

    The gain curve is made on blocks of LIMITER_BLOCK samples and interpolated linearly between block starts; each
    block's gain is at most what it and the block before it need, so a sample's interpolated gain (between its
    block's and the next one's) never exceeds its own need."""
    n, size = x.shape[1], LIMITER_BLOCK
    if n == 0:
        return lambda db, blocks=False: np.zeros(0)
    pad = size * -(-round(0.5 * sample_rate) // size) if circular else 0  # a loop's release and lookahead wrap around
    envelope = _peak_envelope(x[:, np.arange(-pad, n + pad) % n] if pad else x, sample_rate)
    peaks = np.append(np.maximum.reduceat(envelope, np.arange(0, envelope.size, size)), 0.0)  # and one block beyond
    peaks = np.maximum(peaks, np.concatenate([[0.0], peaks[:-1]]))
    ceiling = 10 ** (TRUE_PEAK_CEILING_DB / 20)
    lookahead = max(2, round(LOOKAHEAD_S * sample_rate / size))
    ramp = RELEASE_DB_PER_S * size / sample_rate * np.arange(peaks.size)
    first, count = pad // size, -(-n // size)

    def gains(db: float, blocks: bool = False) -> np.ndarray:
        level = 10 ** (db / 20)
        with np.errstate(divide="ignore"):
            need_db = np.minimum(0.0, 20 * np.log10(ceiling / (level * peaks)))  # 0 where nothing goes over
        # release: the gain may rise at most RELEASE_DB_PER_S, so g[b] = min over k <= b of need[k] + rate * (b - k)
        released = 10 ** ((np.minimum.accumulate(need_db - ramp) + ramp) / 20)
        # attack: the minimum over each block's next `lookahead` blocks, then two trailing means of half of it;
        # every minimum averaged into a block's gain covers that block, so no gain exceeds what its block needs,
        # and the gain falls in an S-curve before a peak
        padded = np.concatenate([np.ones(lookahead), released, np.ones(lookahead)])
        smooth = _trailing_mean(_trailing_mean(_sliding_min(padded, lookahead), lookahead // 2), lookahead // 2)
        curve = level * smooth[lookahead:]  # block b's gain at [b], up to one block beyond the last
        if blocks:
            return curve[first:first + count]
        at = np.arange(pad, pad + n) / size
        return np.interp(at, np.arange(curve.size), curve)

    return gains


def _peak_envelope(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(C, N) -> (N,): at each sample the largest magnitude, over the channels, of the signal oversampled
    OVERSAMPLING times (soxr's band-limited interpolation, streamed in chunks so memory stays at N values) over
    that sample and the points up to the next one."""
    import soxr  # see load()

    n, rate = x.shape[1], int(sample_rate)
    stream = soxr.ResampleStream(rate, OVERSAMPLING * rate, x.shape[0], dtype="float32", quality="HQ")
    envelope, done, rest = _channel_max(np.abs(x)), 0, np.zeros(0, np.float32)
    chunk = 1 << 16
    for start in range(0, n, chunk):
        out = stream.resample_chunk(np.ascontiguousarray(x[:, start:start + chunk].T, dtype=np.float32),
                                    last=start + chunk >= n)
        rest = np.concatenate([rest, _channel_max(np.abs(out).T)])
        whole = min(len(rest) // OVERSAMPLING, n - done)
        # the points of each input sample's interval, as strided slices (numpy reduces a short last axis slowly)
        peaks = np.maximum.reduce([rest[p:whole * OVERSAMPLING:OVERSAMPLING] for p in range(OVERSAMPLING)])
        np.maximum(envelope[done:done + whole], peaks, out=envelope[done:done + whole])
        done, rest = done + whole, rest[whole * OVERSAMPLING:]
    return envelope


def _channel_max(x: np.ndarray) -> np.ndarray:
    """(C, N) -> (N,) maxima over the channels, a channel at a time (numpy reduces a short axis slowly)."""
    out = x[0].copy()
    for channel in x[1:]:
        np.maximum(out, channel, out=out)
    return out


def _sliding_min(x: np.ndarray, k: int) -> np.ndarray:
    """out[i] = min(x[i:i + k]) for i in 0..len(x) - k, in O(len) without a Python loop (van Herk / Gil-Werman:
    within blocks of k, running minima from the left and from the right; a window spans at most two blocks)."""
    n = x.size
    blocks = np.full(-(-n // k) * k, np.inf)
    blocks[:n] = x
    blocks = blocks.reshape(-1, k)
    from_left = np.minimum.accumulate(blocks, axis=1).ravel()
    from_right = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    i = np.arange(n - k + 1)
    return np.minimum(from_right[i], from_left[i + k - 1])


def _trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """out[i] = mean(x[i - k + 1:i + 1]) (the first k - 1 values are x's own)."""
    total = np.concatenate([[0.0], np.cumsum(x)])
    out = x.copy()
    out[k - 1:] = (total[k:] - total[:-k]) / k
    return out


def duration(path) -> float:
    """Seconds of audio in a file, without reading the samples."""
    import soundfile as sf  # see load()

    try:
        info = sf.info(os.fspath(path))
    except Exception as e:
        raise AudioError(f"cannot read audio {path}: {first_line(e, last=True)}") from None
    return info.frames / info.samplerate


def find_audio(dirs) -> list[tuple[Path, str]]:
    """(absolute path, path relative to its root) of every audio file under the given folders, sorted; the
    relative path starts with the folder's own name ("corpus/wesnoth/a.ogg"), as train/validation splits use it."""
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise AudioError(f"audio folder not found: {d}")
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                found.append((p, f"{d.name}/{p.relative_to(d).as_posix()}"))
    return found
