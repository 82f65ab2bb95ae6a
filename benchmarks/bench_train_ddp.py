"""Print the student's training steps/s with 1 and 2 torchrun processes (DDP) on the same global batch.

Usage: python benchmarks/bench_train_ddp.py [--size 160x120] [--frames 32] [--batch 4] [--epochs 2]
                                            [--device cpu] [--keep DIR]
Runs `torchrun --nproc-per-node N --no-python -- mtdistill train STORE ...` on a synthetic indoor store
(every frame annotated, default augmentation, --batch-norm frozen, no validation) for
  1 process x 2 torch threads, 1 process x 1 thread, 2 processes x 1 thread each
(on a 2-core CPU the first and last use both cores). steps/s is the last epoch's images_per_s (as the loop
writes it to metrics.jsonl: all ranks' images over the epoch's wall time, start-up excluded) / global batch.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MTDISTILL = Path(sys.executable).with_name("mtdistill")
SETUPS = ((1, 2), (1, 1), (2, 1))           # (processes, torch threads per process)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(store: Path, out: Path, nproc: int, threads: int, args) -> dict:
    """One torchrun training run; its last epoch's metrics and the command's wall time."""
    name = f"p{nproc}t{threads}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(free_port()), "--no-python", "--", str(MTDISTILL), "train",
           str(store), "--run", name, "--out", str(out), "--epochs", str(args.epochs), "--batch-size",
           str(args.batch), "--workers", "0", "--val-split", "", "--batch-norm", "frozen", "--device", args.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    last = json.loads((out / name / "metrics.jsonl").read_text().splitlines()[-1])
    return {"processes": nproc, "threads": threads, "steps_per_s": last["images_per_s"] / args.batch,
            "images_per_s": last["images_per_s"], "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="160x120")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep", type=Path, default=None, help="Work in this folder (default: a temporary one).")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    store = work / "s.ice"
    if not store.exists():
        subprocess.run([str(MTDISTILL), "ingest", "synthetic", str(store), "--frames", str(args.frames), "--size",
                        args.size, "--splits", "1,0,0,0", "--segm-fraction", "1", "--workers", "1"], check=True,
                       stdout=subprocess.DEVNULL)
    print(f"load average before: {os.getloadavg()}")
    for nproc, threads in SETUPS:
        r = run(store, work / f"runs-{int(time.time())}", nproc, threads, args)
        print(json.dumps({**r, "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
