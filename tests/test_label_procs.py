"""The labeling job as real processes: resume after SIGKILL of the client, two jobs on one store at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, H, W, ingest, random_frames
from test_label_teachers import TESTS, reference

from pipeline.label.job import LabelConfig, run_label
from stores.repo import FrameStore

pytest_plugins = ("test_label_teachers",)          # shared fixtures: cluster, fail_file, slow_file

SEGM = "test_label_teachers:tiny_segm"
MTDISTILL = str(Path(sys.executable).parent / "mtdistill")


@pytest.fixture
def store6(tmp_path) -> FrameStore:
    """24 frames in 6 shards of 4."""
    s = FrameStore.create(tmp_path / "p.ice", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=4)
    ingest(s, random_frames(24, seed=5, segm_every=2))
    return s.reopen()


def start_label(store, name, slow: float, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),  # the code under test
           "MTD_SLOW": str(slow)}
    cmd = [MTDISTILL, "label", str(store.path), "--teacher", f"segm={SEGM}", "--name", name, "--frames", "all",
           "--commit-every", "1", "--batch-size", "4", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def both_registered(address) -> bool:
    """Whether the scheduler holds the worker plugins of label jobs a and b (registered after each job
    checked its teacher and created its pseudo set; their warm-ups then wait for the hold file)."""
    from distributed import Client

    with Client(address, timeout="10s") as c:
        names = c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    return all(any(n.startswith(f"mtdistill-label-{job}-") for n in names) for job in ("a", "b"))


def stop(procs) -> None:
    """Kill what a failed test left running (each job runs in its own process group)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def shard_commits(store, name):
    return [e for e in FrameStore.open(store.path).log()
            if e["metadata"].get("kind") == "label" and e["metadata"].get("name") == name
            and "shards" in e["metadata"]]


def committed_shards(store, name):
    return sorted(k for e in shard_commits(store, name) for a, b in e["metadata"]["shards"] for k in range(a, b + 1))


def test_resume_after_sigkill_of_the_client(store6, cluster):
    proc = start_label(store6, "k", 0.5, "--workers", "1")
    try:
        deadline = time.time() + 90
        while not shard_commits(store6, "k"):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no shard committed in time"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)                      # the client only; its workers are orphaned
        proc.wait()
    finally:
        time.sleep(0.3)
        try:
            os.killpg(proc.pid, signal.SIGKILL)                # then clean up what it started
        except ProcessLookupError:
            pass
    done_before = int(FrameStore.open(store6.path).root["pseudo/k/done"][:].sum())
    assert 1 <= done_before < 6 and committed_shards(store6, "k") == sorted(
        np.flatnonzero(FrameStore.open(store6.path).root["pseudo/k/done"][:]).tolist())
    cfg = LabelConfig(store=str(store6.path), name="k", teachers=(("segm", SEGM),), frames="all",
                      scheduler=cluster, batch_size=4, commit_every=1)
    r = run_label(cfg)
    assert r.shards_done == 6 - done_before and not r.missing and r.tag == "label/k"
    assert committed_shards(store6, "k") == list(range(6))    # every shard committed exactly once
    run_label(LabelConfig(**{**cfg.__dict__, "name": "clean"}))
    root = FrameStore.open(store6.path).root
    for key in ("segm", "conf", "depth", "done"):
        np.testing.assert_array_equal(root[f"pseudo/k/{key}"][:], root[f"pseudo/clean/{key}"][:])
    np.testing.assert_array_equal(root["pseudo/k/segm"][:], reference(store6, "segm", SEGM, range(24))["segm"])


def test_two_jobs_with_other_names_at_once(store6, cluster, slow_file):
    hold = slow_file.with_name("hold")
    slow_file.write_text("0.2")
    hold.touch()                                               # teachers wait until both jobs are running
    procs = []
    try:
        procs += [start_label(store6, name, 0, "--scheduler", cluster) for name in ("a", "b")]
        deadline = time.time() + 90
        while not both_registered(cluster):           # both jobs' teachers reached the workers (and wait)
            assert all(p.poll() is None for p in procs) and time.time() < deadline
            time.sleep(0.1)
        assert all(name in FrameStore.open(store6.path).pseudo_sets() for name in ("a", "b"))
        hold.unlink()
        outs = [p.communicate(timeout=120)[0].decode() for p in procs]
        assert [p.returncode for p in procs[-2:]] == [0, 0], outs
    finally:
        stop(procs)
        hold.unlink(missing_ok=True)
        slow_file.unlink()
    s = FrameStore.open(store6.path)
    ref = reference(s, "segm", SEGM, range(24))
    for name in ("a", "b"):
        assert s.root[f"pseudo/{name}/done"][:].all() and committed_shards(store6, name) == list(range(6))
        np.testing.assert_array_equal(s.root[f"pseudo/{name}/segm"][:], ref["segm"])
        np.testing.assert_array_equal(s.root[f"pseudo/{name}/conf"][:], ref["conf"])
        assert s.tags()[f"label/{name}"]
    a, b = (sorted(e["written_at"] for e in shard_commits(store6, n)) for n in ("a", "b"))
    assert a[0] < b[-1] and b[0] < a[-1], f"the two jobs did not overlap in time: {a} {b}"


def test_killed_worker_is_replaced_and_the_job_completes(store6, cluster, slow_file):
    from distributed import Client

    slow_file.write_text("0.3")                                # each shard takes a while on the workers
    proc = start_label(store6, "w", 0, "--scheduler", cluster)
    try:
        with Client(cluster) as client:
            deadline = time.time() + 90
            while not any(client.processing().values()):
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.05)
            busy = next(w for w, keys in client.processing().items() if keys)
            os.kill(client.run(os.getpid)[busy], signal.SIGKILL)   # its nanny starts a new worker
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        stop([proc])
        slow_file.unlink()
    assert proc.returncode == 0, out
    s = FrameStore.open(store6.path)
    assert s.root["pseudo/w/done"][:].all() and committed_shards(store6, "w") == list(range(6))
    np.testing.assert_array_equal(s.root["pseudo/w/segm"][:], reference(s, "segm", SEGM, range(24))["segm"])
