"""Training-time augmentation of one sample: random scale (depth / scale), crop, flip, padding; optionally
strong photometric noise on samples with pseudo targets, and CutMix over a batch.

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

from stores.merge import SRC_PSEUDO
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
    frame size; smaller frames are padded), horizontal flip with probability 0.5; `strong`: colour jitter and
    blur on samples that carry pseudo targets and CutMix within each batch (pipeline/train/loop.py)."""
    scale_min: float = 0.8
    scale_max: float = 2.0
    crop: tuple[int, int] | None = None   # (H, W); None = the frame size
    flip: bool = True
    strong: bool = False


LABEL_MAPS = ("segm", "segm_src", "depth_src", "segm_topk", "segm_topk_p")   # resized nearest, padded with "none"
PAD = {"segm": 255, "segm_src": 0, "depth_src": 0, "segm_topk": 255, "segm_topk_p": 0}


def augment(item: dict, cfg: AugmentConfig, rng: np.random.Generator) -> dict:
    """item: {"rgb" uint8 (3,H,W), "segm" int64 (H,W), "depth" float32 (H,W), optional "segm_src" /
    "depth_src" uint8 (H,W) and "segm_topk" / "segm_topk_p" uint8 (K,H,W), ...} -> same keys, geometrically
    transformed alike; with cfg.strong, an item that carries pseudo targets also gets photometric noise
    (strong_photometric)."""
    rgb, depth = item["rgb"], item["depth"]
    maps = {k: item[k] for k in LABEL_MAPS if k in item}
    h, w = rgb.shape[-2:]
    ch, cw = cfg.crop or (h, w)
    s = float(rng.uniform(cfg.scale_min, cfg.scale_max))
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    if (sh, sw) != (h, w):
        with one_thread():
            rgb = F.interpolate(rgb[None].float(), size=(sh, sw), mode="bilinear", align_corners=False)[0]
        rgb = rgb.round().clamp(0, 255).to(torch.uint8)
        maps = {k: F.interpolate(v.reshape(1, -1, h, w).float(), size=(sh, sw), mode="nearest")
                .reshape(*v.shape[:-2], sh, sw).to(v.dtype) for k, v in maps.items()}
        depth = F.interpolate(depth[None, None], size=(sh, sw), mode="nearest")[0, 0] / s  # closer = bigger
    # pad to at least the crop size: mean colour, ignore label, invalid depth
    ph, pw = max(0, ch - sh), max(0, cw - sw)
    if ph or pw:
        mean = torch.tensor(MEAN_RGB, dtype=torch.uint8)[:, None, None]
        canvas = mean.expand(3, sh + ph, sw + pw).clone()
        canvas[:, :sh, :sw] = rgb
        rgb = canvas
        maps = {k: F.pad(v, (0, pw, 0, ph), value=PAD[k]) for k, v in maps.items()}
        depth = F.pad(depth, (0, pw, 0, ph), value=0.0)
    y = int(rng.integers(0, rgb.shape[-2] - ch + 1))
    x = int(rng.integers(0, rgb.shape[-1] - cw + 1))
    rgb, depth = rgb[:, y:y + ch, x:x + cw], depth[y:y + ch, x:x + cw]
    maps = {k: v[..., y:y + ch, x:x + cw] for k, v in maps.items()}
    if cfg.flip and rng.random() < 0.5:
        rgb, depth, maps = rgb.flip(-1), depth.flip(-1), {k: v.flip(-1) for k, v in maps.items()}
    if cfg.strong and any(bool((v == SRC_PSEUDO).any()) for k, v in maps.items() if k.endswith("_src")):
        rgb = strong_photometric(rgb, rng)
    return {**item, "rgb": rgb.contiguous(), "depth": depth.contiguous(),
            **{k: v.contiguous() for k, v in maps.items()}}


def strong_photometric(rgb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Colour jitter (brightness, contrast, saturation 0.6-1.4, hue +-0.05) and, with probability 0.5, a
    Gaussian blur (sigma 0.1-1.5 px) of uint8 (3,H,W) RGB, through torchvision's functional transforms; the
    strong view of self-training on pseudo-labels (FixMatch / ST++ style)."""
    from torchvision.transforms.v2 import functional as TF

    b, c, sat = (float(v) for v in rng.uniform(0.6, 1.4, 3))
    with one_thread():
        rgb = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(rgb, b), c), sat),
                            float(rng.uniform(-0.05, 0.05)))
        if rng.random() < 0.5:
            sigma = float(rng.uniform(0.1, 1.5))
            rgb = TF.gaussian_blur(rgb, kernel_size=2 * int(np.ceil(2 * sigma)) + 1, sigma=sigma)
    return rgb


def cutmix(batch: dict, rng: np.random.Generator, p: float = 0.5) -> dict:
    """CutMix for dense targets: with probability `p` per sample, a box (area share ~ U(0.1, 0.5)) of the
    next sample in the batch (rgb, segm, depth and their source maps alike) is pasted into it. batch:
    {"rgb" (B,3,H,W), "segm" / "depth" / "*_src" (B,H,W), ...}; returns a new dict, the input untouched."""
    keys = [k for k in ("rgb", "segm", "depth", *LABEL_MAPS[1:]) if k in batch]
    out = {**batch, **{k: batch[k].clone() for k in keys}}
    b = len(batch["rgb"])
    h, w = batch["rgb"].shape[-2:]
    for i in range(b):
        if b < 2 or rng.random() >= p:
            continue
        area = rng.uniform(0.1, 0.5)
        bh, bw = max(1, int(h * np.sqrt(area))), max(1, int(w * np.sqrt(area)))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        j = (i + 1) % b
        for k in keys:
            out[k][i, ..., y:y + bh, x:x + bw] = batch[k][j, ..., y:y + bh, x:x + bw]
    return out
