"""Masked-token training of a coarse or coarse-to-fine transformer (the paper's objective, SPEC §5).

Per item r ~ U(0, 1) from a scrambled Sobol sequence; each token is masked with probability cos(pi r / 2)
(conditioning codebooks never); cross-entropy with label smoothing on masked tokens only; AdamW with the Noam
warm-up schedule and gradient clipping. Validation reports loss and masked-token accuracy (top-1, top-25) for
r < 0.5 and r >= 0.5. Checkpoints (`latest`, `best`, `step-N`) resume exactly; under torchrun it trains with DDP."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import prompts
from ..codec import Codec
from ..errors import OptionError
from ..model import MaskedTransformer, TransformerConfig
from ..serialization import write_text_atomic
from . import distributed
from .config import TrainConfig, config_to_yaml
from .data import TokenDataset, read_manifest
from .state import (append_log_row, find_training_checkpoint, load_training_checkpoint, remove_unfinished_writes,
                    save_training_checkpoint, truncate_log)

LOG_FIELDS = ["step", "lr", "train_loss", "grad_norm", "val_loss", "val_acc1", "val_acc1_lo", "val_acc25_lo", "val_acc1_hi",
              "val_acc25_hi", "val_tokens", "seconds"]


def noam_lr(step: int, dim: int, factor: float, warmup: int) -> float:
    """factor * dim^-0.5 * min(step^-0.5, step * warmup^-1.5), steps counted from 1."""
    step = max(step, 1)
    return factor * dim**-0.5 * min(step**-0.5, step * warmup**-1.5)


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (seed, step, rank...)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0x7FFFFFFFFFFFFFFF
    return h


def codec_codebooks(codec: Codec) -> torch.Tensor:
    """The codec's codebook vectors (K, V, L): the transformers embed token k of codebook i as codebooks[i, k]."""
    return torch.stack([q.codebook.weight.detach().float().cpu() for q in codec.quantizer.quantizers])


def build_model(cfg: TrainConfig, codebooks: torch.Tensor, codec: Codec | None = None) -> MaskedTransformer:
    """A fresh transformer for this run (or the `init` checkpoint), embedding tokens with the codec's codebook
    vectors `codebooks` (K, V, L) (codec_codebooks, or a token pack's). Only an official `.pth` init needs `codec`."""
    if cfg.init:
        model = MaskedTransformer.load(cfg.init, codec)
        if (model.n_codebooks, model.n_conditioning_codebooks) != (cfg.n_codebooks, cfg.n_conditioning_codebooks):
            raise OptionError(f"--init model has {model.n_codebooks} codebooks ({model.n_conditioning_codebooks} conditioning), "
                              f"the run asks for {cfg.n_codebooks} ({cfg.n_conditioning_codebooks})")
        mine = model.embedding.codebooks.detach().float().cpu()
        theirs = codebooks[: model.n_codebooks].float()
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs):
            raise OptionError(f"--init model {cfg.init} embeds tokens of another codec than the dataset's")
        return model
    if cfg.n_codebooks > codebooks.shape[0]:
        raise OptionError(f"the model would use {cfg.n_codebooks} codebooks; the codec has {codebooks.shape[0]}")
    mcfg = TransformerConfig(n_codebooks=cfg.n_codebooks, n_conditioning_codebooks=cfg.n_conditioning_codebooks,
                             vocab_size=codebooks.shape[1], latent_dim=codebooks.shape[2],
                             embedding_dim=cfg.embedding_dim, n_heads=cfg.n_heads, n_layers=cfg.n_layers, dropout=cfg.dropout)
    torch.manual_seed(cfg.seed)  # every rank starts from the same weights
    model = MaskedTransformer(mcfg)
    with torch.no_grad():
        model.embedding.codebooks.copy_(codebooks[: cfg.n_codebooks])
    return model


