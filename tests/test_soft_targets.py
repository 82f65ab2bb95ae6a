"""Top-k soft segmentation targets: `label --topk K` stores each pixel's K most probable classes, the merge
rule hands them to the student on pixels without a real label (`train --segm-soft`), and the soft
cross-entropy weighs them by the teacher's confidence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import H, W, run_cli
from test_label import SEGM, cfg

from pipeline.label.job import run_label
from pipeline.train.augment import AugmentConfig, augment
from stores.dataset import FrameDataset
from stores.errors import UserError
from stores.merge import SRC_NONE, SRC_PSEUDO, SRC_REAL, MergePolicy, merge_targets
from student.losses import MultiTaskLoss, segm_loss, soft_segm_loss
from teachers.base import load_teacher

pytest_plugins = ("test_label_teachers",)          # shared fixtures: cluster


def test_label_topk_stores_the_teachers_k_most_probable_classes(store, cluster):
    run_label(cfg(store, cluster, name="soft", topk=3, frames="all"))
    s = store.reopen()
    g = s.root["pseudo/soft"]
    cls, prob = g["topk_class"][:], g["topk_prob"][:]
    assert cls.shape == prob.shape == (20, 3, H, W) and cls.dtype == prob.dtype == np.uint8
    np.testing.assert_array_equal(cls[:, 0], g["segm"][:])               # top-1 = the hard label
    np.testing.assert_array_equal(prob[:, 0], g["conf"][:])
    assert (np.diff(prob.astype(int), axis=1) <= 0).all()                 # most probable first
    assert (cls[:, 0] != cls[:, 1]).all() and cls.max() < 5
    assert (prob.astype(int).sum(1) <= 255 + 3).all()                    # probabilities (x255, rounded)
    direct = load_teacher(SEGM, "segm", topk=3).predict(s.root["frames/rgb"][:4])
    np.testing.assert_array_equal(direct["topk_class"], cls[:4])
    assert dict(g.attrs)["topk"] == 3 and dict(g.attrs)["identity"]["topk"] == 3
    shown = run_cli("show", s.path).output                               # bytes per frame, soft part named
    assert "soft: 20/20 frames labeled" in shown and "top-3 soft targets" in shown and "/frame stored" in shown
    with pytest.raises(UserError, match="topk=3"):                       # same name, other K: refused
        run_label(cfg(store, cluster, name="soft", topk=2, frames="all"))
    for bad, msg in (({"topk": 1}, "--topk 1"), ({"topk": 6}, "only 5 classes"),
                     ({"topk": 2, "teachers": (("depth", SEGM.replace("segm", "depth")),)}, "segm teacher")):
        with pytest.raises(UserError, match=msg):
            run_label(cfg(store, cluster, name="bad", **bad))
    assert "bad" not in s.reopen().pseudo_sets()


def test_merge_keeps_soft_targets_only_where_no_real_label():
    real = np.full((4, 5), 255, np.uint8)
    real[0] = 1                                                        # row 0: real labels
    topk_class = np.stack([np.full((4, 5), 2, np.uint8), np.full((4, 5), 0, np.uint8)])
    topk_prob = np.stack([np.full((4, 5), 150, np.uint8), np.full((4, 5), 90, np.uint8)])
    topk_prob[:, 3] = 0                                                # row 3: the teacher gave nothing
    pseudo = {"segm": topk_class[0], "conf": topk_prob[0], "depth": np.zeros((4, 5), np.float16),
              "topk_class": topk_class, "topk_prob": topk_prob}
    m = merge_targets(real, np.zeros((4, 5), np.float32), MergePolicy(pseudo="t", segm_soft=True), pseudo)
    assert (m["segm"][0] == 1).all() and (m["segm"][1:] == 255).all()          # no hard pseudo labels
    assert (m["segm_src"][0] == SRC_REAL).all() and (m["segm_src"][1:3] == SRC_PSEUDO).all()
    assert (m["segm_src"][3] == SRC_NONE).all()
    assert (m["segm_topk_p"][:, 0] == 0).all() and (m["segm_topk_p"][:, 1:3] == topk_prob[:, 1:3]).all()
    with pytest.raises(UserError, match="give --pseudo NAME"):
        MergePolicy(segm_soft=True)
    hard = merge_targets(real, np.zeros((4, 5), np.float32), MergePolicy(pseudo="t"), pseudo)
    assert "segm_topk" not in hard and (hard["segm"][1:3] == 2).all()


def test_soft_cross_entropy_value_and_weighting():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 2, 3)
    target = torch.tensor([[[1, 255, 255], [3, 255, 255]]])
    classes = torch.tensor([[[[0, 2, 2], [0, 1, 255]], [[1, 0, 3], [0, 2, 255]]]], dtype=torch.uint8)
    probs = torch.tensor([[[[0, 204, 102], [0, 255, 0]], [[0, 51, 102], [0, 0, 0]]]], dtype=torch.uint8)
    got = soft_segm_loss(logits, target, classes, probs)
    logp = F.log_softmax(logits, 1)[0]
    costs = [-logp[1, 0, 0], -logp[3, 1, 0],                                   # hard pixels, weight 1
             -(0.8 * logp[2, 0, 1] + 0.2 * logp[0, 0, 1]),                    # q renormalised over k
             -(0.5 * logp[2, 0, 2] + 0.5 * logp[3, 0, 2]),
             -logp[1, 1, 1]]
    weights = [1.0, 1.0, 0.8, 0.4, 1.0]                                       # teacher's top-1 probability
    want = sum(w * c for w, c in zip(weights, costs)) / sum(weights)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    no_soft = torch.zeros_like(probs)
    assert soft_segm_loss(logits, target, classes, no_soft).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6)
    via_task = MultiTaskLoss({"segm": 1.0})({"segm": logits}, {"segm": target, "segm_topk": classes,
                                                                "segm_topk_p": probs})
    assert via_task["segm"].item() == pytest.approx(got.item())
    assert segm_loss(logits, target, soft=(classes, probs)).item() == pytest.approx(got.item())
    lg = logits.clone().requires_grad_()
    empty = soft_segm_loss(lg, torch.full_like(target, 255), classes, no_soft)
    assert empty.item() == 0 and empty.grad_fn is not None                    # stays in the graph


def test_augment_moves_soft_maps_with_the_labels():
    h, w = 8, 10
    segm = (torch.arange(h * w).view(h, w) % 3).long()
    topk = torch.stack([segm, (segm + 1) % 3]).to(torch.uint8)
    item = {"rgb": torch.zeros(3, h, w, dtype=torch.uint8), "segm": segm, "depth": torch.ones(h, w),
            "segm_topk": topk, "segm_topk_p": torch.full((2, h, w), 100, dtype=torch.uint8), "index": 0}
    out = augment(item, AugmentConfig(scale_min=1.7, scale_max=1.7, crop=(8, 10)), np.random.default_rng(1))
    assert out["segm_topk"].shape == (2, 8, 10)
    assert torch.equal(out["segm_topk"][0].long(), out["segm"])
    small = augment(item, AugmentConfig(scale_min=0.5, scale_max=0.5, crop=(8, 10)), np.random.default_rng(1))
    pad = small["segm"] == 255
    assert pad.any() and (small["segm_topk"][:, pad] == 255).all() and (small["segm_topk_p"][:, pad] == 0).all()


def test_train_segm_soft_end_to_end_and_refusal(store, cluster, tmp_path, monkeypatch):
    run_label(cfg(store, cluster, name="hard"))
    run_label(cfg(store, cluster, name="soft", topk=2))
    s = store.reopen()
    item = FrameDataset(s.path, s.snapshot_id, [1], MergePolicy(pseudo="soft", segm_soft=True))[0]
    assert item["segm_topk"].shape == (2, H, W) and (item["segm_src"] == SRC_PSEUDO).all()   # frame 1: no real segm
    base = ["train", s.path, "--steps", "2", "--batch-size", "2", "--workers", "0", "--out", tmp_path,
            "--split", "train", "--val-split", ""]
    r = run_cli(*base, "--run", "nope", "--pseudo", "hard", "--segm-soft", ok=False)
    assert "label it with --topk K" in r.output and "Traceback" not in r.output
    from student import losses

    calls = []

    def counting(logits, target, classes, probs, **kw):
        calls.append(int((probs > 0).any(1).sum()))                      # soft pixels in the batch
        return soft_segm_loss(logits, target, classes, probs, **kw)

    monkeypatch.setattr(losses, "soft_segm_loss", counting)
    run_cli(*base, "--run", "soft", "--pseudo", "soft", "--segm-soft")
    assert len(calls) == 2 and sum(calls) > 0                    # every step went through the soft loss
    ckpt = torch.load(tmp_path / "soft" / "last.pt", weights_only=True)
    assert ckpt["merge_policy"]["segm_soft"] is True and ckpt["step"] == 2
