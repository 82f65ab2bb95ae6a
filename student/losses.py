"""Student losses: cross-entropy (segmentation), berHu (depth) and their weighted sum.

Flow: model outputs {"segm", "depth"} at 1/4 resolution + merged targets at full resolution ->
**MultiTaskLoss** -> {"loss", "segm", "depth"} -> optimiser. Predictions are upsampled bilinearly to
the target size here, never the targets downsampled. A task with no valid pixel in the batch
contributes exactly 0 but stays in the autograd graph (so DDP / optimisers see every parameter).
Optionally the `drop` share of highest-loss pixels among those with pseudo targets (a mask) is ignored
per batch: noisy pseudo-labels are the ones a student cannot fit (Depth Anything V2 drops the top 10 %).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _zero(x: torch.Tensor) -> torch.Tensor:
    """A 0 that keeps x in the graph."""
    return x.sum() * 0.0


def keep_mask(cost: torch.Tensor, pseudo: torch.Tensor | None, drop: float) -> torch.Tensor | None:
    """Which of N per-pixel costs to keep: all but the `drop` share (0..1) of highest cost among the pixels
    flagged in `pseudo` (N,) bool; None when nothing is dropped. Real-target pixels are always kept."""
    if pseudo is None or drop <= 0:
        return None
    n = int(pseudo.sum())
    k = int(drop * n)
    if k == 0:
        return None
    worst = cost.detach()[pseudo].kthvalue(n - k).values       # the (n-k)-th smallest pseudo cost
    return ~pseudo | (cost.detach() <= worst)


def segm_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
              pseudo: torch.Tensor | None = None, drop: float = 0.0) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels.

    logits: (B,C,h,w); target: (B,H,W) integer labels, `ignore_index` = not annotated; pseudo: optional
    (B,H,W) bool, pixels whose label is a pseudo-label, of which the `drop` share with the highest
    cross-entropy is ignored.
    """
    logits = _resize(logits, target.shape[-2:])  # (B,C,H,W)
    target = target.long()
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    if pseudo is None or drop <= 0:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    cost = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")[valid]
    keep = keep_mask(cost, pseudo[valid], drop)
    return cost.mean() if keep is None else cost[keep].mean()


def berhu_loss(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.2,
               pseudo: torch.Tensor | None = None, drop: float = 0.0) -> torch.Tensor:
    """berHu, the reverse Huber loss (Laina et al. 2016), averaged over valid depth pixels (target > 0).

    pred: (B,1,h,w) metres (passed through ReLU); target: (B,H,W) or (B,1,H,W) metres, 0 = invalid;
    pseudo: optional bool of the target's shape, pixels with pseudo depth, of which the `drop` share with
    the highest cost is ignored. err = |pred - gt|; c = threshold * max(err) over the batch (a constant, no
    gradient); cost = err where err <= c, else (err^2 + c^2) / (2c). c = 0.2 * max follows the paper
    authors' code.
    """
    if target.dim() == 3:
        target = target.unsqueeze(1)  # (B,1,H,W)
    pred = F.relu(_resize(pred, target.shape[-2:]))
    valid = target > 0
    if not bool(valid.any()):
        return _zero(pred)
    err = (pred[valid] - target[valid]).abs()  # (N_valid,)
    c = threshold * err.detach().max()
    c_safe = c.clamp_min(torch.finfo(err.dtype).tiny)  # c == 0 means every err == 0: linear branch
    cost = torch.where(err <= c, err, (err * err + c * c) / (2 * c_safe))
    keep = keep_mask(cost, None if pseudo is None else pseudo.reshape(target.shape)[valid], drop)
    return cost.mean() if keep is None else cost[keep].mean()


# task -> loss function; MultiTaskLoss weights must use these keys
LOSSES = {"segm": segm_loss, "depth": berhu_loss}


class MultiTaskLoss(nn.Module):
    """Weighted sum of per-task losses; returns {"loss": total, "segm": ..., "depth": ...} (tensors).

    weights: task -> weight (default 0.5 / 0.5 as in the paper). A task missing from the targets
    counts as having no valid pixel. pseudo_drop: share (0..1) of the highest-loss pseudo-target pixels of
    each task ignored per batch (needs the `sources` masks in forward).
    """

    def __init__(self, weights: Mapping[str, float] | None = None, pseudo_drop: float = 0.0):
        super().__init__()
        self.pseudo_drop = pseudo_drop
        weights = dict(weights if weights is not None else {"segm": 0.5, "depth": 0.5})
        for task in weights:
            if task not in LOSSES:
                raise KeyError(f"unknown task {task!r} in loss weights; options: {sorted(LOSSES)}")
        self.weights = weights

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                pseudo: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """outputs: {"segm" (B,C,h,w) logits, "depth" (B,1,h,w) metres} at 1/4 resolution; targets: {"segm" (B,H,W)
        int, 255 = ignore, "depth" (B,H,W) or (B,1,H,W) metres, 0 = ignore}; pseudo: optional task -> (B,H,W) bool,
        pixels whose target is a pseudo-label. Returns {"loss", "segm", "depth"} scalars; "loss" is the
        weighted sum, the task entries unweighted.
        """
        parts, pseudo = {}, pseudo or {}
        for task in self.weights:
            if task in targets:
                parts[task] = LOSSES[task](outputs[task], targets[task], pseudo=pseudo.get(task),
                                           drop=self.pseudo_drop)
            else:
                parts[task] = _zero(outputs[task])
        total = sum(self.weights[t] * parts[t] for t in parts)
        return {"loss": total, **parts}
