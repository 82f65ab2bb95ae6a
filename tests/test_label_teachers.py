"""Helpers of the labeling tests: teacher entry points importable by dask workers, a shared cluster,
stores and reference predictions. (A test module so pytest puts this directory on sys.path, which the
spawned workers inherit.)

Entry points `module:function` (for `label --teacher segm=test_label_teachers:tiny_segm`):
- tiny_segm / tiny_depth: tiny ResNet-38 teachers with fixed weights (seed 0).
- fragile_segm: tiny_segm that raises on a constant (e.g. black) frame while the file named by
  $MTD_FAIL_FILE exists: a "bad frame" that a fix (removing the file) makes good again.
Set $MTD_SLOW (seconds), or write seconds into the file named by $MTD_SLOW_FILE, to make every forward
sleep, so a run can be killed midway; forwards in dask workers wait while the file $MTD_HOLD_FILE exists.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from teachers.depth import ResNet38Depth, ResNet38DepthConfig
from teachers.resnet38 import ResNet38, ResNet38Config

TESTS = Path(__file__).parent
NUM_CLASSES = 5
SEGM_CFG = ResNet38Config(num_classes=NUM_CLASSES, width=1 / 16, units=1)
DEPTH_CFG = ResNet38DepthConfig(width=1 / 16, units=1)


class Probe(nn.Module):
    """Wraps a tiny teacher network so its output depends strongly on the pixels (a random-init ResNet-38
    alone predicts about the same everywhere, which would hide mixed-up frames): adds a fixed 1x1 mix of
    the image pooled to the output grid, and a left-right ramp so that flip TTA changes the result.
    Optional sleep and failure, see the module docstring."""

    def __init__(self, net: nn.Module, channels: int, fragile: bool = False):
        super().__init__()
        self.net, self.fragile = net, fragile
        self.input_multiple = net.input_multiple
        self.mix = nn.Conv2d(3, channels, 1)
        nn.init.normal_(self.mix.weight, std=3.0)
        self.ramp = nn.Parameter(torch.randn(channels) * 2)

    def forward(self, x):
        hold = os.environ.get("MTD_HOLD_FILE")
        while hold and Path(hold).exists() and in_worker():   # the coordinator's class check runs on
            time.sleep(0.05)
        time.sleep(slowness())
        fail = os.environ.get("MTD_FAIL_FILE")
        if self.fragile and fail and Path(fail).exists():
            flat = x.flatten(2)                                        # (B, 3, H*W)
            if bool(((flat.amax(2) - flat.amin(2)) == 0).all(1).any()):
                raise RuntimeError("bad frame: constant image")
        (task, y), = self.net(x).items()                               # (B, C, h, w)
        cue = self.mix(F.adaptive_avg_pool2d(x, y.shape[-2:]))         # (B, C, h, w)
        cue = cue + self.ramp.view(1, -1, 1, 1) * torch.linspace(-1, 1, y.shape[-1], device=x.device)
        return {task: y + cue if task == "segm" else y * (1 + torch.sigmoid(cue))}


def in_worker() -> bool:
    """True inside a dask worker process (tasks and plugin warm-ups alike), False in the coordinating
    `mtdistill label` process."""
    from distributed.worker import Worker
    return bool(Worker._instances)


def slowness() -> float:
    path = os.environ.get("MTD_SLOW_FILE")
    if path and Path(path).exists():
        return float(Path(path).read_text())
    return float(os.environ.get("MTD_SLOW", "0"))


def _seeded(build):
    torch.manual_seed(0)
    return build()


def tiny_segm() -> nn.Module:
    return _seeded(lambda: Probe(ResNet38(SEGM_CFG), NUM_CLASSES))


def tiny_depth() -> nn.Module:
    return _seeded(lambda: Probe(ResNet38Depth(DEPTH_CFG), 1))


def fragile_segm() -> nn.Module:
    return _seeded(lambda: Probe(ResNet38(SEGM_CFG), NUM_CLASSES, fragile=True))


# ---- shared test fixtures (imported by the test_label* modules) ----------------------------------
@pytest.fixture(scope="session")
def fail_file(tmp_path_factory) -> Path:
    """Path the fragile teacher watches; set before the shared cluster's workers start."""
    path = tmp_path_factory.mktemp("fail") / "fail-now"
    os.environ["MTD_FAIL_FILE"] = str(path)
    return path


@pytest.fixture(scope="session")
def slow_file(tmp_path_factory) -> Path:
    """Seconds the shared cluster's teachers sleep per forward (none while the file is absent)."""
    path = tmp_path_factory.mktemp("slow") / "seconds"
    os.environ["MTD_SLOW_FILE"] = str(path)
    os.environ["MTD_HOLD_FILE"] = str(path.with_name("hold"))
    return path


@pytest.fixture(scope="session")
def cluster(fail_file, slow_file):
    """One LocalCluster (2 spawned workers, 1 thread each) for the in-process labeling tests."""
    from distributed import LocalCluster
    import logging

    assert str(TESTS) in sys.path
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as c:
        yield c.scheduler_address


def reference(store, task: str, spec: str, frames, flip: bool = False) -> dict:
    """What the teacher predicts for `frames` when called directly (not through the job)."""
    from teachers.base import load_teacher

    t = load_teacher(spec, task, flip=flip, batch_size=4,
                     store_classes=store.classes if task == "segm" else None)
    return t.predict(store.root["frames/rgb"].get_orthogonal_selection((np.asarray(frames),)))


def test_probe_entry_points(fail_file, tmp_path):
    from teachers.base import load_teacher

    black = np.zeros((1, 16, 16, 3), np.uint8)
    t = load_teacher("test_label_teachers:fragile_segm", "segm")
    assert t.predict(black)["segm"].shape == (1, 16, 16)
    fail_file.touch()
    try:
        with pytest.raises(RuntimeError, match="bad frame"):
            t.predict(black)
    finally:
        fail_file.unlink()
    assert load_teacher("test_label_teachers:tiny_segm", "segm").version == t.version
