"""Procedural textures for the synthetic world: value-noise tiles, integer hashes, one painter per kind.

Sits under synthetic/render: for the pixels of one material it gets world face coordinates (s, t in
metres, so patterns stay put as the camera moves), local coordinates inside the primitive's face
(ls, lt, extents ws, wt: frames, drawers, windows) and returns linear-RGB albedo (n, 3) plus an
emission weight (windows, screens glow regardless of lighting). Only elementwise float32 arithmetic,
floor and uint32 hashes: byte-identical everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N = 256      # noise tile side (periodic)
# kinds that draw relative to their primitive's face (frames, drawers, window grids, lane lines)
LOCAL_KINDS = {"panels", "glass", "mirror", "screen", "picture", "board", "paper", "cardboard", "asphalt",
               "facade"}


@lru_cache(maxsize=32)
def noise_tile(style: int, k: int) -> np.ndarray:
    """Flattened (N*N,) float32 periodic fractal value noise in [0, 1], fixed per (style, k)."""
    rng = np.random.default_rng(np.random.SeedSequence([0x7E47, style, k]))
    acc = np.zeros((N, N), np.float32)
    amp, total = np.float32(1.0), np.float32(0.0)
    for cells in (4, 8, 16, 32, 64):
        lat = rng.random((cells, cells), dtype=np.float32)
        acc += amp * _upsample(_upsample(lat, N // cells).T, N // cells).T
        total += amp
        amp = amp * np.float32(0.55)
    acc /= total
    lo, hi = acc.min(), acc.max()
    return ((acc - lo) / (hi - lo)).ravel()


def _upsample(lat: np.ndarray, step: int) -> np.ndarray:
    """Periodic smoothstep interpolation along axis 1 of a (rows, cells) lattice -> (rows, cells*step)."""
    cells = lat.shape[1]
    x = np.arange(cells * step, dtype=np.float32) / np.float32(step)
    i0 = np.floor(x).astype(np.int64)
    f = x - i0
    f = f * f * (3 - 2 * f)
    a, b = lat[:, i0 % cells], lat[:, (i0 + 1) % cells]
    return a + (b - a) * f


def noise(tile: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a tile at float32 coordinates in tile pixels (wraps)."""
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    xi = xf.astype(np.int32) & (N - 1)
    yi = (yf.astype(np.int32) & (N - 1)) * N
    x1 = (xi + 1) & (N - 1)
    y1 = (yi + N) & (N * N - 1)
    a, b, c, d = tile.take(yi | xi), tile.take(yi | x1), tile.take(y1 | xi), tile.take(y1 | x1)
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    return top + (bot - top) * fy


def hash01(i: np.ndarray, j, seed: int) -> np.ndarray:
    """Integer lattice hash -> float32 in [0, 1)."""
    h = np.asarray(i).astype(np.int64).astype(np.uint32) * np.uint32(0x8DA6B343)   # via int64: exact wrap
    h ^= np.asarray(j).astype(np.int64).astype(np.uint32) * np.uint32(0xD8163841)
    h ^= np.uint32(seed & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1], period 1."""
    return np.abs(2 * (x - np.floor(x)) - 1)


@dataclass
class Patch:
    """The pixels of one material: coordinates in metres, float32 (n,)."""
    s: np.ndarray
    t: np.ndarray
    ls: np.ndarray
    lt: np.ndarray
    ws: np.ndarray
    wt: np.ndarray
    vert: np.ndarray   # bool: on a vertical face
    fp: np.ndarray     # pixel footprint on the surface (m)

    def fade(self, period: float) -> np.ndarray:
        """Contrast weight of a pattern with this period (m): 1 when >= 6 pixels, 0 when <= 2."""
        return np.clip((np.float32(period) / self.fp - np.float32(2)) * np.float32(0.25), 0, 1)
