"""Evaluation of a trained network (student or teacher) on a store split: pooled mIoU and depth metrics.

Used by `mtdistill evaluate`, by the training loop each epoch (val split) and by the demo. Real
targets only (no pseudo-labels) at full frame resolution; predictions are upsampled bilinearly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from student.model import MEAN_RGB, normalize
from pipeline.evaluate.metrics import DepthMetrics, SegmMetrics, iou_table
from stores.dataset import FrameDataset


PAD_MULTIPLE = 32    # the student's coarsest stride: padded inputs map its 1/4-resolution outputs exactly
MIN_SIZE = 64


def padded_size(h: int, w: int, multiple: int = PAD_MULTIPLE, min_size: int = MIN_SIZE) -> tuple[int, int]:
    """(H, W) rounded up to a multiple of `multiple`, and at least `min_size` each."""
    return tuple(max(min_size, math.ceil(v / multiple) * multiple) for v in (h, w))


def autocast_enabled(device, amp: bool) -> bool:
    """bf16 autocast only when asked for (`--amp`) and on CUDA; fp32 otherwise, so metrics and pictures
    of a checkpoint are the same on every device."""
    return bool(amp) and torch.device(device).type == "cuda"


@torch.inference_mode()
def predict(model, rgb: torch.Tensor, device, multiple: int = PAD_MULTIPLE, min_size: int = MIN_SIZE,
            amp: bool = False) -> dict:
    """The one inference path of evaluate, predict, qa and the demo, so a frame gets the same prediction
    everywhere. uint8 RGB (B,3,H,W) -> {"segm": int64 (B,H,W) argmax ids, "prob": float32 (B,H,W) max
    softmax probability, "depth": float32 (B,H,W) metres >= 0}, for whichever tasks the model has.

    The batch is padded right/bottom with the mean colour (what training pads with) to `padded_size`,
    normalised (student.model.normalize), run, upsampled bilinearly to the padded size and cropped back.
    fp32 everywhere, so a checkpoint scores the same on CPU and GPU; `amp` opts in to bf16 autocast on CUDA
    (faster, slightly different numbers)."""
    h, w = rgb.shape[-2:]
    ph, pw = padded_size(h, w, multiple, min_size)
    if (ph, pw) != (h, w):
        canvas = torch.tensor(MEAN_RGB, dtype=torch.uint8).view(1, 3, 1, 1).expand(len(rgb), 3, ph, pw).clone()
        canvas[..., :h, :w] = rgb
        rgb = canvas
    x = normalize(rgb.to(device))
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_enabled(device, amp)):
        out = model(x)
    res = {}
    if "segm" in out:
        logits = F.interpolate(out["segm"].float(), size=(ph, pw), mode="bilinear", align_corners=False)
        prob, label = logits[..., :h, :w].softmax(1).max(1)
        res["segm"], res["prob"] = label, prob
    if "depth" in out:
        d = F.interpolate(out["depth"].float(), size=(ph, pw), mode="bilinear", align_corners=False)
        res["depth"] = F.relu(d)[:, 0, :h, :w]
    return res


def evaluate_model(model, store, indices, *, device, tasks=("segm", "depth"), batch_size: int = 4,
                   depth_crop: str | None = None, depth_cap: float | None = None, amp: bool = False) -> dict:
    """{"segm": {miou, pixel_acc, iou, pixels}, "depth": {rmse, rmse_log, abs_rel, ...}, "frames": n}.
    In fp32 unless `amp` (bf16 autocast on CUDA; see `predict`)."""
    was_training = model.training
    model.eval()
    ds = FrameDataset(store.path, store.snapshot_id, indices)
    segm = SegmMetrics(store.num_classes) if "segm" in tasks else None
    depth = DepthMetrics(crop=depth_crop, cap=depth_cap) if "depth" in tasks else None
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        rgb = torch.stack([it["rgb"] for it in items])
        pred = predict(model, rgb, torch.device(device), amp=amp)
        if segm is not None:
            segm.update(pred["segm"].cpu().numpy(), np.stack([it["segm"].numpy() for it in items]))
        if depth is not None:
            depth.update(pred["depth"].cpu().numpy(), np.stack([it["depth"].numpy() for it in items]))
    model.train(was_training)
    out = {"frames": len(ds)}
    if segm is not None:
        out["segm"] = segm.compute()
    if depth is not None:
        out["depth"] = depth.compute()
    return out


def format_metrics(res: dict, class_names) -> str:
    """A table for people: headline metrics, then per-class IoU."""
    lines = [f"{res['split']}: {res['frames']} frames (store snapshot {res['snapshot']})"]
    if "segm" in res and res["segm"]["pixels"]:
        s = res["segm"]
        lines.append(f"  mIoU {100 * s['miou']:6.2f} %   pixel accuracy {100 * s['pixel_acc']:6.2f} %")
    elif "segm" in res:
        lines.append("  segmentation: no ground-truth pixel in this split")
    if "depth" in res:
        d = res["depth"]
        if d["pixels"]:
            lines.append(f"  RMSE {d['rmse']:.3f} m   RMSE(log) {d['rmse_log']:.3f}   abs rel {d['abs_rel']:.3f}   "
                         f"sq rel {d['sq_rel']:.3f}")
            lines.append(f"  delta<1.25 {d['delta1']:.3f}   <1.25^2 {d['delta2']:.3f}   <1.25^3 {d['delta3']:.3f}")
        else:
            lines.append("  depth: no valid ground-truth pixel")
    if "segm" in res and res["segm"]["pixels"]:
        lines += iou_table(res["segm"]["iou"], class_names)
    return "\n".join(lines)
