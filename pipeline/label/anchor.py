"""Anchoring a relative-depth teacher to real depth: once per store before labeling (coordinator side of
pipeline/label/job.py), then per frame while labeling (worker side, pipeline/label/task.py).

Store-wide fit: a relative model (MiDaS / DPT, Depth Anything "relative") predicts inverse depth up to scale and shift.
Before any worker starts, the job runs it on up to SAMPLE_FRAMES frames that carry real depth (spread
over the store), fits one map 1 / metres = scale * pred + shift over all their pixels with real depth
(stores.depthfit, mode "inverse"), and reopens the teacher with that fit in its spec, so every worker
writes metres. The fit (scale, shift, residual, points, frames) goes into the pseudo set's provenance
and so into the label commit.

Per-frame fit (`predict_depth`): a frame that carries real depth (with at least MIN_POINTS pixels) gets its
own inverse fit of the raw prediction, recorded in pseudo/<name>/depth_fit (FIT_FIELDS per frame); every
other frame keeps the store-wide fit (its depth_fit row stays NaN).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from stores.depthfit import fit_depth
from stores.errors import UserError
from teachers import hf

SAMPLE_FRAMES = 32
MIN_POINTS = 20
FIT_FIELDS = ("scale", "shift", "residual", "points")      # a row of pseudo/<name>/depth_fit


def is_relative(teacher) -> bool:
    """True for a depth teacher whose model predicts relative inverse depth (an hf: relative model)."""
    return getattr(teacher.model, "kind", None) == "relative"


@contextmanager
def raw_output(teacher):
    """Inside the block a relative hf: teacher's predict gives its raw relative inverse depth (no fit)."""
    teacher.model.raw = True
    try:
        yield teacher
    finally:
        teacher.model.raw = False


def predict_depth(teacher, rgb: np.ndarray, real: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A depth teacher's metres for frames `rgb` uint8 (B, H, W, 3) whose real depth is `real` float32
    (B, H, W) metres, 0 = none (None: no frame has any). Returns (depth float32 (B, H, W) metres, fits float32
    (B, 4) = FIT_FIELDS). A relative teacher fits each frame with at least MIN_POINTS real pixels on its
    own (stores.depthfit "inverse"); the other frames, and every frame of a metric teacher, get the
    depth the teacher gives as opened (the store-wide fit for relative ones) and a NaN row."""
    fits = np.full((len(rgb), len(FIT_FIELDS)), np.nan, np.float32)
    if real is None or not is_relative(teacher):
        return teacher.predict(rgb)["depth"], fits
    with raw_output(teacher):
        raw = teacher.predict(rgb)["depth"]                                        # (B, H, W) relative
    depth = np.empty_like(raw)
    for i, (pred, r) in enumerate(zip(raw, real)):
        fit = fit_depth(pred, r, "inverse", min_points=MIN_POINTS)
        if fit is not None:
            fits[i] = [fit.scale, fit.shift, fit.residual, fit.points]
        depth[i] = (fit or teacher.model.fit).apply(pred)
    return depth, fits


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
    with raw_output(teacher):
        for start in range(0, len(frames), teacher.batch_size):
            idx = frames[start:start + teacher.batch_size]
            rgb = np.stack([store.root["frames/rgb"][int(i)] for i in idx])          # (b, H, W, 3) uint8
            preds.append(teacher.predict(rgb)["depth"])                             # (b, H, W) relative
            reals.append(np.stack([store.root["real/depth"][int(i)] for i in idx]))  # (b, H, W) metres
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
