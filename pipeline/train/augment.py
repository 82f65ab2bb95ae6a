"""Training-time augmentation of one sample: random scale (depth / scale), crop, flip, padding.

Runs inside DataLoader workers on the Dataset's items (stores/dataset.py); every random draw comes
from a numpy Generator seeded by (run seed, epoch, position), so a resumed run sees the same samples.
Resizing runs on one torch thread wherever it runs (DataLoader workers already use one; `--workers 0`
runs in the trainer's process with many): bilinear rounding depends on the thread count, and a resume
with another --workers must give the same weights.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from student.model import MEAN_RGB


@contextmanager
def one_thread():
    """Run the block with torch on one intra-op thread (results then do not depend on the machine's or
    the process's thread count); the previous count is restored after."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass(frozen=True)
class AugmentConfig:
    """Random scale in [scale_min, scale_max] (depth divided by the scale), crop (H, W) in pixels (None: the
    frame size; smaller frames are padded), horizontal flip with probability 0.5."""
    scale_min: float = 0.8
    scale_max: float = 2.0
    crop: tuple[int, int] | None = None   # (H, W); None = the frame size
    flip: bool = True


def augment(item: dict, cfg: AugmentConfig, rng: np.random.Generator) -> dict:
    """item: {"rgb" uint8 (3,H,W), "segm" int64 (H,W), "depth" float32 (H,W), ...} -> same keys."""
    rgb, segm, depth = item["rgb"], item["segm"], item["depth"]
    h, w = rgb.shape[-2:]
    ch, cw = cfg.crop or (h, w)
    s = float(rng.uniform(cfg.scale_min, cfg.scale_max))
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    if (sh, sw) != (h, w):
        with one_thread():
            rgb = F.interpolate(rgb[None].float(), size=(sh, sw), mode="bilinear", align_corners=False)[0]
        rgb = rgb.round().clamp(0, 255).to(torch.uint8)
        segm = F.interpolate(segm[None, None].float(), size=(sh, sw), mode="nearest")[0, 0].long()
        depth = F.interpolate(depth[None, None], size=(sh, sw), mode="nearest")[0, 0] / s  # closer = bigger
    # pad to at least the crop size: mean colour, ignore label, invalid depth
    ph, pw = max(0, ch - sh), max(0, cw - sw)
    if ph or pw:
        mean = torch.tensor(MEAN_RGB, dtype=torch.uint8)[:, None, None]
        canvas = mean.expand(3, sh + ph, sw + pw).clone()
        canvas[:, :sh, :sw] = rgb
        rgb = canvas
        segm = F.pad(segm, (0, pw, 0, ph), value=255)
        depth = F.pad(depth, (0, pw, 0, ph), value=0.0)
    y = int(rng.integers(0, rgb.shape[-2] - ch + 1))
    x = int(rng.integers(0, rgb.shape[-1] - cw + 1))
    rgb, segm, depth = rgb[:, y:y + ch, x:x + cw], segm[y:y + ch, x:x + cw], depth[y:y + ch, x:x + cw]
    if cfg.flip and rng.random() < 0.5:
        rgb, segm, depth = rgb.flip(-1), segm.flip(-1), depth.flip(-1)
    return {**item, "rgb": rgb.contiguous(), "segm": segm.contiguous(), "depth": depth.contiguous()}
