"""Decoding and size policy shared by the file sources (folder, nyud, kitti).

Sits between the user's files and `Frame`: every reader here decodes one file with PIL/numpy, checks it
and raises `BadInput(path, problem)` (a one-line `SourceError`) when it is bad; `fit_frame` brings a
decoded frame to the store's (H, W). Sources catch `BadInput` per frame and hand it to `SkipLog.fail`.

Conventions: sizes in messages are WxH, as image tools print them. Colour images in any PIL mode
(RGBA, LA, P, L, CMYK, ...) are converted to RGB (alpha dropped, grey replicated). Every file (frame,
label map, depth map) is read through ONE function, `open_image`, which applies the EXIF orientation:
pixels come out as a viewer shows them, so a portrait phone photo, its label and its depth map agree,
and a new store is sized from what `image_size` reads the same way.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from stores.classes import IGNORE_INDEX
from stores.errors import UserError
from stores.sources.base import SPLITS, SourceError

FITS = ("resize", "crop")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


class BadInput(SourceError):
    """One bad input file; `path` and `problem` are kept apart for `SkipLog.fail`."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


# ---- option parsing (the CLI boundary) ----------------------------------------------------------

def parse_fit(value: str) -> str:
    """`value` if it is a size policy ("resize" | "crop"); UserError naming it otherwise."""
    if value not in FITS:
        raise UserError(f"bad fit {value!r}; choose one of {', '.join(FITS)}")
    return value


def parse_split(value: str, where: str = "split") -> str:
    """`value` if it is a split name (train/val/test/unlabeled); UserError prefixed by `where` otherwise."""
    if value not in SPLITS:
        raise UserError(f"{where}: bad split {value!r}; choose one of {', '.join(SPLITS)}")
    return value


def parse_positive(value, name: str) -> float:
    """`value` as a finite float > 0; UserError naming `name` and the value otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"bad {name} {value!r}; expected a positive number") from None
    if not (math.isfinite(v) and v > 0):
        raise UserError(f"bad {name} {value!r}; expected a positive number")
    return v


def parse_tolerance(value) -> int:
    """`value` if it is an int 0..255 (per-channel colour distance; bools refused); UserError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise UserError(f"bad color_tolerance {value!r}; expected an integer 0..255")
    return value


def size_str(a: np.ndarray) -> str:
    """Size of an (H, W, ...) array as "WxH", the way image tools print it."""
    return f"{a.shape[1]}x{a.shape[0]}"


# ---- decoders -----------------------------------------------------------------------------------

