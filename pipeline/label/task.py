"""The labeling job's task: label ONE shard of frames inside a dask worker (worker side of pipeline/label/job.py).

Flow: the coordinator (job.py) registers `TeacherPlugin` (every worker, and every worker that joins
later, loads the teachers once, cached by weight hash, and warms them up with one batch), then submits
`label_shard(ShardJob)` once per shard -> the worker opens the store at the job's input snapshot, reads
the shard's frames, runs each cached teacher, writes the WHOLE shard of every pseudo array of its
teachers' tasks through its icechunk ForkSession (a task without a teacher keeps its arrays' fill value),
and returns the fork; the coordinator merges forks, sets the shards' done flags and commits.
Workers never create arrays, never set done flags and never commit.

Which frames get a pseudo-label (`frames`): "all", or "missing" = per task only the frames whose real
target is absent (real/has_segm, real/has_depth); every other pixel keeps the fill value "none"
(segm 255, conf 0, depth 0). With flip TTA a depth teacher also yields `depth_conf`: the agreement of
the image's and the mirrored image's depth, exp(-|d - d_flip| / ((d + d_flip) / 2) / DEPTH_CONF_SCALE) x 255.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.label.anchor import FIT_FIELDS, predict_depth
from pipeline.runtime import keep_freed_memory
from stores.schema import HAS_TARGET, PSEUDO_ARRAYS, TOPK_ARRAYS

TASK_ARRAYS = {"segm": ("segm", "conf"), "depth": ("depth",)}    # each task's arrays of schema.PSEUDO_ARRAYS
DEPTH_CONF_SCALE = 0.1          # relative flip disagreement at which depth_conf falls to 1/e
FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class TeacherSpec:
    """How a worker loads one teacher; `version` is checked against the file the worker finds."""
    task: str                 # "segm" | "depth"
    spec: str                 # teacher file (absolute path) or module:function
    version: str              # weight hash recorded by the coordinator
    remap: str | None = None  # remap file (segm only)
    flip: bool = False
    device: str = "cpu"
    batch_size: int = 8
    topk: int = 0             # segm: also each pixel's K most probable classes


@dataclass(frozen=True)
class ShardJob:
    """One task's work: label frames [start, stop) (one whole shard) of the store at `snapshot` with `teachers`."""
    store: str                # store path
    snapshot: str             # input snapshot id: frames and real targets are read here
    name: str                 # pseudo set name
    shard: int
    start: int
    stop: int                 # frames [start, stop): a whole shard (the last one may be shorter)
    frames: str               # "missing" | "all"
    teachers: tuple[TeacherSpec, ...]
    store_classes: tuple[str, ...]
    torch_threads: int | None = None
    depth_conf: bool = False  # write pseudo/<name>/depth_conf (depth teacher with flip)
    depth_fit: bool = False   # relative depth teacher: anchor frames with real depth on their own (anchor.py)


_lock = threading.Lock()        # a worker may run several tasks in threads; load each teacher once
_infer = threading.Lock()       # ...but one teacher batch at a time: the others read and write meanwhile
_teachers: OrderedDict = OrderedDict()   # a long-lived worker serves many jobs: keep the latest few
_stores: OrderedDict = OrderedDict()
CACHE_SIZE = 4


def _cached(cache: OrderedDict, key, make):
    with _lock:
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = make()
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
        return cache[key]


def get_teacher(t: TeacherSpec, store_classes):
    """The worker process's cached Teacher for this spec (loaded on first use)."""
    from teachers.base import load_teacher

    # depth with flip: the task runs both passes itself (for depth_conf), so the teacher runs without flip
    flip = t.flip and t.task == "segm"
    device = worker_device(t.device)
    key = (t.task, t.spec, t.version, t.remap, flip, device, t.batch_size, t.topk)

    def load():
        teacher = load_teacher(t.spec, t.task, remap=t.remap, device=device, flip=flip,
                               store_classes=list(store_classes) if t.task == "segm" else None,
                               batch_size=t.batch_size, topk=t.topk)
        if teacher.version != t.version:
            raise RuntimeError(f"{t.spec}: weights changed since the job started "
                               f"(version {teacher.version[:12]}, expected {t.version[:12]})")
        return teacher

    return _cached(_teachers, key, load)


