"""Review page benchmark: seconds and bytes to build `mtdistill review`'s page for N frames.

A store of N blocky random frames (40 classes, real segmentation on every 4th frame, real depth on
every 3rd) and a pseudo set over all of them is built first (not timed); then write_review runs once
and the HTML bytes (total and per frame), the thumbnail bytes and files are printed. The page's size
must grow linearly in N: a few KB of HTML per frame plus the thumbnails.

    nice -n 19 .venv/bin/python benchmarks/bench_review.py --frames 1000 --size 64x48 [--browser]

--browser also opens the page in headless Chromium (/usr/bin/chromium through playwright) and prints the
time from navigation to the first frames on screen.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import zarr

from pipeline.review.page import HEADLESS_CHROMIUM, write_review
from stores.classes import NYUD40
from stores.repo import FrameStore
from stores.schema import create_pseudo
from stores.sources.base import Frame


def blocky(rng, n, h, w, hi, extra=()):
    """(n, h, w, *extra) values in [0, hi) that are constant over 8x8 blocks (image-like, compressible)."""
    small = rng.integers(0, hi, (n, -(-h // 8), -(-w // 8), *extra))
    return small.repeat(8, 1).repeat(8, 2)[:, :h, :w]


def build(path, n: int, h: int, w: int) -> FrameStore:
    """The store of the module docstring, with pseudo set "p" labeled on every frame."""
    rng = np.random.default_rng(0)
    store = FrameStore.create(path, name="bench", classes=NYUD40, frame_size=(h, w))
    step = 1024
    with store.append("bench ingest", {"kind": "ingest"}) as wr:
        for a in range(0, n, step):
            k = min(step, n - a)
            rgb = (blocky(rng, k, h, w, 256, (3,)) + rng.integers(0, 16, (k, h, w, 3))).clip(0, 255).astype(np.uint8)
            segm = blocky(rng, k, h, w, 40).astype(np.uint8)
            depth = blocky(rng, k, h, w, 10).astype(np.float32) + 0.5
            for j in range(k):
                i = a + j
                wr.add(Frame(rgb=rgb[j], split="train", name=f"f{i:06d}", segm=segm[j] if i % 4 == 0 else None,
                             depth=depth[j] if i % 3 == 0 else None))
    store = store.reopen()
    session = store.writable_session()
    g = create_pseudo(zarr.open_group(session.store, mode="a"), "p", n, {"tasks": ["segm", "depth"], "teachers": {}})
    s = store.shard_frames * 32
    for a in range(0, n, s):
        k = min(s, n - a)
        g["segm"][a:a + k] = blocky(rng, k, h, w, 40).astype(np.uint8)
        g["conf"][a:a + k] = blocky(rng, k, h, w, 256).astype(np.uint8)
        g["depth"][a:a + k] = (blocky(rng, k, h, w, 10) + 0.5).astype(np.float16)
    g["done"][:] = True
    store.commit(session, "bench pseudo", {"kind": "test"})
    return store.reopen()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", default="64x48", help="WIDTHxHEIGHT of the frames")
    ap.add_argument("--browser", action="store_true", help="also time opening the page in headless Chromium")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        store = build(f"{d}/s.ice", args.frames, h, w)
        print(f"built a store of {args.frames} frames {w}x{h} with a pseudo set in "
              f"{time.perf_counter() - t:.1f} s (not timed below)")
        t = time.perf_counter()
        page = write_review(store, "p", f"{d}/review")
        dt = time.perf_counter() - t
        thumbs = [os.path.join(page.parent, "thumbs", f) for f in os.listdir(page.parent / "thumbs")]
        tb = sum(os.path.getsize(p) for p in thumbs)
        hb = page.stat().st_size
        print(f"review page: {dt:.1f} s ({args.frames / dt:.0f} frames/s); HTML {hb / 1e6:.2f} MB = "
              f"{hb / args.frames:.0f} B/frame; thumbnails {len(thumbs)} files, {tb / 1e6:.1f} MB = "
              f"{tb / args.frames / 1e3:.1f} KB/frame")
        if args.browser:
            print(f"opened in headless Chromium: first frames on screen after {open_ms(page):.0f} ms")


def open_ms(page) -> float:
    """Milliseconds from navigating to `page` (file://) until the first frame card's RGB has loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=list(HEADLESS_CHROMIUM))
        p = b.new_page()
        t = time.perf_counter()
        p.goto(page.resolve().as_uri())
        p.wait_for_function("document.querySelector('.card .stack img')?.complete")
        ms = 1000 * (time.perf_counter() - t)
        b.close()
    return ms


if __name__ == "__main__":
    main()
