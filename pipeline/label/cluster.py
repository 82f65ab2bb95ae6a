"""Where the labeling job's tasks run (pipeline/label/job.py): a LocalCluster of spawned worker processes by
default, or a running dask scheduler (`--scheduler tcp://host:8786`).

GPUs (`plan_local`): a LocalCluster on a CUDA machine starts one worker per visible GPU (or --workers,
spread over them), worker i pinned to its own device `cuda:N` (TeacherPlugin loads its teachers there),
each with two threads, so two shards are in flight per worker: one in the teacher, one being read or
written (label_task runs the teacher one batch at a time). Tasks ask for no dask resource, which
would allow only one task per worker. On an existing cluster (--scheduler) the tasks go to the workers
that declare a GPU (`dask worker ... --resources GPU=1`), each on its own default CUDA device (set
CUDA_VISIBLE_DEVICES per worker there). Torch threads per worker are set so a LocalCluster does not
oversubscribe the machine's cores.

Worker environment: a CPU forward pass frees and allocates the same activations every batch, and glibc's
defaults hand them back to the system and map them again (page faults, zeroed pages), worse in the worker's
task threads, each with an arena of its own: the LocalCluster starts its workers with
runtime.ALLOCATOR_ENV (one arena, big blocks kept for reuse; runtime.keep_freed_memory). Dask's nannies
would set MALLOC_TRIM_THRESHOLD_=65536 instead, which made CPU teachers ~25% slower than in a plain
process (measured). On a cluster of your own export those three variables where the workers start (a nanny
passes its own environment's values on before its config's); TeacherPlugin also sets the two thresholds
with mallopt in each worker (the arena limit cannot follow once threads run). Dask's statistical profiler
samples every worker thread's stack every 10 ms while holding the GIL: a SegFormer teacher ran ~7% slower
with it (BENCHMARKS.md, "Labeling"). The LocalCluster turns it off (nothing here reads it); on your own
workers set DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass

import dask

from pipeline.runtime import ALLOCATOR_ENV, environ, resolve_device
from stores.errors import UserError

# The scheduler always serves HTTP (health, metrics; no dashboard here). On its default port 8787 a second
# cluster on the machine (another label job, a notebook's) printed "Port 8787 is already in use. Perhaps you
# already have a cluster running?" into the job's output: a free local port is picked instead.
HTTP_ADDRESS = "127.0.0.1:0"


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_threads(client) -> int:
    """Total worker threads of the connected dask cluster (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def gpu_workers(client) -> list[str]:
    """Addresses of the workers that declare a GPU resource."""
    workers = client.scheduler_info()["workers"]
    return sorted(a for a, w in workers.items() if w.get("resources", {}).get("GPU", 0) >= 1)


MIN_THREADS_GPU = 2             # shards in flight per GPU worker: one in the teacher, one read/written
# CPU teachers: several single-threaded workers beat one worker whose teacher uses every core. An OpenMP
# region waits for its slowest thread, so each moment the job's own reading, writing and committing takes a
# core stalls all of the teacher's threads (bench_label.py, 2 cores: 1 worker x 2 threads 0.90 of the
# forward alone at 2 threads, 2 workers x 1 thread 1.00). Each worker holds its own copy of the teachers
# (memory: workers x teachers), hence the cap; above 4 cores each of the 4 workers' teachers uses cores // 4
# threads.
CPU_WORKERS_MAX = 4


@dataclass(frozen=True)
class LocalPlan:
    """What a LocalCluster starts: `workers` processes of `threads` threads; worker i runs on devices[i]."""
    workers: int
    threads: int
    devices: tuple[str, ...]


def plan_local(device: str, workers: int, threads: int, gpu_count: int, *, cores: int,
               torch_threads: int = 0) -> LocalPlan:
    """device "cpu" | "cuda" (every visible GPU) | "cuda:N" (that one); workers 0 = automatic: on the CPU
    cores / torch_threads workers (torch_threads 0: one per core), at most CPU_WORKERS_MAX (`cores`: this
    process's); on CUDA one per GPU. GPU workers get at least two threads (two shards in flight each) and are
    pinned round-robin to the GPUs. UserError when CUDA is asked for and `gpu_count` has no such device."""
    if not device.startswith("cuda"):
        n = workers or max(1, min(cores // max(1, torch_threads), CPU_WORKERS_MAX))
        return LocalPlan(n, threads, ("cpu",) * n)
    gpus = list(range(gpu_count)) if device == "cuda" else [int(device.split(":", 1)[1])]
    if not gpus or gpus[-1] >= gpu_count:
        raise UserError(f"--device {device}: this machine has {gpu_count} CUDA device(s)")
    n = workers or len(gpus)
    return LocalPlan(n, max(MIN_THREADS_GPU, threads), tuple(f"cuda:{gpus[i % len(gpus)]}" for i in range(n)))


def task_options(device: str, gpu_addresses: list[str] | None) -> dict:
    """client.submit options: on a cluster of your own, CUDA tasks only on the workers that declare a GPU
    (no resource request: that would allow one task per worker at a time)."""
    if device.startswith("cuda") and gpu_addresses:
        return {"workers": gpu_addresses, "allow_other_workers": False}
    return {}


@contextmanager
def open_client(cfg):
    """Yields (client, device, torch threads per task or None, {worker name: device}, submit options).
    Closes what it started."""
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
            yield client, device, cfg.torch_threads or None, {}, task_options(device, gpus)
        finally:
            client.close()
        return
    device = str(resolve_device(cfg.device))                     # "cpu", "cuda" or "cuda:N"
    plan = plan_local(device, cfg.workers, cfg.threads_per_worker, cuda_count() if device != "cpu" else 0,
                      cores=cpu_count(), torch_threads=cfg.torch_threads)
    spawn_env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in ALLOCATOR_ENV.items()}
    # the nanny prefers this process's own variables to its config: an earlier nanny may have left its own
    with environ(ALLOCATOR_ENV), dask.config.set({**spawn_env, "distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=plan.workers, threads_per_worker=plan.threads, processes=True,
                               dashboard_address=HTTP_ADDRESS, scheduler_kwargs={"dashboard": False},
                               silence_logs=logging.ERROR)
    client = Client(cluster)
    torch_threads = cfg.torch_threads or max(1, cpu_count() // plan.workers)  # one teacher batch at a time per worker
    try:
        yield client, device, torch_threads, dict(enumerate(plan.devices)), {}
    finally:
        client.close()
        cluster.close()


def cuda_count() -> int:
    """Number of CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count()
