"""Benchmark: frames per second of the synthetic world (render_frame), per preset and frame size.

Where it sits: measures stores/sources/synthetic/__init__.py, the default data source of the demo and the tests.
Single process, numpy only; frames are independent, so N worker processes scale it ~N times.
Usage: python benchmarks/bench_synthetic.py [--frames 20]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from stores.sources.synthetic import render_frame

CASES = [("indoor", (240, 320)), ("indoor", (480, 640)),
         ("outdoor", (240, 320)), ("outdoor", (480, 640)), ("outdoor", (352, 1216))]   # (H, W)


def bench(preset: str, size, frames: int) -> tuple[float, float]:
    render_frame(preset, 10_000, seed=0, size=size)               # warm caches (noise tiles, imports)
    times = []
    for i in range(frames):
        t = time.perf_counter()
        render_frame(preset, i, seed=0, size=size)
        times.append(time.perf_counter() - t)
    t = np.asarray(times)
    return 1.0 / t.mean(), 1000 * t.std()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    print(f"synthetic world render speed: {args.frames} frames each, 1 process, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    print(f"{'preset':8} {'size':>10} {'frames/s':>9} {'ms/frame':>9} {'std ms':>7}")
    for preset, (h, w) in CASES:
        fps, std = bench(preset, (h, w), args.frames)
        print(f"{preset:8} {f'{w}x{h}':>10} {fps:9.1f} {1000 / fps:9.1f} {std:7.1f}")
    print("defaults: indoor 640x480, outdoor 1216x352")


if __name__ == "__main__":
    main()
