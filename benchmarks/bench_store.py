"""Store benchmark: ingest frames/s at 640x480, random-access training reads, bytes on disk per frame.

Frames come from the synthetic world, pre-rendered so rendering is not timed. The read rate is compared
in the same run with the student's training step rate at the same size (the loader must not be the
bottleneck): see benchmarks/bench_train.py for the step rate.

    .venv/bin/python benchmarks/bench_store.py [--frames 128] [--size 640x480]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from stores.dataset import FrameDataset
from stores.merge import MergePolicy
from stores.repo import FrameStore
from stores.sources.synthetic import SyntheticConfig, class_list_for, iter_frames


def dir_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    cfg = SyntheticConfig(frames=args.frames, size=(h, w), segm_fraction=1.0, depth_fraction=1.0,
                          splits=(1, 0, 0, 0))
    t = time.perf_counter()
    frames = list(iter_frames(cfg, workers=2))
    print(f"rendered {len(frames)} frames {w}x{h} in {time.perf_counter() - t:.1f} s (not part of ingest)")

    with tempfile.TemporaryDirectory() as d:
        store = FrameStore.create(f"{d}/s.ice", name="bench", classes=class_list_for("indoor"), frame_size=(h, w))
        t = time.perf_counter()
        with store.append("bench ingest", {"kind": "ingest"}) as wr:
            for f in frames:
                wr.add(f)
        dt = time.perf_counter() - t
        print(f"ingest: {len(frames) / dt:.1f} frames/s ({dt:.2f} s for {len(frames)} frames, one commit)")
        store = store.reopen()
        raw = {"rgb": h * w * 3, "segm": h * w, "depth": h * w * 4}
        for name, path in (("rgb", "frames/rgb"), ("segm", "real/segm"), ("depth", "real/depth")):
            b = store.root[path].nbytes_stored()
            print(f"bytes/frame {name}: {b / len(frames) / 1024:.1f} KiB (raw {raw[name] / 1024:.0f} KiB, "
                      f"{raw[name] * len(frames) / b:.1f}x)")
        print(f"store on disk: {dir_bytes(f'{d}/s.ice') / len(frames) / 1024:.1f} KiB/frame in total")

        ds = FrameDataset(store.path, store.snapshot_id, np.arange(len(frames)), MergePolicy())
        order = np.random.default_rng(0).permutation(len(frames))
        ds[0]
        t = time.perf_counter()
        for i in order:
            ds[int(i)]
        dt = time.perf_counter() - t
        print(f"random-access Dataset reads (rgb + segm + depth, merged): {len(order) / dt:.1f} frames/s "
              f"in one process ({1000 * dt / len(order):.1f} ms/frame)")


if __name__ == "__main__":
    main()
