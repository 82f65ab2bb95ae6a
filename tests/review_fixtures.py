"""A store with a pseudo-label set for the review tests: 20 random 48x64 frames (shards of 8), real
segmentation on even frames, real depth on every third; pseudo segm = real where present except a
wrong 8-pixel-wide left band, random elsewhere; random confidences (distinct frame means) and depth; every shard done."""
from __future__ import annotations

import numpy as np
import zarr
from conftest import CLASSES, H, W, ingest, random_frames

from stores.repo import FrameStore
from stores.schema import create_pseudo


def make_review_store(path, n: int = 20, seed: int = 0) -> FrameStore:
    """The store described in the module docstring, at `path`, reopened after the pseudo commit."""
    s = FrameStore.create(path, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(s, random_frames(n, seed=1, segm_every=2, depth_every=3))
    s = s.reopen()
    rng = np.random.default_rng(seed)
    real = s.root["real/segm"][:]
    segm = np.where(real != 255, real, rng.integers(0, len(CLASSES), real.shape)).astype(np.uint8)
    segm[:, :, :8] = (real[:, :, :8] + 1) % len(CLASSES)             # wrong where real exists
    level = rng.permutation(n)[:, None, None] / n                       # distinct mean confidences
    conf = (rng.integers(100, 256, real.shape) * (0.2 + 0.8 * level)).astype(np.uint8)
    session = s.writable_session()
    g = create_pseudo(zarr.open_group(session.store, mode="a"), "p", n,
                      {"tasks": ["segm", "depth"], "teachers": {}})
    g["segm"][:], g["conf"][:] = segm, conf
    g["depth"][:], g["done"][:] = rng.uniform(1, 9, real.shape).astype(np.float16), True
    s.commit(session, "pseudo p", {"kind": "test"})
    return s.reopen()
