"""THE merge rule: real targets where valid, else confident pseudo-labels, else ignore.

Used by the training Dataset (stores/dataset.py) and recorded in every checkpoint as `policy.to_dict()`.
Works on numpy arrays of one frame or a batch; never mixes class lists or units (callers check the
pseudo set's class list and depth unit against the store's before merging).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from stores.depthfit import fit_depth
from stores.errors import UserError

SRC_NONE, SRC_REAL, SRC_PSEUDO = 0, 1, 2


@dataclass(frozen=True)
class MergePolicy:
    """How real and pseudo targets merge, per pixel (recorded in every checkpoint).

    Segmentation: real label where annotated, else the teacher's label where its confidence (0..1) reaches
    `segm_threshold`, or, with `segm_class_share` > 0 (class-balanced self-training, Zou et al., ECCV 2018),
    the lower of that and the class's own threshold: the confidence above which the `segm_class_share` most
    confident of the pixels the teacher gives that class lie (`segm_class_thresholds`, one per class,
    filled by stores.dataset.resolve_policy from the training frames), so rare, less confident classes keep
    pseudo-labels. With `segm_soft` (the set labeled with `--topk K`), pixels without a real label carry the
    teacher's top-K classes and probabilities instead (soft targets, Hinton et al. 2015: the student learns
    them with a soft cross-entropy weighted by the teacher's confidence, student/losses.py); the hard
    merged label then only decides `depth_classes`. Depth (metres): real depth where valid (unless `depth_override`), else the teacher's
    depth where its confidence reaches `depth_threshold` (`depth_fill` "holes": in every pixel without real
    depth, the paper's LiDAR hole filling; "frames": only in frames without any real depth), after these
    optional steps, in order:
    - depth_classes: pseudo depth only on pixels whose merged class is listed (None: all classes); the
      training loop fills it with the classes that carry real depth in the data (`--pseudo-depth-classes
      observed`), so e.g. sky, which a LiDAR never returns, gets no invented depth;
    - depth_anchor "scale": pseudo depth of a frame times median(real / pseudo) over the pixels where both
      exist (at least `anchor_points`; stores/depthfit.py), the per-frame scale fit of the paper's KITTI hole
      filling; a frame whose fit misses its own real points by a median relative error above
      `anchor_max_residual` (> 0) gets no pseudo depth;
    - depth_consistency > 0: drop pseudo depth within `consistency_radius` pixels of a real pixel where the
      (anchored) pseudo depth is off by more than this relative error;
    - depth_max > 0: drop pseudo depth beyond this many metres.
    Raises UserError for thresholds outside [0, 1], an unknown anchor or fill mode, or segm_soft without a set."""
    pseudo: str | None = None         # pseudo-label set name; None = real targets only
    segm_threshold: float = 0.5       # pseudo segm used where teacher confidence >= this (0..1)
    segm_class_share: float = 0.0     # class-balanced: keep at least this share of each class's pixels
    segm_class_thresholds: tuple[float, ...] | None = None    # per class; resolved from the data
    segm_soft: bool = False           # top-k soft targets where no real label (instead of hard pseudo labels)
    depth_threshold: float = 0.0      # pseudo depth used where its confidence >= this (0..1)
    depth_override: bool = False      # pseudo depth replaces valid (sparse) real depth too
    depth_fill: str = "holes"         # "holes": pixels without real depth; "frames": frames without real depth
    use_real: bool = True             # False: pseudo targets only (teacher-only regime)
    depth_classes: tuple[int, ...] | str | None = None    # or "observed": resolved by the training loop
    depth_anchor: str = "none"        # "none" | "scale"
    anchor_points: int = 20
    anchor_max_residual: float = 0.0  # relative; 0 = keep every fitted frame
    depth_consistency: float = 0.0    # relative error tolerance; 0 = no filter
    consistency_radius: int = 4       # pixels
    depth_max: float = 0.0            # metres; 0 = no cap

    def __post_init__(self):
        for name in ("segm_threshold", "depth_threshold", "segm_class_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"{name.replace('_', '-')} {v} outside [0, 1]")
        if self.segm_soft and self.pseudo is None:
            raise UserError("--segm-soft learns a pseudo-label set's top-k classes: give --pseudo NAME")
        if self.depth_fill not in FILLS:
            raise UserError(f"depth fill {self.depth_fill!r}: choose one of {list(FILLS)}")
        if self.depth_anchor not in ANCHORS:
            raise UserError(f"depth anchor {self.depth_anchor!r}: choose one of {list(ANCHORS)}")
        if self.depth_classes is not None and self.depth_classes != OBSERVED:
            if isinstance(self.depth_classes, str):
                raise UserError(f"pseudo depth classes {self.depth_classes!r}: give class ids, None or {OBSERVED!r}")
            object.__setattr__(self, "depth_classes", tuple(int(c) for c in self.depth_classes))
        if self.segm_class_thresholds is not None:
            object.__setattr__(self, "segm_class_thresholds", tuple(float(t) for t in self.segm_class_thresholds))

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready; depth_classes as a list or None)."""
        d = asdict(self)
        for k in ("depth_classes", "segm_class_thresholds"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d


ANCHORS = ("none", "scale")
FILLS = ("holes", "frames")
OBSERVED = "observed"


def merge_targets(real_segm: np.ndarray, real_depth: np.ndarray, policy: MergePolicy,
                  pseudo: dict | None = None) -> dict:
    """Per-pixel targets and where each came from.

    real_segm uint8 (.., H, W) 255 = none; real_depth float (.., H, W) 0 = none;
    pseudo: {"segm" uint8, "conf" uint8 (x255), "depth" float (0 = none), optional "depth_conf" uint8,
    with segm_soft "topk_class" / "topk_prob" uint8 (.., K, H, W)}.
    Returns {"segm" uint8, "depth" float32, "segm_src" uint8, "depth_src" uint8} (SRC_* codes); with
    segm_soft also "segm_topk" / "segm_topk_p" uint8 (.., K, H, W): top-k classes and round(prob * 255), the
    probabilities 0 where the pixel has a real label; "segm" then holds real labels only and "segm_src" marks
    the soft pixels SRC_PSEUDO.
    """
    segm = real_segm.copy() if policy.use_real else np.full_like(real_segm, 255)
    depth = real_depth.astype(np.float32, copy=True) if policy.use_real else np.zeros(real_depth.shape, np.float32)
    segm_src = np.where(segm != 255, SRC_REAL, SRC_NONE).astype(np.uint8)
    depth_src = np.where(depth > 0, SRC_REAL, SRC_NONE).astype(np.uint8)
    if policy.pseudo is not None and pseudo is not None:
        s_thr = segm_thresholds(pseudo["segm"], policy)
        take = (segm == 255) & (pseudo["segm"] != 255) & (pseudo["conf"] >= s_thr)
        segm[take] = pseudo["segm"][take]
        segm_src[take] = SRC_PSEUDO

        pd = pseudo_depth(pseudo["depth"].astype(np.float32), real_depth, segm, policy)
        d_conf = pseudo.get("depth_conf")
        ok = pd > 0
        if d_conf is not None:
            ok &= d_conf >= np.ceil(policy.depth_threshold * 255 - 1e-6)
        if policy.depth_fill == "frames":        # only frames (.., H, W) without any real depth
            ok &= ~(real_depth > 0).any(axis=(-2, -1), keepdims=True)
        take = ok if policy.depth_override else ok & (depth <= 0)
        depth[take] = pd[take]
        depth_src[take] = SRC_PSEUDO
        if policy.segm_soft:
            return {**soft_targets(segm, segm_src, pseudo), "depth": depth, "depth_src": depth_src}
    return {"segm": segm, "depth": depth, "segm_src": segm_src, "depth_src": depth_src}


def soft_targets(segm: np.ndarray, segm_src: np.ndarray, pseudo: dict) -> dict:
    """The segm_soft outputs of merge_targets: hard pseudo labels taken back out of `segm`, the teacher's top-k
    kept on every pixel without a real label (probabilities zeroed elsewhere)."""
    real = segm_src == SRC_REAL
    probs = np.where(real[..., None, :, :], np.uint8(0), pseudo["topk_prob"])
    soft = probs.any(axis=-3)
    return {"segm": np.where(real, segm, np.uint8(255)), "segm_src": np.where(real, SRC_REAL, np.where(
        soft, SRC_PSEUDO, SRC_NONE)).astype(np.uint8), "segm_topk": pseudo["topk_class"], "segm_topk_p": probs}


def segm_thresholds(pseudo_segm: np.ndarray, policy: MergePolicy):
    """The confidence each pseudo pixel must reach, in the stored units (round(p * 255)): the global
    threshold, or per pixel min(global, its class's threshold) with class-balanced thresholds."""
    glob = np.ceil(policy.segm_threshold * 255 - 1e-6)
    if not policy.segm_class_thresholds:
        return glob
    per_class = np.minimum(np.ceil(np.asarray(policy.segm_class_thresholds) * 255 - 1e-6), glob)
    return np.append(per_class, glob)[np.minimum(pseudo_segm, len(per_class))]


def pseudo_depth(pd: np.ndarray, real: np.ndarray, segm: np.ndarray, policy: MergePolicy) -> np.ndarray:
    """The teacher's depth (.., H, W) float32 metres (0 = none) after the policy's class filter, per-frame
    scale anchoring to the real depth, consistency filter and range cap (see MergePolicy); same shape."""
    pd = pd.copy()
    if policy.depth_classes == OBSERVED:
        raise ValueError("MergePolicy(depth_classes='observed') must be resolved first (stores.dataset.resolve_policy)")
    if policy.depth_classes is not None:
        pd[~np.isin(segm, policy.depth_classes)] = 0
    if pd.ndim == 2:
        pd = _anchor_and_filter(pd, real, policy)
    else:
        flat_pd, flat_real = pd.reshape(-1, *pd.shape[-2:]), real.reshape(-1, *real.shape[-2:])
        pd = np.stack([_anchor_and_filter(p, r, policy) for p, r in zip(flat_pd, flat_real)]).reshape(pd.shape)
    if policy.depth_max > 0:
        pd[pd > policy.depth_max] = 0
    return pd


def _anchor_and_filter(pd: np.ndarray, real: np.ndarray, policy: MergePolicy) -> np.ndarray:
    """One frame (H, W): scale anchoring, then the consistency filter."""
    if policy.depth_anchor == "scale":
        fit = fit_depth(pd, real, "scale", min_points=policy.anchor_points)
        if fit is not None:
            if 0 < policy.anchor_max_residual < fit.residual:
                return np.zeros_like(pd)
            pd = fit.apply(pd)
    both = (pd > 0) & (real > 0)
    if policy.depth_consistency > 0 and both.any():
        rel = np.zeros(pd.shape, bool)
        rel[both] = np.abs(pd[both] - real[both]) > policy.depth_consistency * real[both]
        if rel.any():
            size = 2 * policy.consistency_radius + 1
            pd = np.where(ndimage.maximum_filter(rel, size=size), np.float32(0), pd)
    return pd
