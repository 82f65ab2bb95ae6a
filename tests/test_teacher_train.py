"""`mtdistill teacher train`: the one training loop on a teacher arch writes a file that label loads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from student.model import normalize
from pipeline.cli import cli
from stores.repo import FrameStore
from teachers.archs import build_model
from teachers.base import load_teacher
from teachers.external import load_teacher_checkpoint


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    path = tmp_path_factory.mktemp("tt") / "syn.ice"
    res = CliRunner().invoke(cli, ["ingest", "synthetic", str(path), "--frames", "16", "--size", "32x32",
                                   "--segm-fraction", "1", "--splits", "1,0,0,0", "--workers", "1"])
    assert res.exit_code == 0, res.output
    return FrameStore.open(path)


def mean_ce(model, store) -> float:
    rgb = torch.from_numpy(store.root["frames/rgb"][:]).permute(0, 3, 1, 2)
    target = torch.from_numpy(store.root["real/segm"][:].astype(np.int64))
    with torch.inference_mode():
        logits = model.eval()(normalize(rgb))["segm"]
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, target, ignore_index=255).item()


def test_teacher_train_writes_a_loadable_teacher_that_learned(syn, tmp_path):
    out = tmp_path / "segm-teacher.pt"
    res = CliRunner().invoke(cli, [
        "teacher", "train", str(syn.path), "--task", "segm", "--arch", "resnet38", "--width", "0.0625",
        "--units", "1", "--no-dropout", "--epochs", "4", "--batch-size", "4", "--workers", "0", "--scale", "1", "1",
        "--no-flip", "--val-split", "", "--lr-decoder", "0.05", "--out", str(tmp_path / "runs"),
        "--teacher-out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote teacher {out}" in res.output and "step 16/16" in res.output
    teacher = load_teacher(str(out), "segm", store_classes=syn.classes)
    assert teacher.num_classes == syn.num_classes == 40 and teacher.name == "teacher-segm-resnet38"
    pred = teacher.predict(syn.root["frames/rgb"][:4])
    assert pred["segm"].shape == (4, 32, 32) and pred["segm"].max() < 40
    model, meta = load_teacher_checkpoint(out)
    assert meta["arch"]["width"] == 0.0625 and meta["trained_on"]["snapshot"] == syn.snapshot_id
    torch.manual_seed(123)
    untrained = build_model(meta["arch"])
    assert mean_ce(model, syn) < 0.85 * mean_ce(untrained, syn)      # it learned (measured ~0.73)
    acc = (pred["segm"] == syn.root["real/segm"][:4]).mean()
    assert acc > 3 / 40                                              # well above chance


def test_teacher_train_refuses_mismatched_options(syn, tmp_path):
    run = CliRunner().invoke
    res = run(cli, ["teacher", "train", str(syn.path), "--task", "depth", "--arch", "resnet38"])
    assert res.exit_code == 1 and "is a segm network, not --task depth" in res.output
    res = run(cli, ["teacher", "train", str(syn.path), "--task", "segm", "--arch", "resnet38", "--units", "x"])
    assert res.exit_code == 2 and "Invalid value for '--units': 'x'" in res.output
    res = run(cli, ["teacher", "train", str(syn.path), "--task", "depth", "--arch", "lwrefinenet_depth",
                    "--width", "0.5"])
    assert res.exit_code == 1 and "apply to the resnet38 teachers" in res.output
    assert "Examples:" in run(cli, ["teacher", "train", "--help"]).output
