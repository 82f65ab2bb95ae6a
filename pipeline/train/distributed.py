"""Training on several processes started by torchrun: the process group, each rank's device and share of
the batch, DistributedDataParallel, and the few collectives the loop needs. Used by pipeline/train/loop.py.

Without torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK), or with WORLD_SIZE 1, a run is one process
and nothing here changes what it computes. With WORLD_SIZE N > 1 each process joins a process group
(NCCL on CUDA, gloo on the CPU), trains on 1/N of every global batch, and DDP averages the gradients, so
N processes take the steps one process takes with the same global batch up to float summation order, as
long as nothing is computed over each process's share alone: that needs --batch-norm frozen or sync and no
padded pixels, and berHu's threshold (0.2 x the largest depth error), --pseudo-drop's cut and
--strong-augment's CutMix are taken per share (README, "Training on several processes").
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.runtime import resolve_device
from stores.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes: rank 0..size-1, local_rank on its host."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics, config.json and the store tag."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r}: not an integer (set by torchrun)") from None


def join_world(device_name: str) -> tuple[World, torch.device]:
    """(World, device) of this process. torchrun's RANK / WORLD_SIZE / LOCAL_RANK decide the world; with
    more than one process this joins the default process group (backend nccl for a CUDA device, else gloo)
    and 'auto' / 'cuda' mean cuda:LOCAL_RANK. Raises UserError for a bad device (resolve_device) or a
    malformed variable."""
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if not 0 <= world.rank < world.size:
        raise UserError(f"RANK={world.rank} with WORLD_SIZE={world.size}: need 0 <= RANK < WORLD_SIZE")
    device = resolve_device(device_name)
    if world.size == 1:
        return world, device
    if device.type == "cuda" and device_name.strip().lower() not in ("auto", "cuda"):
        raise UserError(f"--device {device_name}: under torchrun each process takes cuda:LOCAL_RANK; "
                        f"give --device cuda (or auto), and choose GPUs with CUDA_VISIBLE_DEVICES")
    if device.type == "cuda":
        device = resolve_device(f"cuda:{world.local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _joined.append(True)
    return world, device


_joined: list = []              # join_world created the process group (a caller's own group is left alone)


def leave_world() -> None:
    """Leave the process group if join_world created it (nothing to do for one process)."""
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined.clear()


def check_world(batch_size: int, batch_norm: str, world: World, device: torch.device) -> None:
    """UserError when the processes cannot split the global batch evenly, or for SyncBatchNorm across
    processes off CUDA (torch's SyncBatchNorm runs on GPUs only)."""
    if batch_size % world.size:
        raise UserError(f"--batch-size {batch_size} does not split over {world.size} processes: use a "
                        f"multiple of {world.size} (it is the global batch, over all processes)")
    if batch_norm == "sync" and world.size > 1 and device.type != "cuda":
        raise UserError(f"--batch-norm sync needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); "
                        f"on {device.type} use plain or frozen")


def train_mode(model: torch.nn.Module, batch_norm: str) -> None:
    """Put `model` in training mode; batch_norm "frozen" keeps its BatchNorm layers in eval mode
    (normalising with their running statistics, which stay fixed; their scale and shift still learn), so
    every process normalises alike whatever its share of the batch."""
    model.train()
    if batch_norm == "frozen":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def distribute(model: torch.nn.Module, world: World, device: torch.device, batch_norm: str) -> torch.nn.Module:
    """The module the steps run: `model` itself for one process, else DistributedDataParallel around it
    (parameters and buffers broadcast from rank 0). batch_norm "sync" (CUDA) turns its BatchNorm layers into
    SyncBatchNorm first (statistics over the global batch, as one process computes them; the parameters stay the
    same objects, so an optimiser built on `model` keeps working)."""
    if world.size == 1:
        return model
    if batch_norm == "sync":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def mean_over_ranks(values: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """The mean of each scalar tensor over all ranks (every rank must call it); unchanged for one process."""
    if world.size == 1:
        return values
    stacked = torch.stack([v.detach().float() for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, stacked / world.size))
