"""Shared fixtures: tiny stores of random 48x64 frames, seeded."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli

from stores.classes import KITTI6, make_classes
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


@pytest.fixture(scope="session")
def student_export(tmp_path_factory):
    """The slow part of the deploy tests, done once per test run: a 6-class student (seed 0) saved as a
    training checkpoint, exported to ONNX through `mtdistill export`, and quantised to int8 (random
    calibration at 64x64, as `bench` does). Fields: model, ckpt, fp32, int8, export_output."""
    from pipeline.deploy.quantize import quantize_onnx, random_calibration
    from student.model import build_student

    torch.manual_seed(0)
    model = build_student(6).eval()
    d = tmp_path_factory.mktemp("student_export")
    ckpt = d / "student.pt"
    torch.save({"arch": {"name": "student", "num_classes": 6}, "config": {}, "model": model.state_dict(),
                "classes": KITTI6, "tasks": ["segm", "depth"]}, ckpt)
    fp32 = d / "out" / "student.onnx"
    res = run_cli("export", ckpt, "--onnx", fp32)
    int8 = quantize_onnx(fp32, d / "student.int8.onnx", random_calibration(4, (64, 64), seed=1))
    return SimpleNamespace(model=model, ckpt=ckpt, fp32=fp32, int8=int8, export_output=res.output)
