"""Codec training (`vampnet train codec`): the DAC recipe for our LAC-family codec.

Generator = the codec (encoder, residual VQ, decoder); discriminator = multi-period + multi-resolution STFT
(train/discriminators.py). Each step first updates the discriminator on real vs reconstructed excerpts (least
squares GAN), then the codec on
    mel_weight * multi-scale log-mel L1 (DAC: 7 scales, windows 32..2048)  + waveform_weight * L1(waveform)
  + adv_weight * LSGAN generator loss + feature_weight * feature matching
  + commitment_weight * sum_i MSE(z_e_i, sg(vec_i)) + codebook_weight * sum_i MSE(sg(z_e_i), vec_i)
with quantizer dropout: a `quantizer_dropout` fraction of each batch is reconstructed from a random number
n in [1, K] of codebooks. AdamW (betas 0.8/0.99) with exponential learning-rate decay for both networks.

Data are random excerpts of audio files (codec_data.py), each a pure function of (seed, step, item): the step is
the whole data position, so a resumed run continues exactly as an uninterrupted one. Validation is the paper's
multi-scale mel distance (spectral.py) on a fixed set of longer excerpts. Checkpoint folders `latest`, `best` and
`step-N` hold the codec in our safetensors format (`Codec.load(run/latest/model.safetensors)` works), the
discriminator and both optimisers, and are replaced atomically; the run itself (resume, log, cadence) is
loop.RunLoop's. Under torchrun both networks train with DDP (gloo on CPU, nccl on GPU); the ranks split the global
batch, so N processes equal one process with the same global batch."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..codec import Codec, CodecConfig
from ..errors import CheckpointError, OptionError
from ..pretrained import use_compile_cache
from ..serialization import read_checkpoint, save_safetensors
from ..spectral import multiscale_mel_distance
from . import distributed
from .codec_data import ExcerptSampler, StepBatches, split_files
from .config import check_bf16, read_run_config
from .discriminators import (Discriminator, DiscriminatorConfig, discriminator_loss, feature_matching_loss,
                             generator_adversarial_loss)
from .loop import RunLoop, clipped_step, mix_seed, run_to_end, set_lr
from .state import MODEL_FILE, load_optimizer, load_training_checkpoint, save_optimizer, save_training_checkpoint

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
    save_every_s: float = 0.0                # also save `latest` after this many seconds since the last save (0: never)
    seed: int = 0
    device: str = "cpu"
    bf16: bool | str = "auto"                # bfloat16 autocast for both networks (losses in float32): true, false,
                                             # or auto (where the device has bf16 arithmetic)
    compile: bool = False                    # torch.compile the codec's training pass (needs a C++ compiler on a CPU;
                                             # the first step compiles for minutes, kernels are kept in
                                             # $VAMPNET_HOME/compiled)

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
        check_bf16(self.bf16)
        if len(self.mel_windows) != len(self.mel_bands) or not self.mel_windows:
            raise OptionError("mel_windows and mel_bands must be non-empty and of the same length")
        if self.save_every < 0 or self.disc_start < 0 or self.save_every_s < 0:
            raise OptionError("save_every, save_every_s and disc_start must be >= 0")
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


# --- the codec as one trainable module, with the VQ losses --------------------------------------------------------
def vq_losses(latents: torch.Tensor, vecs: torch.Tensor, n_stages: int, n_quantizers: torch.Tensor | None = None):
    """(commitment, codebook) losses of the residual VQ's latents z_e and chosen vectors (B, K*L, T): sums over the
    stages of the batch mean of each item's MSE(z_e, sg(vec)) and MSE(sg(z_e), vec), counting only the stages an
    item uses (i < n_quantizers[b]; all K without n_quantizers)."""
    commitment = codebook = latents.new_zeros((), dtype=torch.float32)
    for i, (z_e, vec) in enumerate(zip(latents.chunk(n_stages, 1), vecs.chunk(n_stages, 1))):
        z_e, vec = z_e.float(), vec.float()
        commit_i = F.mse_loss(z_e, vec.detach(), reduction="none").mean((1, 2))
        book_i = F.mse_loss(z_e.detach(), vec, reduction="none").mean((1, 2))
        if n_quantizers is not None:
            keep = (n_quantizers > i).float()
            commit_i, book_i = commit_i * keep, book_i * keep
        commitment = commitment + commit_i.mean()
        codebook = codebook + book_i.mean()
    return commitment, codebook


class CodecGenerator(nn.Module):
    """The codec as one trainable module: (B, 1, N) audio and per-item codebook counts -> reconstruction + VQ losses."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor, n_quantizers: torch.Tensor | None = None):
        z = self.codec.encoder(x)
        q = self.codec.quantizer(z, n_quantizers)
        y = self.codec.decoder(q["z"])
        commitment, codebook = vq_losses(q["latents"], q["vecs"], self.codec.n_codebooks, n_quantizers)
        return y[..., : x.shape[-1]], commitment, codebook


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


