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
