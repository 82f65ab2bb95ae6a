"""Evaluation metrics, pooled over a whole dataset (pure numpy; torch tensors are accepted and converted).

Flow: evaluate / bench -> predictions at label resolution + ground truth -> **SegmMetrics /
DepthMetrics**.update() per batch -> compute() once at the end.
- Segmentation: one confusion matrix for the whole set; ground-truth labels >= num_classes (255) ignored;
  a prediction outside the class list (e.g. 255, "no label") is a miss of the true class, unless the caller
  measures only where a prediction exists (qa: pseudo-labels, with their coverage reported apart);
  IoU_c = TP / (TP + FP + FN); classes with an empty union are left out of the mean.
- Depth: every valid pixel of the whole set (gt > 0, optionally gt <= cap, optionally inside the
  Eigen (NYUD) or Garg (KITTI) crop) pooled, so RMSE is not a mean of per-image RMSEs.
"""
from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """numpy array from a numpy array or a (possibly CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_shapes(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}; "
                         "upsample predictions to label size first")


# ---- segmentation ------------------------------------------------------------------------------

def confusion_matrix(pred, gt, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, cols = prediction.
    Pixels with gt outside [0, num_classes) are ignored; predictions outside it count in no column."""
    pred, gt = as_numpy(pred).astype(np.int64), as_numpy(gt).astype(np.int64)
    _check_shapes(pred, gt)
    keep = (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
    pairs = gt[keep] * num_classes + pred[keep]
    return np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segm_scores(conf: np.ndarray, missed: np.ndarray | None = None) -> dict:
    """mIoU, per-class IoU (NaN where the union is empty) and pixel accuracy from a confusion matrix;
    `missed` (num_classes,) counts pixels of each true class whose prediction was outside the class list
    (false negatives that no column of `conf` holds)."""
    missed = np.zeros(len(conf)) if missed is None else missed.astype(np.float64)
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp + missed  # TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = conf.sum() + missed.sum()
    present = union > 0
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou": [float(v) for v in iou],
        "pixels": int(total),
    }


class SegmMetrics:
    """Accumulates one confusion matrix; update(pred_labels, gt_labels) with equal shapes.

    invalid_pred: "miss" (default) counts a prediction outside [0, num_classes) as a false negative of the
    true class; "ignore" leaves such pixels out (for pseudo-labels, whose coverage is measured apart)."""

    def __init__(self, num_classes: int, invalid_pred: str = "miss"):
        if invalid_pred not in ("miss", "ignore"):
            raise ValueError(f"invalid_pred {invalid_pred!r}: choose 'miss' or 'ignore'")
        self.num_classes, self.invalid_pred = num_classes, invalid_pred
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred, gt) -> None:
        """Add one batch: pred, gt integer labels of the same shape (..., H, W) at label resolution; gt 255 ignored.
        ValueError when the shapes differ.
        """
        self.conf += confusion_matrix(pred, gt, self.num_classes)
        if self.invalid_pred == "miss":
            p, g = as_numpy(pred).astype(np.int64), as_numpy(gt).astype(np.int64)
            bad = (g >= 0) & (g < self.num_classes) & ((p < 0) | (p >= self.num_classes))
            self.missed += np.bincount(g[bad], minlength=self.num_classes)

    def compute(self) -> dict:
        """{"miou", "pixel_acc" (0..1), "iou" (per class, NaN where the union is empty), "pixels"} over all updates."""
        return segm_scores(self.conf, self.missed)


def iou_table(ious, class_names, per_row: int = 4) -> list[str]:
    """Text lines of a per-class IoU table (%), `per_row` classes a line; '-' where a class's IoU is
    undefined (None or NaN: absent from prediction and ground truth). Used by evaluate and qa."""
    cells = [f"{n[:14]:<14} {'  -  ' if v is None or v != v else f'{100 * v:5.1f}'}"
             for n, v in zip(class_names, ious)]
    return ["  per-class IoU (%):"] + ["    " + "   ".join(cells[i:i + per_row])
                                        for i in range(0, len(cells), per_row)]


# ---- depth -------------------------------------------------------------------------------------

