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
    """A 0 that keeps x in the graph: +0.0 (x.sum() * 0 alone is -0.0 for a negative sum, shown as -0.000)."""
    return x.sum() * 0.0 + 0.0


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
              pseudo: torch.Tensor | None = None, drop: float = 0.0,
              soft: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels.

    logits: (B,C,h,w); target: (B,H,W) integer labels, `ignore_index` = not annotated; pseudo: optional
    (B,H,W) bool, pixels whose label is a pseudo-label, of which the `drop` share with the highest
    cross-entropy is ignored; soft: optional teacher top-k (classes uint8, probs uint8 x255), each
    (B,K,H,W), see soft_segm_loss.
    """
    logits = _resize(logits, target.shape[-2:])  # (B,C,H,W)
    if soft is not None:
        return soft_segm_loss(logits, target, *soft, ignore_index=ignore_index, pseudo=pseudo, drop=drop)
    target = target.long()
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    if pseudo is None or drop <= 0:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    cost = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")[valid]
    keep = keep_mask(cost, pseudo[valid], drop)
    return cost.mean() if keep is None else cost[keep].mean()


def soft_segm_loss(logits: torch.Tensor, target: torch.Tensor, classes: torch.Tensor, probs: torch.Tensor,
                   ignore_index: int = IGNORE_INDEX, pseudo: torch.Tensor | None = None,
                   drop: float = 0.0) -> torch.Tensor:
    """Cross-entropy on hard labels plus soft cross-entropy on the teacher's top-k, one weighted mean.

    logits: (B,C,H,W); target: (B,H,W) hard labels (`ignore_index` = none); classes: (B,K,H,W) the teacher's
    top-k class ids (255 = none); probs: (B,K,H,W) their probabilities x255 (uint8), all 0 on pixels without
    a soft target. On a soft pixel, with q the probabilities renormalised over the k classes, the cost is
    -sum_k q_k log softmax(logits)[class_k] (knowledge distillation at temperature 1, Hinton et al. 2015,
    restricted to the top k) and its weight the teacher's top-1 probability; hard pixels weigh 1. Returns
    sum(weight * cost) / sum(weight); `pseudo`/`drop` as in segm_loss, over hard and soft pixels alike.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    p = probs.float() / 255.0                                       # (B,K,H,W)
    total = p.sum(1)                                                # (B,H,W)
    hard = target != ignore_index
    soft = (total > 0) & ~hard
    if not bool(hard.any() or soft.any()):
        return _zero(logits)
    cls = classes.long().clamp(max=logits.shape[1] - 1)             # 255 (no class) has probability 0
    soft_ce = -(p * logp.gather(1, cls)).sum(1) / total.clamp_min(1e-6)
    hard_ce = -logp.gather(1, target.long().clamp(max=logits.shape[1] - 1)[:, None])[:, 0]
    valid = hard | soft
    cost = torch.where(hard, hard_ce, soft_ce)[valid]
    weight = torch.where(hard, torch.ones_like(total), p[:, 0])[valid]
    keep = keep_mask(cost, None if pseudo is None else pseudo[valid], drop)
    if keep is not None:
        cost, weight = cost[keep], weight[keep]
    return (weight * cost).sum() / weight.sum().clamp_min(1e-6)


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
        int, 255 = ignore, "depth" (B,H,W) or (B,1,H,W) metres, 0 = ignore, optional "segm_topk" /
        "segm_topk_p" (B,K,H,W) uint8 soft targets (soft_segm_loss)}; pseudo: optional task -> (B,H,W) bool,
        pixels whose target is a pseudo-label. Returns {"loss", "segm", "depth"} scalars; "loss" is the
        weighted sum, the task entries unweighted.
        """
        parts, pseudo = {}, pseudo or {}
        for task in self.weights:
            if task in targets:
                extra = ({"soft": (targets["segm_topk"], targets["segm_topk_p"])}
                         if task == "segm" and "segm_topk" in targets else {})
                parts[task] = LOSSES[task](outputs[task], targets[task], pseudo=pseudo.get(task),
                                           drop=self.pseudo_drop, **extra)
            else:
                parts[task] = _zero(outputs[task])
        total = sum(self.weights[t] * parts[t] for t in parts)
        return {"loss": total, **parts}