_pinned: dict = {}              # this worker process's own device ("cuda:N"), set by TeacherPlugin


def pin_device(devices: dict, name) -> str | None:
    """Remember the device `devices` (worker name -> device, from cluster.plan_local) gives this worker;
    returns it (None: no pinning, e.g. on a cluster of your own)."""
    device = devices.get(name, devices.get(str(name))) if devices else None
    if device:
        _pinned["device"] = device
        if device.startswith("cuda"):
            import torch
            torch.cuda.set_device(torch.device(device))
    return device


def worker_device(requested: str) -> str:
    """A CUDA teacher runs on this worker's pinned GPU; anything else as requested."""
    return _pinned.get("device", requested) if requested.startswith("cuda") else requested


def get_store(path: str, snapshot: str):
    """The worker's cached read-only FrameStore at (path, snapshot)."""
    from stores.repo import FrameStore

    return _cached(_stores, (path, snapshot), lambda: FrameStore.open(path, snapshot))


def set_torch_threads(n: int | None) -> None:
    """Set torch's intra-op threads to n (None or 0: leave torch's own setting)."""
    if n:
        import torch
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


class TeacherPlugin(WorkerPlugin):
    """Loads the job's teachers on each worker as it (re)starts and runs one warm-up batch, so the
    first shard does not pay for imports, weights and kernel selection."""

    def __init__(self, teachers: tuple[TeacherSpec, ...], store_classes, frame_size, torch_threads=None,
                 devices: dict | None = None):
        self.teachers, self.store_classes = teachers, tuple(store_classes)
        self.frame_size, self.torch_threads = tuple(frame_size), torch_threads
        self.devices = dict(devices or {})                  # worker name -> "cuda:N" (LocalCluster on GPUs)

    async def setup(self, worker=None):
        """Runs in the worker's task executor (the thread the shards will use), not its event loop."""
        import asyncio

        executor = getattr(worker, "executors", {}).get("default")
        await asyncio.get_running_loop().run_in_executor(executor, self.load, getattr(worker, "name", None))

    def load(self, worker_name=None) -> None:
        """Keep freed memory for reuse (runtime.keep_freed_memory), pin this worker to its device, load every
        teacher (a load failure fails the job) and run one warm-up batch of noise frames on each, of the
        teacher's batch size (the batches of every shard of at least that many frames), so kernel selection
        (oneDNN primitives, cuDNN autotuning) happens here and not inside the first shard. The batch holds
        the worker's teacher lock: on a shared cluster another job's shards may be running the same cached
        teacher."""
        keep_freed_memory(respect_environ=False)   # over the MALLOC_TRIM_THRESHOLD_=65536 dask's nannies set
        set_torch_threads(self.torch_threads)
        pin_device(self.devices, worker_name)
        batch = max(t.batch_size for t in self.teachers)
        noise = np.random.default_rng(0).integers(0, 256, (batch, *self.frame_size, 3), dtype=np.uint8)
        for t in self.teachers:
            teacher = get_teacher(t, self.store_classes)       # a teacher that cannot load fails the job here
            try:
                with _infer:
                    teacher.predict(noise[: t.batch_size])
            except Exception:  # warm-up only: a teacher that fails on frames is reported per shard
                pass


def depth_with_conf(teacher, rgb: np.ndarray, real: np.ndarray | None = None) -> dict:
    """Flip TTA for depth: mean of the image's and the mirrored image's depth (mirrored back) and their
    agreement as uint8 confidence. Each pass is anchored
    to `real` (anchor.predict_depth); "depth_fit" is the unmirrored pass's fits."""
    d, fits = predict_depth(teacher, rgb, real)                                          # (B, H, W)
    d_flip = predict_depth(teacher, rgb[:, :, ::-1], None if real is None else real[:, :, ::-1])[0][:, :, ::-1]
    depth = (d + d_flip) / 2
    rel = np.abs(d - d_flip) / np.maximum(depth, 1e-6)
    conf = np.round(np.exp(-rel / DEPTH_CONF_SCALE) * 255).astype(np.uint8)
    return {"depth": depth.astype(np.float32), "depth_conf": conf, "depth_fit": fits}