# --- the trainer ---------------------------------------------------------------------------------------------------
def _frames_samples(seconds: float, sample_rate: int, hop: int) -> int:
    return max(1, round(seconds * sample_rate / hop)) * hop


class CodecTrainer(RunLoop):
    """Runs one codec training configuration; `run()` trains to `max_steps`, resuming from `latest` when asked."""

    log_fields = LOG_FIELDS
    loss_key, progress_metric, description = "loss", ("mel", "mel"), "train codec"
    best_metric, best_state_key = "val_mel_distance", "best_val_mel_distance"
    non_finite_hint = "lower lr"

    def __init__(self, cfg: CodecTrainConfig, resume: bool = False, progress: bool = True):
        if not cfg.output:
            raise OptionError("a codec training run needs `output`")
        super().__init__(cfg, progress)
        if torch.device(cfg.device).type == "cuda":  # TF32 convolutions and matmuls: ~fp32 quality, tensor-core speed
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        train_files, val_files = split_files(cfg.audio, cfg.val_audio, cfg.val_fraction)

        torch.manual_seed(cfg.seed)  # every rank starts from the same weights
        start = self.resumed_weights(resume) or cfg.init
        self.codec = Codec.load(start) if start else Codec(cfg.codec_config())
        self.codec.to(cfg.device)
        self.disc = Discriminator(cfg.discriminator_config()).to(cfg.device) if cfg.discriminator else None
        adamw = dict(lr=cfg.lr, betas=(0.8, 0.99), eps=1e-8, weight_decay=cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(self.codec.parameters(), **adamw)
        self.disc_optimizer = torch.optim.AdamW(self.disc.parameters(), **adamw) if self.disc is not None else None
        if resume:
            self.resume()

        self.generator = CodecGenerator(self.codec)
        self.forward_generator = distributed.wrap(self.generator, self.dist)
        if cfg.compile:
            # Only the codec: its many elementwise passes at audio rate (Snake, autocast's casts) fuse, 2.5x on a
            # CPU step; the discriminator compiled ran slower than as it is (its products dominate).
            use_compile_cache()
            self.forward_generator = torch.compile(self.forward_generator)
        self.forward_disc = distributed.wrap(self.disc, self.dist) if self.disc is not None else None

        sr, hop = self.codec.sample_rate, self.codec.hop_length
        self.train_data = ExcerptSampler(train_files, sr, _frames_samples(cfg.excerpt_s, sr, hop), cfg.target_lufs,
                                         cfg.loudness_cutoff, preload=cfg.preload)
        self.val_data = ExcerptSampler(val_files, sr, _frames_samples(cfg.val_excerpt_s, sr, hop), cfg.target_lufs,
                                       cfg.loudness_cutoff)
        self._val_set = None

    # --- data ------------------------------------------------------------------------------------------------------
    def _step_batches(self) -> StepBatches:
        cfg = self.cfg
        return StepBatches(self.train_data, cfg.seed, cfg.batch_size, cfg.quantizer_dropout, self.codec.n_codebooks,
                           self.dist.slice(cfg.batch_size))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch of `step`: audio (b, 1, n) and codebook counts (b,)."""
        return self._step_batches()[step]

    def batches(self, first_step: int):
        """Batches of steps first_step, first_step + 1, ... up to max_steps; with num_workers > 0 they are built
        ahead in worker processes (each batch is still a pure function of its step)."""
        source = self._step_batches()
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

    def start(self) -> None:
        """A fresh run's log opens with the untrained codec's validation; the batches start after the steps done."""
        if self.step == 0:
            row = {"step": 0, **self.validate(), "seconds": 0.0}
            if self.dist.main:
                self.log(row)
        self._batches = self.batches(self.step + 1)

    # --- one optimisation step -----------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return self.cfg.lr * self.cfg.lr_decay ** max(step - 1, 0)

    def train_step(self) -> dict:
        cfg, d = self.cfg, self.dist
        lr = self.lr_at(self.step)
        set_lr(lr, self.optimizer, self.disc_optimizer)
        self.codec.train()
        x, n_q = next(self._batches)
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
            d_norm = clipped_step(self.disc_optimizer, self.disc.parameters(), cfg.disc_grad_clip)
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
        g_norm = clipped_step(self.optimizer, self.codec.parameters(), cfg.grad_clip)

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

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, state: dict) -> None:
        save_codec_checkpoint(folder, self.codec, self.optimizer, self.disc, self.disc_optimizer, state)

    def load_checkpoint(self, folder: Path) -> dict:
        return load_codec_checkpoint(folder, self.codec, self.optimizer, self.disc, self.disc_optimizer)

    def synced_modules(self) -> dict:
        modules = {"max_rank_divergence": self.codec}
        if self.disc is not None:
            modules["max_rank_divergence_disc"] = self.disc
        return modules


def train_codec(cfg: CodecTrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train a codec to cfg.max_steps (resuming from `latest` when asked); returns the last step's metrics."""
    return run_to_end(CodecTrainer(cfg, resume=resume, progress=progress))
