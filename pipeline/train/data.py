"""What the training loop reads: a resumable sample order (RunSampler), augmented items and the
DataLoader. Sits between the store (stores/dataset.py, the merge rule) and pipeline/train/loop.py."""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from pipeline.train.augment import AugmentConfig, augment
from stores.dataset import FrameDataset
from stores.lifetime import die_with


class RunSampler(torch.utils.data.Sampler):
    """Batches of (epoch, position, item) for every remaining step of the run, from `start_step` on.
    Each epoch is a permutation drawn from (seed, epoch); incomplete last batches are dropped. `batch` is
    the global batch; with `world_size` processes, rank `rank` gets items [rank*b, (rank+1)*b) of it
    (b = batch / world_size), so the order does not depend on the number of processes."""

    def __init__(self, n: int, batch: int, epochs: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.n, self.batch, self.epochs, self.seed, self.start = n, batch, epochs, seed, start_step
        self.steps_per_epoch = max(1, n // batch)
        share = batch // world_size
        self.share = range(rank * share, (rank + 1) * share)

    def __len__(self):
        return self.epochs * self.steps_per_epoch - self.start

    def __iter__(self):
        for step in range(self.start, self.epochs * self.steps_per_epoch):
            epoch, k = divmod(step, self.steps_per_epoch)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            if self.n < self.batch:                      # tiny sets: repeat to fill one batch
                perm = np.resize(perm, self.batch)
            yield [(epoch, k * self.batch + j, int(perm[k * self.batch + j])) for j in self.share]


class AugmentedItems(torch.utils.data.Dataset):
    """Item (epoch, position, frame index) -> the augmented training sample; the augmentation draws from
    a generator seeded by (seed, epoch, position), so the same step sees the same sample after a resume."""

    def __init__(self, base: FrameDataset, cfg: AugmentConfig, seed: int):
        self.base, self.cfg, self.seed = base, cfg, seed

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        epoch, pos, i = key
        return augment(self.base[i], self.cfg, np.random.default_rng([self.seed, 7, epoch, pos]))


def make_loader(dataset, sampler, workers: int):
    """DataLoader over `sampler`'s batches; worker processes start with forkserver (never fork: zarr and
    icechunk hold threads, STORAGE.md) and end when this process ends, kill -9 included (they are the
    forkserver's children; stores.lifetime.die_with watches this process itself)."""
    kw = {"num_workers": workers}
    if workers:  # zarr and icechunk hold threads: never fork (STORAGE.md)
        kw.update(multiprocessing_context="forkserver", persistent_workers=True, prefetch_factor=4,
                  worker_init_fn=functools.partial(_worker_init, os.getpid()))
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, pin_memory=torch.cuda.is_available(), **kw)


def _worker_init(trainer_pid: int, worker_id: int) -> None:
    """DataLoader worker initializer: end with the training process (not only with the forkserver)."""
    die_with(trainer_pid)
