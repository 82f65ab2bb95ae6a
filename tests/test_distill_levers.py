"""The distillation levers: pseudo-pixel loss drop, lr warm-up, class-balanced thresholds, depth fill modes
and fit residual, strong augmentation and CutMix, and the qa verdict lines."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr
from conftest import H, W

from pipeline.train.augment import AugmentConfig, augment, cutmix
from pipeline.train.config import lr_factor
from stores.merge import SRC_PSEUDO, SRC_REAL, MergePolicy, merge_targets
from stores.schema import create_pseudo
from student.losses import MultiTaskLoss, berhu_loss, segm_loss


def test_pseudo_drop_ignores_the_highest_loss_pseudo_pixels_only():
    logits = torch.zeros(1, 3, 2, 5)
    logits[0, 0] = 4.0                                      # confident class 0 everywhere
    target = torch.tensor([[[0, 0, 0, 0, 1], [0, 0, 0, 0, 2]]])    # the two last columns are wrong
    pseudo = torch.tensor([[[0, 1, 1, 1, 1], [0, 1, 1, 1, 0]]]).bool()
    per_px = F.cross_entropy(logits, target, reduction="none")[0]
    # 7 pseudo pixels, drop the 2 worst: the wrong one (row 0, col 4); the right ones tie, ties are kept
    kept = segm_loss(logits, target, pseudo=pseudo, drop=2 / 7 + 1e-6)
    wrong_real = per_px[1, 4]                              # real: never dropped, however high
    right = per_px[0, 0]
    assert kept.item() == pytest.approx(((8 * right) + wrong_real).item() / 9, rel=1e-5)
    assert segm_loss(logits, target, pseudo=pseudo, drop=0.0).item() == pytest.approx(per_px.mean().item())

    pred = torch.full((1, 1, 2, 4), 10.0)
    gt = torch.tensor([[[10.0, 10.0, 10.0, 50.0], [10.0, 10.0, 0.0, 90.0]]])
    src = torch.tensor([[[1, 1, 1, 1], [0, 0, 0, 0]]]).bool()      # the 90 m pixel is real: kept
    dropped = berhu_loss(pred, gt, pseudo=src, drop=0.25)          # 4 pseudo pixels: the 50 m one goes
    full = berhu_loss(pred, gt)
    assert dropped.item() < full.item() and dropped.item() > 0
    losses = MultiTaskLoss(pseudo_drop=0.25)({"segm": logits, "depth": pred}, {"segm": target, "depth": gt},
                                             {"segm": pseudo, "depth": src})
    assert losses["depth"].item() == pytest.approx(dropped.item())


def test_warmup_ramps_the_learning_rate_linearly_then_step_decay():
    f = [lr_factor(s, 100, (0.5, 0.75), 0.1, warmup=0.1) for s in (0, 4, 9, 10, 49, 50, 99)]
    assert f == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0, 0.1, 0.01])
    assert lr_factor(0, 100, (0.5,), 0.1) == 1.0


def test_class_balanced_thresholds_keep_a_share_of_each_class(empty_store):
    from conftest import ingest
    from stores.dataset import resolve_policy
    from stores.sources.base import Frame

    ingest(empty_store, [Frame(rgb=np.zeros((H, W, 3), np.uint8), split="train", name=f"f{i}") for i in range(4)])
    s = empty_store.reopen()
    segm = np.zeros((4, H, W), np.uint8)
    segm[:, :, W // 2:] = 1                                  # class 1: the rare, unsure class
    conf = np.where(segm == 0, 250, 0).astype(np.uint8)
    conf[:, :, W // 2:] = np.linspace(51, 153, W - W // 2).astype(np.uint8)   # 0.2 .. 0.6
    session = s.writable_session()
    g = create_pseudo(zarr.open_group(session.store, mode="a"), "t", 4, {"tasks": ["segm"], "teachers": {}})
    g["segm"][:], g["conf"][:], g["done"][:] = segm, conf, [True]
    s.commit(session, "pseudo", {"kind": "test"})
    s = s.reopen()
    policy = resolve_policy(MergePolicy(pseudo="t", segm_threshold=0.7, segm_class_share=0.5), s, s.indices("train"))
    t0, t1 = policy.segm_class_thresholds[:2]
    assert t0 == pytest.approx(250 / 255) and 0.35 < t1 < 0.45            # class 1: its median confidence
    assert policy.to_dict()["segm_class_thresholds"][1] == t1
    m = merge_targets(np.full((H, W), 255, np.uint8), np.zeros((H, W), np.float32), policy,
                      {"segm": segm[0], "conf": conf[0], "depth": np.zeros((H, W), np.float16)})
    kept1 = (m["segm"][:, W // 2:] == 1).mean()
    assert 0.45 <= kept1 <= 0.6 and (m["segm"][:, :W // 2] == 0).all()     # class 0: global 0.7 < 250/255
    plain = merge_targets(np.full((H, W), 255, np.uint8), np.zeros((H, W), np.float32),
                          MergePolicy(pseudo="t", segm_threshold=0.7), {"segm": segm[0], "conf": conf[0],
                                                                         "depth": np.zeros((H, W), np.float16)})
    assert (plain["segm"][:, W // 2:] == 1).sum() == 0                       # one global threshold: none


def test_depth_fill_frames_and_fit_residual():
    real = np.zeros((2, 10, 10), np.float32)
    real[0, ::3, ::3] = 5.0                                  # frame 0 has sparse real depth, frame 1 none
    pseudo = {"segm": np.full((2, 10, 10), 255, np.uint8), "conf": np.zeros((2, 10, 10), np.uint8),
              "depth": np.full((2, 10, 10), 5.0, np.float16)}
    holes = merge_targets(np.full((2, 10, 10), 255, np.uint8), real, MergePolicy(pseudo="t"), pseudo)
    frames = merge_targets(np.full((2, 10, 10), 255, np.uint8), real, MergePolicy(pseudo="t", depth_fill="frames"),
                           pseudo)
    assert (holes["depth"] > 0).all() and (frames["depth"][1] == 5.0).all()
    assert (frames["depth_src"][0] == SRC_PSEUDO).sum() == 0 and (frames["depth_src"][0] == SRC_REAL).sum() == 16
    noisy = pseudo["depth"].astype(np.float32) * np.where(np.arange(10) % 2, 1.0, 3.0)  # a fit that misses
    pseudo_noisy = {**pseudo, "depth": noisy}
    kept = merge_targets(np.full((2, 10, 10), 255, np.uint8), real,
                         MergePolicy(pseudo="t", depth_anchor="scale", anchor_points=5), pseudo_noisy)
    gone = merge_targets(np.full((2, 10, 10), 255, np.uint8), real,
                         MergePolicy(pseudo="t", depth_anchor="scale", anchor_points=5, anchor_max_residual=0.3),
                         pseudo_noisy)
    assert (kept["depth_src"][0] == SRC_PSEUDO).any() and not (gone["depth_src"][0] == SRC_PSEUDO).any()
    with pytest.raises(Exception, match="depth fill 'all'"):
        MergePolicy(depth_fill="all")


def test_augment_moves_source_maps_with_the_targets_and_strong_noise_only_on_pseudo_items():
    h, w = 8, 10
    segm = torch.arange(h * w).view(h, w) % 5
    src = torch.where(segm == 0, SRC_PSEUDO, SRC_REAL).to(torch.uint8)
    item = {"rgb": torch.full((3, h, w), 100, dtype=torch.uint8), "segm": segm, "depth": torch.full((h, w), 6.0),
            "segm_src": src, "depth_src": torch.zeros(h, w, dtype=torch.uint8), "index": 0}
    out = augment(item, AugmentConfig(scale_min=0.5, scale_max=0.5, crop=(8, 10), flip=True), np.random.default_rng(3))
    assert ((out["segm"] == 0) == (out["segm_src"] == SRC_PSEUDO)).all()     # same geometry as the labels
    assert ((out["segm"] == 255) == ((out["segm_src"] == 0) & (out["segm"] == 255))).all()
    strong = AugmentConfig(scale_min=1, scale_max=1, flip=False, strong=True)
    noisy = augment(item, strong, np.random.default_rng(0))
    assert not torch.equal(noisy["rgb"], item["rgb"]) and torch.equal(noisy["segm"], segm)
    real_only = {**item, "segm_src": torch.full((h, w), SRC_REAL, dtype=torch.uint8)}
    assert torch.equal(augment(real_only, strong, np.random.default_rng(0))["rgb"], item["rgb"])


def test_cutmix_pastes_the_same_box_into_every_map():
    b, h, w = 4, 16, 20
    batch = {"rgb": torch.stack([torch.full((3, h, w), i, dtype=torch.uint8) for i in range(b)]),
             "segm": torch.arange(b).view(b, 1, 1).expand(b, h, w).clone(),
             "depth": torch.arange(b).view(b, 1, 1).expand(b, h, w).float() + 1,
             "segm_src": torch.zeros(b, h, w, dtype=torch.uint8), "index": torch.arange(b)}
    out = cutmix(batch, np.random.default_rng(0), p=1.0)
    assert torch.equal(batch["segm"][0], torch.zeros(h, w, dtype=torch.long))          # input untouched
    for i in range(b):
        moved = out["segm"][i] != i
        assert moved.any() and (out["segm"][i][moved] == (i + 1) % b).all()
        assert torch.equal(out["rgb"][i, 0] != i, moved) and torch.equal(out["depth"][i] != i + 1, moved)


def test_amp_and_optimizer_settings_are_checked():
    from pipeline.train.config import TrainConfig
    from pipeline.train.loop import use_bf16
    from stores.errors import UserError

    with pytest.raises(UserError, match="amp 'fast'"):
        TrainConfig(store="s", amp="fast")
    with pytest.raises(UserError, match="optimizer 'adam'"):
        TrainConfig(store="s", optimizer="adam")
    assert not use_bf16("off", torch.device("cpu")) and use_bf16("on", torch.device("cpu"))
