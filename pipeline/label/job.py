"""The batch labeling job (`mtdistill label`): teachers -> pseudo/<name>/ in the store, on dask.distributed.

Flow: open store + teachers (validate, weight hashes) -> plan.prepare_arrays (one commit creating
or growing pseudo/<name>/) -> one task per pending shard (task.label_shard), a bounded window in
flight, each with an icechunk ForkSession of the current writable session -> every `commit_every`
finished shards: merge their forks, set their done flags, commit with provenance, open a new session ->
tag `label/<name>` when every shard is done.

Resumable: the done flags are committed with the shards they describe, so a re-run after any crash
(worker or client killed) labels only the shards whose flag is unset; a finished run re-run commits
nothing. Only this coordinating process creates/resizes arrays, sets done flags and commits.
"""
from __future__ import annotations

import gc
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.label.cluster import cpu_count, open_client, worker_threads  # noqa: F401 - cpu_count for callers
from pipeline.label.plan import (check_existing, group_attrs, identity, open_teachers, parse_name,
                                 pending_shards, prepare_arrays, run_lock, shard_range)
from pipeline.label.run import schedule
from pipeline.label.task import ShardJob, TeacherPlugin, TeacherSpec
from stores.errors import UserError
from stores.repo import FrameStore, base_metadata
from teachers.hf import absolute_spec, is_hf_spec

FRAMES = ("missing", "all")


@dataclass(frozen=True)
class LabelConfig:
    """Settings of `mtdistill label`, saved in every label commit; checked by `check_config`."""
    store: str
    name: str
    teachers: tuple[tuple[str, str], ...]      # (task, teacher file or module:function)
    remap: str | None = None                   # ontology remap for the segm teacher
    flip: bool = False                         # horizontal-flip TTA (and depth_conf for depth)
    topk: int = 0                              # also store each pixel's K most probable classes (soft targets)
    frames: str = "missing"                    # "missing": frames without that real target; "all"
    workers: int = 0                           # LocalCluster worker processes; 0 = cluster.plan_local's choice
    threads_per_worker: int = 2                # shards in progress per worker (one in the teacher, one reading/writing)
    torch_threads: int = 0                     # per worker; 0 = cores / workers locally, torch's own remotely
    scheduler: str | None = None               # address of a running scheduler instead of a LocalCluster
    batch_size: int = 8
    commit_every: int = 8                      # shards per commit
    ref: str = "main"                          # branch to label and commit on
    device: str = "auto"                       # auto | cpu | cuda
    retries: int = 2                           # extra attempts of a failing shard
    in_flight: int = 0                         # tasks in flight; 0 = 2 x worker threads
    overwrite: bool = False                    # relabel a set made by other teachers / settings

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields (teachers as lists)."""
        return {**asdict(self), "teachers": [list(t) for t in self.teachers]}


@dataclass
class LabelResult:
    """What a label run did: snapshots, shard and frame counts, timings (s), commits, the label/<name> tag,
    and shards still missing (shard -> error).
    """
    name: str
    snapshot: str                              # store head after the job
    input_snapshot: str
    shards_total: int
    shards_done: int = 0                       # by this run
    frames_labeled: int = 0                    # frames of those shards (read, labeled where chosen, written)
    labeled: dict = field(default_factory=dict)   # task -> frames given a pseudo-label by this run
    seconds: float = 0.0                       # labeling time, from the first task on
    startup_s: float = 0.0                     # starting (or joining) the cluster
    commits: int = 0
    tag: str | None = None
    nothing_to_do: bool = False
    missing: dict = field(default_factory=dict)   # shard -> error of shards still not done

    @property
    def frames_per_s(self) -> float:
        """Labeling throughput, frames per second of labeling time (0 when nothing ran)."""
        return self.frames_labeled / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields plus frames_per_s; missing shard keys as strings."""
        return {**asdict(self), "frames_per_s": round(self.frames_per_s, 2),
                "missing": {str(k): v for k, v in self.missing.items()}}


