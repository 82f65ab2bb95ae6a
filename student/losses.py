"""Student losses: cross-entropy (segmentation), berHu (depth) and their weighted sum.

Flow: model outputs {"segm", "depth"} at 1/4 resolution + merged targets at full resolution ->
**MultiTaskLoss** -> {"loss", "segm", "depth"} -> optimiser. Predictions are upsampled bilinearly to
the target size here, never the targets downsampled. A task with no valid pixel in the batch
contributes exactly 0 but stays in the autograd graph (so DDP / optimisers see every parameter).
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


def segm_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels.

    logits: (B,C,h,w); target: (B,H,W) integer labels, `ignore_index` = not annotated.
    """
    logits = _resize(logits, target.shape[-2:])  # (B,C,H,W)
    target = target.long()
    if not bool((target != ignore_index).any()):
        return _zero(logits)
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def berhu_loss(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """berHu, the reverse Huber loss (Laina et al. 2016), averaged over valid depth pixels (target > 0).

    pred: (B,1,h,w) metres (passed through ReLU); target: (B,H,W) or (B,1,H,W) metres, 0 = invalid.
    err = |pred - gt|; c = threshold * max(err) over the batch (a constant, no gradient);
    cost = err where err <= c, else (err^2 + c^2) / (2c). c = 0.2 * max follows the paper authors' code.
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
    return cost.mean()


# task -> loss function; MultiTaskLoss weights must use these keys
LOSSES = {"segm": segm_loss, "depth": berhu_loss}


class MultiTaskLoss(nn.Module):
    """Weighted sum of per-task losses; returns {"loss": total, "segm": ..., "depth": ...} (tensors).

    weights: task -> weight (default 0.5 / 0.5 as in the paper). A task missing from the targets
    counts as having no valid pixel.
    """

    def __init__(self, weights: Mapping[str, float] | None = None):
        super().__init__()
        weights = dict(weights if weights is not None else {"segm": 0.5, "depth": 0.5})
        for task in weights:
            if task not in LOSSES:
                raise KeyError(f"unknown task {task!r} in loss weights; options: {sorted(LOSSES)}")
        self.weights = weights

    def forward(self, outputs: Mapping[str, torch.Tensor],
                targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """outputs: {"segm" (B,C,h,w) logits, "depth" (B,1,h,w) metres} at 1/4 resolution; targets: {"segm" (B,H,W)
        int, 255 = ignore, "depth" (B,H,W) or (B,1,H,W) metres, 0 = ignore}. Returns {"loss", "segm", "depth"} scalars;
        "loss" is the weighted sum, the task entries unweighted.
        """
        parts = {}
        for task in self.weights:
            if task in targets:
                parts[task] = LOSSES[task](outputs[task], targets[task])
            else:
                parts[task] = _zero(outputs[task])
        total = sum(self.weights[t] * parts[t] for t in parts)
        return {"loss": total, **parts}
