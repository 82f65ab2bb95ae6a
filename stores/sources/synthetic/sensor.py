"""Depth-sensor simulation: which pixels of the exact depth a real sensor would have measured.

Sits at the end of synthetic/render: the clean depth is the ground truth; these functions return a
boolean mask of *measured* pixels, and the sensor depth is the clean depth there and 0 elsewhere (so
"sensor depth equals clean depth where valid" holds by construction).
- `kinect_valid`: structured-light holes (NYUDv2-like): beyond the range limit, dark or specular
  surfaces (glass, mirrors, screens), grazing angles, projector shadows beside foreground objects,
  broken pixels along depth edges, and blotchy random dropouts.
- `lidar_valid`: a 64-beam spinning LiDAR projected into the image (KITTI-like): one scan row per
  beam from +2 to -24.8 degrees, ~0.18 degrees between returns, dropouts, no return from sky or past
  80 m; about 5 % of the pixels.
"""
from __future__ import annotations

import numpy as np

BASELINE = 0.075       # Kinect projector-camera baseline (m)


def _blobs(rng, shape, cell: int, p: np.ndarray | float) -> np.ndarray:
    """Coarse random blotches: True with probability p, constant over cell x cell blocks."""
    H, W = shape
    coarse = rng.random((H // cell + 1, W // cell + 1), dtype=np.float32)
    return np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:H, :W] < p


def kinect_valid(depth, cos_view, lum, hole_p, fx: float, rng) -> np.ndarray:
    """depth (H, W) clean metres (0 = none); cos_view |cos| between ray and normal; lum albedo
    luminance; hole_p per-pixel material hole probability. -> (H, W) bool measured."""
    H, W = depth.shape
    cell = max(2, W // 80)
    r_max = 5.5 + 3.0 * float(rng.random())
    ok = (depth > 0) & (depth < r_max)
    ok &= ~((depth > r_max - 0.8) & _blobs(rng, (H, W), cell, np.float32(0.4)))
    ok &= cos_view > 0.1 + 0.08 * rng.random((H, W), dtype=np.float32)
    ok &= ~((lum < 0.02) & _blobs(rng, (H, W), cell, 0.8))
    ok &= ~_blobs(rng, (H, W), cell, hole_p)
    ok &= ~_blobs(rng, (H, W), max(1, cell // 2), np.float32(0.004))
    # projector shadow: the projector sits BASELINE to the right; a pixel is lit only if no pixel to
    # its right lands left of it in the projector image
    zz = np.where(depth > 0, depth, np.float32(1e6))
    up = np.arange(W, dtype=np.float32)[None, :] - np.float32(fx * BASELINE) / zz
    right_min = np.minimum.accumulate(up[:, ::-1], axis=1)[:, ::-1]
    right_min = np.concatenate([right_min[:, 1:], np.full((H, 1), np.inf, np.float32)], axis=1)
    ok &= ~(up > right_min + np.float32(0.5))
    # broken pixels at depth edges
    z = depth
    jump = np.zeros((H, W), bool)
    jump[:, 1:] |= np.abs(z[:, 1:] - z[:, :-1]) > 0.04 * z[:, 1:]
    jump[1:, :] |= np.abs(z[1:, :] - z[:-1, :]) > 0.04 * z[1:, :]
    ok &= ~(jump & (rng.random((H, W), dtype=np.float32) < 0.6))
    return ok


def lidar_valid(depth, fx: float, fy: float, cy: float, hole_p, rng, max_depth: float = 80.0) -> np.ndarray:
    """-> (H, W) bool: pixels where a projected LiDAR return lands (depth > 0 there)."""
    H, W = depth.shape
    up, down = 0.0349, -0.4621                       # tan(+2 deg), tan(-24.8 deg)
    slopes = up + (down - up) * np.arange(64, dtype=np.float64) / 63.0
    rows = np.floor(cy - fy * slopes + 0.3 * (rng.random(64) - 0.5) + 0.5).astype(np.int64)
    rows = rows[(rows >= 0) & (rows < H)]
    step = fx * 0.00314                              # ~0.18 degrees between returns, in pixels
    mask = np.zeros((H, W), bool)
    if rows.size:
        if step >= 1.0:
            n = int(W / step) + 2
            u = rng.random((rows.size, 1)) * step + np.arange(n)[None, :] * step
            u = np.floor(u + 0.25 * (rng.random(u.shape) - 0.5)).astype(np.int64)
            keep = u < W
            mask[np.broadcast_to(rows[:, None], u.shape)[keep], u[keep]] = True
        else:
            mask[rows, :] = rng.random((rows.size, W)) < step
    mask &= (depth > 0) & (depth <= max_depth)
    mask &= rng.random((H, W), dtype=np.float32) >= np.float32(0.04) + hole_p
    return mask
