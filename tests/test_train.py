"""The one training loop: checkpoints, store tag, JSONL metrics, resume equivalence, augmentation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ingest, random_frames

from pipeline.train.augment import AugmentConfig, augment
from student.model import MEAN_RGB
from pipeline.cli import cli
from pipeline.checkpoint import load_checkpoint
from pipeline.train.config import TrainConfig, lr_factor
from pipeline.train.loop import train
from stores.errors import UserError
from stores.merge import MergePolicy
from stores.repo import FrameStore


@pytest.fixture
def train_store(empty_store):
    ingest(empty_store, list(random_frames(16, seed=1, depth_every=2)) +
           list(random_frames(4, seed=2, split="val")))
    return empty_store.reopen()


def _cfg(store, tmp_path, **kw):
    base = dict(store=str(store.path), out=str(tmp_path / "runs"), epochs=2, batch_size=4, workers=0,
                augment=AugmentConfig(scale_min=0.8, scale_max=1.5), seed=3)
    return TrainConfig(**{**base, **kw})


def test_checkpoint_tag_and_log(train_store, tmp_path):
    r = train(_cfg(train_store, tmp_path, run="a"))
    assert r["step"] == 8 and r["total_steps"] == 8
    ckpt = load_checkpoint(r["checkpoint"])
    assert {"model", "optimizer", "scheduler", "step", "config", "snapshot", "merge_policy", "arch"} <= set(ckpt)
    assert ckpt["snapshot"] == train_store.snapshot_id and ckpt["arch"] == {"name": "student", "num_classes": 5}
    assert ckpt["merge_policy"] == MergePolicy().to_dict()
    assert FrameStore.open(train_store.path).tags()["train/a"] == train_store.snapshot_id
    lines = [json.loads(x) for x in (tmp_path / "runs" / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert 0 <= lines[-1]["val"]["segm"]["pixel_acc"] <= 1 and lines[-1]["val"]["frames"] == 4
    assert 0 <= lines[-1]["data_wait_frac"] <= 1 and lines[-1]["images_per_s"] > 0


def test_resume_reaches_the_same_weights(train_store, tmp_path):
    full = load_checkpoint(train(_cfg(train_store, tmp_path, run="full"))["checkpoint"])
    part = train(_cfg(train_store, tmp_path, run="cut", ckpt_every=3, stop_after=5))
    assert part["step"] == 5  # "killed" after step 5; last checkpoint at step 4 (epoch end)
    assert load_checkpoint(part["checkpoint"])["step"] == 4
    done = load_checkpoint(train(_cfg(train_store, tmp_path, run="cut", ckpt_every=3), resume=True)["checkpoint"])
    assert done["step"] == 8
    for k, v in full["model"].items():
        torch.testing.assert_close(done["model"][k], v, rtol=0, atol=1e-6, msg=k)
    # a different seed really gives different weights (so the comparison above means something)
    other = load_checkpoint(train(_cfg(train_store, tmp_path, run="other", seed=4))["checkpoint"])
    assert not torch.equal(other["model"]["heads.segm.2.weight"], full["model"]["heads.segm.2.weight"])


def test_run_name_rules(train_store, tmp_path):
    train(_cfg(train_store, tmp_path, run="a", epochs=1))
    with pytest.raises(UserError, match="already exists; pass --resume"):
        train(_cfg(train_store, tmp_path, run="a", epochs=1))
    with pytest.raises(UserError, match="other settings \\(batch_size\\)"):
        train(_cfg(train_store, tmp_path, run="a", epochs=1, batch_size=2), resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        train(_cfg(train_store, tmp_path, run="b"), resume=True)
    with pytest.raises(UserError, match="no frames in split 'test'"):
        train(_cfg(train_store, tmp_path, run="c", split="test"))


def test_step_budget_and_several_splits(train_store, tmp_path):
    r = train(_cfg(train_store, tmp_path, run="budget", steps=7, split="train,val"))
    assert r["step"] == 7 and r["total_steps"] == 7  # 20 frames / 4 = 5 steps per epoch, 2nd epoch cut
    lines = (tmp_path / "runs" / "budget" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [5, 7]


def test_lr_schedule():
    assert [lr_factor(s, 100, (0.5, 0.75), 0.1) for s in (0, 49, 50, 74, 75, 99)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_augment_scale_crop_pad_flip():
    h, w = 8, 10
    item = {"rgb": torch.arange(3 * h * w, dtype=torch.uint8).view(3, h, w),
            "segm": torch.arange(h * w).view(h, w) % 5, "depth": torch.full((h, w), 6.0), "index": 0}
    big = augment(item, AugmentConfig(scale_min=2.0, scale_max=2.0, flip=False), np.random.default_rng(0))
    assert big["rgb"].shape == (3, h, w) and torch.allclose(big["depth"], torch.full((h, w), 3.0))
    small = augment(item, AugmentConfig(scale_min=0.5, scale_max=0.5, crop=(8, 10), flip=False),
                    np.random.default_rng(0))  # 4x5 content padded to 8x10
    assert (small["segm"] == 255).sum() == 80 - 20 and (small["depth"] == 0).sum() == 60
    assert (small["depth"] == 12.0).sum() == 20
    pad = small["segm"] == 255
    assert all((small["rgb"][c][pad] == MEAN_RGB[c]).all() for c in range(3))
    flips = [augment(item, AugmentConfig(scale_min=1, scale_max=1), np.random.default_rng(s)) for s in range(8)]
    flipped = [f for f in flips if not torch.equal(f["segm"], item["segm"])]
    assert flipped and all(torch.equal(f["segm"], item["segm"].flip(-1)) and
                           torch.equal(f["rgb"], item["rgb"].flip(-1)) for f in flipped)


def test_cli_train_and_evaluate(train_store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "runs"
    r = runner.invoke(cli, ["train", str(train_store.path), "--run", "cli", "--out", str(out), "--epochs", "1",
                            "--batch-size", "4", "--workers", "0", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "step 4/4" in r.stdout and "val mIoU" in r.stdout
    ckpt = out / "cli" / "last.pt"
    r = runner.invoke(cli, ["evaluate", str(train_store.path), str(ckpt), "--split", "val", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["frames"] == 4 and 0 <= res["segm"]["miou"] <= 1 and res["depth"]["rmse"] > 0
    r = runner.invoke(cli, ["evaluate", str(train_store.path), str(ckpt), "--split", "val"])
    assert "mIoU" in r.stdout and "RMSE" in r.stdout and "c4" in r.stdout
    r = runner.invoke(cli, ["evaluate", str(train_store.path), str(tmp_path / "nope.pt")])
    assert r.exit_code == 2 and "nope.pt' does not exist" in r.output


def test_a_loss_that_turns_nan_stops_the_run_and_keeps_the_last_good_checkpoint(train_store, tmp_path, monkeypatch):
    from student.losses import MultiTaskLoss

    forward, calls = MultiTaskLoss.forward, []

    def nan_at_step_6(self, outputs, targets, pseudo=None):
        out = forward(self, outputs, targets, pseudo)
        calls.append(1)
        if len(calls) == 6:
            out["depth"] = out["depth"] * float("nan")
            out["loss"] = out["loss"] + out["depth"]
        return out

    monkeypatch.setattr(MultiTaskLoss, "forward", nan_at_step_6)
    with pytest.raises(UserError, match=r"run 'nan': the loss is not finite at step 6 \(loss nan, segm [0-9.]+, "
                                        r"depth nan\).*last checkpoint .*last\.pt \(step 4\) is kept"):
        train(_cfg(train_store, tmp_path, run="nan"))
    ckpt = load_checkpoint(tmp_path / "runs" / "nan" / "last.pt")
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_gradient_clipping_is_recorded_and_changes_the_step(train_store, tmp_path):
    plain = load_checkpoint(train(_cfg(train_store, tmp_path, run="plain", epochs=1))["checkpoint"])
    clipped = load_checkpoint(train(_cfg(train_store, tmp_path, run="clip", epochs=1, grad_clip=1e-3))["checkpoint"])
    assert clipped["config"]["grad_clip"] == 1e-3 and plain["config"]["grad_clip"] == 0.0
    assert any(not torch.equal(plain["model"][k], clipped["model"][k]) for k in plain["model"])


def test_a_split_without_any_target_is_refused_before_anything_is_written(empty_store, tmp_path):
    from stores.sources.base import Frame

    rng = np.random.default_rng(0)
    with empty_store.append("bare frames", {"kind": "ingest"}) as w:
        for i in range(8):
            w.add(Frame(rgb=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), split="train", name=f"b{i}"))
    s = empty_store.reopen()
    with pytest.raises(UserError, match=r"the 8 frame\(s\) of split 'train' have no segm or depth annotation: "
                                        r"nothing to train on"):
        train(_cfg(s, tmp_path, run="bare"))
    assert not (tmp_path / "runs" / "bare").exists() and "train/bare" not in FrameStore.open(s.path).tags()


def test_the_encoder_learning_rate_follows_whether_the_encoder_starts_pretrained():
    assert TrainConfig(store="s").lr_encoder == 1e-2                      # random init: learn as fast as the decoder
    assert TrainConfig(store="s", pretrained=True).lr_encoder == 1e-3     # fine-tuning ImageNet weights
    assert TrainConfig(store="s", encoder_weights="w.pth").lr_encoder == 1e-3
    assert TrainConfig(store="s", lr_encoder=5e-3).lr_encoder == 5e-3