def parse_teachers(items) -> tuple[tuple[str, str], ...]:
    """['segm=PATH', 'depth=PATH'] -> (('depth', PATH), ('segm', PATH)); names the bad item."""
    out = {}
    for item in items:
        task, sep, spec = item.partition("=")
        if not sep or task not in ("segm", "depth") or not spec:
            raise UserError(f"--teacher {item!r}: expected segm=PATH or depth=PATH")
        if task in out:
            raise UserError(f"--teacher {task}= given twice")
        if is_hf_spec(spec):
            out[task] = absolute_spec(spec)
        else:
            out[task] = spec if ":" in spec and not Path(spec).exists() else str(Path(spec).resolve())
    if not out:
        raise UserError("give at least one --teacher segm=PATH or depth=PATH")
    return tuple(sorted(out.items()))


def check_config(cfg: LabelConfig) -> None:
    """UserError naming the option for a bad pseudo set name, --frames, --remap without a segm teacher, --device,
    or a count below its minimum.
    """
    parse_name(cfg.name)
    if cfg.frames not in FRAMES:
        raise UserError(f"--frames {cfg.frames!r}: choose one of {list(FRAMES)}")
    if cfg.remap and "segm" not in dict(cfg.teachers):
        raise UserError("--remap applies to a segm teacher; none given")
    if cfg.topk and "segm" not in dict(cfg.teachers):
        raise UserError("--topk applies to a segm teacher; none given")
    if cfg.device not in ("auto", "cpu") and not cfg.device.startswith("cuda"):
        raise UserError(f"--device {cfg.device!r}: choose auto, cpu or cuda[:N]")
    if cfg.torch_threads < 0:
        raise UserError(f"--torch-threads must be >= 0, got {cfg.torch_threads}")
    if cfg.workers < 0:
        raise UserError(f"--workers must be >= 1, got {cfg.workers}")
    for key in ("threads_per_worker", "batch_size", "commit_every"):
        if getattr(cfg, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(cfg, key)}")


def run_label(cfg: LabelConfig) -> LabelResult:
    """Run (or continue) labeling job `cfg.name`; see the module docstring."""
    check_config(cfg)
    store = FrameStore.open(cfg.store, cfg.ref)
    if cfg.ref not in store.branches():
        raise UserError(f"--ref {cfg.ref!r}: labeling commits to a branch; choose one of {list(store.branches())}")
    if store.num_frames == 0:
        raise UserError(f"{cfg.store}: the store has no frames")
    with run_lock(store.path, cfg.name):
        store = store.reopen()                       # the head now that we hold the name
        teachers = open_teachers(store, cfg.teachers, remap=cfg.remap, flip=cfg.flip, batch_size=cfg.batch_size,
                                 topk=cfg.topk)
        ident = identity(teachers, cfg.frames, cfg.topk)
        depth_conf = cfg.flip and "depth" in teachers
        attrs = group_attrs(store, teachers, ident, depth_conf, store.snapshot_id)
        provenance = {"name": cfg.name, "teachers": attrs["teachers"], "frames": cfg.frames,
                      "remap": cfg.remap, "flip": cfg.flip, "input_snapshot": store.snapshot_id,
                      "config": cfg.to_dict()}
        keep = check_existing(store, cfg.name, ident, cfg.overwrite)
        store, created = prepare_arrays(store, cfg.name, attrs, keep, base_metadata("label", **provenance))
        specs = tuple(TeacherSpec(task, teachers[task].spec, teachers[task].version,
                                  cfg.remap if task == "segm" else None, cfg.flip, "cpu", cfg.batch_size,
                                  cfg.topk if task == "segm" else 0)
                      for task, _ in cfg.teachers)
        del teachers
        gc.collect()
        pending = pending_shards(store, cfg.name)
        result = LabelResult(cfg.name, store.snapshot_id, store.snapshot_id,
                             store.root[f"pseudo/{cfg.name}/done"].shape[0], commits=int(created))
        if len(pending) == 0:
            result.nothing_to_do = True
            result.tag = tag_finished(store, cfg.name, new_work=False)
            return result
        depth = tuple(key in store.root[f"pseudo/{cfg.name}"] for key in ("depth_conf", "depth_fit"))
        run_shards(cfg, store, specs, pending, depth, provenance, result)
        store = store.reopen()
        result.snapshot = store.snapshot_id
        result.missing.update({int(k): "not done" for k in pending_shards(store, cfg.name)
                               if int(k) not in result.missing})
        if not result.missing:
            result.tag = tag_finished(store, cfg.name)
        return result