def shard_labels(job: ShardJob, rgb: np.ndarray, need: dict, timing: dict, real: np.ndarray | None = None) -> dict:
    """Pseudo arrays of one shard, for the tasks the job has a teacher for: fill values, with teacher
    predictions on the frames in `need[task]` (depth anchored to the shard's real depth `real`, see
    anchor.predict_depth). The arrays of a task without a teacher are left out: they hold their fill value
    from creation on (plan.prepare_arrays), and writing it again would cost the shard's write a third.
    Adds the seconds spent waiting for and inside the teacher to timing["wait_s"] / timing["infer_s"]."""
    n, h, w = rgb.shape[:3]
    out = {key: np.full((n, h, w), PSEUDO_ARRAYS[key][1], PSEUDO_ARRAYS[key][0])
           for t in job.teachers for key in TASK_ARRAYS[t.task]}
    if job.depth_conf:
        out["depth_conf"] = np.zeros((n, h, w), np.uint8)
    if job.depth_fit:
        out["depth_fit"] = np.full((n, len(FIT_FIELDS)), np.nan, np.float32)
    topk = max(t.topk for t in job.teachers)                           # the segm teacher's, if any
    if topk:
        out.update({k: np.full((n, topk, h, w), fill, dtype) for k, (dtype, fill) in TOPK_ARRAYS.items()})
    for t in job.teachers:
        idx = np.flatnonzero(need[t.task])
        if len(idx) == 0:
            continue
        teacher = get_teacher(t, job.store_classes)
        x = rgb[idx]
        t_wait = time.perf_counter()
        with _infer:
            t_start = time.perf_counter()
            if t.task == "segm":
                p = teacher.predict(x)
            elif job.depth_conf:
                p = depth_with_conf(teacher, x, None if real is None else real[idx])
            else:
                p = dict(zip(("depth", "depth_fit"), predict_depth(teacher, x, None if real is None else real[idx])))
        timing["wait_s"] += t_start - t_wait
        timing["infer_s"] += time.perf_counter() - t_start
        if t.task == "segm":
            for key in (*TASK_ARRAYS["segm"], *(TOPK_ARRAYS if t.topk else ())):
                out[key][idx] = p[key]
        else:
            out["depth"][idx] = np.clip(p["depth"], 0, FLOAT16_MAX)
            if job.depth_conf:
                out["depth_conf"][idx] = p["depth_conf"]
            if job.depth_fit:
                out["depth_fit"][idx] = p["depth_fit"]
    return out


def label_shard(job: ShardJob, fork):
    """Label frames [job.start, job.stop) and write whole shards through `fork`; returns (fork, stats)."""
    import zarr

    t0 = time.perf_counter()
    set_torch_threads(job.torch_threads)
    root = get_store(job.store, job.snapshot).root
    need = {}
    for t in job.teachers:
        n = job.stop - job.start
        need[t.task] = (np.ones(n, bool) if job.frames == "all"
                        else ~root[HAS_TARGET[t.task]][job.start:job.stop].astype(bool))
    if any(v.any() for v in need.values()):
        rgb = root["frames/rgb"][job.start:job.stop]                    # (n, H, W, 3) uint8
    else:
        h, w = root.attrs["frame_size"]
        rgb = np.zeros((job.stop - job.start, h, w, 3), np.uint8)      # nothing to predict
    real = root["real/depth"][job.start:job.stop] if job.depth_fit and job.frames == "all" else None
    timing = {"read_s": time.perf_counter() - t0, "wait_s": 0.0, "infer_s": 0.0}
    labels = shard_labels(job, rgb, need, timing, real)
    t_infer = time.perf_counter()
    group = zarr.open_group(fork.store, path=f"pseudo/{job.name}", mode="r+")
    for key, arr in labels.items():
        group[key][job.start:job.stop] = arr                            # one write = the whole shard
    stats = {"shard": job.shard, "frames": job.stop - job.start,
             "labeled": {task: int(v.sum()) for task, v in need.items()},
             **timing, "write_s": time.perf_counter() - t_infer}
    return fork, stats