def eigen_crop(height: int, width: int) -> tuple[slice, slice]:
    """NYUD Eigen crop (Eigen et al. 2014), rows 45:471 and cols 41:601 at 480x640, scaled proportionally
    otherwise: (row slice, col slice)."""
    return (slice(round(45 * height / 480), round(471 * height / 480)),
            slice(round(41 * width / 640), round(601 * width / 640)))


def garg_crop(height: int, width: int) -> tuple[slice, slice]:
    """KITTI Garg crop (Garg et al. 2016): rows [0.408H, 0.992H), cols [0.036W, 0.964W), with the exact constants of the
    standard evaluation code (truncated to int), so results compare with published numbers."""
    return (slice(int(0.40810811 * height), int(0.99189189 * height)),
            slice(int(0.03594771 * width), int(0.96405229 * width)))


# crop name -> function (height, width) -> (row slice, col slice)
CROPS = {"eigen": eigen_crop, "garg": garg_crop}


def depth_mask(gt: np.ndarray, crop: str | None = None, cap: float | None = None) -> np.ndarray:
    """Valid-pixel mask for gt (..., H, W): gt > 0, gt <= cap if given, inside the crop if given."""
    mask = gt > 0
    if cap is not None:
        mask &= gt <= cap
    if crop is not None:
        if crop not in CROPS:
            raise KeyError(f"unknown depth crop {crop!r}; options: {sorted(CROPS)}")
        rows, cols = CROPS[crop](*gt.shape[-2:])
        inside = np.zeros(gt.shape[-2:], dtype=bool)
        inside[rows, cols] = True
        mask &= inside
    return mask


DEPTH_KEYS = ("rmse", "rmse_log", "abs_rel", "sq_rel", "delta1", "delta2", "delta3")


class DepthMetrics:
    """Pooled depth metrics over every valid pixel seen.

    crop: None, "eigen" or "garg"; cap: max depth in metres (gt > cap ignored, predictions clipped to it);
    min_depth: predictions clipped below to it (keeps log finite).
    """

    def __init__(self, crop: str | None = None, cap: float | None = None, min_depth: float = 1e-3):
        if crop is not None and crop not in CROPS:
            raise KeyError(f"unknown depth crop {crop!r}; options: {sorted(CROPS)}")
        self.crop, self.cap, self.min_depth = crop, cap, min_depth
        self.n = 0
        self.sums = dict.fromkeys(("sq", "sq_log", "abs_rel", "sq_rel", "d1", "d2", "d3"), 0.0)

    def update(self, pred, gt) -> None:
        """pred, gt: (..., H, W) metres, same shape; gt == 0 marks invalid pixels."""
        pred, gt = as_numpy(pred).astype(np.float64), as_numpy(gt).astype(np.float64)
        _check_shapes(pred, gt)
        mask = depth_mask(gt, self.crop, self.cap)
        p, g = pred[mask], gt[mask]
        if p.size == 0:
            return
        p = np.clip(p, self.min_depth, self.cap if self.cap is not None else None)
        diff = p - g
        ratio = np.maximum(p / g, g / p)
        s = self.sums
        s["sq"] += float((diff ** 2).sum())
        s["sq_log"] += float(((np.log(p) - np.log(g)) ** 2).sum())
        s["abs_rel"] += float((np.abs(diff) / g).sum())
        s["sq_rel"] += float((diff ** 2 / g).sum())
        s["d1"] += float((ratio < 1.25).sum())
        s["d2"] += float((ratio < 1.25 ** 2).sum())
        s["d3"] += float((ratio < 1.25 ** 3).sum())
        self.n += int(p.size)

    def compute(self) -> dict:
        """{"rmse", "rmse_log", "abs_rel", "sq_rel", "delta1", "delta2", "delta3", "pixels"};
        NaN everywhere when no valid pixel was seen."""
        n, s = self.n, self.sums
        if n == 0:
            return {**dict.fromkeys(DEPTH_KEYS, float("nan")), "pixels": 0}
        return {
            "rmse": float(np.sqrt(s["sq"] / n)),
            "rmse_log": float(np.sqrt(s["sq_log"] / n)),
            "abs_rel": s["abs_rel"] / n,
            "sq_rel": s["sq_rel"] / n,
            "delta1": s["d1"] / n,
            "delta2": s["d2"] / n,
            "delta3": s["d3"] / n,
            "pixels": n,
        }
