"""Training under torchrun: 2 CPU processes (DDP, gloo) take the steps one process takes with the same
global batch and seed; a run resumes after one rank is killed, and on another number of processes.

Comparable arithmetic: --batch-norm frozen (BatchNorm normalises with its fixed running statistics: with
plain BatchNorm each rank normalises by the statistics of its own share of the batch, and torch's
SyncBatchNorm, which would pool them, runs on CUDA only), no scale augmentation (no padded, ignored
pixels: each rank's loss is a mean over as many pixels as the other's, so the mean of the ranks'
gradients is the one-process gradient) and depth weight 0 (berHu's threshold is 0.2 x the largest error of each rank's share of the batch, not of the
global batch). What remains is float summation order (the gradient all-reduce, the half-batch
convolutions): one step's gradients agree to ~1e-6 relative, and 16 SGD steps from random initialisation
at lr 1e-2 grow that to 1.7e-4 at most in the weights (measured); TOL is 1e-3, while another seed moves
the weights by more than 100 x TOL (checked)."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, H, W, ingest, random_frames, run_cli

from pipeline.checkpoint import load_checkpoint
from pipeline.train import loop
from stores.repo import FrameStore

ROOT = Path(__file__).resolve().parents[1]
MTDISTILL = Path(sys.executable).with_name("mtdistill")
STEPS = 16                      # 4 epochs of 16 frames / global batch 4
ARGS = ("--epochs", "4", "--batch-size", "4", "--workers", "0", "--seed", "3", "--amp", "off", "--device", "cpu",
        "--scale", "1", "1", "--depth-weight", "0", "--batch-norm", "frozen", "--ckpt-every", "2")
TOL = 1e-3

pytestmark = pytest.mark.skipif(not MTDISTILL.exists(), reason=f"no {MTDISTILL} (pip install -e .)")


@pytest.fixture(scope="module")
def ddp_store(tmp_path_factory):
    """16 train frames with full segmentation and depth, 4 val frames; and the reference: its one-process run."""
    root = tmp_path_factory.mktemp("ddp")
    store = FrameStore.create(root / "s.ice", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(store, list(random_frames(16, seed=1)) + list(random_frames(4, seed=2, split="val")))
    run_cli("train", store.path, "--run", "one", "--out", root / "runs", *ARGS)
    return store.path, root / "runs", load_checkpoint(root / "runs" / "one" / "last.pt")


@pytest.fixture
def launched():
    """The torchrun processes a test starts; any still running at its end are killed with their workers."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def torchrun(store, out, run, *extra, nproc=2, launched: list) -> subprocess.Popen:
    """`torchrun --nproc-per-node N --no-python -- mtdistill train STORE ...` (as the README shows it) on a
    free port of 127.0.0.1; output in OUT/RUN.log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(port), "--no-python", "--", str(MTDISTILL), "train", str(store),
           "--run", run, "--out", str(out), *ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(Path(out) / f"{run}.log", "w") as log:
        launched.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True))
    return launched[-1]


def finish(proc: subprocess.Popen) -> int:
    """torchrun's exit status (0: every rank succeeded)."""
    return proc.wait(timeout=600)            # a hang guard: the runs take seconds


def log(out, run) -> str:
    return (Path(out) / f"{run}.log").read_text()


def assert_same_weights(a: dict, b: dict, tol: float = TOL) -> None:
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k].float(), v.float(), rtol=0, atol=tol, msg=k)


def test_two_processes_take_the_one_process_steps(ddp_store, launched):
    store, out, one = ddp_store
    assert finish(torchrun(store, out, "two", launched=launched)) == 0, log(out, "two")
    two = load_checkpoint(out / "two" / "last.pt")
    assert two["step"] == STEPS and two["world_size"] == 2 and one["world_size"] == 1
    assert json.loads((out / "two" / "config.json").read_text())["world_size"] == 2
    assert two["config"]["batch_norm"] == "frozen"
    epochs = [json.loads(x) for x in (out / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]       # rank 0 alone writes (and evaluates)
    assert epochs[-1]["val"]["frames"] == 4
    assert_same_weights(one, two)
    # another seed moves the weights far beyond the tolerance, so the comparison above means something
    run_cli("train", store, "--run", "seed4", "--out", out, *ARGS, "--seed", "4")
    other = load_checkpoint(out / "seed4" / "last.pt")
    with pytest.raises(AssertionError):
        assert_same_weights(one, other, tol=100 * TOL)


def rank_pid(proc: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker process with RANK=rank (Linux /proc)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in children:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no worker with RANK={rank} among {children}")


def test_kill_of_one_rank_then_resume_on_one_process(ddp_store, launched):
    store, out, one = ddp_store
    proc = torchrun(store, out, "killed", launched=launched)
    ckpt = out / "killed" / "last.pt"
    deadline = time.monotonic() + 600
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log(out, "killed")
        time.sleep(0.02)
    os.kill(rank_pid(proc, 1), signal.SIGKILL)
    assert finish(proc) != 0
    saved = load_checkpoint(ckpt)["step"]
    assert 0 < saved < STEPS, log(out, "killed")
    run_cli("train", store, "--run", "killed", "--out", out, *ARGS, "--resume")
    done = load_checkpoint(ckpt)
    assert done["step"] == STEPS and done["world_size"] == 1
    assert_same_weights(one, done)


def test_one_process_run_resumes_on_two(ddp_store, launched, monkeypatch):
    store, out, one = ddp_store
    real = loop.train       # stop the one-process run after step 6, as if killed (stop_after has no CLI option)
    monkeypatch.setattr(loop, "train", lambda cfg, **kw: real(dataclasses.replace(cfg, stop_after=6), **kw))
    run_cli("train", store, "--run", "grow", "--out", out, *ARGS)
    monkeypatch.undo()
    assert load_checkpoint(out / "grow" / "last.pt")["step"] == 6
    assert finish(torchrun(store, out, "grow", "--resume", launched=launched)) == 0, log(out, "grow")
    done = load_checkpoint(out / "grow" / "last.pt")
    assert done["step"] == STEPS and done["world_size"] == 2
    assert_same_weights(one, done)


def test_a_batch_the_processes_cannot_split_is_refused(ddp_store, tmp_path, launched):
    store = ddp_store[0]
    proc = torchrun(store, tmp_path, "odd", "--batch-size", "3", launched=launched)
    assert finish(proc) != 0
    assert "error: --batch-size 3 does not split over 2 processes" in log(tmp_path, "odd")
    assert not (tmp_path / "odd").exists()
