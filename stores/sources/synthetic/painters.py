"""The painters: one function per texture kind turns texture coordinates into albedo (and emission).

Sits under synthetic/render.py (material_albedo calls `paint` per material), above the noise, hashing and
colour helpers of synthetic/texture.py. PAINTERS maps each kind of the palette (synthetic/palette.py) to
its painter; every pixel operation is elementwise float32 arithmetic, so frames are byte-identical across
machines.
"""
from __future__ import annotations

import numpy as np

from stores.sources.synthetic.texture import Patch, hash01, noise, noise_tile, tri


def _c(c) -> np.ndarray:
    return np.asarray(c, np.float32)


def _mix(c1, c2, m) -> np.ndarray:
    a = _c(c1)
    return a + (_c(c2) - a) * m[:, None]


def _tint(c, f) -> np.ndarray:
    f = np.asarray(f, np.float32)
    return _c(c) * (f[:, None] if f.ndim else f)


def _border(p: Patch, w: float) -> np.ndarray:
    return np.minimum(np.minimum(p.ls, p.ws - p.ls), np.minimum(p.lt, p.wt - p.lt)) < w


def paint(mat, dom, p: Patch):
    """Albedo of the pixels `p` of one material: (n, 3) float32 linear RGB in 0..1, and emission (n,) float32
    (0..1, light the surface gives off: windows, screens) or None. The texture kind picks a painter from
    PAINTERS; KeyError lists the kinds for an unknown one."""
    tile = noise_tile(dom.style, mat.tile)
    k = np.float32(mat.scale)
    s, t = p.s * k + np.float32(mat.off[0]), p.t * k + np.float32(mat.off[1])

    def nz(fs, ft=None):
        return noise(tile, s * np.float32(fs), t * np.float32(fs if ft is None else ft))

    painter = PAINTERS.get(mat.kind)
    if painter is None:
        raise KeyError(f"unknown texture kind {mat.kind!r}; choose one of {sorted(PAINTERS)}")
    out, emit = painter(mat, p, s, t, k, nz, mat.c1, mat.c2, tile)
    return out.astype(np.float32, copy=False), emit


