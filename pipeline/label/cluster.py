"""Where the labeling job's tasks run (pipeline/label/job.py): a LocalCluster of spawned worker processes by
default, or a running dask scheduler (`--scheduler tcp://host:8786`).

CUDA teachers are requested as worker resources: a LocalCluster on a CUDA machine declares {"GPU": 1}
per worker, tasks ask for {"GPU": 1}; on an existing cluster the workers must declare GPU resources
themselves (`dask worker ... --resources GPU=1`). A worker runs several shards at once but its
teacher one batch at a time (label_task), so reading and writing overlap inference; torch threads per
worker are set so a LocalCluster does not oversubscribe the machine's cores.

Worker environment: dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in workers, which turns off glibc's
dynamic mmap threshold, so every large tensor is mmapped and unmapped again: CPU teachers ran ~25%
slower in a worker than in a plain process (measured). The LocalCluster starts its workers without it;
for a cluster of your own, unset `distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_`.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import dask

from pipeline.runtime import resolve_device
from stores.errors import UserError

TRIM = "MALLOC_TRIM_THRESHOLD_"


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_threads(client) -> int:
    """Total worker threads of the connected dask cluster (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def gpu_workers(client) -> int:
    """Number of the cluster's workers declaring a GPU resource >= 1."""
    workers = client.scheduler_info()["workers"].values()
    return sum(1 for w in workers if w.get("resources", {}).get("GPU", 0) >= 1)


@contextmanager
def open_client(cfg):
    """Yields (client, device, torch threads per task or None). Closes what it started."""
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise UserError(f"--scheduler {cfg.scheduler}: cannot connect ({e})") from None
        try:
            gpus = gpu_workers(client)
            device = cfg.device if cfg.device != "auto" else ("cuda" if gpus else "cpu")
            if device.startswith("cuda") and not gpus:
                raise UserError(f"--scheduler {cfg.scheduler}: no worker declares a GPU resource "
                                f"(start workers with --resources GPU=1) for --device {device}")
            if not client.nthreads():
                raise UserError(f"--scheduler {cfg.scheduler}: the cluster has no workers")
            yield client, device, cfg.torch_threads or None
        finally:
            client.close()
        return
    device = resolve_device(cfg.device).type
    kw = {"resources": {"GPU": 1}} if device.startswith("cuda") else {}
    os.environ.pop(TRIM, None)      # a nanny started earlier in this process exported it to its children
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM}": None}):
        cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR, **kw)
    client = Client(cluster)
    torch_threads = cfg.torch_threads or max(1, cpu_count() // cfg.workers)   # one teacher batch at a time per worker
    try:
        yield client, device, torch_threads
    finally:
        client.close()
        cluster.close()


def task_resources(device: str) -> dict | None:
    """Dask resources a shard task asks for: {"GPU": 1} on a CUDA device, else None."""
    return {"GPU": 1} if device.startswith("cuda") else None
