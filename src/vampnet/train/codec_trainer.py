"""Codec training (`vampnet train codec`): the DAC recipe for our LAC-family codec.

Generator = the codec (encoder, residual VQ, decoder); discriminator = multi-period + multi-resolution STFT
(train/discriminators.py). Each step first updates the discriminator on real vs reconstructed excerpts (least
squares GAN), then the codec on
    mel_weight * multi-scale log-mel L1 (DAC: 7 scales, windows 32..2048)  + waveform_weight * L1(waveform)
  + adv_weight * LSGAN generator loss + feature_weight * feature matching
  + commitment_weight * sum_i MSE(z_e_i, sg(vec_i)) + codebook_weight * sum_i MSE(sg(z_e_i), vec_i)
with quantizer dropout: a `quantizer_dropout` fraction of each batch is reconstructed from a random number
n in [1, K] of codebooks. AdamW (betas 0.8/0.99) with exponential learning-rate decay for both networks.

Data are random excerpts of audio files (mono, resampled to the codec rate, loudness-normalised, silent excerpts
redrawn), each a pure function of (seed, step, item): the step is the whole data position, so a resumed run
continues exactly as an uninterrupted one. Validation is the paper's multi-scale mel distance (spectral.py) on a
fixed set of longer excerpts. Checkpoint folders `latest`, `best` and `step-N` hold the codec in our safetensors
format (`Codec.load(run/latest/model.safetensors)` works), the discriminator and both optimisers, and are replaced
atomically. Under torchrun both networks train with DDP (gloo on CPU, nccl on GPU); the ranks split the global
batch, so N processes equal one process with the same global batch."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import audio
from ..audio import AUDIO_EXTENSIONS, find_audio
from ..codec import Codec, CodecConfig
from ..errors import AudioError, CheckpointError, OptionError
from ..serialization import read_checkpoint, save_safetensors, write_text_atomic
from ..spectral import multiscale_mel_distance
from ..splits import split_of
from . import distributed
from .discriminators import (Discriminator, DiscriminatorConfig, discriminator_loss, feature_matching_loss,
                             generator_adversarial_loss)
from .config import config_to_yaml, read_run_config
from .masked import mix_seed, out_of_time
from .state import (MODEL_FILE, append_log_row, find_training_checkpoint, load_optimizer, load_training_checkpoint,
                    remove_unfinished_writes, save_optimizer, save_training_checkpoint, truncate_log)

DISC_FILE, DISC_OPTIMIZER_FILE = "discriminator.safetensors", "discriminator_optimizer.safetensors"
DISC_KIND = "codec-discriminator"
LOG_FIELDS = ["step", "lr", "loss", "mel", "waveform", "adv", "feature", "commitment", "codebook", "disc_loss",
              "grad_norm", "disc_grad_norm", "val_mel_distance", "seconds"]
_TUPLE_FIELDS = ("audio", "val_audio", "encoder_rates", "decoder_rates", "mel_windows", "mel_bands", "disc_periods",
                 "disc_stft_windows")
_ARCH_FIELDS = ("encoder_dim", "encoder_rates", "decoder_dim", "decoder_rates", "n_codebooks", "codebook_size",
                "codebook_dim", "sample_rate")


@dataclass(frozen=True)
class CodecTrainConfig:
    """A codec training run. Defaults follow DAC's published recipe where it applies (CodecConfig's for the
    architecture)."""

    audio: tuple[str, ...] = ()              # audio folders and/or files
    val_audio: tuple[str, ...] = ()          # validation folders/files; default: val_fraction of `audio`, by file hash
    val_fraction: float = 0.05               # (when no file lands in validation, validation excerpts come from `audio`)
    output: str = ""                         # run folder: checkpoints, log.csv, config.yaml, final.json
    init: str | None = None                  # start from this codec checkpoint (its architecture replaces the fields below)
    # codec architecture (CodecConfig); the codec's sample rate is the training rate
    # (defaults are CodecConfig's, so the architecture has one definition)
    encoder_dim: int = CodecConfig.encoder_dim
    encoder_rates: tuple[int, ...] = CodecConfig.encoder_rates
    decoder_dim: int = CodecConfig.decoder_dim
    decoder_rates: tuple[int, ...] = CodecConfig.decoder_rates
    n_codebooks: int = CodecConfig.n_codebooks
    codebook_size: int = CodecConfig.codebook_size
    codebook_dim: int = CodecConfig.codebook_dim
    sample_rate: int = CodecConfig.sample_rate
    quantizer_dropout: float = 0.5           # fraction of each batch decoded from a random number of codebooks
    # data
    excerpt_s: float = 0.38                  # training excerpt (rounded to whole codec frames)
    target_lufs: float = -24.0
    loudness_cutoff: float = -40.0           # excerpts quieter than this (LUFS) are redrawn
    val_excerpts: int = 16
    val_excerpt_s: float = 5.0
    preload: bool = False                    # decode every file once into memory (fast excerpts; RAM = 4 B/sample)
    num_workers: int = 0                     # processes that build batches ahead of the training step
    # optimisation
    batch_size: int = 72                     # global batch, split over processes
    max_steps: int = 250000
    time_limit_s: float = 0.0                # also stop (saving `latest`) after this many seconds (0: none)
    lr: float = 1e-4                         # both networks; AdamW betas (0.8, 0.99)
    lr_decay: float = 0.999996               # lr at step s = lr * lr_decay^(s - 1)
    weight_decay: float = 0.01
    grad_clip: float = 1000.0                # codec gradient-norm clip
    disc_grad_clip: float = 10.0
    # losses
    mel_weight: float = 15.0
    waveform_weight: float = 1.0
    adv_weight: float = 1.0
    feature_weight: float = 2.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_bands: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    # discriminator
    discriminator: bool = True
    disc_start: int = 0                      # reconstruction-only warm-up steps (adversarial from step disc_start + 1)
    disc_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    disc_stft_windows: tuple[int, ...] = (2048, 1024, 512)
    disc_width: int = 32
    # bookkeeping
    val_every: int = 1000
    save_every: int = 10000                  # also keep step-N checkpoints at this interval (0: only latest/best)
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False                       # bfloat16 autocast for both networks (losses in float32)

    def __post_init__(self):
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                value = (value,)
            cast = str if name in ("audio", "val_audio") else int
            object.__setattr__(self, name, tuple(cast(v) for v in (value or ())))
        positive = ("batch_size", "max_steps", "val_every", "val_excerpts", "disc_width")
        for name in positive:
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.excerpt_s, self.val_excerpt_s, self.lr, self.grad_clip, self.disc_grad_clip) <= 0:
            raise OptionError("excerpt_s, val_excerpt_s, lr, grad_clip and disc_grad_clip must be positive")
        if not 0 < self.lr_decay <= 1:
            raise OptionError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.quantizer_dropout <= 1 or not 0 <= self.val_fraction < 1:
            raise OptionError("quantizer_dropout must be in [0, 1] and val_fraction in [0, 1)")
        if len(self.mel_windows) != len(self.mel_bands) or not self.mel_windows:
            raise OptionError("mel_windows and mel_bands must be non-empty and of the same length")
        if self.save_every < 0 or self.disc_start < 0:
            raise OptionError("save_every and disc_start must be >= 0")
        if self.discriminator:
            try:
                self.discriminator_config()
            except ValueError as e:
                raise OptionError(str(e)) from None
        try:
            self.codec_config()
        except CheckpointError as e:
            raise OptionError(str(e)) from None

    def codec_config(self) -> CodecConfig:
        """The architecture of a fresh codec (quantizer_dropout recorded as on/off, as LAC does)."""
        return CodecConfig(**{name: getattr(self, name) for name in _ARCH_FIELDS}, quantizer_dropout=self.quantizer_dropout > 0)

    def discriminator_config(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(periods=self.disc_periods, stft_windows=self.disc_stft_windows, width=self.disc_width)

    def replace(self, **changes) -> "CodecTrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def load_codec_config(path=None, overrides: list[str] | tuple = (), **defaults) -> CodecTrainConfig:
    """The codec training config from a YAML run file and overrides (see train.config.read_run_config)."""
    return read_run_config(CodecTrainConfig, path, overrides, **defaults)


# --- quantisation with dropout and VQ losses ----------------------------------------------------------------------
def draw_n_quantizers(batch: int, n_codebooks: int, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """(batch,) int64 codebook counts: round(dropout * batch) items, chosen at random, get n ~ U{1..K}, the rest K."""
    n = torch.full((batch,), n_codebooks, dtype=torch.long)
    order = torch.randperm(batch, generator=generator)
    counts = torch.randint(1, n_codebooks + 1, (batch,), generator=generator)
    dropped = order[: int(round(dropout * batch))]
    n[dropped] = counts[dropped]
    return n


def quantize(rvq: nn.Module, z: torch.Tensor, n_quantizers: torch.Tensor | None = None) -> dict:
    """Residual VQ of (B, D, T) latents with per-item codebook counts and the VQ losses, differentiably.

    Every stage runs for every item (so every parameter takes part, as DDP needs); stage i contributes to item b's
    output only when i < n_quantizers[b]. Returns z (B, D, T), codes (B, K, T), commitment and codebook losses:
    sums over stages of the batch mean of the per-item MSE, counting only the stages an item uses. With
    n_quantizers None the output equals `rvq(z)["z"]` exactly."""
    residual, z_q = z, 0.0
    commitment = codebook = z.new_zeros((), dtype=torch.float32)
    codes = []
    for i, stage in enumerate(rvq.quantizers):
        out, c, z_e, vec = stage(residual)  # out: out_proj of the straight-through vector
        z_e, vec = z_e.float(), vec.float()
        commit_i = F.mse_loss(z_e, vec.detach(), reduction="none").mean((1, 2))
        book_i = F.mse_loss(z_e.detach(), vec, reduction="none").mean((1, 2))
        if n_quantizers is None:
            z_q = z_q + out
        else:
            keep = (n_quantizers > i).to(out.dtype)
            z_q = z_q + out * keep[:, None, None]
            commit_i, book_i = commit_i * keep.float(), book_i * keep.float()
        residual = residual - out
        commitment = commitment + commit_i.mean()
        codebook = codebook + book_i.mean()
        codes.append(c)
    return {"z": z_q, "codes": torch.stack(codes, 1), "commitment": commitment, "codebook": codebook}


class CodecGenerator(nn.Module):
    """The codec as one trainable module: (B, 1, N) audio and per-item codebook counts -> reconstruction + VQ losses."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor, n_quantizers: torch.Tensor | None = None):
        z = self.codec.encoder(x)
        q = quantize(self.codec.quantizer, z, n_quantizers)
        y = self.codec.decoder(q["z"])
        return y[..., : x.shape[-1]], q["commitment"], q["codebook"]