# Painters, one per texture kind: (material, patch, scaled texture coordinates s and t, scale k, noise
# sampler nz(fs, ft), colours c1 and c2, noise tile) -> (albedo (n, 3), emission (n,) or None)
def _paint_paint(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    f = 0.93 + 0.12 * nz(2.0) + 0.05 * nz(30.0)
    out = _tint(c1, f)
    return out, None


def _paint_wallpaper(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    f = p.fade(1 / (6 * k))
    m = (np.clip((tri(s * 6) - 0.5) * 3 + 0.5, 0, 1) * f + 0.5 * (1 - f)) * 0.5
    out = _mix(c1, c2, m) * (0.95 + 0.08 * nz(2.0))[:, None]
    return out, None


def _paint_bricks(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    row = np.floor(t / 0.075)
    x = s / 0.25 + 0.5 * (row.astype(np.int32) & 1)
    col = np.floor(x)
    mortar = ((x - col) < 0.04) | ((t / 0.075 - row) < 0.14)
    f = p.fade(0.075 / k)
    tone = 0.75 + f * 0.4 * hash01(col, row, mat.seed) + 0.15 * nz(20.0) + (1 - f) * 0.2
    brick = _tint(c1, tone)
    out = np.where(mortar[:, None], brick + (_tint(c2, 0.9 + 0.1 * nz(40.0)) - brick) * f[:, None], brick)
    return out, None


def _paint_planks(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    w, length = 0.14, 1.3
    row = np.floor(t / w)
    x = s + hash01(row, 7, mat.seed) * length
    col = np.floor(x / length)
    tone = 0.72 + 0.5 * hash01(row, col, mat.seed)
    g = tri(t * 30 + 3 * nz(0.7, 5.0))
    base = _mix(c1, c2, 0.5 * hash01(row, col, mat.seed + 1)) * (tone * (0.82 + 0.22 * g))[:, None]
    gap = ((t / w - row) < 0.05) | ((x / length - col) < 0.008)
    out = np.where(gap[:, None], base * (1 - 0.55 * p.fade(0.1 / k))[:, None], base)
    return out, None


def _paint_wood(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    g = tri(t * 16 + 4 * nz(0.9, 6.0))
    out = _tint(c1, 0.7 + 0.3 * g * g + 0.08 * nz(25.0))
    return out, None


def _paint_tiles(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    size = 0.3
    u, v = s / size, t / size
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    grout = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) < 0.035
    base = _tint(c1, 0.88 + 0.2 * hash01(iu, iv, mat.seed) + 0.06 * nz(8.0))
    g = _tint(c2, 0.9 + 0.2 * nz(30.0)) * 0.6 + 0.15
    out = np.where(grout[:, None], base + (g - base) * p.fade(0.15 / k)[:, None], base)
    return out, None


def _paint_carpet(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    m = nz(60.0)
    out = _mix(c1, c2, 0.18 * nz(3.0)) * (0.68 + 0.6 * m * m)[:, None]
    return out, None


def _paint_fabric(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    f = 0.78 + 0.3 * nz(20.0) + 0.1 * nz(110.0)
    out = _mix(c1, c2, 0.12 * nz(1.5)) * f[:, None]
    return out, None


def _paint_panels(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    n = 1 + (mat.seed % 4)
    lines = np.abs(p.lt / p.wt * n - np.floor(p.lt / p.wt * n + 0.5)) * p.wt / n < 0.008
    lines |= (np.abs(p.ls - p.ws * 0.5) < 0.006) & (p.ws > 0.7)
    lines |= _border(p, 0.015)
    lines &= p.vert
    base = _tint(c1, 0.92 + 0.1 * nz(2.0) + 0.05 * nz(40.0))
    out = np.where(lines[:, None], base * 0.5, base)
    return out, None


def _paint_glass(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    frame = _border(p, 0.06) | (np.abs(p.ls - p.ws * 0.5) < 0.03)
    h = p.lt / p.wt
    sky = _mix((0.62, 0.74, 0.95), (0.95, 0.95, 0.92), 1 - h) * (0.85 + 0.3 * nz(0.8))[:, None]
    green = _mix((0.15, 0.3, 0.1), (0.35, 0.45, 0.2), nz(6.0))
    view = np.where(((nz(1.2, 0.4) + 0.6 * (1 - h)) > 1.0)[:, None], green, sky)
    out = np.where(frame[:, None], _tint(c1, 0.95 + 0.05 * nz(10.0)), view)
    emit = np.where(frame, 0.0, 1.0).astype(np.float32)
    return out, emit


def _paint_mirror(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    frame = _border(p, 0.04)
    refl = _mix(c1, (0.5, 0.48, 0.45), nz(1.5)) * (0.6 + 0.4 * p.lt / p.wt)[:, None]
    out = np.where(frame[:, None], _tint(c2, 0.5), refl)
    return out, None


def _paint_screen(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    frame = _border(p, 0.025)
    on = (mat.seed % 3) == 0
    glass = (_mix((0.2, 0.35, 0.6), (0.8, 0.5, 0.3), nz(1.5, 1.5)) if on
             else _tint((0.03, 0.035, 0.045), 1 + 1.5 * p.ls / p.ws))
    out = np.where(frame[:, None], _tint(c1, 0.6), glass)
    emit = np.where(frame, 0.0, 0.7 if on else 0.0).astype(np.float32)
    return out, emit


def _paint_books(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    x = s / 0.032 + 0.6 * nz(0.3, 0.3)
    b = np.floor(x)
    h1, h2, h3 = hash01(b, 1, mat.seed), hash01(b, 2, mat.seed), hash01(b, 3, mat.seed)
    col = _mix(c1, c2, h1) * (0.45 + 0.8 * h2)[:, None]
    col = np.where((h3 > 0.7)[:, None], _mix((0.75, 0.72, 0.65), c2, h2), col)
    dark = np.where(p.vert, 0.65 * p.fade(0.032 / k), 0.65)
    out = np.where(((x - b) < 0.1)[:, None] | ~p.vert[:, None], col * (1 - dark)[:, None], col)
    return out, None


def _paint_picture(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    frame = _border(p, 0.035)
    m1, m2 = noise(tile, p.ls * 3 + 50, p.lt * 3), noise(tile, p.ls * 4 + 90, p.lt * 4 + 30)
    art = _mix(c1, c2, m1) * (0.4 + 1.0 * m2)[:, None]
    out = np.where(frame[:, None], _tint((0.25, 0.18, 0.12), 1 + nz(15.0)), art)
    return out, None


def _paint_blinds(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    f = p.fade(0.05 / k)
    out = _tint(c1, 0.7 + 0.3 * (tri(t * 20) * f + 0.5 * (1 - f)) + 0.04 * nz(30.0))
    return out, None


def _paint_curtain(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    folds = 0.62 + 0.38 * tri(s * 7 + 0.5 * nz(0.5)) + 0.05 * nz(60.0)
    out = _mix(c1, c2, 0.1 * nz(3.0)) * folds[:, None]
    return out, None


def _paint_board(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    marks = np.abs(nz(6.0) - 0.5) < 0.012
    frame = _border(p, 0.025)
    out = np.where(marks[:, None], _c((0.1, 0.15, 0.5)), _tint(c1, 1.0))
    out = np.where(frame[:, None], _tint(c2, 1.0), out)
    return out, None


def _paint_paper(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    out = _tint(c1, 0.95 - 0.15 * (tri(p.lt * 120) > 0.9))
    return out, None


def _paint_cardboard(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    tape = (np.abs(p.ls - p.ws * 0.5) < 0.025) & ~p.vert
    base = _tint(c1, 0.85 + 0.25 * nz(12.0))
    out = np.where(tape[:, None], _tint(c2, 1.05), base)
    return out, None


def _paint_foliage(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    m = 0.6 * nz(7.0) + 0.4 * nz(23.0)
    out = _mix(c1, c2, m) * np.where(m < 0.35, 0.35, 0.7 + 0.6 * m)[:, None]
    return out, None


def _paint_bark(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    out = _tint(c1, (0.35 + 0.35 * nz(30.0, 3.0)))
    return out, None


def _paint_asphalt(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    base = _tint(c1, 0.8 + 0.3 * nz(45.0) + 0.12 * nz(0.6))
    centre = (np.abs(p.lt - p.wt * 0.5) < 0.07) & ((p.s / 6.0 - np.floor(p.s / 6.0)) < 0.5)
    edge = np.minimum(np.abs(p.lt - 0.3), np.abs(p.wt - 0.3 - p.lt)) < 0.07
    out = np.where((centre | edge)[:, None], _tint(c2, 0.8 + 0.2 * nz(20.0)), base)
    return out, None


def _paint_facade(mat, p: Patch, s, t, k, nz, c1, c2, tile):
    out = _facade(mat, p, nz)
    return out, None


def _facade(mat, p: Patch, nz):
    storey = 2.8 + 0.6 * ((mat.seed >> 3) % 4) / 3
    spacing = 2.2 + 1.2 * ((mat.seed >> 6) % 4) / 3
    fx = p.ls / spacing - np.floor(p.ls / spacing)
    fz = p.lt / storey - np.floor(p.lt / storey)
    win = (np.abs(fx - 0.5) < 0.22) & (np.abs(fz - 0.55) < 0.25) & p.vert & (p.lt > 0.8 * storey)
    shop = (p.lt < 0.8 * storey) & (p.lt > 0.3) & (np.abs(fx - 0.5) < 0.38) & p.vert & (mat.seed % 2 == 0)
    sill = (np.abs(fx - 0.5) < 0.26) & (np.abs(fz - 0.29) < 0.02) & p.vert & (p.lt > 0.8 * storey)
    wall = _tint(mat.c1, 0.88 + 0.15 * nz(1.0) + 0.06 * nz(25.0))
    glass = _mix((0.05, 0.07, 0.1), (0.35, 0.42, 0.5), fz * 0.8 + 0.3 * nz(3.0))
    out = np.where((win | shop)[:, None], glass, wall)
    return np.where(sill[:, None], _tint(mat.c1, 1.2), out)


PAINTERS = {
    "paint": _paint_paint,
    "plain": _paint_paint,
    "wallpaper": _paint_wallpaper,
    "bricks": _paint_bricks,
    "planks": _paint_planks,
    "wood": _paint_wood,
    "tiles": _paint_tiles,
    "carpet": _paint_carpet,
    "fabric": _paint_fabric,
    "panels": _paint_panels,
    "glass": _paint_glass,
    "mirror": _paint_mirror,
    "screen": _paint_screen,
    "books": _paint_books,
    "picture": _paint_picture,
    "blinds": _paint_blinds,
    "curtain": _paint_curtain,
    "board": _paint_board,
    "paper": _paint_paper,
    "cardboard": _paint_cardboard,
    "foliage": _paint_foliage,
    "bark": _paint_bark,
    "asphalt": _paint_asphalt,
    "facade": _paint_facade,
}