def open_image(path) -> Image.Image:
    """The one reader of image files (frames, labels, depth maps): decoded, EXIF orientation applied (mode
    kept: palette, 16-bit and float images stay what they are). BadInput naming the file when it is
    missing, empty or undecodable."""
    try:
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError:
        raise BadInput(path, "file not found") from None
    except IsADirectoryError:
        raise BadInput(path, "is a directory, not an image") from None
    except _DECODE_ERRORS as e:
        raise BadInput(path, f"cannot decode image ({type(e).__name__}: {e})") from None
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:
        return im  # a broken EXIF block leaves the pixels as stored


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image as a viewer shows it (EXIF orientation applied), decoding it fully so a
    damaged file fails here (BadInput) as it would when read."""
    h, w = np.asarray(open_image(path)).shape[:2]
    return h, w


def _rgb_array(path, im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT or im.mode == "F":
        raise BadInput(path, f"{im.mode} image (16-bit or float single channel); expected an 8-bit "
                             "colour or grey image")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def read_rgb(path) -> np.ndarray:
    """(h, w, 3) uint8; grey/palette/RGBA/CMYK converted to RGB; 16-bit or float images refused."""
    return _rgb_array(path, open_image(path))


def check_ids(path, ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer ids (h, w) as uint8; BadInput listing the values that are negative or >= num_classes (not 255)."""
    bad = np.unique(ids[((ids >= num_classes) & (ids != IGNORE_INDEX)) | (ids < 0)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise BadInput(path, f"label values [{shown}] outside the {num_classes} classes "
                             f"(ids 0..{num_classes - 1}, {IGNORE_INDEX} = unlabeled)")
    return np.ascontiguousarray(ids.astype(np.uint8))


def decode_colors(path, rgb: np.ndarray, colors, void_colors=((0, 0, 0),),
                  tolerance: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 colour-coded labels -> (h, w) uint8 ids (colors[i] -> i, void -> 255).

    A colour matching no entry exactly is taken as the nearest entry whose channels all lie within
    `tolerance`; any colour still unmatched is an error naming it and its pixel count.
    """
    table = [(tuple(c), i) for i, c in enumerate(colors)] + [(tuple(c), IGNORE_INDEX) for c in void_colors]
    if not table:
        raise BadInput(path, "colour-coded label image but the colour map is empty")
    ref = np.array([c for c, _ in table], np.int32).reshape(-1, 3)
    ids_of = np.array([i for _, i in table], np.int32)
    key = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    ucol = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1).astype(np.int32)
    dist = np.abs(ucol[:, None, :] - ref[None, :, :]).max(-1)        # (U, K) max-channel distance
    nearest = dist.argmin(1)
    ok = dist[np.arange(len(uniq)), nearest] <= tolerance
    if not ok.all():
        counts = np.bincount(inverse, minlength=len(uniq))
        bad = [(tuple(int(v) for v in ucol[u]), int(counts[u])) for u in np.flatnonzero(~ok)]
        bad.sort(key=lambda t: -t[1])
        shown = ", ".join(f"{list(c)} ({n} px)" for c, n in bad[:5]) + (", ..." if len(bad) > 5 else "")
        hint = f"within tolerance {tolerance}" if tolerance else "exactly"
        raise BadInput(path, f"{len(bad)} label colour(s) match no class colour {hint}: {shown}")
    return ids_of[nearest][inverse].reshape(key.shape).astype(np.uint8)


LABEL_FORMATS = ("auto", "ids", "color")


def read_label(path, num_classes: int, fmt: str = "ids", colors=None, void_colors=((0, 0, 0),),
               tolerance: int = 0) -> np.ndarray:
    """(h, w) uint8 class ids, 255 = unlabeled, from a label PNG.

    fmt "ids": 8-bit grey, palette (index = id) or 16-bit grey values are the ids; "color": colour-coded,
    decoded with `colors` (class order) and `void_colors`; "auto": single-channel -> ids, else colour.
    """
    im = open_image(path)
    single = im.mode in ("L", "P") + _SIXTEEN_BIT
    if fmt == "ids" or (fmt == "auto" and single):
        if not single:
            raise BadInput(path, f"{im.mode} label image; expected single-channel class ids (8-bit grey "
                                 "or palette), or use colour-coded labels with a colour map")
        return check_ids(path, np.asarray(im), num_classes)
    if colors is None:
        raise BadInput(path, f"colour-coded ({im.mode}) label image but no colour map to decode it")
    return decode_colors(path, _rgb_array(path, im), colors, void_colors, tolerance)


def read_depth_png(path, scale: float) -> np.ndarray:
    """(h, w) float32 metres = value / scale from a 16-bit grey PNG; 0 stays 0 (invalid)."""
    im = open_image(path)
    if im.mode not in _SIXTEEN_BIT:
        raise BadInput(path, f"{im.mode} depth image; expected a 16-bit (uint16) grey PNG "
                             f"(metres = value / {scale:g})")
    v = np.asarray(im)
    if v.dtype != np.uint16 and (v.min() < 0 or v.max() > 65535):
        raise BadInput(path, f"depth values {int(v.min())}..{int(v.max())} outside uint16")
    return (v.astype(np.float32) / np.float32(scale)).astype(np.float32)


def check_depth(path, d: np.ndarray) -> np.ndarray:
    """Depth (h, w) in metres as contiguous float32; BadInput when any value is NaN/inf or negative (0 = invalid)."""
    if not np.isfinite(d).all():
        n = int((~np.isfinite(d)).sum())
        raise BadInput(path, f"depth has {n} NaN/inf value(s); use 0 for invalid pixels")
    if (d < 0).any():
        raise BadInput(path, f"depth has {int((d < 0).sum())} negative value(s) (min {float(d.min()):g} m)")
    return np.ascontiguousarray(d, dtype=np.float32)


def load_npy(path, missing: str = "file not found") -> np.ndarray:
    """A .npy array (never pickled objects); BadInput naming the file when missing or unreadable."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInput(path, missing) from None
    except (OSError, ValueError, EOFError) as e:
        raise BadInput(path, f"cannot read .npy ({type(e).__name__}: {e})") from None


def read_depth_npy(path) -> np.ndarray:
    """(h, w) float32 metres from a .npy float array ((h, w) or (h, w, 1))."""
    d = load_npy(path)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise BadInput(path, f"depth array has shape {d.shape}; expected (H, W) metres")
    if not np.issubdtype(d.dtype, np.floating):
        raise BadInput(path, f"depth array has dtype {d.dtype}; expected float metres")
    return check_depth(path, d.astype(np.float32))


def read_depth(path, scale: float) -> np.ndarray:
    """(h, w) float32 metres, 0 = invalid: .npy float metres, else 16-bit PNG value / scale; BadInput if bad."""
    return read_depth_npy(path) if Path(path).suffix.lower() == ".npy" else read_depth_png(path, scale)


def check_size(path, what: str, a: np.ndarray, rgb: np.ndarray, rgb_path) -> None:
    """BadInput (naming `path`) unless array `a` (h, w, ...) has the same h, w as its image `rgb` (h, w, 3)."""
    if a.shape[:2] != rgb.shape[:2]:
        raise BadInput(path, f"{what} is {size_str(a)} but its image {rgb_path} is {size_str(rgb)}")


# ---- size policy --------------------------------------------------------------------------------

def fit_frame(path, rgb, segm, depth, frame_size, fit: str):
    """Bring one frame to (H, W): resize (image bilinear, labels and depth nearest) or centre-crop."""
    H, W = frame_size
    h, w = rgb.shape[:2]
    if (h, w) == (H, W):
        return rgb, segm, depth
    if fit == "crop":
        if h < H or w < W:
            raise BadInput(path, f"image is {w}x{h}, smaller than the store frame {W}x{H}; "
                                 "cannot centre-crop (use fit=resize)")
        y, x = (h - H) // 2, (w - W) // 2
        crop = (slice(y, y + H), slice(x, x + W))
        return (np.ascontiguousarray(rgb[crop]),
                None if segm is None else np.ascontiguousarray(segm[crop]),
                None if depth is None else np.ascontiguousarray(depth[crop]))
    if fit != "resize":
        raise UserError(f"bad fit {fit!r}; choose one of {', '.join(FITS)}")

    def resize(a, resample):  # uint8 (h, w, 3) -> RGB, uint8 (h, w) -> L, float32 (h, w) -> F
        return np.ascontiguousarray(Image.fromarray(a).resize((W, H), resample))

    near, bilinear = Image.Resampling.NEAREST, Image.Resampling.BILINEAR
    return (resize(rgb, bilinear),
            None if segm is None else resize(segm, near),
            None if depth is None else resize(depth.astype(np.float32), near))
