"""Print the student's latency / throughput table at the paper's sizes (random weights, CPU by default).

Usage: python benchmarks/bench_student.py [--device cpu|cuda] [--threads 2] [--iters 10]
Sizes: NYUDv2 640x480 with 40 classes, KITTI 1226x370 with 6 classes; batch 1.
"""
from __future__ import annotations

import argparse

from pipeline.deploy.bench import bench_student, format_table

SETTINGS = (("NYUDv2", 40, (480, 640)), ("KITTI-6", 6, (370, 1226)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    for name, classes, size in SETTINGS:
        result = bench_student(classes, size=size, batch=1, device=args.device, threads=args.threads,
                               iters=args.iters)
        print(f"== {name}")
        print(format_table(result))
        print()


if __name__ == "__main__":
    main()
