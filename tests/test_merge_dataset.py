"""The one merge rule and the Dataset that applies it to a store snapshot."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from conftest import H, W, ingest, random_frames

from stores.dataset import FrameDataset
from stores.errors import StoreError, UserError
from stores.merge import SRC_NONE, SRC_PSEUDO, SRC_REAL, MergePolicy, merge_targets
from stores.schema import create_pseudo


def _pseudo():
    return {"segm": np.array([[1, 2, 3, 255]], np.uint8), "conf": np.array([[255, 128, 127, 255]], np.uint8),
            "depth": np.array([[5.0, 0.0, 6.0, 7.0]], np.float16)}


def test_merge_real_then_confident_pseudo_then_ignore():
    real_segm = np.array([[0, 255, 255, 255]], np.uint8)
    real_depth = np.array([[1.0, 2.0, 0.0, 0.0]], np.float32)
    m = merge_targets(real_segm, real_depth, MergePolicy(pseudo="t", segm_threshold=0.5), _pseudo())
    # pixel 0 real; 1: conf 128/255 >= 0.5 -> pseudo 2; 2: 127/255 < 0.5 -> ignore; 3: pseudo says none
    assert m["segm"].tolist() == [[0, 2, 255, 255]]
    assert m["segm_src"].tolist() == [[SRC_REAL, SRC_PSEUDO, SRC_NONE, SRC_NONE]]
    # depth: real where valid, pseudo fills holes where it has a value
    assert m["depth"].tolist() == [[1.0, 2.0, 6.0, 7.0]]
    assert m["depth_src"].tolist() == [[SRC_REAL, SRC_REAL, SRC_PSEUDO, SRC_PSEUDO]]


def test_merge_options():
    real_segm = np.array([[0, 255, 255, 255]], np.uint8)
    real_depth = np.array([[1.0, 2.0, 0.0, 0.0]], np.float32)
    none = merge_targets(real_segm, real_depth, MergePolicy(), _pseudo())
    assert none["segm"].tolist() == [[0, 255, 255, 255]] and none["depth"].tolist() == [[1, 2, 0, 0]]
    over = merge_targets(real_segm, real_depth, MergePolicy(pseudo="t", depth_override=True), _pseudo())
    assert over["depth"].tolist() == [[5.0, 2.0, 6.0, 7.0]]
    only = merge_targets(real_segm, real_depth, MergePolicy(pseudo="t", use_real=False, segm_threshold=0),
                         _pseudo())
    assert only["segm"].tolist() == [[1, 2, 3, 255]]
    p = {**_pseudo(), "depth_conf": np.array([[255, 255, 10, 255]], np.uint8)}
    gated = merge_targets(real_segm, real_depth, MergePolicy(pseudo="t", depth_threshold=0.5), p)
    assert gated["depth"].tolist() == [[1.0, 2.0, 0.0, 7.0]]
    with pytest.raises(UserError, match="segm-threshold 1.5"):
        MergePolicy(segm_threshold=1.5)


def _add_pseudo(store, name, classes=None):
    s = store.writable_session()
    root = zarr.open_group(s.store, mode="a")
    g = create_pseudo(root, name, store.num_frames, {"classes": classes or store.classes, "depth_unit": "m"})
    g["segm"][:] = 3
    g["conf"][:] = 200
    g["depth"][:] = 4.0
    return store.commit(s, "pseudo", {"kind": "label"})


def test_dataset_items_and_merge(store):
    sid = _add_pseudo(store, "t")
    ds = FrameDataset(store.path, sid, indices=[1, 3], policy=MergePolicy(pseudo="t", segm_threshold=0.7))
    item = ds[0]  # frame 1: no real segm (segm_every=2), no real depth (depth_every=3)
    assert item["index"] == 1 and item["rgb"].shape == (3, H, W) and item["rgb"].dtype == torch.uint8
    assert (item["segm"] == 3).all() and (item["segm_src"] == SRC_PSEUDO).all()
    assert torch.allclose(item["depth"], torch.full((H, W), 4.0))
    frame3 = list(random_frames(20, seed=1, segm_every=2, depth_every=3))[3]
    item = ds[1]  # frame 3 has real depth, no real segm
    np.testing.assert_array_equal(item["depth"].numpy(), frame3.depth)
    np.testing.assert_array_equal(item["rgb"].numpy().transpose(1, 2, 0), frame3.rgb)
    strict = FrameDataset(store.path, sid, indices=[1], policy=MergePolicy(pseudo="t", segm_threshold=0.9))
    assert (strict[0]["segm"] == 255).all()  # conf 200/255 < 0.9
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="forkserver")
    batch = next(iter(loader))
    assert batch["rgb"].shape == (2, 3, H, W) and batch["segm"].dtype == torch.int64


def test_dataset_reads_fixed_snapshot(store):
    sid = store.snapshot_id
    ingest(store, random_frames(3, seed=99))
    ds = FrameDataset(store.path, sid, indices=range(20))
    assert len(ds) == 20 and ds[19]["index"] == 19


def test_pseudo_with_other_classes_refused(store):
    _add_pseudo(store, "other", classes=[{"id": 0, "name": "x", "color": [0, 0, 0]}])
    s = store.reopen()
    with pytest.raises(StoreError, match="another class list"):
        FrameDataset(s.path, s.snapshot_id, [0], MergePolicy(pseudo="other"))
    with pytest.raises(StoreError, match="no pseudo-label set 'missing'"):
        FrameDataset(s.path, s.snapshot_id, [0], MergePolicy(pseudo="missing"))


def _lidar_frame():
    """A 20x20 frame: classes 0 (ground, left half) and 1 (sky, right half); real depth on every 4th row of
    the ground only; the teacher's depth is 2x the truth (10 m ground, 40 m sky)."""
    segm = np.zeros((20, 20), np.uint8)
    segm[:, 10:] = 1
    real = np.zeros((20, 20), np.float32)
    real[::4, :10] = 5.0
    pseudo = {"segm": segm.copy(), "conf": np.full((20, 20), 255, np.uint8),
              "depth": np.where(segm == 0, 10.0, 40.0).astype(np.float16)}
    return np.full((20, 20), 255, np.uint8), real, pseudo


