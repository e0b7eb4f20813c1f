"""Masked-token training of a coarse or coarse-to-fine transformer (the paper's objective and recipe).

Per item r ~ U(0, 1) from a scrambled Sobol sequence; each token is masked with probability cos(pi r / 2)
(conditioning codebooks never); cross-entropy with label smoothing on masked tokens only (optionally part of the
target spread over the true token's codebook neighbours, `neighbour_smoothing`); AdamW with the Noam warm-up
schedule and gradient clipping. Validation reports loss and masked-token accuracy (top-1, top-25, and the
probability on the true token's 32 nearest codebook neighbours) for r < 0.5 and r >= 0.5. A run with controls (cfg.controls) feeds the dataset's per-frame controls to the model, each
example's dropped as a whole or over a span (control_dropout_mask) so one model serves guided sampling. The run itself (checkpoints `latest`, `best`, `step-N` that resume exactly, the log, DDP under
torchrun) is loop.RunLoop's; LoRA runs train and save only the adapters (model/lora.py)."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import audio, prompts
from ..codec import Codec
from ..errors import OptionError
from ..model import MaskedTransformer
from ..controls import scale_features
from ..model.lora import (ADAPTER_FILE, control_state, extract_adapters, inject_lora, read_adapter, read_control,
                          restore_adapters, restore_control, save_adapter)
from ..pretrained import use_compile_cache
from ..sampling import generate
from . import distributed
from .config import TrainConfig
from .data import TokenDataset, read_manifest
from .loop import RunLoop, clipped_step, mix_seed, run_to_end, set_lr
from .state import load_training_checkpoint, save_training_checkpoint

LOG_FIELDS = ["step", "lr", "train_loss", "grad_norm", "val_loss", "val_acc1", "val_acc1_lo", "val_acc25_lo", "val_acc1_hi",
              "val_acc25_hi", "val_near32_lo", "val_tokens", "seconds"]
NEAR = 32  # val_near32_lo: the probability a model puts on the true token's NEAR nearest codebook neighbours


def noam_lr(step: int, dim: int, factor: float, warmup: int) -> float:
    """factor * dim^-0.5 * min(step^-0.5, step * warmup^-1.5), steps counted from 1."""
    step = max(step, 1)
    return factor * dim**-0.5 * min(step**-0.5, step * warmup**-1.5)


def codec_codebooks(codec: Codec) -> torch.Tensor:
    """The codec's codebook vectors (K, V, L): the transformers embed token k of codebook i as codebooks[i, k]."""
    return torch.stack([q.codebook.weight.detach().float().cpu() for q in codec.quantizer.quantizers])


def build_model(cfg: TrainConfig, codebooks: torch.Tensor, codec: Codec | None = None) -> MaskedTransformer:
    """A fresh transformer for this run (or the `init` checkpoint), embedding tokens with the codec's codebook
    vectors `codebooks` (K, V, L) (codec_codebooks, or a token pack's). Only an official `.pth` init needs `codec`."""
    if cfg.init:
        model = MaskedTransformer.load(cfg.init, codec, check_codec=False)  # (checked below, init_new_codec known)
        wanted = cfg.model
        if (model.n_codebooks, model.n_conditioning_codebooks) != (wanted.n_codebooks, wanted.n_conditioning_codebooks):
            raise OptionError(f"--init model has {model.n_codebooks} codebooks ({model.n_conditioning_codebooks} conditioning), "
                              f"the run asks for {wanted.n_codebooks} ({wanted.n_conditioning_codebooks})")
        mine = model.embedding.codebooks.detach().float().cpu()
        theirs = codebooks[: model.n_codebooks].float()
        if mine.shape != theirs.shape:
            raise OptionError(f"--init model {cfg.init} embeds tokens of a codec with other codebooks than the dataset's "
                              f"({tuple(mine.shape)} against {tuple(theirs.shape)})")
        if not torch.allclose(mine, theirs):
            if not cfg.init_new_codec:
                raise OptionError(f"--init model {cfg.init} embeds tokens of another codec than the dataset's (if that "
                                  "codec was fine-tuned from the model's, set init_new_codec: true)")
            with torch.no_grad():  # close to the vectors it learned on: the v3 codec's moved 2-3 % in 700 steps
                model.embedding.codebooks.copy_(theirs.to(model.embedding.codebooks.dtype))
        if cfg.model.n_controls:  # a fine-tune that teaches a control-free model to follow controls
            model.add_controls(cfg.model.n_controls)
        model.set_dropout(cfg.model.dropout)  # the run's, not the init's (c2f: 0.1 costs a third of a CPU step)
        return model
    if cfg.model.n_codebooks > codebooks.shape[0]:
        raise OptionError(f"the model would use {cfg.model.n_codebooks} codebooks; the codec has {codebooks.shape[0]}")
    mcfg = replace(cfg.model, vocab_size=codebooks.shape[1], latent_dim=codebooks.shape[2])  # the codec's
    torch.manual_seed(cfg.seed)  # every rank starts from the same weights
    model = MaskedTransformer(mcfg)
    with torch.no_grad():
        model.embedding.codebooks.copy_(codebooks[: mcfg.n_codebooks])
    return model


