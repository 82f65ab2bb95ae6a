"""Benchmark: a store in object storage (a local S3-compatible server, moto) against the local filesystem,
in the same run.

Prints
1. ingest frames/s (validate, content key, write shards, one commit) and random-access training reads
   frames/s (FrameDataset: rgb + real segm + depth, merged; one process), local folder vs s3://;
2. labeling frames/s of an s3:// store on a dask cluster started as separate commands (`dask scheduler`,
   `dask worker --no-nanny` processes with 2 threads and 1 torch thread each, the allocator settings
   (runtime.ALLOCATOR_ENV) and the profiler off as the README starts them), with 1 and with 2 workers (cluster
   start and teacher warm-up excluded); with --label-local also the same store in a local folder.
The load average before and after is printed: the machine is shared. Needs `pip install "moto[server]"`.
Usage: python benchmarks/bench_object_store.py [--frames 96 --size 320x240 --label-frames 128
       --label-size 128x128 --width 0.25 --label-local --rounds 2]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.runtime import ALLOCATOR_ENV
from stores.classes import NYUD40
from stores.dataset import FrameDataset
from stores.merge import MergePolicy
from stores.repo import FrameStore
from stores.sources.synthetic import SyntheticConfig, class_list_for, iter_frames

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, port=None, env=None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while port:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert p.poll() is None, f"{cmd[0]} exited"
            time.sleep(0.1)
    return p


def stop(procs) -> None:
    """Stop the processes, last started first (workers before their scheduler); SIGKILL after 10 s."""
    for p in reversed(procs):
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def ingest_and_read(url, frames, size) -> tuple[float, float]:
    """(ingest frames/s, random-read frames/s) of `frames` into a new store at `url`."""
    store = FrameStore.create(url, name="bench", classes=class_list_for("indoor"), frame_size=size)
    t = time.perf_counter()
    with store.append("bench ingest", {"kind": "ingest"}) as wr:
        for f in frames:
            wr.add(f)
    ingest = len(frames) / (time.perf_counter() - t)
    store = store.reopen()
    ds = FrameDataset(store.path, store.snapshot_id, np.arange(len(frames)), MergePolicy())
    ds[0]
    order = np.random.default_rng(0).permutation(len(frames))
    t = time.perf_counter()
    for i in order:
        ds[int(i)]
    return ingest, len(frames) / (time.perf_counter() - t)


def label_rate(url, teacher, address, name) -> float:
    """Labeling frames/s of the whole store at `url` on the cluster at `address`."""
    from pipeline.label.job import LabelConfig, run_label

    r = run_label(LabelConfig(store=str(url), name=name, teachers=(("segm", teacher),), frames="all",
                              scheduler=address, torch_threads=1, batch_size=8, commit_every=4))
    assert not r.missing, r.missing
    return r.frames_per_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--label-frames", type=int, default=128)
    ap.add_argument("--label-size", default="128x128")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--label-local", action="store_true", help="also label a local-folder store")
    ap.add_argument("--rounds", type=int, default=2, help="labeling jobs per worker count; the best is printed")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    w, h = (int(v) for v in args.size.split("x"))
    frames = list(iter_frames(SyntheticConfig(frames=args.frames, size=(h, w), segm_fraction=1.0,
                                              depth_fraction=1.0, splits=(1, 0, 0, 0)), workers=2))
    lw, lh = (int(v) for v in args.label_size.split("x"))
    label_frames = list(iter_frames(SyntheticConfig(frames=args.label_frames, size=(lh, lw)), workers=2))
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    procs = [start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port)]
    try:
        import boto3
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as d:
            for where, url in (("local folder", f"{d}/s.ice"), ("s3:// (moto)", "s3://bench/s")):
                ing, read = ingest_and_read(url, frames, (h, w))
                print(f"{where:>14}: ingest {ing:.1f} frames/s, random reads {read:.1f} frames/s "
                      f"({len(frames)} frames {w}x{h})")
            procs += label_cluster(args, d, label_frames, (lh, lw), env)
    finally:
        stop(procs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def label_cluster(args, d, frames, size, env) -> list:
    """Labeling rows: a scheduler and 1, then 2 workers as separate processes; returns them to stop."""
    from distributed import Client

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_label import make_teacher

    teacher = make_teacher(Path(d) / "teacher.pt", args.width)
    stores = {}
    places = [("local folder", f"{d}/l.ice")] if args.label_local else []
    for where, url in (*places, ("s3:// (moto)", "s3://bench/l")):
        s = FrameStore.create(url, name="bench", classes=NYUD40, frame_size=size, shard_frames=32)
        with s.append("bench frames", {"kind": "ingest"}) as wr:
            for f in frames:
                wr.add(f)
        stores[where] = url
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                   port, env)]
    worker = [str(BIN / "dask"), "worker", address, "--nthreads", "2", "--no-dashboard", "--no-nanny"]
    env = {**env, **ALLOCATOR_ENV, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}   # as the README starts them
    for n in (1, 2):
        procs.append(start(worker, env=env))
        with Client(address) as c:
            c.wait_for_workers(n, timeout=120)
        for where, url in stores.items():
            rates = [label_rate(url, teacher, address, f"w{n}-{k}") for k in range(args.rounds)]
            print(f"{where:>14}: labeling {max(rates):.1f} frames/s with {n} worker(s) ({len(frames)} frames "
                  f"{size[1]}x{size[0]}, ResNet-38 width {args.width}; rounds "
                  f"{', '.join(f'{r:.1f}' for r in rates)})")
    return procs


if __name__ == "__main__":
    main()
