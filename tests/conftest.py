"""Shared fixtures: tiny stores of random 48x64 frames, seeded."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from stores.classes import make_classes
from stores.repo import FrameStore
from stores.sources.base import Frame

H, W = 48, 64
CLASSES = make_classes([f"c{i}" for i in range(5)])


def random_frames(n: int, seed: int = 0, split: str = "train", segm_every: int = 1, depth_every: int = 1):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield Frame(
            rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8), split=split, name=f"s{seed}/f{i:04d}",
            segm=rng.integers(0, len(CLASSES), (H, W), dtype=np.uint8) if i % segm_every == 0 else None,
            depth=rng.uniform(0.5, 10, (H, W)).astype(np.float32) if i % depth_every == 0 else None)


def ingest(store: FrameStore, frames, message="ingest test") -> str | None:
    with store.append(message, {"kind": "ingest"}) as w:
        for f in frames:
            w.add(f)
    return w.snapshot_id


@pytest.fixture
def empty_store(tmp_path) -> FrameStore:
    return FrameStore.create(tmp_path / "s.ice", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)


@pytest.fixture
def store(empty_store) -> FrameStore:
    ingest(empty_store, random_frames(20, seed=1, segm_every=2, depth_every=3))
    return empty_store.reopen()


def run_cli(*args, ok=True):
    """Invoke `mtdistill ARGS...` in-process (click's CliRunner); assert it exited 0 (ok) or not (ok=False)
    and return the result (.output, .stdout, .stderr, .exit_code)."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert (r.exit_code == 0) == ok, r.output
    return r
