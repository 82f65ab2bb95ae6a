"""Thumbnails of the review page: small WebP pictures of each frame's RGB, real and pseudo labels,
confidences and depth, written next to the page (`thumbs/<frame index>_<kind>.webp`).

Flow: page.py picks the frames -> **write_thumbs** reads them shard by shard and writes every picture the
frame has (a kind the frame lacks, e.g. a real label, gets no file; the page asks only for files that
exist). Colours: pipeline/deploy/visual.py (class colours, magma depth with near = bright); confidences
in viridis, black where the teacher gave no label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.deploy.visual import (
    colorize_depth,
    colorize_segm,
    colormap_lut,
    depth_range,
)

MAX_WIDTH = 256            # pixels; frames narrower than this keep their size
KINDS = ("rgb", "real", "pseudo", "conf", "depth", "real_depth", "depth_conf")
LOSSLESS = ("real", "pseudo")            # class colours stay exact


def thumb_size(frame_size) -> tuple[int, int]:
    """(w, h) of the thumbnails of (H, W) frames: at most MAX_WIDTH wide, aspect kept."""
    h, w = frame_size
    tw = min(w, MAX_WIDTH)
    return tw, max(1, round(h * tw / w))


def thumb_name(index: int, kind: str) -> str:
    """File name (relative to the page folder) of one thumbnail; the page builds the same names."""
    return f"thumbs/{index}_{kind}.webp"


def frame_pictures(classes, rgb, real, has_real, pseudo, conf, depth, real_depth, depth_conf) -> dict:
    """kind -> (H, W, 3) uint8 picture for one frame's arrays (module docstring); kinds the frame lacks
    are left out: real without a real segmentation, real_depth without real depth, depth without pseudo
    depth, depth_conf without that array (None). Both depths share one colour range."""
    labeled = pseudo != 255
    viridis = colormap_lut("viridis", 0.0)
    out = {"rgb": rgb, "pseudo": colorize_segm(pseudo, classes),
           "conf": np.where(labeled[..., None], viridis[conf], 0).astype(np.uint8)}
    if has_real:
        out["real"] = colorize_segm(real, classes)
    valid = [d for d in (depth, real_depth) if d is not None and (d > 0).any()]
    if valid:
        lo, hi = depth_range(np.concatenate([d[d > 0] for d in valid]))
        if (depth > 0).any():
            out["depth"] = colorize_depth(depth, lo, hi)
        if real_depth is not None and (real_depth > 0).any():
            out["real_depth"] = colorize_depth(real_depth, lo, hi)
    if depth_conf is not None:
        out["depth_conf"] = np.where((depth > 0)[..., None], viridis[depth_conf], 0).astype(np.uint8)
    return out


def save_thumb(picture: np.ndarray, path: Path, size: tuple[int, int], lossless: bool) -> None:
    """One picture scaled to `size` (w, h): nearest for label colours, box filter otherwise, as WebP."""
    im = Image.fromarray(picture)
    if im.size != size:
        im = im.resize(size, Image.Resampling.NEAREST if lossless else Image.Resampling.BOX)
    im.save(path, "WEBP", lossless=lossless, quality=80, method=0 if lossless else 4)


def write_thumbs(store, name: str, frames: np.ndarray, out: Path, advance=lambda n=1: None) -> dict[int, list]:
    """Thumbnails of store frames `frames` (int indices) of pseudo set `name` under `out`/thumbs;
    returns index -> the kinds written. `advance(n)` is told each frame done (a progress bar)."""
    g, root = store.pseudo(name), store.root
    size, s = thumb_size(store.frame_size), store.shard_frames
    has_conf = "depth_conf" in g.array_keys()
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    written = {}
    chosen = np.sort(np.asarray(frames, np.int64))
    for start in range(0, int(chosen.max()) + 1 if len(chosen) else 0, s):
        sel = chosen[(chosen >= start) & (chosen < start + s)]
        if not len(sel):
            continue
        lo, hi = int(sel.min()), int(sel.max()) + 1
        rel = sel - lo
        part = {k: root[k][lo:hi][rel] for k in ("frames/rgb", "real/segm", "real/depth")}
        ps = {k: g[k][lo:hi][rel] for k in ("segm", "conf", "depth") + (("depth_conf",) if has_conf else ())}
        has_real = root["real/has_segm"][lo:hi][rel]
        for j, i in enumerate(sel):
            pics = frame_pictures(store.classes, part["frames/rgb"][j], part["real/segm"][j], has_real[j],
                                  ps["segm"][j], ps["conf"][j], ps["depth"][j].astype(np.float32),
                                  part["real/depth"][j], ps["depth_conf"][j] if has_conf else None)
            for kind, pic in pics.items():
                save_thumb(pic, out / thumb_name(int(i), kind), size, kind in LOSSLESS)
            written[int(i)] = sorted(pics, key=KINDS.index)
            advance(1)
    return written