def run_shards(cfg: LabelConfig, store, specs, pending, depth: tuple[bool, bool], provenance: dict,
               result: LabelResult) -> None:
    """Label the `pending` shards on a dask client (cfg.scheduler or a LocalCluster): register the teachers
    as a worker plugin, schedule one task per shard (made lazily), commit as they finish; fills
    result.startup_s (cluster up, teachers warm), seconds, commits and missing. `depth`: whether the tasks
    write (depth_conf, depth_fit)."""
    t0 = time.perf_counter()
    with open_client(cfg) as (client, device, torch_threads, devices, submit_options):
        specs = tuple(TeacherSpec(**{**asdict(s), "device": device}) for s in specs)
        n, size = store.num_frames, store.shard_frames
        path = str(store.path) if store.remote else str(Path(store.path).resolve())   # as workers open it
        classes = tuple(c["name"] for c in store.classes)
        plugin = f"mtdistill-label-{cfg.name}-{os.getpid()}-{time.time_ns()}"
        client.register_plugin(TeacherPlugin(specs, classes, store.frame_size, torch_threads, devices),
                               name=plugin)
        result.startup_s = time.perf_counter() - t0          # cluster up, teachers loaded and warm
        jobs = (ShardJob(path, store.snapshot_id, cfg.name, int(k), *shard_range(int(k), n, size), cfg.frames,
                         specs, classes, torch_threads, *depth) for k in pending)       # made lazily
        frames = int(np.minimum(n, (pending + 1) * size).sum() - (pending * size).sum())
        window = cfg.in_flight or 2 * worker_threads(client)
        try:
            schedule(client, store, jobs, frames, result, provenance, window=window, cfg=cfg,
                     submit_options=submit_options)
        finally:
            result.seconds = time.perf_counter() - t0 - result.startup_s
            client.unregister_worker_plugin(plugin)    # a shared cluster's new workers skip this job's teachers


def tag_finished(store, name: str, new_work: bool = True) -> str:
    """Tag the head where set `name` became complete: `label/<name>`, then `label/<name>/2`, ... when it
    was grown or relabeled later. A re-run with nothing to do only adds a tag if none exists yet (the
    run that finished was killed before tagging)."""
    tags = store.tags()
    ours = {1 if t == f"label/{name}" else int(t.rsplit("/", 1)[1]): t for t in tags
            if t == f"label/{name}" or re.fullmatch(rf"label/{re.escape(name)}/\d+", t)}
    for t in ours.values():
        if tags[t] == store.snapshot_id:
            return t
    if ours and not new_work:
        return ours[max(ours)]
    k = max(ours, default=0) + 1
    tag = f"label/{name}" + (f"/{k}" if k > 1 else "")
    store.tag(tag, store.snapshot_id)
    return tag


def format_result(r: LabelResult) -> str:
    """Human summary of a LabelResult: frames, shards, frames/s, commits, snapshot and tag, plus the first missing
    shards and their errors.
    """
    if r.nothing_to_do:
        return (f"pseudo set {r.name!r}: all {r.shards_total} shards already labeled; nothing to do "
                f"(no commit). snapshot {r.snapshot}, tag {r.tag}")
    got = ", ".join(f"{task} on {k}" for task, k in sorted(r.labeled.items()))
    lines = [f"labeled {r.frames_labeled} frames ({r.shards_done} shards; pseudo-labels: {got or 'none'}) into "
             f"pseudo/{r.name} in {r.seconds:.1f} s: {r.frames_per_s:.1f} frames/s (+{r.startup_s:.1f} s cluster start), "
             f"{r.commits} commits; snapshot {r.snapshot}"
             + (f", tag {r.tag}" if r.tag else "")]
    if r.missing:
        lines.append(f"MISSING {len(r.missing)} of {r.shards_total} shards (re-run the same command to "
                     f"complete them): " + ", ".join(str(k) for k in sorted(r.missing)[:20])
                     + (" ..." if len(r.missing) > 20 else ""))
        for k, err in sorted(r.missing.items())[:5]:
            lines.append(f"  shard {k}: {err}")
    return "\n".join(lines)
