"""Benchmark: glibc's default allocator settings vs runtime.ALLOCATOR_ENV, for a CPU teacher and the student.

Where it sits: pipeline/runtime.keep_freed_memory (what every `mtdistill` command sets for its own process)
and ALLOCATOR_ENV (what `label`'s LocalCluster gives its workers). Each measurement runs in a fresh process,
started with the default environment or with ALLOCATOR_ENV, alternating, so both see the same machine:
1. a SegFormer teacher (MiT-b0 widths, random weights, bench_label_hf.make_segformer) labeling frames with
   Teacher.predict at 1 torch thread, batch 8, at 128x128 and 320x240, in a task thread as in a worker;
2. the student's training steps (forward, losses, backward, SGD; bench_train.compute_rate) at all cores, at
   the demo's shape (256x80, batch 8, bf16 autocast + channels_last) and at 320x240 (batch 6, fp32).
Prints each round and the median of each round's ratio (ALLOCATOR_ENV / default).
Usage: python benchmarks/bench_allocator.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench_label import in_fresh_process

from pipeline.runtime import ALLOCATOR_ENV

DEFAULT = {k: None for k in ALLOCATOR_ENV}          # glibc's defaults: none of the variables set


def teacher_rate(folder: str, size) -> float:
    """Frames/s of Teacher.predict on 64 noise frames of `size` (H, W), shard by shard in a task thread."""
    import torch

    from stores.classes import NYUD40
    from teachers.base import load_teacher

    torch.set_num_threads(1)
    rgb = np.random.default_rng(0).integers(0, 256, (64, *size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(1) as pool:
        teacher = pool.submit(load_teacher, f"hf:{folder}", "segm", batch_size=8, store_classes=NYUD40).result()
        pool.submit(teacher.predict, rgb[:8]).result()                        # warm-up
        start = time.perf_counter()
        for i in range(0, len(rgb), 32):
            pool.submit(teacher.predict, rgb[i:i + 32]).result()
    return len(rgb) / (time.perf_counter() - start)


def train_rate(crop, batch: int, bf16: bool) -> float:
    """Images/s of the student's training steps at all cores (bench_train.compute_rate)."""
    import torch
    from bench_train import compute_rate

    return compute_rate(crop, batch, 6, torch.device("cpu"), bf16=bf16)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from bench_label_hf import make_segformer

    print(f"allocator benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{' '.join(platform.libc_ver())}; ALLOCATOR_ENV {ALLOCATOR_ENV}; {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for h, w in ((128, 128), (240, 320)):
            folder = Path(tmp) / f"segformer{h}x{w}"
            make_segformer(folder, (h, w))
            cases.append((f"SegFormer teacher predict, {w}x{h}, 1 thread, frames/s", teacher_rate, str(folder), (h, w)))
        cases += [("student training steps, 256x80 batch 8 bf16, images/s", train_rate, (80, 256), 8, True),
                  ("student training steps, 320x240 batch 6 fp32, images/s", train_rate, (240, 320), 6, False)]
        for what, fn, *fargs in cases:
            pairs = []
            for _ in range(args.rounds):
                pairs.append((in_fresh_process(DEFAULT, fn, *fargs), in_fresh_process(ALLOCATOR_ENV, fn, *fargs)))
            ratio = statistics.median(b / a for a, b in pairs)
            print(f"{what}: default {statistics.median(a for a, _ in pairs):.1f}, ALLOCATOR_ENV "
                  f"{statistics.median(b for _, b in pairs):.1f} -> x{ratio:.2f} (median of rounds; rounds: "
                  + "; ".join(f"{a:.1f} vs {b:.1f}" for a, b in pairs) + ")", flush=True)


if __name__ == "__main__":
    main()
