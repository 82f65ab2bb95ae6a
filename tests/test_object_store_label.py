"""Labeling an s3:// store (local S3 server, see s3_fixtures) on a dask cluster started as separate
commands (`dask scheduler`, two `dask worker` processes): the workers read and write the store
directly; two jobs with other names at once; a killed job resumes."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from conftest import CLASSES, H, W, ingest, random_frames
from test_label_procs import (
    SEGM,
    both_registered,
    committed_shards,
    shard_commits,
    start_label,
    stop,
)
from test_label_teachers import reference

from stores.repo import FrameStore

pytest_plugins = ("s3_fixtures",)


@pytest.fixture
def s3_store6(bucket) -> FrameStore:
    """24 frames in 6 shards of 4, in object storage."""
    s = FrameStore.create(f"s3://{bucket}/p", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=4)
    ingest(s, random_frames(24, seed=5, segm_every=2))
    return s.reopen()


def check_labeled(store, name) -> None:
    s = FrameStore.open(store.path)
    ref = reference(s, "segm", SEGM, range(24))
    assert s.root[f"pseudo/{name}/done"][:].all() and committed_shards(store, name) == list(range(6))
    np.testing.assert_array_equal(s.root[f"pseudo/{name}/segm"][:], ref["segm"])
    np.testing.assert_array_equal(s.root[f"pseudo/{name}/conf"][:], ref["conf"])
    assert s.tags()[f"label/{name}"]


def test_two_label_jobs_at_once_on_a_separate_cluster(s3_store6, dask_cluster):
    address, slow = dask_cluster
    hold = slow.with_name("hold")
    slow.write_text("0.1")
    hold.touch()                                               # teachers wait until both jobs are running
    procs = []
    try:
        procs += [start_label(s3_store6, name, 0, "--scheduler", address) for name in ("a", "b")]
        deadline = time.time() + 300        # generous: a loaded 2-core machine
        while not both_registered(address):
            assert all(p.poll() is None for p in procs), [p.stdout.read().decode() for p in procs]
            assert time.time() < deadline, "the two jobs did not both reach the workers in time"
            time.sleep(0.2)
        hold.unlink()
        outs = [p.communicate(timeout=180)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
    finally:
        stop(procs)
        hold.unlink(missing_ok=True)
        slow.unlink(missing_ok=True)
    for name in ("a", "b"):
        check_labeled(s3_store6, name)
    a, b = (sorted(e["written_at"] for e in shard_commits(s3_store6, n)) for n in ("a", "b"))
    assert a[0] < b[-1] and b[0] < a[-1], f"the two jobs did not overlap in time: {a} {b}"


def test_killed_label_job_resumes(s3_store6, dask_cluster):
    address, slow = dask_cluster
    slow.write_text("0.4")
    proc = start_label(s3_store6, "k", 0, "--scheduler", address)
    try:
        deadline = time.time() + 300        # generous: a loaded 2-core machine
        while not shard_commits(s3_store6, "k"):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no shard committed in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stop([proc])
    done = FrameStore.open(s3_store6.path).root["pseudo/k/done"][:]
    assert 1 <= done.sum() < 6 and committed_shards(s3_store6, "k") == np.flatnonzero(done).tolist()
    slow.unlink()
    proc = start_label(s3_store6, "k", 0, "--scheduler", address)
    try:
        out = proc.communicate(timeout=180)[0].decode()
    finally:
        stop([proc])
    assert proc.returncode == 0 and f"({6 - int(done.sum())} shards;" in out, out     # only the rest
    check_labeled(s3_store6, "k")                             # every shard committed exactly once
