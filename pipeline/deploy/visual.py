"""Pictures of predictions: colour-coded segmentation, depth colour map with a colour bar, class legend,
and a panel of titled images. Pure numpy/PIL on (H, W, 3) uint8 arrays; nothing here runs a model.

Used by `mtdistill predict` (pipeline/deploy/predict.py: input | segmentation | depth), the demo (input |
ground truth | each student, one row per task) and qa. Segmentation colours come from the class list
(stores/classes.py: NYUD-40 / KITTI-6 palettes); depth uses matplotlib's perceptual "magma" map (its
darkest 15 % left out, so black stays free for "no depth") with near = bright and a fixed or per-image range.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stores.classes import palette

DEPTH_CMAP = "magma"
CMAP_START = 0.15  # darkest part of the map left out: far stays visible against black (no depth)
INVALID_COLOR = (0, 0, 0)
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)


@functools.cache
def font(size: int = 14) -> ImageFont.ImageFont:
    """Pillow's bundled font at `size` pixels (a bitmap fallback where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 (alpha dropped)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {a.shape}")
    a = a[..., :3] if a.shape[2] == 4 else np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    return np.ascontiguousarray(a, dtype=np.uint8)


# ---- segmentation -------------------------------------------------------------------------------

def colorize_segm(labels: np.ndarray, classes: list[dict]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in the class list's colours; 255 (ignore) and unknown ids black."""
    labels = np.asarray(labels)
    ids = np.where((labels >= 0) & (labels < 256), labels, 255).astype(np.uint8)
    return palette(classes)[ids]


def legend(classes: list[dict], ids: Sequence[int] | None = None, width: int = 640, size: int = 14) -> np.ndarray:
    """Swatch + name for each class in `ids` (default all; ignore and unknown ids skipped), wrapped to
    rows of at most `width` pixels -> (h, width, 3) uint8 on a white background."""
    by_id = {c["id"]: c for c in classes}
    chosen = [by_id[i] for i in (sorted(by_id) if ids is None else sorted(set(int(i) for i in ids))) if i in by_id]
    f, pad, box = font(size), max(2, size // 3), size
    line = box + 2 * pad
    items, x, y = [], pad, pad
    for c in chosen:
        w = box + pad + int(np.ceil(f.getlength(c["name"]))) + 3 * pad
        if x > pad and x + w > width:
            x, y = pad, y + line
        items.append((x, y, c))
        x += w
    img = Image.new("RGB", (width, y + line if chosen else line), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for x, y, c in items:
        draw.rectangle([x, y + pad, x + box - 1, y + pad + box - 1], fill=tuple(c["color"]), outline=(96, 96, 96))
        draw.text((x + box + pad, y + pad + box // 2), c["name"], fill=TEXT_COLOR, font=f, anchor="lm")
    return np.asarray(img)


# ---- depth --------------------------------------------------------------------------------------

@functools.cache
def colormap_lut(name: str = DEPTH_CMAP, start: float = CMAP_START) -> np.ndarray:
    """(256, 3) uint8 samples of a matplotlib colormap from `start` to 1 (dark to bright for magma)."""
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(start, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def depth_range(depth: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Per-image colour range (metres): the given percentiles of the valid (> 0, finite) pixels, so a few
    outliers do not wash out the map; (0, 1) when nothing is valid; vmax > vmin always."""
    d = np.asarray(depth, dtype=np.float32)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(valid, percentiles))
    return lo, max(hi, lo + 1e-3)


def colorize_depth(depth: np.ndarray, vmin: float, vmax: float, cmap: str = DEPTH_CMAP,
                   invalid_color=INVALID_COLOR) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8: near (vmin) bright, far (vmax) dark, clipped outside the range;
    pixels <= 0 or non-finite (no depth, as in ground truth) in `invalid_color`, unless it is None
    (predictions: a 0 m prediction is drawn as near)."""
    d = np.asarray(depth, dtype=np.float32)
    t = (vmax - np.nan_to_num(d, nan=vmax)) / max(vmax - vmin, 1e-6)   # 1 at vmin (near), 0 at vmax
    out = colormap_lut(cmap)[np.clip(np.round(t * 255), 0, 255).astype(np.uint8)]
    if invalid_color is not None:
        out[~(np.isfinite(d) & (d > 0))] = invalid_color
    return out


def _fmt_m(v: float) -> str:
    return f"{v:.2f} m" if v < 10 else f"{v:.1f} m"


def colorbar(vmin: float, vmax: float, width: int, cmap: str = DEPTH_CMAP, size: int = 14) -> np.ndarray:
    """A horizontal bar near (left) -> far (right) with the range written under its ends: (h, width, 3)."""
    f, pad = font(size), max(2, size // 3)
    bar_h = max(6, size // 2 + 2)
    img = Image.new("RGB", (width, bar_h + size + 3 * pad), BACKGROUND)
    strip = colormap_lut(cmap)[::-1][np.linspace(0, 255, max(1, width - 2 * pad)).round().astype(int)]
    img.paste(Image.fromarray(np.repeat(strip[None], bar_h, 0)), (pad, pad))
    draw = ImageDraw.Draw(img)
    y = 2 * pad + bar_h
    draw.text((pad, y), _fmt_m(vmin), fill=TEXT_COLOR, font=f, anchor="lt")
    draw.text((width - pad, y), _fmt_m(vmax), fill=TEXT_COLOR, font=f, anchor="rt")
    draw.text((width // 2, y), "depth", fill=(90, 90, 90), font=f, anchor="mt")
    return np.asarray(img)


def with_colorbar(image: np.ndarray, vmin: float, vmax: float, cmap: str = DEPTH_CMAP, size: int = 14) -> np.ndarray:
    """`image` with its colour bar underneath (same width)."""
    return np.concatenate([to_rgb(image), colorbar(vmin, vmax, image.shape[1], cmap, size)], axis=0)


# ---- panels -------------------------------------------------------------------------------------

def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    new_w = max(1, round(w * height / h))
    resample = Image.Resampling.BOX if height < h else Image.Resampling.NEAREST  # smooth down, crisp up
    return np.asarray(Image.fromarray(image).resize((new_w, height), resample))


def panel(rows: Sequence[Sequence[tuple[str, np.ndarray]]], height: int | None = None, gap: int = 6,
          size: int | None = None, footer: np.ndarray | None = None) -> np.ndarray:
    """Rows of (title, image) cells -> one (H, W, 3) uint8 picture on white.

    Cells keep their pixels (or are scaled to `height` when given), each under its title, top-aligned,
    `gap` pixels apart and around; a row is as tall as its tallest cell; `footer` (e.g. a legend) goes
    under the last row. Example (the demo):
      panel([[("input", rgb), ("ground truth", colorize_segm(gt, classes)), ("student A", segm_a)],
             [("input", rgb), ("ground truth", colorize_depth(gt_depth, lo, hi)), ("student A", depth_a)]])
    """
    if not rows or not all(rows):
        raise ValueError("panel needs at least one row and one cell per row")
    cells = [[(title, to_rgb(img)) for title, img in row] for row in rows]
    if height is not None:
        cells = [[(title, _fit_height(img, height)) for title, img in row] for row in cells]
    size = size or int(np.clip(cells[0][0][1].shape[0] // 18, 12, 28))
    f, title_h = font(size), size + gap
    row_h = [max(img.shape[0] for _, img in row) for row in cells]
    row_w = [sum(img.shape[1] for _, img in row) + gap * (len(row) + 1) for row in cells]
    width = max(row_w + ([footer.shape[1] + 2 * gap] if footer is not None else []))
    total_h = gap + sum(title_h + h + gap for h in row_h) + (footer.shape[0] + gap if footer is not None else 0)
    canvas = Image.new("RGB", (width, total_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = gap
    for row, h in zip(cells, row_h):
        x = gap
        for title, img in row:
            draw.text((x + img.shape[1] // 2, y + size // 2), title, fill=TEXT_COLOR, font=f, anchor="mm")
            canvas.paste(Image.fromarray(img), (x, y + title_h))
            x += img.shape[1] + gap
        y += title_h + h + gap
    if footer is not None:
        canvas.paste(Image.fromarray(to_rgb(footer)), (gap, y))
    return np.asarray(canvas)
