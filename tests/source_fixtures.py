"""Writers for small input files in the official formats, used by the source tests (tests/test_sources_*).

Everything is written into a pytest tmp_path; real frames come from ../shared/data/real.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real")


def write_png(path, a: np.ndarray, mode: str | None = None) -> Path:
    """uint8 (h, w, 3) -> RGB, uint8 (h, w) -> L, uint16 (h, w) -> 16-bit grey; `mode` converts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(a)
    if mode:
        im = im.convert(mode)
    im.save(path)
    return path


def truncate(path, keep: float = 0.5) -> Path:
    """Cut a file short, as an interrupted copy would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def pattern_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An asymmetric image: R = row, G = column, B = seed, so flips and transposes show."""
    y, x = np.mgrid[:h, :w]
    return np.stack([y * 7 % 256, x * 5 % 256, np.full_like(y, seed * 40 % 256)], -1).astype(np.uint8)


def pattern_depth(h: int, w: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return (0.5 + 0.1 * y + 0.01 * x + seed).astype(np.float32)


def pattern_labels(h: int, w: int, n: int = 40) -> np.ndarray:
    """Class ids varying along rows and columns differently; some 255."""
    y, x = np.mgrid[:h, :w]
    ids = ((y // 4) * 3 + x // 8) % n
    ids[0, :] = 255
    return ids.astype(np.uint8)


def make_nyud_tree(root, n: int = 3, h: int = 24, w: int = 32, lists=True) -> Path:
    """Preprocessed NYUD layout: rgb/, masks/ (uint8 ids), depth/ (uint16, m * 5000), train/test lists."""
    root = Path(root)
    for i in range(1, n + 1):
        name = f"{i:06d}.png"
        write_png(root / "rgb" / name, pattern_rgb(h, w, i))
        write_png(root / "masks" / name, pattern_labels(h, w))
        write_png(root / "depth" / name, np.round(pattern_depth(h, w, i) * 5000).astype(np.uint16))
    if lists:
        (root / "train.txt").write_text("000001\nrgb/000002.png masks/000002.png\n")
        (root / "test.txt").write_text("# test frames\n3\n")
    return root


def make_nyud_mat(path, n: int = 3, h: int = 24, w: int = 32, labels894=None, depths=None) -> dict:
    """A file laid out like nyu_depth_v2_labeled.mat (HDF5, arrays transposed); returns the (H, W) truth."""
    rgb = np.stack([pattern_rgb(h, w, i) for i in range(n)])                    # (N, H, W, 3)
    depth = np.stack([pattern_depth(h, w, i) for i in range(n)]) if depths is None else depths
    if labels894 is None:
        y, x = np.mgrid[:h, :w]
        labels894 = np.stack([((y * w + x + i) % 895).astype(np.uint16) for i in range(n)])
        labels894[:, 0, :] = 0
    with h5py.File(path, "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)                                   # (N, 3, W, H)
        f["depths"] = depth.transpose(0, 2, 1).astype(np.float32)                 # (N, W, H)
        f["labels"] = labels894.transpose(0, 2, 1).astype(np.uint16)              # (N, W, H)
        f["names"] = np.zeros((1, 894), np.float64)                               # present in the real file
    return {"rgb": rgb, "depth": depth, "labels": labels894}


def make_mapping(path, n894: int = 894, num_classes: int = 40) -> np.ndarray:
    """894->40 table indexed by the 894-class id (entry 0 = unlabeled)."""
    m = np.zeros(n894 + 1, np.int64)
    m[1:] = (np.arange(1, n894 + 1) % num_classes) + 1
    np.save(path, m)
    return m


def make_splits_mat(path, train, test) -> Path:
    """Like splits.mat saved as v7.3: trainNdxs / testNdxs as (1, k) float64, 1-based."""
    with h5py.File(path, "w") as f:
        f["trainNdxs"] = np.asarray(train, np.float64)[None]
        f["testNdxs"] = np.asarray(test, np.float64)[None]
    return Path(path)


def write_mat_v5_header(path) -> Path:
    """The first bytes of an old (v5) MATLAB file, enough to be recognised."""
    head = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2012"
    Path(path).write_bytes(head.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x01IM" + b"\x00" * 64)
    return Path(path)
