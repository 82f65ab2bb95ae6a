"""Anchoring a relative-depth teacher before labeling (coordinator side of pipeline/label/job.py).

A relative model (MiDaS / DPT, Depth Anything "relative") predicts inverse depth up to scale and shift.
Before any worker starts, the job runs it on up to SAMPLE_FRAMES frames that carry real depth (spread
over the store), fits one map 1 / metres = scale * pred + shift over all their pixels with real depth
(stores.depthfit, mode "inverse"), and reopens the teacher with that fit in its spec, so every worker
writes metres. The fit (scale, shift, residual, points, frames) goes into the pseudo set's provenance
and so into the label commit.
"""
from __future__ import annotations

import numpy as np

from stores.depthfit import fit_depth
from stores.errors import UserError
from teachers import hf

SAMPLE_FRAMES = 32
MIN_POINTS = 20


def sample_frames(has_depth: np.ndarray, count: int = SAMPLE_FRAMES) -> np.ndarray:
    """Indices of at most `count` frames with real depth (bool (N,) `has_depth`), spread evenly."""
    have = np.flatnonzero(has_depth)
    if len(have) <= count:
        return have
    return have[np.unique(np.linspace(0, len(have) - 1, count).round().astype(int))]


def anchor_relative(teacher, store, reopen):
    """`teacher` unchanged unless it is a relative-depth hf: teacher without a fit; then the fit described
    above, and `reopen(spec)` -> the teacher opened from the spec that carries it. UserError naming the
    teacher when no frame has real depth or too few pixels to fit."""
    if not getattr(teacher.model, "needs_fit", False):
        return teacher
    frames = sample_frames(store.root["real/has_depth"][:].astype(bool))
    if len(frames) == 0:
        raise UserError(f"{teacher.spec}: predicts relative depth, which is anchored to real depth, but no "
                        f"frame of {store.path} has real depth; label with a metric model (or ?depth=metric)")
    preds, reals = [], []
    teacher.model.raw = True
    try:
        for start in range(0, len(frames), teacher.batch_size):
            idx = frames[start:start + teacher.batch_size]
            rgb = np.stack([store.root["frames/rgb"][int(i)] for i in idx])          # (b, H, W, 3) uint8
            preds.append(teacher.predict(rgb)["depth"])                             # (b, H, W) relative
            reals.append(np.stack([store.root["real/depth"][int(i)] for i in idx]))  # (b, H, W) metres
    finally:
        teacher.model.raw = False
    w = preds[0].shape[-1]
    fit = fit_depth(np.concatenate(preds).reshape(-1, w), np.concatenate(reals).reshape(-1, w), "inverse",
                    min_points=MIN_POINTS)
    if fit is None:
        raise UserError(f"{teacher.spec}: cannot anchor its relative depth: fewer than {MIN_POINTS} pixels with "
                        f"real depth in {len(frames)} frames, or a constant prediction")
    source, options = hf.parse_hf_spec(teacher.spec)
    anchored = reopen(hf.hf_spec(source, {**options, "scale": fit.scale, "shift": fit.shift}))
    anchored.origin["fit"] = {**fit.to_dict(), "frames": len(frames)}
    return anchored
