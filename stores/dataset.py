"""FrameDataset: a torch Dataset over one store snapshot, yielding RGB and merged targets.

The training loop (pipeline/train/loop.py) and evaluation read through this. The store is opened lazily
in each DataLoader worker at a fixed snapshot id, so every worker sees the same version.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from stores.errors import StoreError
from stores.merge import OBSERVED, MergePolicy, merge_targets
from stores.schema import TOPK_ARRAYS


class FrameDataset(Dataset):
    """Items: {"index", "rgb" uint8 (3,H,W), "segm" int64 (H,W) 255=ignore, "depth" float32 (H,W)
    0=ignore, "segm_src", "depth_src" uint8 (H,W) 0 none / 1 real / 2 pseudo}; with policy.segm_soft also
    "segm_topk" and "segm_topk_p" uint8 (K,H,W) (stores.merge.merge_targets)."""

    def __init__(self, path, snapshot_id: str, indices, policy: MergePolicy = MergePolicy()):
        from stores.repo import FrameStore

        self.path, self.snapshot_id, self.policy = str(path), snapshot_id, policy
        self.indices = np.asarray(indices, dtype=np.int64)
        store = FrameStore.open(path, snapshot_id)
        if policy.pseudo is not None:
            check_pseudo_compatible(store, policy.pseudo, policy)
        self._store = None  # opened per process on first use

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    def _arrays(self):
        if self._store is None:
            from stores.repo import FrameStore

            store = FrameStore.open(self.path, self.snapshot_id)
            root = store.root
            arrays = {"rgb": root["frames/rgb"], "segm": root["real/segm"], "depth": root["real/depth"]}
            if self.policy.pseudo is not None:
                g = root[f"pseudo/{self.policy.pseudo}"]
                keys = ("segm", "conf", "depth", "depth_conf", *(TOPK_ARRAYS if self.policy.segm_soft else ()))
                arrays.update({f"p_{k}": g[k] for k in keys if k in g})
            self._store = (store, arrays)
        return self._store[1]

    def __getitem__(self, i: int) -> dict:
        idx = int(self.indices[i])
        a = self._arrays()
        pseudo = None
        if self.policy.pseudo is not None and idx < a["p_segm"].shape[0]:
            pseudo = {k[2:]: a[k][idx] for k in a if k.startswith("p_")}
        m = merge_targets(a["segm"][idx], a["depth"][idx], self.policy, pseudo)
        if self.policy.segm_soft and pseudo is None:         # a frame beyond the set: no soft target
            k = a["p_topk_class"].shape[1]
            m.update(segm_topk=np.full((k, *m["segm"].shape), 255, np.uint8),
                     segm_topk_p=np.zeros((k, *m["segm"].shape), np.uint8))
        return {
            "index": idx,
            "rgb": torch.from_numpy(np.ascontiguousarray(a["rgb"][idx].transpose(2, 0, 1))),
            "segm": torch.from_numpy(m.pop("segm").astype(np.int64)),
            **{k: torch.from_numpy(v) for k, v in m.items()},
        }


def check_pseudo_compatible(store, name: str, policy: MergePolicy | None = None) -> None:
    """A pseudo set must use the store's class list and metres, or merging would mix them; a policy's
    depth threshold needs the depth confidences that only flip-TTA labeling writes. StoreError otherwise."""
    g = store.pseudo(name)
    if policy is not None and policy.segm_soft and "topk_class" not in g:
        raise StoreError(f"{store.path}: --segm-soft needs the teacher's top-k classes, but pseudo set {name!r} "
                         f"has none (label it with --topk K)")
    if policy is not None and policy.depth_threshold > 0 and "depth_conf" not in g:
        raise StoreError(f"{store.path}: --depth-threshold {policy.depth_threshold:g} needs depth confidences, "
                         f"but pseudo set {name!r} has none (label it with --flip to get them)")
    classes = g.attrs.get("classes")
    if classes is not None and [c["name"] for c in classes] != [c["name"] for c in store.classes]:
        raise StoreError(f"{store.path}: pseudo set {name!r} uses another class list than the store")
    if g.attrs.get("depth_unit", "m") != "m":
        raise StoreError(f"{store.path}: pseudo set {name!r} depth unit {g.attrs['depth_unit']!r} is not metres")


def resolve_policy(policy: MergePolicy, store, indices, max_frames: int = 64, min_share: float = 0.01) -> MergePolicy:
    """The policy with its data-dependent settings filled in from up to `max_frames` training frames
    (evenly spaced over `indices`): depth_classes="observed" (observed_depth_classes) and, with
    segm_class_share > 0, segm_class_thresholds (class_thresholds). Already resolved settings stay."""
    if policy.depth_classes == OBSERVED:
        policy = replace(policy, depth_classes=observed_depth_classes(store, indices, max_frames, min_share))
    if policy.pseudo is not None and policy.segm_class_share > 0 and policy.segm_class_thresholds is None:
        policy = replace(policy, segm_class_thresholds=class_thresholds(store, policy, indices, max_frames))
    return policy


def _spread(indices, n: int) -> np.ndarray:
    """Up to n evenly spaced entries of `indices`."""
    indices = np.asarray(indices)
    return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).astype(int)] if len(indices) else indices


def observed_depth_classes(store, indices, max_frames: int, min_share: float) -> tuple[int, ...]:
    """The class ids that carry real depth in the data: over frames of `indices` with both real annotations,
    the classes with valid real depth on at least `min_share` of their pixels (a LiDAR never returns sky:
    sky gets no pseudo depth). Raises StoreError if no frame has both annotations."""
    root = store.root
    both = np.asarray(indices)[root["real/has_segm"][:][indices] & root["real/has_depth"][:][indices]]
    if len(both) == 0:
        raise StoreError(f"{store.path}: pseudo depth classes 'observed' needs frames with both real "
                         f"segmentation and real depth; the training split has none")
    pixels, with_depth = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for i in _spread(both, max_frames):
        segm, depth = root["real/segm"][int(i)], root["real/depth"][int(i)]
        pixels += np.bincount(segm.ravel(), minlength=256)
        with_depth += np.bincount(segm[depth > 0].ravel(), minlength=256)
    share = with_depth[:store.num_classes] / np.maximum(pixels[:store.num_classes], 1)
    return tuple(int(c) for c in np.flatnonzero((share >= min_share) & (pixels[:store.num_classes] > 0)))


def class_thresholds(store, policy: MergePolicy, indices, max_frames: int) -> tuple[float, ...]:
    """Class-balanced confidence thresholds (0..1, one per class) of the pseudo set: for class c, the
    confidence above which the most confident `policy.segm_class_share` of the pixels the teacher labels c
    lie, over frames of `indices` the set covers (a class the teacher never predicts gets 1.0)."""
    g = store.pseudo(policy.pseudo)
    idx = np.asarray(indices)
    hist = np.zeros((store.num_classes, 256), np.int64)           # class x confidence (x255)
    for i in _spread(idx[idx < g["segm"].shape[0]], max_frames):
        segm, conf = g["segm"][int(i)].ravel(), g["conf"][int(i)].ravel()
        ok = segm < store.num_classes
        np.add.at(hist, (segm[ok], conf[ok]), 1)
    out = []
    for h in hist:
        if h.sum() == 0:
            out.append(1.0)
            continue
        above = np.cumsum(h[::-1])[::-1]                          # pixels with confidence >= v
        v = int(np.flatnonzero(above >= policy.segm_class_share * h.sum()).max())
        out.append(round(v / 255, 6))
    return tuple(out)
