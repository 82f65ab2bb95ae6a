"""Anchoring a teacher's depth to a frame's own sparse real depth: the per-frame fit behind pseudo depth.

Two modes:
- "scale" for metric teachers: depth_fit = s * pred with s = median(real / pred) over the pixels where both
  exist (the paper's KITTI hole filling rescales the expert's depth per frame the same way);
- "inverse" for relative teachers that predict inverse depth up to scale and shift (MiDaS, Depth Anything):
  1 / depth_fit = a * pred + b, aligned robustly in inverse depth by median and mean absolute deviation
  (Ranftl et al., "Towards Robust Monocular Depth Estimation", TPAMI 2020, eq. 6).
The fit's residual (median absolute relative error in metres on the points it saw) goes with the fit, so
callers can record it and turn it into a confidence. Used by stores/merge.py at training time and by
labeling for relative teachers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MODES = ("scale", "inverse")


@dataclass(frozen=True)
class DepthFit:
    """One frame's fit: metric depth = scale * pred ("scale"), or 1 / (scale * pred + shift) ("inverse");
    residual = median |fit - real| / real over the `points` pixels it was fitted on (0..inf, unitless)."""
    mode: str
    scale: float
    shift: float
    residual: float
    points: int

    def apply(self, pred: np.ndarray) -> np.ndarray:
        """pred (.., H, W) float (0 or less = no prediction) -> metres float32, 0 where the fit gives no
        positive depth."""
        pred = np.asarray(pred, np.float32)
        if self.mode == "scale":
            return np.where(pred > 0, pred * np.float32(self.scale), np.float32(0))
        inv = pred * np.float32(self.scale) + np.float32(self.shift)
        with np.errstate(divide="ignore"):
            return np.where(inv > 1e-6, 1.0 / np.maximum(inv, 1e-6), 0).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields."""
        return asdict(self)


def fit_depth(pred: np.ndarray, real: np.ndarray, mode: str = "scale", min_points: int = 20,
              mask: np.ndarray | None = None) -> DepthFit | None:
    """Fit a teacher's prediction of one frame to its sparse real depth.

    pred: (H, W) float, metres ("scale") or relative inverse depth ("inverse"), 0 or less = none;
    real: (H, W) float metres, 0 = none; mask: optional (H, W) bool, the pixels the fit may use (e.g. all
    but a held-out part). Returns None where fewer than `min_points` pixels have both, or the fit is
    degenerate (constant prediction). Raises ValueError for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"depth fit mode {mode!r}: choose one of {list(MODES)}")
    both = (pred > 0) & (real > 0) if mode == "scale" else np.isfinite(pred) & (real > 0)
    if mask is not None:
        both &= mask
    n = int(both.sum())
    if n < min_points:
        return None
    p, r = pred[both].astype(np.float64), real[both].astype(np.float64)
    if mode == "scale":
        scale, shift = float(np.median(r / p)), 0.0
    else:
        inv = 1.0 / r
        t_p, t_r = np.median(p), np.median(inv)
        s_p, s_r = np.mean(np.abs(p - t_p)), np.mean(np.abs(inv - t_r))
        if s_p <= 0:
            return None
        scale = float(s_r / s_p)
        shift = float(t_r - scale * t_p)
    fit = DepthFit(mode, scale, shift, 0.0, n)
    d = fit.apply(p.astype(np.float32))
    rel = np.where(d > 0, np.abs(d - r) / r, np.inf)
    return DepthFit(mode, scale, shift, float(np.median(rel)), n)
