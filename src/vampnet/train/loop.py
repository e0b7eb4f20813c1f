"""The one run loop both trainers share (masked.Trainer, codec_trainer.CodecTrainer).

It owns the run folder and the order of things: joining the process group, resuming from `latest` after a kill
(half-written files removed, the log cut back to the checkpoint's step), then steps to `max_steps` or the time limit
with a guard against a run of non-finite losses, validation and checkpoint cadence, one CSV log row per step written
before that step's checkpoint (a run killed while saving redoes and re-logs the step), `best`/`latest`/`step-N`
checkpoints, a progress bar and `final.json`. A trainer fills in what a step, a validation and a checkpoint are."""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from ..devices import check_device
from ..errors import OptionError
from ..precision import cpu_has_bf16
from ..serialization import write_text_atomic
from . import distributed
from .config import config_to_yaml
from .state import append_log_row, find_training_checkpoint, remove_unfinished_writes, truncate_log

MAX_BAD_STEPS = 10  # consecutive steps with a non-finite loss or gradient norm before a run gives up


def bf16_autocast_wanted(setting, device) -> bool:
    """Whether a run autocasts to bfloat16: `setting` true or false as given; "auto" where the device has bf16
    arithmetic (a CPU with AVX512-BF16 or AMX, a CUDA GPU that supports it), and not where bf16 is emulated and
    slower than float32 (AVX2-only CPUs)."""
    if setting != "auto":
        return bool(setting)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (seed, step, rank...)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0x7FFFFFFFFFFFFFFF
    return h


def out_of_time(start: float, limit_s: float) -> bool:
    """True once a run started at `start` (time.time()) has used its time limit (limit_s <= 0: never)."""
    return limit_s > 0 and time.time() - start >= limit_s


def set_lr(lr: float, *optimizers) -> None:
    """The learning rate of every parameter group of `optimizers` (None entries are skipped)."""
    for opt in optimizers:
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = lr


