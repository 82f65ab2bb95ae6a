"""THE merge rule: real targets where valid, else confident pseudo-labels, else ignore.

Used by the training Dataset (stores/dataset.py) and recorded in every checkpoint as `policy.to_dict()`.
Works on numpy arrays of one frame or a batch; never mixes class lists or units (callers check the
pseudo set's class list and depth unit against the store's before merging).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stores.errors import UserError

SRC_NONE, SRC_REAL, SRC_PSEUDO = 0, 1, 2


@dataclass(frozen=True)
class MergePolicy:
    """How real and pseudo targets combine per pixel (see `merge_targets`); saved in every checkpoint.

    Thresholds are probabilities 0..1, compared against confidences stored x255; UserError when outside [0, 1].
    """
    pseudo: str | None = None         # pseudo-label set name; None = real targets only
    segm_threshold: float = 0.5       # pseudo segm used where teacher confidence >= this (0..1)
    depth_threshold: float = 0.0      # pseudo depth used where its confidence >= this (0..1)
    depth_override: bool = False      # pseudo depth replaces valid (sparse) real depth too
    use_real: bool = True             # False: pseudo targets only (teacher-only regime)

    def __post_init__(self):
        for name in ("segm_threshold", "depth_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"{name.replace('_', '-')} {v} outside [0, 1]")

    def to_dict(self) -> dict:
        """Plain dict of the fields, for checkpoints and commit metadata."""
        return asdict(self)


def merge_targets(real_segm: np.ndarray, real_depth: np.ndarray, policy: MergePolicy,
                  pseudo: dict | None = None) -> dict:
    """Per-pixel targets and where each came from.

    real_segm uint8 (.., H, W) 255 = none; real_depth float (.., H, W) 0 = none;
    pseudo: {"segm" uint8, "conf" uint8 (x255), "depth" float (0 = none), optional "depth_conf" uint8}.
    Returns {"segm" uint8, "depth" float32, "segm_src" uint8, "depth_src" uint8} (SRC_* codes).
    """
    segm = real_segm.copy() if policy.use_real else np.full_like(real_segm, 255)
    depth = real_depth.astype(np.float32, copy=True) if policy.use_real else np.zeros(real_depth.shape, np.float32)
    segm_src = np.where(segm != 255, SRC_REAL, SRC_NONE).astype(np.uint8)
    depth_src = np.where(depth > 0, SRC_REAL, SRC_NONE).astype(np.uint8)
    if policy.pseudo is not None and pseudo is not None:
        # conf is stored as round(p * 255): compare in the same integer units
        s_thr = np.ceil(policy.segm_threshold * 255 - 1e-6)
        take = (segm == 255) & (pseudo["segm"] != 255) & (pseudo["conf"] >= s_thr)
        segm[take] = pseudo["segm"][take]
        segm_src[take] = SRC_PSEUDO

        pd = pseudo["depth"].astype(np.float32)
        d_conf = pseudo.get("depth_conf")
        ok = pd > 0
        if d_conf is not None:
            ok &= d_conf >= np.ceil(policy.depth_threshold * 255 - 1e-6)
        take = ok if policy.depth_override else ok & (depth <= 0)
        depth[take] = pd[take]
        depth_src[take] = SRC_PSEUDO
    return {"segm": segm, "depth": depth, "segm_src": segm_src, "depth_src": depth_src}