# --- data ----------------------------------------------------------------------------------------------------------
def list_audio(paths) -> list[tuple[Path, str]]:
    """(path, name) of every audio file among `paths` (folders are searched recursively), sorted and de-duplicated."""
    found, seen = [], set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            items = find_audio([p])
        elif p.is_file():
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise AudioError(f"not an audio file ({', '.join(sorted(AUDIO_EXTENSIONS))}): {p}")
            items = [(p, p.name)]
        else:
            raise AudioError(f"audio file or folder not found: {p}")
        for path, rel in items:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, rel))
    return found


class ExcerptSampler:
    """Excerpts of n samples at the codec rate from a list of files, each a pure function of a seed.

    A file is drawn with probability proportional to its duration and a start uniformly inside it (files shorter
    than an excerpt are zero-padded); the excerpt is made mono, resampled and, unless quieter than
    `loudness_cutoff`, normalised to `target_lufs` (peak at most 1). Quiet excerpts are redrawn."""

    def __init__(self, files: list[Path], sample_rate: int, n_samples: int, target_lufs: float = -24.0,
                 loudness_cutoff: float = -40.0, max_tries: int = 50, preload: bool = False):
        self.sample_rate, self.n = int(sample_rate), int(n_samples)
        self.cache: list[torch.Tensor] | None = None
        self.target, self.cutoff, self.max_tries = target_lufs, loudness_cutoff, max_tries
        self.files, lengths = [], []
        for f in files:
            try:
                seconds = audio.duration(f)
            except AudioError:
                continue
            if seconds > 0:
                self.files.append(Path(f))
                lengths.append(int(seconds * self.sample_rate))
        if not self.files:
            raise AudioError("no readable audio files to train on")
        if preload:
            self.cache = self._decode_all()
            lengths = [int(x.shape[-1]) for x in self.cache]
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.weights = self.lengths.double().clamp(min=self.n)

    def _decode_all(self) -> list[torch.Tensor]:
        """Every file as (1, 1, N) mono float32 at the codec rate; decoding and resampling release the GIL, so
        threads decode files side by side."""
        from concurrent.futures import ThreadPoolExecutor

        def decode(path):
            wav, sr = audio.load(path)
            return audio.resample(audio.to_mono(wav), sr, self.sample_rate).float().contiguous()

        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            return list(pool.map(decode, self.files))

    def read(self, index: int, start: int) -> torch.Tensor:
        """(1, 1, n) mono audio at the codec rate from file `index`, starting at `start` (codec-rate samples)."""
        if self.cache is not None:
            wav = self.cache[index][..., start:start + self.n]
            return F.pad(wav, (0, self.n - wav.shape[-1])) if wav.shape[-1] < self.n else wav
        end_s = (start + self.n) / self.sample_rate + 0.1  # a margin keeps the resampler's end effects outside
        wav, sr = audio.load(self.files[index], max_seconds=end_s)
        wav = audio.resample(audio.to_mono(wav), sr, self.sample_rate)[..., start:start + self.n]
        return F.pad(wav, (0, self.n - wav.shape[-1])) if wav.shape[-1] < self.n else wav

    def excerpt(self, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(self.max_tries):
            i = int(torch.multinomial(self.weights, 1, generator=gen))
            start = int(torch.randint(0, max(1, int(self.lengths[i]) - self.n + 1), (1,), generator=gen))
            x = self.read(i, start)
            loud = audio.loudness(x, self.sample_rate)
            if math.isfinite(loud) and loud >= self.cutoff:
                return audio.normalize_loudness(x, self.sample_rate, self.target)[0]
        raise AudioError(f"no excerpt louder than {self.cutoff} LUFS in {self.max_tries} tries; "
                         "is the training audio silent? (lower loudness_cutoff)")


def split_files(cfg: CodecTrainConfig) -> tuple[list[Path], list[Path]]:
    """(training files, validation files). Without val_audio, files go to validation by a hash of their name."""
    if not cfg.audio:
        raise OptionError("a codec training run needs `audio` (folders or files)")
    items = list_audio(cfg.audio)
    if not items:
        raise AudioError(f"no audio files found in {', '.join(cfg.audio)}")
    if cfg.val_audio:
        return [p for p, _ in items], [p for p, _ in list_audio(cfg.val_audio)]
    train = [p for p, rel in items if split_of(rel, cfg.val_fraction) == "train"]
    val = [p for p, rel in items if split_of(rel, cfg.val_fraction) == "val"]
    if not train:
        train, val = [p for p, _ in items], []
    return train, val or train


# --- checkpoints: codec + optimiser (state.py) plus the discriminator and its optimiser --------------------------------
def save_codec_checkpoint(folder, codec: Codec, optimizer, disc, disc_optimizer, trainer: dict) -> Path:
    """Write codec, discriminator, both optimisers and the trainer state into `folder`, replacing it in one step
    (state.save_training_checkpoint, with the discriminator's two files written beside the codec)."""

    def write_model(tmp: Path):
        codec.save(tmp / MODEL_FILE)
        if disc is not None:
            save_safetensors(tmp / DISC_FILE, disc.state_dict(), DISC_KIND, dataclasses.asdict(disc.config))
            save_optimizer(tmp / DISC_OPTIMIZER_FILE, disc_optimizer)

    return save_training_checkpoint(folder, codec, optimizer, trainer, write_model=write_model)


def load_codec_checkpoint(folder, codec: Codec, optimizer, disc=None, disc_optimizer=None) -> dict:
    """Restore what save_codec_checkpoint wrote (the discriminator when one is given); returns the trainer state."""

    def read_model(folder: Path):
        loaded = Codec.load(folder / MODEL_FILE)
        if loaded.config != codec.config:
            raise CheckpointError(f"{folder} holds a codec of another architecture than this run's")
        codec.load_state_dict(loaded.state_dict())
        if disc is None:
            return
        if not (folder / DISC_FILE).is_file():
            raise CheckpointError(f"{folder} has no discriminator; resume with discriminator: false")
        ckpt = read_checkpoint(folder / DISC_FILE)
        try:
            same = ckpt.kind == DISC_KIND and DiscriminatorConfig(**ckpt.config) == disc.config
        except (TypeError, ValueError):
            same = False
        if not same:
            raise CheckpointError(f"{folder / DISC_FILE} is not a discriminator of this run's sizes")
        disc.load_state_dict(ckpt.state_dict)
        load_optimizer(folder / DISC_OPTIMIZER_FILE, disc_optimizer)

    return load_training_checkpoint(folder, codec, optimizer, read_model=read_model)


class _StepBatches(torch.utils.data.Dataset):
    """Item s = one rank's slice of the batch of training step s (picklable: no model, only the data)."""

    def __init__(self, trainer: "CodecTrainer"):
        cfg, d = trainer.cfg, trainer.dist
        self.data, self.seed, self.batch_size, self.dropout = trainer.train_data, cfg.seed, cfg.batch_size, cfg.quantizer_dropout
        self.n_codebooks, self.rows = trainer.codec.n_codebooks, d.slice(cfg.batch_size)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = range(self.batch_size)[self.rows]
        x = torch.cat([self.data.excerpt(mix_seed(self.seed, step, i)) for i in items])
        n_q = draw_n_quantizers(self.batch_size, self.n_codebooks, self.dropout,
                                torch.Generator().manual_seed(mix_seed(self.seed, step)))
        return x, n_q[self.rows]


# --- the trainer ---------------------------------------------------------------------------------------------------
def _frames_samples(seconds: float, sample_rate: int, hop: int) -> int:
    return max(1, round(seconds * sample_rate / hop)) * hop


class CodecTrainer:
    """Runs one codec training configuration; `run()` trains to `max_steps`, resuming from `latest` when asked."""

    def __init__(self, cfg: CodecTrainConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        if not cfg.output:
            raise OptionError("a codec training run needs `output`")
        self.dist = distributed.init(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise OptionError(f"batch_size {cfg.batch_size} must divide evenly over {self.dist.world} processes")
        if torch.device(cfg.device).type == "cuda":  # TF32 convolutions and matmuls: ~fp32 quality, tensor-core speed
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.out = Path(cfg.output)
        train_files, val_files = split_files(cfg)

        torch.manual_seed(cfg.seed)  # every rank starts from the same weights
        self.codec = Codec.load(cfg.init) if cfg.init else Codec(cfg.codec_config())
        self.codec.to(cfg.device)
        self.disc = Discriminator(cfg.discriminator_config()).to(cfg.device) if cfg.discriminator else None
        adamw = dict(lr=cfg.lr, betas=(0.8, 0.99), eps=1e-8, weight_decay=cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(self.codec.parameters(), **adamw)
        self.disc_optimizer = torch.optim.AdamW(self.disc.parameters(), **adamw) if self.disc is not None else None
        self.step, self.best = 0, math.inf
        if resume and self.dist.main:
            remove_unfinished_writes(self.out)  # what a killed run was writing
        if resume and find_training_checkpoint(self.out / "latest") is not None:
            state = load_codec_checkpoint(self.out / "latest", self.codec, self.optimizer, self.disc, self.disc_optimizer)
            self.step, self.best = state["step"], state.get("best_val_mel_distance", math.inf)
        if resume and self.dist.main:  # the steps after the checkpoint run (and are logged) again; none: all of them
            truncate_log(self.out / "log.csv", self.step if self.step else -1)

        self.generator = CodecGenerator(self.codec)
        self.forward_generator, self.forward_disc = self.generator, self.disc
        if self.dist.enabled:
            ddp = torch.nn.parallel.DistributedDataParallel
            self.forward_generator = ddp(self.generator)
            if self.disc is not None:
                self.forward_disc = ddp(self.disc)
        self.autocast = (lambda: torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)) \
            if cfg.bf16 else nullcontext

        sr, hop = self.codec.sample_rate, self.codec.hop_length
        self.train_data = ExcerptSampler(train_files, sr, _frames_samples(cfg.excerpt_s, sr, hop), cfg.target_lufs,
                                         cfg.loudness_cutoff, preload=cfg.preload)
        self.val_data = ExcerptSampler(val_files, sr, _frames_samples(cfg.val_excerpt_s, sr, hop), cfg.target_lufs,
                                       cfg.loudness_cutoff)
        self._val_set = None

    # --- data ------------------------------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch of `step`: audio (b, 1, n) and codebook counts (b,)."""
        return _StepBatches(self)[step]

    def batches(self, first_step: int):
        """Batches of steps first_step, first_step + 1, ... up to max_steps; with num_workers > 0 they are built
        ahead in worker processes (each batch is still a pure function of its step)."""
        source = _StepBatches(self)
        steps = range(first_step, self.cfg.max_steps + 1)
        if self.cfg.num_workers <= 0:
            return (source[s] for s in steps)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(source, steps), batch_size=None, shuffle=False,
                                             num_workers=self.cfg.num_workers, prefetch_factor=4)
        return iter(loader)

    def val_set(self) -> list[torch.Tensor]:
        """The fixed validation excerpts (the same for every run with this seed and these files)."""
        if self._val_set is None:
            self._val_set = [self.val_data.excerpt(mix_seed(self.cfg.seed, -1, i)) for i in range(self.cfg.val_excerpts)]
        return self._val_set

    # --- one optimisation step -----------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return self.cfg.lr * self.cfg.lr_decay ** max(step - 1, 0)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        cfg, d = self.cfg, self.dist
        lr = self.lr_at(self.step)
        for opt in (self.optimizer, self.disc_optimizer):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr
        self.codec.train()
        x, n_q = batch if batch is not None else self.batch(self.step)
        x, n_q = x.to(cfg.device, non_blocking=True), n_q.to(cfg.device)
        with self.autocast():
            y, commitment, codebook = self.forward_generator(x, n_q)
        y = y.float()
        adversarial = self.disc is not None and self.step > cfg.disc_start
        stats = dict.fromkeys(("adv", "feature", "disc_loss", "disc_grad_norm"), 0.0)

        if adversarial:  # discriminator step: real vs detached reconstructions, one forward for both
            self.disc.train()
            with self.autocast():
                maps = self.forward_disc(torch.cat([x, y.detach()]))
            b = x.shape[0]
            loss_d = discriminator_loss([[m[:b] for m in sub] for sub in maps], [[m[b:] for m in sub] for sub in maps])
            self.disc_optimizer.zero_grad(set_to_none=True)
            loss_d.backward()
            d_norm = torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.disc_grad_clip)
            if torch.isfinite(d_norm):
                self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)
            stats.update(disc_loss=loss_d.detach(), disc_grad_norm=d_norm.detach())

        mel = multiscale_mel_distance(x, y, self.codec.sample_rate, cfg.mel_bands, cfg.mel_windows,
                                      log_weight=1.0, mag_weight=0.0, power=1.0)
        wave = F.l1_loss(y, x)
        loss = (cfg.mel_weight * mel + cfg.waveform_weight * wave + cfg.commitment_weight * commitment
                + cfg.codebook_weight * codebook)
        if adversarial:  # generator side: gradients reach the codec through the frozen discriminator
            self.disc.requires_grad_(False)
            try:
                with self.autocast():
                    with torch.no_grad():
                        real = self.disc(x)
                    fake = self.disc(y)
                adv, feat = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
            finally:
                self.disc.requires_grad_(True)
            loss = loss + cfg.adv_weight * adv + cfg.feature_weight * feat
            stats.update(adv=adv.detach(), feature=feat.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        g_norm = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), cfg.grad_clip)
        if torch.isfinite(g_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        stats.update(loss=loss.detach(), mel=mel.detach(), waveform=wave.detach(), commitment=commitment.detach(),
                     codebook=codebook.detach(), grad_norm=g_norm.detach())
        names = [k for k in LOG_FIELDS if k in stats]
        values = torch.stack([torch.as_tensor(stats[k], dtype=torch.float32).cpu() for k in names])
        values = d.all_reduce_sum(values) / d.world  # averages over ranks (each saw an equal share)
        return {"lr": lr, **{k: float(v) for k, v in zip(names, values)}}

    # --- validation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Mean multi-scale mel distance (the paper's metric, all codebooks) over the fixed validation excerpts."""
        cfg, d = self.cfg, self.dist
        was_training = self.codec.training
        self.codec.eval()
        excerpts = self.val_set()
        total = torch.zeros(2)
        for i in range(d.rank, len(excerpts), d.world):
            x = excerpts[i].to(cfg.device)
            with self.autocast():
                y, _, _ = self.generator(x)
            total += torch.tensor([float(multiscale_mel_distance(x, y.float(), self.codec.sample_rate)), 1.0])
        d.all_reduce_sum(total)
        self.codec.train(was_training)
        return {"val_mel_distance": float(total[0] / total[1].clamp(min=1))}

    # --- the run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, d = self.cfg, self.dist
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "config.yaml", config_to_yaml(cfg.to_dict()))
        from tqdm.auto import tqdm

        start, last, bad_steps = time.time(), {}, 0
        if self.step == 0:  # the untrained codec's score opens the log
            row = {"step": 0, **self.validate(), "seconds": 0.0}
            if d.main:
                self._log(row)
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"train codec {self.out.name}",
                   disable=not (self.progress and d.main))
        batches = self.batches(self.step + 1)
        while self.step < cfg.max_steps:
            self.step += 1
            row = {"step": self.step, **self.train_step(next(batches))}
            bad_steps = bad_steps + 1 if not (math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"])) else 0
            if bad_steps >= 10:
                raise FloatingPointError(f"loss or gradient not finite for 10 steps in a row (step {self.step}); lower lr")
            at_end = self.step == cfg.max_steps or d.any_rank(out_of_time(start, cfg.time_limit_s))
            if self.step % cfg.val_every == 0 or at_end:
                row.update(self.validate())
            row["seconds"] = round(time.time() - start, 2)
            if d.main:  # logged before it is saved: a run killed while saving redoes (and re-logs) this step
                self._log(row)
            if self.step % cfg.val_every == 0 or at_end or (cfg.save_every and self.step % cfg.save_every == 0):
                self._save(row)
            last = row
            bar.update(1)
            bar.set_postfix(mel=f"{row['mel']:.3f}")
            if at_end:
                break
        bar.close()
        last["max_rank_divergence"] = distributed.max_param_divergence(self.codec, d)
        if self.disc is not None:
            last["max_rank_divergence_disc"] = distributed.max_param_divergence(self.disc, d)
        if d.main:
            write_text_atomic(self.out / "final.json", json.dumps(last, indent=2, default=float))
        d.barrier()
        return last

    def _save(self, row: dict):
        cfg, d = self.cfg, self.dist
        if not d.main:
            d.barrier()
            return
        val = row.get("val_mel_distance", math.nan)
        if math.isfinite(val) and val < self.best:
            self.best = val
            self._save_to(self.out / "best", row)
        self._save_to(self.out / "latest", row)
        if cfg.save_every and self.step % cfg.save_every == 0:
            self._save_to(self.out / f"step-{self.step:07d}", row)
        d.barrier()

    def _save_to(self, folder: Path, row: dict):
        state = {"step": self.step, "best_val_mel_distance": self.best, "metrics": row, "config": self.cfg.to_dict(),
                 "world_size": self.dist.world}
        save_codec_checkpoint(folder, self.codec, self.optimizer, self.disc, self.disc_optimizer, state)

    def _log(self, row: dict):
        append_log_row(self.out / "log.csv", LOG_FIELDS, row)


def train_codec(cfg: CodecTrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train a codec to cfg.max_steps (resuming from `latest` when asked); returns the last step's metrics."""
    trainer = CodecTrainer(cfg, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        distributed.shutdown(trainer.dist)
