"""Per-frame figures of a pseudo-label set that order frames for review, and the sort / select rules.

Flow: `review` and `export-for-review` call **frame_stats** (one pass over the labeled shards: mean
teacher confidence, disagreement with the real labels, share of each class in the pseudo segmentation),
then **order** (a sort key) or **select** (a sort key and a count) picks the frames to show or export.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.evaluate.qa import labeled_frames
from stores.errors import UserError

SORTS = "confidence | disagreement | class:NAME"
SELECTS = "lowest-confidence:N | class:NAME:N"


@dataclass
class FrameStats:
    """Figures of the labeled frames (done shards) of one pseudo set, one row per frame:
    index int64 (n,) store frame index; mean_conf float32 (n,) mean teacher confidence 0..1 over the
    pixels with a pseudo label (NaN: none); disagreement float32 (n,) share of pixels with both a real
    and a pseudo label where they differ (NaN: no real segmentation); has_segm bool (n,) real
    segmentation present; shares float32 (n, C) share of each class among the frame's pixels."""
    index: np.ndarray
    mean_conf: np.ndarray
    disagreement: np.ndarray
    has_segm: np.ndarray
    shares: np.ndarray


def frame_stats(store, name: str) -> FrameStats:
    """FrameStats of pseudo set `name` (StoreError listing the sets when it is absent), read shard by
    shard; UserError when no shard of it is labeled yet or it has no segmentation."""
    g = store.pseudo(name)
    if "segm" not in g.attrs.get("tasks", ["segm"]):
        raise UserError(f"{store.path}: pseudo set {name!r} has no segmentation to review")
    idx = labeled_frames(store, name, None)
    if not len(idx):
        raise UserError(f"{store.path}: pseudo set {name!r} has no labeled shard yet (run `mtdistill label`)")
    c, s = store.num_classes, store.shard_frames
    has = store.root["real/has_segm"][:]
    conf_m, dis, shares = [], [], []
    for start in range(0, int(idx.max()) + 1, s):
        sel = idx[(idx >= start) & (idx < start + s)]
        if not len(sel):
            continue
        lo, hi = int(sel.min()), int(sel.max()) + 1
        rel = sel - lo
        segm, conf, real = g["segm"][lo:hi][rel], g["conf"][lo:hi][rel], store.root["real/segm"][lo:hi][rel]
        labeled = segm != 255
        n_lab = labeled.sum((1, 2))
        conf_m.append(np.where(n_lab > 0, (conf * labeled).sum((1, 2)) / np.maximum(n_lab, 1) / 255, np.nan))
        both = labeled & (real != 255)
        n_both = both.sum((1, 2))
        wrong = (both & (segm != real)).sum((1, 2))
        dis.append(np.where(has[sel] & (n_both > 0), wrong / np.maximum(n_both, 1), np.nan))
        flat = segm.reshape(len(sel), -1)
        counts = np.stack([np.bincount(f, minlength=256)[:c] for f in flat])
        shares.append(counts / flat.shape[1])
    return FrameStats(idx, np.concatenate(conf_m).astype(np.float32), np.concatenate(dis).astype(np.float32),
                      has[idx], np.concatenate(shares).astype(np.float32))


def parse_sort(text: str, classes: list[dict]) -> tuple[str, int | None]:
    """'confidence' | 'disagreement' | 'class:NAME' -> (kind, class id or None); UserError naming the
    text (and the class names) otherwise."""
    kind, _, cls = str(text).partition(":")
    if kind in ("confidence", "disagreement") and not cls:
        return kind, None
    if kind == "class" and cls:
        return "class", class_id(cls, classes)
    raise UserError(f"--sort {text!r}: choose {SORTS}")


def class_id(name: str, classes: list[dict]) -> int:
    """The id of class `name`; UserError listing the store's classes when there is none."""
    for c in classes:
        if c["name"] == name:
            return int(c["id"])
    raise UserError(f"no class {name!r} in this store; classes: {', '.join(c['name'] for c in classes)}")


def order(stats: FrameStats, kind: str, cls: int | None = None) -> np.ndarray:
    """Row order for review, most doubtful first: 'confidence' ascending mean confidence, 'disagreement'
    descending (frames without real segmentation last), 'class' descending share of class `cls`. Ties
    and NaN keep frame order (NaN last)."""
    key = {"confidence": stats.mean_conf, "disagreement": -stats.disagreement,
           "class": -stats.shares[:, cls] if cls is not None else None}[kind]
    key = np.where(np.isnan(key), np.inf, key)
    return np.argsort(key, kind="stable")


def select(stats: FrameStats, text: str, classes: list[dict]) -> np.ndarray:
    """Store frame indices chosen by `text` ('lowest-confidence:N' | 'class:NAME:N'), among the labeled
    frames WITHOUT a real segmentation (a real label already wins over the pseudo one), most doubtful
    first; UserError for a bad text or when no frame qualifies."""
    head, _, num = str(text).rpartition(":")
    if not num.isdigit() or int(num) < 1 or not head:
        raise UserError(f"--select {text!r}: choose {SELECTS} with N >= 1")
    if head == "lowest-confidence":
        rows = order(stats, "confidence")
    elif head.startswith("class:"):
        rows = order(stats, "class", class_id(head[len("class:"):], classes))
    else:
        raise UserError(f"--select {text!r}: choose {SELECTS}")
    rows = rows[~stats.has_segm[rows]]
    if not len(rows):
        raise UserError("every labeled frame already has a real segmentation: nothing to export for review")
    return stats.index[rows[: int(num)]]
