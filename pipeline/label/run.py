"""The labeling job's scheduling loop (coordinator side of pipeline/label/job.py): shards in, commits out.

Flow: a bounded window of `label_shard` tasks in flight (as_completed + add), each given a fork of the
current writable session -> finished forks wait in `ready` -> every `commit_every` shards (and at the
end, and on Ctrl-C): merge the forks into the session, set their done flags in the same session,
commit under the store's lock (rebasing over other jobs' commits), open a fresh session for the next
forks. Forks still in flight from the previous session merge into the new one (icechunk 1.x allows it;
each fork only carries its own whole shards). Nothing is kept per finished shard beyond its fork until
the next commit, so memory stays flat whatever the dataset size. A shard that still fails after
`retries` is recorded in `result.missing`; the rest go on.
"""
from __future__ import annotations

import time
import uuid

import numpy as np
import zarr

from pipeline.label.plan import compact_ranges
from pipeline.label.task import label_shard
from pipeline.runtime import progress_bar
from stores.repo import base_metadata


def error_line(e: BaseException) -> str:
    """"ExceptionType: first line of its message", for a shard's entry in result.missing."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


class Committer:
    """Owns the writable session: hands out forks, merges finished ones, commits every K shards."""

    def __init__(self, store, cfg, provenance: dict, result):
        self.store, self.cfg, self.provenance, self.result = store, cfg, provenance, result
        self.session = store.writable_session(cfg.ref)
        self.ready: list = []                      # (fork, stats) finished since the last commit
        self.t_last = time.perf_counter()

    def fork(self):
        """A fork of the current writable session for one shard task."""
        return self.session.fork()

    def add(self, fork, stats: dict) -> bool:
        """Keep a finished shard's fork; commits (flush) once commit_every are ready. True when it committed."""
        self.ready.append((fork, stats))
        if len(self.ready) >= self.cfg.commit_every:
            self.flush()
            return True
        return False

    def flush(self, note: str = "") -> None:
        """Merge the ready forks, set their shards' done flags, commit with provenance (note appended to the
        message), then open a fresh session. Does nothing when no fork is ready.
        """
        if not self.ready:
            return
        name = self.cfg.name
        shards = np.array(sorted(s["shard"] for _, s in self.ready))
        self.session.merge(*(f for f, _ in self.ready))
        done = zarr.open_array(self.session.store, path=f"pseudo/{name}/done", mode="r+")
        done.set_coordinate_selection(shards, True)               # flags commit with their shards
        stats = [s for _, s in self.ready]
        labeled = {t: sum(s["labeled"].get(t, 0) for s in stats) for t in stats[0]["labeled"]}
        md = base_metadata("label", **self.provenance, shards=compact_ranges(shards),
                           frames_committed=int(sum(s["frames"] for s in stats)), frames_labeled=labeled,
                           seconds=round(time.perf_counter() - self.t_last, 3),
                           task_seconds={k: round(sum(s[f"{k}_s"] for s in stats), 3)
                                         for k in ("read", "wait", "infer", "write")})
        msg = f"label {name}: {len(shards)} shards ({shards[0]}..{shards[-1]}){note}"
        self.result.snapshot = self.store.commit(self.session, msg, md)
        self.result.commits += 1
        self.ready.clear()
        self.session = self.store.writable_session(self.cfg.ref)
        self.t_last = time.perf_counter()


def schedule(client, store, jobs, total: int, result, provenance: dict, *, window: int, cfg,
             submit_options: dict | None = None) -> None:
    """Label every job's shard (`jobs` an iterator, `total` frames); commits as it goes; failures go to
    result.missing. `submit_options`: where tasks may run (pipeline/label/cluster.task_options)."""
    from distributed import as_completed

    queue = iter(jobs)
    by_key: dict = {}
    committer = Committer(store, cfg, provenance, result)
    run_id = uuid.uuid4().hex[:8]

    def submit():
        job = next(queue, None)
        if job is None:
            return None
        fut = client.submit(label_shard, job, committer.fork(), key=f"label-{cfg.name}-{job.shard}-{run_id}",
                            retries=cfg.retries, pure=False, **(submit_options or {}))
        by_key[fut.key] = job
        return fut

    futures = as_completed([f for f in (submit() for _ in range(window)) if f is not None])
    with progress_bar(f"label {cfg.name}", total, unit="frames") as advance:
        try:
            for fut in futures:
                job = by_key.pop(fut.key)
                try:
                    fork, stats = fut.result()
                except Exception as e:  # the task's own error, after its retries; the rest go on
                    result.missing[job.shard] = error_line(e)
                    advance(0, info=f"shard {job.shard} FAILED")
                else:
                    result.shards_done += 1
                    result.frames_labeled += stats["frames"]
                    for task, k in stats["labeled"].items():
                        result.labeled[task] = result.labeled.get(task, 0) + k
                    committed = committer.add(fork, stats)
                    advance(stats["frames"], info=f"{result.commits} commits" if committed else "")
                del fut
                nxt = submit()
                if nxt is not None:
                    futures.add(nxt)
            committer.flush()
        except KeyboardInterrupt:
            client.cancel(list(futures.futures))
            committer.flush(note=" (interrupted)")
            raise
