"""Multi-process training helpers: one code path for a single process and for `torchrun` (DDP, gloo on CPU,
nccl on GPU). Ranks share the global batch: each takes its slice, so N processes with batch B/N equal one
process with batch B."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def slice(self, n: int) -> slice:
        """This rank's part of a global batch of n items."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any_rank(self, flag: bool) -> bool:
        """True when `flag` is true on any rank, so all ranks take the same branch (a time limit, say)."""
        if not self.enabled:
            return bool(flag)
        return bool(self.all_reduce_sum(torch.tensor([float(flag)])) > 0)

    def barrier(self):
        if self.enabled:
            dist.barrier()


def init(device: str) -> Dist:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(module: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """`module` under DistributedDataParallel when several processes train, else `module` itself."""
    return torch.nn.parallel.DistributedDataParallel(module) if d.enabled else module


def max_param_divergence(model: torch.nn.Module, d: Dist) -> float:
    """Largest |difference| between this rank's parameters and rank 0's (0.0 when ranks are in sync)."""
    if not d.enabled:
        return 0.0
    worst = torch.zeros(())
    for p in model.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, 0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().cpu())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