def masked_token_loss(model, codes: torch.Tensor, mask: torch.Tensor, label_smoothing: float, autocast=nullcontext):
    """(sum of cross-entropy over masked predicted tokens, their count, logits of those tokens, their targets)."""
    C = mask.shape[1] - _n_predict(model)
    with autocast():
        logits = model(torch.where(mask, _mask_token(model), codes))  # (B, P, T, V)
    sel = mask[:, C:]
    picked, target = logits[sel].float(), codes[:, C:][sel]
    loss = F.cross_entropy(picked, target, label_smoothing=label_smoothing, reduction="sum")
    return loss, sel.sum(), picked, target


def _unwrap(model):
    return getattr(model, "module", model)


def _n_predict(model):
    return _unwrap(model).n_predict_codebooks


def _mask_token(model):
    return _unwrap(model).mask_token


class Trainer:
    """Runs one training configuration; `run()` trains to `max_steps`, resuming from `latest` when asked."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        if not cfg.dataset or not cfg.output:
            raise OptionError("a training run needs `dataset` and `output`")
        self.dist = distributed.init(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise OptionError(f"batch_size {cfg.batch_size} must divide evenly over {self.dist.world} processes")
        self.out = Path(cfg.output)
        manifest = read_manifest(cfg.dataset)
        self.frames = max(2, math.ceil(cfg.window_s * manifest["sample_rate"] / manifest["hop_length"]))
        self.train_data = TokenDataset(cfg.dataset, "train", self.frames, cfg.n_codebooks)
        try:
            self.val_data = TokenDataset(cfg.dataset, "val", self.frames, cfg.n_codebooks)
        except Exception:
            self.val_data = None
        self.codec = self._load_codec(manifest)
        codebooks = self.train_data.codebooks if self.codec is None else codec_codebooks(self.codec)
        self.model = build_model(cfg, codebooks, self.codec).to(cfg.device)
        self.trainable = self._prepare_trainable()
        self.optimizer = torch.optim.AdamW(self.trainable, lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
        self.step, self.best = 0, math.inf
        if resume and self.dist.main:
            remove_unfinished_writes(self.out)  # what a killed run was writing
        if resume and find_training_checkpoint(self.out / "latest") is not None:
            state = load_training_checkpoint(self.out / "latest", self.model, self.optimizer, read_model=self._model_io()[1])
            self.step, self.best = state["step"], state.get("best_val_loss", math.inf)
        if resume and self.dist.main:  # the steps after the checkpoint run (and are logged) again; none: all of them
            truncate_log(self.out / "log.csv", self.step if self.step else -1)
        self.forward_model = self.model
        if self.dist.enabled:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(self.model)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.autocast = (lambda: torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)) \
            if cfg.bf16 else nullcontext

    def _load_codec(self, manifest: dict) -> Codec | None:
        """The run's codec: `codec`, else the dataset's. A token pack carries the codebook vectors training needs,
        so a run on a pack loads a codec only when one is named or previews must decode audio."""
        packed = self.train_data.codebooks is not None
        path = self.cfg.codec or (None if packed else manifest.get("codec_path"))
        if path:
            return Codec.load(path)
        if packed and not self.cfg.preview_every:
            return None
        raise OptionError("no codec: set `codec` in the run config" + (" (previews decode audio)" if packed else ""))

    def _prepare_trainable(self):
        """LoRA runs add adapters and train only them; otherwise every weight trains."""
        if self.cfg.lora_rank > 0:
            from .finetune import inject_lora

            inject_lora(self.model, self.cfg.lora_rank, self.cfg.lora_alpha)
        return [p for p in self.model.parameters() if p.requires_grad]

    def _model_io(self):
        """(writer, reader) of the model part of a checkpoint folder: None for full models, adapter files for LoRA."""
        if self.cfg.lora_rank <= 0:
            return None, None
        from ..model.lora import read_adapter, save_adapter
        from .finetune import ADAPTER_FILE, extract_adapters, restore_adapters

        base = self.model.config.to_dict()
        write = lambda folder: save_adapter(folder / ADAPTER_FILE, *extract_adapters(self.model), base)
        read = lambda folder: restore_adapters(self.model, read_adapter(folder / ADAPTER_FILE)[0])
        return write, read

    # --- one optimisation step --------------------------------------------------------------------------------
    def train_step(self, sobol) -> tuple[float, float]:
        cfg, d = self.cfg, self.dist
        lr = noam_lr(self.step, self.model.config.embedding_dim, cfg.lr_factor, cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        data_gen = torch.Generator().manual_seed(mix_seed(cfg.seed, self.step))
        torch.manual_seed(mix_seed(cfg.seed, self.step, d.rank))  # dropout noise
        K, C, B = cfg.n_codebooks, cfg.n_conditioning_codebooks, cfg.batch_size
        total = torch.zeros(2)
        for micro in range(cfg.grad_accum):
            idx = self.train_data.sample_indices(data_gen, B)
            r = sobol.draw(B).squeeze(1)
            mask = prompts.training_mask((B, K, self.frames), r, C, data_gen)[d.slice(B)]
            codes = self.train_data.batch(idx[d.slice(B)])
            sync = nullcontext() if (not d.enabled or micro == cfg.grad_accum - 1) else self.forward_model.no_sync()
            with sync:
                loss_sum, count, _, _ = masked_token_loss(self.forward_model, codes.to(cfg.device), mask.to(cfg.device),
                                                          cfg.label_smoothing, self.autocast)
                n = d.all_reduce_sum(count.detach().float().cpu().clone()).clamp(min=1)
                (loss_sum * d.world / n / cfg.grad_accum).backward()
            total += torch.stack([loss_sum.detach().float().cpu(), count.float().cpu()])
        d.all_reduce_sum(total)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total[0] / total[1].clamp(min=1)), float(grad_norm)

    # --- validation ----------------------------------------------------------------------------------------------
    def validate(self) -> dict:
        """Loss and masked-token accuracy on the fixed validation windows (masked_accuracy)."""
        if self.val_data is None:
            return {}
        cfg = self.cfg
        return masked_accuracy(self.model, self.val_data, cfg.val_windows, seed=cfg.seed, device=cfg.device,
                               autocast=self.autocast, dist=self.dist)

    # --- the run ---------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, d = self.cfg, self.dist
        sobol = torch.quasirandom.SobolEngine(1, scramble=True, seed=cfg.seed)
        sobol.fast_forward(self.step * cfg.batch_size * cfg.grad_accum)
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "config.yaml", config_to_yaml(cfg.to_dict()))
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"train {self.out.name}", disable=not (self.progress and d.main))
        start, last, bad_steps = time.time(), {}, 0
        while self.step < cfg.max_steps:
            self.step += 1
            loss, grad_norm = self.train_step(sobol)
            bad_steps = bad_steps + 1 if not math.isfinite(loss) or not math.isfinite(grad_norm) else 0
            if bad_steps >= 10:
                raise FloatingPointError(f"loss or gradient not finite for 10 steps in a row (step {self.step}); "
                                         "lower lr_factor or enable grad clipping")
            row = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": loss,
                   "grad_norm": grad_norm, "seconds": round(time.time() - start, 2)}
            at_end = self.step == cfg.max_steps or d.any_rank(out_of_time(start, cfg.time_limit_s))
            validating = self.step % cfg.val_every == 0 or at_end
            if validating:
                row.update(self.validate())
            if d.main:  # logged before it is saved: a run killed while saving redoes (and re-logs) this step
                self._log(row)
            if validating or (cfg.save_every and self.step % cfg.save_every == 0):
                self._save(row, at_end)
            if cfg.preview_every and self.step % cfg.preview_every == 0 and d.main:
                self.write_previews()
            last = row
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if at_end:
                break
        bar.close()
        last["max_rank_divergence"] = distributed.max_param_divergence(self.model, d)
        if d.main:
            write_text_atomic(self.out / "final.json", _json(last))
        d.barrier()
        return last

    def _save(self, row: dict, at_end: bool):
        cfg, d = self.cfg, self.dist
        if not d.main:
            d.barrier()
            return
        write = self._model_io()[0]
        save = lambda name: save_training_checkpoint(self.out / name, self.model, self.optimizer, self._trainer_state(row), write)
        val = row.get("val_loss", math.nan)
        if math.isfinite(val) and val < self.best:
            self.best = val
            save("best")
        save("latest")
        if cfg.save_every and self.step % cfg.save_every == 0:
            save(f"step-{self.step:07d}")
        d.barrier()

    def _trainer_state(self, row: dict) -> dict:
        return {"step": self.step, "best_val_loss": self.best, "metrics": row, "config": self.cfg.to_dict(),
                "world_size": self.dist.world}

    def _log(self, row: dict):
        append_log_row(self.out / "log.csv", LOG_FIELDS, row)

    def write_previews(self, n: int = 2):
        """Vamp the first validation windows (periodic prompt 7) and write input/vamp audio side by side."""
        if self.val_data is None:
            return
        from .. import audio
        from ..sampling import generate

        folder = self.out / "previews" / f"step-{self.step:07d}"
        codes = self.val_data.batch(self.val_data.fixed_indices(n))
        mask = prompts.periodic(codes, 7)
        out = generate(self.model, codes, mask, steps=self.cfg.preview_steps, seed=self.cfg.seed)
        self.model.train()
        with torch.inference_mode():
            for i in range(codes.shape[0]):
                audio.save(folder / f"{i}-input.wav", self.codec.decode(codes[i:i + 1]), self.codec.sample_rate)
                audio.save(folder / f"{i}-vamp.wav", self.codec.decode(out[i:i + 1]), self.codec.sample_rate)


@torch.no_grad()
def masked_accuracy(model, data, n_windows: int = 64, seed: int = 0, device="cpu", autocast=nullcontext,
                    dist=None) -> dict:
    """Loss (plain cross-entropy) and masked-token top-1/top-25 accuracy of `model` on fixed windows of a
    TokenDataset, with evenly spaced mask ratios r, split into r < 0.5 ("lo", mostly visible context) and
    r >= 0.5 ("hi"). The same windows and masks for every model, so numbers compare across runs."""
    d = dist or distributed.Dist()
    was_training = model.training
    model.eval()
    idx = data.fixed_indices(n_windows)
    idx = (idx * n_windows)[:n_windows]  # a split with fewer windows repeats them at other r
    n = len(idx)
    r_all = (torch.arange(n) + 0.5) / n
    gen = torch.Generator().manual_seed(seed)
    n_codebooks, n_cond = model.config.n_codebooks, model.config.n_conditioning_codebooks
    masks = prompts.training_mask((n, n_codebooks, data.window), r_all, n_cond, gen)
    # per half (lo: r < 0.5, hi: r >= 0.5): loss sum, tokens, top-1 hits, top-25 hits
    stats = torch.zeros(2, 4)
    for i in range(d.rank, n, d.world):
        codes = data.batch([idx[i]]).to(device)
        loss, count, logits, target = masked_token_loss(model, codes, masks[i:i + 1].to(device), 0.0, autocast)
        top = logits.topk(min(25, logits.shape[-1]), -1).indices
        hits1 = (top[:, 0] == target).sum()
        hits25 = (top == target[:, None]).any(-1).sum()
        stats[int(r_all[i] >= 0.5)] += torch.stack([loss, count, hits1, hits25]).float().cpu()
    d.all_reduce_sum(stats)
    model.train(was_training)
    ratio = lambda a, b: float(a / b) if b > 0 else float("nan")
    lo, hi = stats
    return {"val_loss": ratio(lo[0] + hi[0], lo[1] + hi[1]), "val_acc1": ratio(lo[2] + hi[2], lo[1] + hi[1]),
            "val_acc1_lo": ratio(lo[2], lo[1]),
            "val_acc25_lo": ratio(lo[3], lo[1]), "val_acc1_hi": ratio(hi[2], hi[1]), "val_acc25_hi": ratio(hi[3], hi[1]),
            "val_tokens": int(lo[1] + hi[1])}


def out_of_time(start: float, limit_s: float) -> bool:
    """True once a run started at `start` (time.time()) has used its time limit (limit_s <= 0: never)."""
    return limit_s > 0 and time.time() - start >= limit_s


def _json(d: dict) -> str:
    import json

    return json.dumps(d, indent=2, default=float)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train to cfg.max_steps (resuming from `latest` when asked); returns the last step's metrics."""
    trainer = Trainer(cfg, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        distributed.shutdown(trainer.dist)
