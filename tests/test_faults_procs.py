"""Issue 15 item 3: after kill -9 of an ingest or a training run, its helper processes (render pool,
DataLoader workers, the forkserver, the resource tracker) end too. Real processes, real kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from conftest import ingest, random_frames

CLI = [sys.executable, "-c", "from pipeline.cli import cli; cli()"]


def _kill_and_watch(cmd: list, helpers_at_least: int, timeout: float = 90.0) -> tuple[list, list]:
    """Start `cmd`, wait until it has `helpers_at_least` descendant processes, kill -9 it; returns
    (the helpers it had, those still alive 15 s later)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    main = psutil.Process(p.pid)
    deadline = time.time() + timeout
    helpers = []
    while time.time() < deadline and p.poll() is None:
        helpers = main.children(recursive=True)
        if len(helpers) >= helpers_at_least:
            break
        time.sleep(0.2)
    assert len(helpers) >= helpers_at_least, f"only {helpers} started"
    time.sleep(1.0)
    helpers = main.children(recursive=True)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    gone, alive = psutil.wait_procs(helpers, timeout=15)
    for proc in alive:                       # leave nothing behind, whatever the outcome
        proc.kill()
    return helpers, alive


def _names(procs) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append(" ".join(proc.cmdline())[:120])
        except psutil.Error:
            out.append(str(proc.pid))
    return out


def test_render_workers_end_with_a_killed_ingest(tmp_path):
    cmd = [*CLI, "ingest", "synthetic", str(tmp_path / "s.ice"),
           "--frames", "400", "--size", "320x240", "--workers", "2"]
    helpers, alive = _kill_and_watch(cmd, helpers_at_least=2)
    assert not alive, f"still alive after the ingest was killed: {_names(alive)} (had {_names(helpers)})"


def test_loader_workers_forkserver_and_tracker_end_with_a_killed_training(empty_store, tmp_path):
    ingest(empty_store, random_frames(16, seed=1))
    cmd = [*CLI, "train", str(empty_store.path), "--run", "k", "--out",
           str(tmp_path / "runs"), "--steps", "100000", "--batch-size", "2", "--workers", "2",
           "--device", "cpu", "--val-split", ""]
    helpers, alive = _kill_and_watch(cmd, helpers_at_least=3)   # forkserver + 2 workers (+ tracker)
    assert not alive, f"still alive after the training was killed: {_names(alive)} (had {_names(helpers)})"