def test_pseudo_depth_classes_anchor_consistency_and_cap():
    real_segm, real, pseudo = _lidar_frame()
    plain = merge_targets(real_segm, real, MergePolicy(pseudo="t"), pseudo)
    assert plain["depth"][1, 0] == 10.0 and plain["depth"][1, 15] == 40.0       # holes filled as the teacher says
    ground_only = merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_classes=(0,)), pseudo)
    assert ground_only["depth"][1, 15] == 0 and ground_only["depth"][1, 0] == 10.0
    anchored = merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_anchor="scale"), pseudo)
    assert anchored["depth"][1, 0] == pytest.approx(5.0) and anchored["depth"][1, 15] == pytest.approx(20.0)
    assert anchored["depth"][0, 0] == 5.0 and anchored["depth_src"][0, 0] == SRC_REAL   # real stays real
    # without anchoring, the 2x teacher disagrees with every real pixel: near them nothing is filled
    strict = merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_consistency=0.25), pseudo)
    assert strict["depth"][1, 0] == 0 and strict["depth"][1, 19] == 40.0        # far from real pixels: kept
    ok = merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_anchor="scale", depth_consistency=0.25), pseudo)
    assert ok["depth"][1, 0] == pytest.approx(5.0)
    capped = merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_max=30.0), pseudo)
    assert capped["depth"][1, 15] == 0 and capped["depth"][1, 0] == 10.0
    with pytest.raises(UserError, match="depth anchor 'affine'"):
        MergePolicy(depth_anchor="affine")


def test_observed_depth_classes_come_from_the_data(empty_store):
    from stores.dataset import resolve_policy
    from stores.sources.base import Frame

    real_segm, real, _ = _lidar_frame()
    segm = np.zeros((H, W), np.uint8)
    segm[:, W // 2:] = 1                                   # class 1 never has real depth
    depth = np.zeros((H, W), np.float32)
    depth[::4, :W // 2] = 5.0
    with empty_store.append("lidar", {"kind": "ingest"}) as w:
        for i in range(3):
            w.add(Frame(rgb=np.zeros((H, W, 3), np.uint8), split="train", name=f"f{i}", segm=segm, depth=depth))
    s = empty_store.reopen()
    policy = resolve_policy(MergePolicy(pseudo="t", depth_classes="observed"), s, s.indices("train"))
    assert policy.depth_classes == (0,) and policy.to_dict()["depth_classes"] == [0]
    assert resolve_policy(MergePolicy(), s, s.indices("train")) == MergePolicy()
    with pytest.raises(ValueError, match="resolved first"):
        merge_targets(real_segm, real, MergePolicy(pseudo="t", depth_classes="observed"), _lidar_frame()[2])


def test_a_depth_threshold_needs_depth_confidences(store):
    _add_pseudo(store, "noconf")                             # labeled without --flip: no depth_conf array
    s = store.reopen()
    FrameDataset(s.path, s.snapshot_id, [0], MergePolicy(pseudo="noconf"))          # no threshold: fine
    with pytest.raises(StoreError, match=r"--depth-threshold 0.5 needs depth confidences.*'noconf'.*--flip"):
        FrameDataset(s.path, s.snapshot_id, [0], MergePolicy(pseudo="noconf", depth_threshold=0.5))