def clipped_step(optimizer: torch.optim.Optimizer, parameters, max_norm: float) -> torch.Tensor:
    """Clip the gradients of `parameters` to global norm `max_norm`, step unless the norm is not finite (the batch
    is skipped, not the run), and clear the gradients; returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    if torch.isfinite(norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


class RunLoop:
    """Base of a trainer: `run()` trains to `cfg.max_steps`. Subclasses set the class attributes, build their
    networks after `super().__init__`, call `resume()` when asked to, and implement the methods below marked
    "a trainer's". `cfg` needs output, batch_size, max_steps, time_limit_s, val_every, save_every, save_every_s, device, bf16 and
    to_dict(); `self.step` is the number of steps done (a step's randomness derives from it and the seed)."""

    log_fields: list[str]        # the columns of log.csv
    loss_key: str                # the row's training loss (a run of non-finite values stops the run)
    progress_metric: tuple[str, str]  # (label, row key) of the number the progress bar shows
    best_metric: str             # the validation metric (lower is better) that picks the `best` checkpoint
    best_state_key: str          # its best value's name in the trainer state
    description: str             # the progress bar's label
    non_finite_hint: str         # what to try when the loss stops being finite

    def __init__(self, cfg, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        check_device(cfg.device)
        self.dist = distributed.init(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise OptionError(f"batch_size {cfg.batch_size} must divide evenly over {self.dist.world} processes")
        self.out = Path(cfg.output)
        self.step, self.best = 0, math.inf
        self.bf16 = bf16_autocast_wanted(cfg.bf16, cfg.device)
        self.autocast = (lambda: torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)) \
            if self.bf16 else nullcontext

    # --- a trainer's ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the first step of this run (self.step steps are done)."""

    def train_step(self) -> dict:
        """One optimisation step (number self.step); returns the row's metrics, `lr` and `grad_norm` among them."""
        raise NotImplementedError

    def validate(self) -> dict:
        """Validation metrics for the row (empty when the run has no validation data)."""
        raise NotImplementedError

    def after_step(self, row: dict) -> None:
        """Work after a step's log row and checkpoint (audio previews, say)."""

    def save_checkpoint(self, folder: Path, state: dict) -> None:
        """Write the networks, optimisers and trainer `state` into `folder`, replacing it in one step."""
        raise NotImplementedError

    def load_checkpoint(self, folder: Path) -> dict:
        """Restore what save_checkpoint wrote; returns the trainer state."""
        raise NotImplementedError

    def synced_modules(self) -> dict[str, torch.nn.Module]:
        """{final.json key: module} whose largest difference across ranks final.json reports."""
        raise NotImplementedError

    def resumed_weights(self, resume: bool, name: str = "model.safetensors") -> Path | None:
        """The model file a resumed run restores (from `latest` or its `.old` fallback), else None: a fine-tune
        that resumes builds its model from it, so its init file need not be there any more."""
        found = find_training_checkpoint(self.out / "latest") if resume else None
        return found / name if found is not None and (found / name).is_file() else None

    # --- the loop ------------------------------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from `latest`: remove what a killed run was writing, restore the checkpoint (or its `.old`
        fallback) when there is one, and drop the log rows of the steps that will run again."""
        if self.dist.main:
            remove_unfinished_writes(self.out)
        if find_training_checkpoint(self.out / "latest") is not None:
            state = self.load_checkpoint(self.out / "latest")
            self.step, self.best = state["step"], state.get(self.best_state_key, math.inf)
        if self.dist.main:  # the steps after the checkpoint run (and are logged) again; none: all of them
            truncate_log(self.out / "log.csv", self.step if self.step else -1, self.log_fields)

    def _recorded_init(self):
        """The `init` the run's config.yaml names (None when it names none or cannot be read)."""
        try:
            return (yaml.safe_load((self.out / "config.yaml").read_text()) or {}).get("init")
        except (OSError, yaml.YAMLError, AttributeError):
            return None

    def run(self) -> dict:
        """Train to cfg.max_steps (or the time limit); returns the last step's row."""
        cfg, d = self.cfg, self.dist
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            record = cfg.to_dict()
            if self.step and not record.get("init"):  # a resumed run without its init keeps the record of it
                record["init"] = self._recorded_init()
            write_text_atomic(self.out / "config.yaml", config_to_yaml(record))
        self.started, last, bad_steps = time.time(), {}, 0
        self.saved_at = self.started
        self.start()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"{self.description} {self.out.name}",
                   disable=not (self.progress and d.main))
        while self.step < cfg.max_steps:
            self.step += 1
            row = {"step": self.step, **self.train_step(), "seconds": round(time.time() - self.started, 2)}
            finite = math.isfinite(row[self.loss_key]) and math.isfinite(row["grad_norm"])
            bad_steps = 0 if finite else bad_steps + 1
            if bad_steps >= MAX_BAD_STEPS:
                raise FloatingPointError(f"loss or gradient not finite for {MAX_BAD_STEPS} steps in a row "
                                         f"(step {self.step}); {self.non_finite_hint}")
            at_end = self.step == cfg.max_steps or d.any_rank(out_of_time(self.started, cfg.time_limit_s))
            validating = self.step % cfg.val_every == 0 or at_end
            if validating:
                row.update(self.validate())
            if d.main:  # logged before it is saved: a run killed while saving redoes (and re-logs) this step
                self.log(row)
            # a long run saves `latest` on a clock too, so a kill loses minutes; one process keeps its data and
            # workers (restarting to save cost a 2-core CPU run a third of its time: preloading and validation)
            timed = d.any_rank(out_of_time(self.saved_at, cfg.save_every_s))
            if validating or timed or (cfg.save_every and self.step % cfg.save_every == 0):
                self._save(row)
            self.after_step(row)
            last = row
            bar.update(1)
            label, key = self.progress_metric
            bar.set_postfix({label: f"{row[key]:.3f}"})
            if at_end:
                break
        bar.close()
        for key, module in self.synced_modules().items():
            last[key] = distributed.max_param_divergence(module, d)
        if d.main:
            write_text_atomic(self.out / "final.json", json.dumps(last, indent=2, default=float))
        d.barrier()
        return last

    def log(self, row: dict) -> None:
        append_log_row(self.out / "log.csv", self.log_fields, row)

    def _save(self, row: dict) -> None:
        """`best` when the row's validation beats every earlier one, `latest`, and `step-N` at save_every."""
        cfg, d = self.cfg, self.dist
        if d.main:
            val = row.get(self.best_metric, math.nan)
            if math.isfinite(val) and val < self.best:
                self.best = val
                self.save_checkpoint(self.out / "best", self._state(row))
            self.save_checkpoint(self.out / "latest", self._state(row))
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint(self.out / f"step-{self.step:07d}", self._state(row))
        self.saved_at = time.time()
        d.barrier()

    def _state(self, row: dict) -> dict:
        return {"step": self.step, self.best_state_key: self.best, "metrics": row, "config": self.cfg.to_dict(),
                "world_size": self.dist.world, "bf16_autocast": self.bf16}


def run_to_end(trainer: RunLoop) -> dict:
    """trainer.run(), leaving the process group however it ends."""
    try:
        return trainer.run()
    finally:
        distributed.shutdown(trainer.dist)