def control_dropout_mask(batch: int, frames: int, p_example: float, p_span: float, generator) -> torch.Tensor:
    """(batch, frames) bool, True where the control is given: an example keeps none with probability p_example;
    a kept one misses one random span of 1 to frames/2 frames with probability p_span."""
    t = torch.arange(frames)
    drop = torch.rand(batch, generator=generator) < p_example
    span = torch.rand(batch, generator=generator) < p_span
    length = (torch.rand(batch, generator=generator) * max(1, frames // 2)).long() + 1
    start = (torch.rand(batch, generator=generator) * (frames - length + 1)).long()
    in_span = (t >= start[:, None]) & (t < (start + length)[:, None])
    return ~drop[:, None] & ~(span[:, None] & in_span)


def window_controls(names: tuple, data: TokenDataset, indices) -> torch.Tensor:
    """(B, window, C) model features of the controls `names` (loudness, the one there is) for dataset windows."""
    return scale_features(torch.stack([data.loudness(indices)], -1), names)


def codebook_cosines(codebooks: torch.Tensor) -> torch.Tensor:
    """(K, V, L) codebook vectors -> (K, V, V) cosine similarity of every pair of tokens of each codebook (the
    measure the codec picks codes by)."""
    c = F.normalize(codebooks.float(), dim=-1)
    return c @ c.transpose(1, 2)


def neighbour_targets(codebooks: torch.Tensor, temperature: float) -> torch.Tensor:
    """(K, V, L) codebook vectors -> (K, V, V): row v of codebook k is a target spread around token v, the softmax
    over tokens j of cosine(c_v, c_j) / temperature (v itself gets the most)."""
    return (codebook_cosines(codebooks) / temperature).softmax(-1)


def nearest_neighbours(codebooks: torch.Tensor, n: int) -> torch.Tensor:
    """(K, V, L) codebook vectors -> (K, V, n) indices of each token's n nearest tokens by cosine, itself first."""
    return codebook_cosines(codebooks).topk(min(n, codebooks.shape[1]), -1).indices


def picked_codebooks(sel: torch.Tensor) -> torch.Tensor:
    """The predicted-codebook index of each token `logits[sel]` picks, for a (B, P, T) selection."""
    return torch.arange(sel.shape[1], device=sel.device)[None, :, None].expand_as(sel)[sel]


def masked_token_loss(model, codes: torch.Tensor, mask: torch.Tensor, label_smoothing: float, autocast=nullcontext,
                      controls: torch.Tensor | None = None, control_mask: torch.Tensor | None = None,
                      neighbours: torch.Tensor | None = None, neighbour_smoothing: float = 0.0):
    """(sum of cross-entropy over masked predicted tokens, their count, logits of those tokens, their targets).
    With `neighbour_smoothing` > 0 the target is that share of `neighbours` (neighbour_targets of the predicted
    codebooks) and the rest the label-smoothed true token."""
    C = mask.shape[1] - _n_predict(model)
    with autocast():
        if controls is None:
            logits = model(torch.where(mask, _mask_token(model), codes))  # (B, P, T, V)
        else:
            logits = model(torch.where(mask, _mask_token(model), codes), controls, control_mask)
    sel = mask[:, C:]
    picked, target = logits[sel].float(), codes[:, C:][sel]
    loss = F.cross_entropy(picked, target, label_smoothing=label_smoothing, reduction="sum")
    if neighbour_smoothing:
        spread_loss = -(neighbours[picked_codebooks(sel), target] * picked.log_softmax(-1)).sum()
        loss = (1 - neighbour_smoothing) * loss + neighbour_smoothing * spread_loss
    return loss, sel.sum(), picked, target


def _unwrap(model):
    return getattr(model, "module", model)


def _n_predict(model):
    return _unwrap(model).n_predict_codebooks


def _mask_token(model):
    return _unwrap(model).mask_token


class Trainer(RunLoop):
    """Runs one training configuration; `run()` trains to `max_steps`, resuming from `latest` when asked."""

    log_fields = LOG_FIELDS
    loss_key, progress_metric, description = "train_loss", ("loss", "train_loss"), "train"
    best_metric, best_state_key = "val_loss", "best_val_loss"
    non_finite_hint = "lower lr_factor or enable grad clipping"

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True):
        if not cfg.dataset or not cfg.output:
            raise OptionError("a training run needs `dataset` and `output`")
        super().__init__(cfg, progress)
        manifest = read_manifest(cfg.dataset)
        self.frames = max(2, math.ceil(cfg.window_s * manifest["sample_rate"] / manifest["hop_length"]))
        self.train_data = TokenDataset(cfg.dataset, "train", self.frames, cfg.model.n_codebooks)
        try:
            self.val_data = TokenDataset(cfg.dataset, "val", self.frames, cfg.model.n_codebooks)
        except Exception:
            self.val_data = None
        self.codec = self._load_codec(manifest)
        codebooks = self.train_data.codebooks if self.codec is None else codec_codebooks(self.codec)
        own = self.resumed_weights(resume) if cfg.init and cfg.lora_rank == 0 else None  # (LoRA saves adapters)
        self.model = build_model(replace(cfg, init=str(own)) if own else cfg, codebooks, self.codec).to(cfg.device)
        if cfg.lora_rank > 0:  # LoRA runs add adapters and train only them; otherwise every weight trains
            inject_lora(self.model, cfg.lora_rank, cfg.lora_alpha)
            if cfg.controls:  # ... and the control projection, which is new
                self.model.control.requires_grad_(True)
        if cfg.controls:
            self.train_data.loudness([0])  # a dataset without the controls fails here, not at the first step
        self.neighbours = None
        if cfg.neighbour_smoothing:
            C = cfg.model.n_conditioning_codebooks
            self.neighbours = neighbour_targets(self.model.embedding.codebooks[C:], cfg.neighbour_temperature)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
        if resume:
            self.resume()
        self.forward_model = distributed.wrap(self.model, self.dist)
        if cfg.compile:
            use_compile_cache()
            self.forward_model = torch.compile(self.forward_model)

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

    # --- checkpoints: the whole model, or a LoRA run's adapters only -------------------------------------------------
    def save_checkpoint(self, folder: Path, state: dict) -> None:
        write = None
        if self.cfg.lora_rank > 0:
            base = self.model.config.to_dict()
            write = lambda tmp: save_adapter(tmp / ADAPTER_FILE, *extract_adapters(self.model), base,
                                             control_state(self.model))
        save_training_checkpoint(folder, self.model, self.optimizer, state, write)

    def load_checkpoint(self, folder: Path) -> dict:
        read = None
        if self.cfg.lora_rank > 0:
            def read(found):
                restore_adapters(self.model, read_adapter(found / ADAPTER_FILE)[0])
                restore_control(self.model, read_control(found / ADAPTER_FILE))
        return load_training_checkpoint(folder, self.model, self.optimizer, read_model=read)

    def synced_modules(self) -> dict:
        return {"max_rank_divergence": self.model}

    # --- one optimisation step --------------------------------------------------------------------------------
    def start(self) -> None:
        """The mask ratios' scrambled Sobol sequence, moved past the draws of the steps already done."""
        self.sobol = torch.quasirandom.SobolEngine(1, scramble=True, seed=self.cfg.seed)
        self.sobol.fast_forward(self.step * self.cfg.batch_size * self.cfg.grad_accum)

    def train_step(self) -> dict:
        cfg, d = self.cfg, self.dist
        lr = noam_lr(self.step, self.model.config.embedding_dim, cfg.lr_factor, cfg.warmup_steps)
        set_lr(lr, self.optimizer)
        self.model.train()
        data_gen = torch.Generator().manual_seed(mix_seed(cfg.seed, self.step))
        torch.manual_seed(mix_seed(cfg.seed, self.step, d.rank))  # dropout noise
        K, C, B = cfg.model.n_codebooks, cfg.model.n_conditioning_codebooks, cfg.batch_size
        total = torch.zeros(2)
        for micro in range(cfg.grad_accum):
            idx = self.train_data.sample_indices(data_gen, B)
            r = self.sobol.draw(B).squeeze(1)
            mask = prompts.training_mask((B, K, self.frames), r, C, data_gen, cfg.structured_masks)[d.slice(B)]
            codes = self.train_data.batch(idx[d.slice(B)])
            controls = present = None
            if cfg.controls:  # drawn after the masks, so runs without controls draw what they always drew
                present = control_dropout_mask(B, self.frames, cfg.control_dropout, cfg.control_span_dropout,
                                               data_gen)[d.slice(B)].to(cfg.device)
                controls = window_controls(cfg.controls, self.train_data, idx[d.slice(B)]).to(cfg.device)
            sync = nullcontext() if (not d.enabled or micro == cfg.grad_accum - 1) else self.forward_model.no_sync()
            with sync:
                loss_sum, count, _, _ = masked_token_loss(self.forward_model, codes.to(cfg.device), mask.to(cfg.device),
                                                          cfg.label_smoothing, self.autocast, controls, present,
                                                          self.neighbours, cfg.neighbour_smoothing)
                n = d.all_reduce_sum(count.detach().float().cpu().clone()).clamp(min=1)
                (loss_sum * d.world / n / cfg.grad_accum).backward()
            total += torch.stack([loss_sum.detach().float().cpu(), count.float().cpu()])
        d.all_reduce_sum(total)
        grad_norm = clipped_step(self.optimizer, self.trainable, cfg.grad_clip)
        return {"lr": lr, "train_loss": float(total[0] / total[1].clamp(min=1)), "grad_norm": float(grad_norm)}

    # --- validation and previews ---------------------------------------------------------------------------------
    def validate(self) -> dict:
        """Loss and masked-token accuracy on the fixed validation windows (masked_accuracy)."""
        if self.val_data is None:
            return {}
        cfg = self.cfg
        return masked_accuracy(self.model, self.val_data, cfg.val_windows, seed=cfg.seed, device=cfg.device,
                               autocast=self.autocast, dist=self.dist, controls=cfg.controls)

    def after_step(self, row: dict) -> None:
        if self.cfg.preview_every and self.step % self.cfg.preview_every == 0 and self.dist.main:
            self.write_previews()

    def write_previews(self, n: int = 2):
        """Vamp the first validation windows (periodic prompt 7) and write input/vamp audio side by side."""
        if self.val_data is None:
            return
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
                    dist=None, controls: tuple = ()) -> dict:
    """Loss (plain cross-entropy) and masked-token top-1/top-25 accuracy of `model` on fixed windows of a
    TokenDataset, with evenly spaced mask ratios r, split into r < 0.5 ("lo") and r >= 0.5 ("hi"). A token is
    masked with probability cos(pi r / 2), so "lo" hides more than 71 % of the tokens (little context) and "hi"
    fewer. The same windows and masks for every model, so numbers compare across runs. `controls`: the names of
    the controls a model with controls is given on every frame."""
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
    near = nearest_neighbours(model.embedding.codebooks[n_cond:], NEAR).to(device)
    # per half (lo: r < 0.5, hi: r >= 0.5): loss sum, tokens, top-1 hits, top-25 hits, probability near the truth
    stats = torch.zeros(2, 5)
    for i in range(d.rank, n, d.world):
        codes = data.batch([idx[i]]).to(device)
        given = window_controls(controls, data, [idx[i]]).to(device) if controls else None
        loss, count, logits, target = masked_token_loss(model, codes, masks[i:i + 1].to(device), 0.0, autocast, given)
        top = logits.topk(min(25, logits.shape[-1]), -1).indices
        hits1 = (top[:, 0] == target).sum()
        hits25 = (top == target[:, None]).any(-1).sum()
        books = picked_codebooks(masks[i:i + 1, n_cond:].to(device))
        near_mass = logits.softmax(-1).gather(-1, near[books, target]).sum()
        stats[int(r_all[i] >= 0.5)] += torch.stack([loss, count, hits1, hits25, near_mass]).float().cpu()
    d.all_reduce_sum(stats)
    model.train(was_training)
    ratio = lambda a, b: float(a / b) if b > 0 else float("nan")
    lo, hi = stats
    return {"val_loss": ratio(lo[0] + hi[0], lo[1] + hi[1]), "val_acc1": ratio(lo[2] + hi[2], lo[1] + hi[1]),
            "val_acc1_lo": ratio(lo[2], lo[1]),
            "val_acc25_lo": ratio(lo[3], lo[1]), "val_acc1_hi": ratio(hi[2], hi[1]), "val_acc25_hi": ratio(hi[3], hi[1]),
            "val_near32_lo": ratio(lo[4], lo[1]),
            "val_tokens": int(lo[1] + hi[1])}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train to cfg.max_steps (resuming from `latest` when asked); returns the last step's metrics."""
    return run_to_end(Trainer(cfg, resume=resume, progress=progress))
