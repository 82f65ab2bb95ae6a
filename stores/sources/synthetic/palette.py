"""Appearance of the synthetic world: domains (styles), colour pools, and material roles -> materials.

Sits between the scene builders (which name a material *role* per primitive: "wall", "wood", "asphalt")
and synthetic/texture (which paints a `Material`). A `Domain` is what `style` changes: palette hue and
saturation, texture scale, light colour and strength, sensor noise. Pools deliberately overlap between
classes (white walls, white cabinets, white ceilings; grey cars, grey roads), so colour alone does not
tell the class. All choices come from the appearance generator, never from the geometry one, so a
style change repaints a frame without moving anything.
"""
from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Domain:
    """One appearance domain (a `style`): palette shift, texture scale, lighting and sensor noise."""
    style: int
    hue: float                          # hue rotation of every pool (turns)
    sat: float                          # saturation multiplier
    tex: float                          # texture frequency multiplier
    light: tuple[float, float, float]   # key light colour
    ambient: float                      # ambient light level
    key: float                          # key light strength
    noise: float                        # sensor noise std on [0, 1] intensities
    exposure: float


@lru_cache(maxsize=64)
def domain(style: int) -> Domain:
    """Style 0 and 1 are hand-set (warm / cool-washed-out); 2+ are drawn from the style number."""
    if style == 0:
        return Domain(0, 0.0, 1.0, 1.0, (1.0, 0.93, 0.82), 0.3, 1.0, 0.018, 0.9)
    if style == 1:
        return Domain(1, 0.07, 0.55, 1.7, (0.82, 0.9, 1.0), 0.5, 0.6, 0.035, 1.0)
    r = np.random.default_rng(np.random.SeedSequence([0x57713, style]))
    u = [float(x) for x in r.random(9)]
    warm = u[3] - 0.5
    return Domain(style, 0.3 * (u[0] - 0.5), 0.4 + 0.9 * u[1], 0.6 + 1.4 * u[2],
                  (1.0 + 0.15 * warm, 0.95, 1.0 - 0.2 * warm), 0.3 + 0.35 * u[4], 0.6 + 0.5 * u[5],
                  0.01 + 0.035 * u[6], 0.85 + 0.35 * u[7])


# sRGB 0..255 pools
POOLS = {
    "neutral": [(236, 233, 226), (222, 212, 192), (204, 204, 202), (184, 174, 156), (152, 152, 156),
                (242, 236, 214), (212, 194, 172), (170, 160, 150)],
    "pastel": [(196, 212, 228), (212, 228, 198), (236, 214, 198), (226, 204, 214), (230, 224, 178),
               (180, 200, 190)],
    "wood": [(164, 112, 70), (122, 82, 52), (192, 152, 102), (92, 62, 42), (204, 172, 124), (142, 100, 62)],
    "fabric": [(152, 42, 42), (52, 70, 122), (92, 112, 72), (122, 122, 128), (62, 62, 68), (182, 160, 130),
               (102, 62, 92), (202, 200, 194), (72, 122, 132), (162, 122, 62), (196, 110, 80)],
    "dark": [(42, 42, 44), (28, 28, 32), (62, 52, 46), (50, 56, 66)],
    "metal": [(172, 172, 178), (122, 122, 128), (202, 202, 208), (96, 98, 104)],
    "white": [(246, 246, 244), (236, 238, 240), (228, 224, 216)],
    "skin": [(224, 178, 150), (190, 140, 110), (140, 96, 70), (240, 200, 175)],
    "asphalt": [(82, 82, 86), (102, 100, 100), (66, 66, 72), (122, 116, 110), (92, 94, 100)],
    "paving": [(152, 150, 150), (172, 162, 152), (132, 132, 138), (162, 122, 112), (190, 186, 178)],
    "facade": [(192, 182, 162), (162, 82, 62), (202, 202, 196), (142, 132, 122), (172, 152, 112),
               (112, 112, 118), (216, 202, 172), (122, 62, 52), (150, 150, 150), (90, 100, 90)],
    "foliage": [(62, 92, 42), (42, 72, 32), (82, 112, 52), (92, 102, 62), (52, 62, 36), (110, 120, 60)],
    "grass": [(92, 122, 52), (112, 132, 62), (82, 102, 46), (132, 132, 72), (100, 110, 60)],
    "car": [(202, 202, 206), (32, 32, 36), (152, 22, 22), (42, 62, 122), (132, 132, 136), (92, 92, 96),
            (232, 232, 232), (72, 42, 32), (62, 82, 62), (110, 100, 80)],
}

# role -> [(weight, texture kind, pool of c1, pool of c2, texture scale 1/m, sensor-hole probability)]
ROLES = {
    "wall": [(6, "paint", "neutral", "neutral", 1.0, 0.0), (2, "paint", "pastel", "neutral", 1.0, 0.0),
             (2, "wallpaper", "neutral", "pastel", 6.0, 0.0), (1, "bricks", "facade", "neutral", 1.0, 0.0)],
    "ceiling": [(1, "paint", "white", "neutral", 1.0, 0.0)],
    "floor": [(5, "planks", "wood", "wood", 1.0, 0.0), (3, "tiles", "neutral", "dark", 1.0, 0.0),
              (3, "carpet", "fabric", "neutral", 1.0, 0.0), (1, "tiles", "paving", "neutral", 1.0, 0.0)],
    "wood": [(6, "wood", "wood", "wood", 1.0, 0.0), (2, "plain", "neutral", "neutral", 1.0, 0.0),
             (1, "plain", "dark", "dark", 1.0, 0.3)],
    "cabinet": [(4, "panels", "wood", "wood", 1.0, 0.0), (3, "panels", "neutral", "neutral", 1.0, 0.0),
                (1, "panels", "pastel", "neutral", 1.0, 0.0)],
    "door": [(3, "panels", "wood", "wood", 1.0, 0.0), (2, "panels", "white", "neutral", 1.0, 0.0)],
    "fabric": [(1, "fabric", "fabric", "neutral", 1.0, 0.0)],
    "bedding": [(2, "fabric", "neutral", "pastel", 1.0, 0.0), (2, "fabric", "pastel", "fabric", 1.0, 0.0),
                (1, "fabric", "fabric", "neutral", 1.0, 0.0)],
    "metal": [(2, "plain", "metal", "metal", 1.0, 0.1), (1, "plain", "dark", "dark", 1.0, 0.4)],
    "window": [(1, "glass", "white", "neutral", 1.0, 0.85)],
    "mirror": [(1, "mirror", "metal", "neutral", 1.0, 0.9)],
    "screen": [(1, "screen", "dark", "dark", 1.0, 0.6)],
    "books": [(1, "books", "fabric", "pastel", 1.0, 0.0)],
    "picture": [(1, "picture", "fabric", "pastel", 1.0, 0.0)],
    "blinds": [(2, "blinds", "neutral", "white", 1.0, 0.0), (1, "blinds", "wood", "wood", 1.0, 0.0)],
    "curtain": [(2, "curtain", "fabric", "fabric", 1.0, 0.0), (1, "curtain", "neutral", "pastel", 1.0, 0.0)],
    "board": [(1, "board", "white", "metal", 1.0, 0.0)],
    "paper": [(1, "paper", "white", "neutral", 1.0, 0.0)],
    "cardboard": [(3, "cardboard", "wood", "neutral", 1.0, 0.0), (1, "plain", "pastel", "fabric", 1.0, 0.0)],
    "shade": [(1, "fabric", "white", "pastel", 1.0, 0.0)],
    "appliance": [(2, "plain", "white", "white", 1.0, 0.0), (1, "plain", "metal", "metal", 1.0, 0.2)],
    "ceramic": [(1, "plain", "white", "white", 1.0, 0.1)],
    "counter": [(2, "tiles", "neutral", "dark", 2.0, 0.0), (2, "plain", "dark", "dark", 1.0, 0.3),
                (1, "wood", "wood", "wood", 1.0, 0.0)],
    "rug": [(1, "carpet", "fabric", "fabric", 1.0, 0.0)],
    "prop": [(2, "plain", "fabric", "fabric", 1.0, 0.0), (1, "plain", "pastel", "pastel", 1.0, 0.0),
             (1, "plain", "metal", "metal", 1.0, 0.1)],
    "skin": [(1, "plain", "skin", "skin", 1.0, 0.0)],
    "radiator": [(1, "blinds", "white", "neutral", 0.5, 0.0)],
    "asphalt": [(1, "asphalt", "asphalt", "white", 1.0, 0.0)],
    "paving": [(2, "tiles", "paving", "asphalt", 2.5, 0.0), (1, "carpet", "paving", "asphalt", 0.6, 0.0)],
    "facade": [(3, "facade", "facade", "dark", 1.0, 0.0), (1, "bricks", "facade", "neutral", 1.0, 0.0)],
    "foliage": [(1, "foliage", "foliage", "foliage", 1.0, 0.0)],
    "grass": [(1, "carpet", "grass", "foliage", 0.7, 0.0)],
    "bark": [(1, "bark", "wood", "dark", 1.0, 0.0)],
    "carpaint": [(1, "plain", "car", "car", 1.0, 0.1)],
    "carglass": [(1, "plain", "dark", "dark", 1.0, 0.7)],
    "tire": [(1, "plain", "dark", "dark", 1.0, 0.3)],
    "pole": [(1, "plain", "metal", "dark", 1.0, 0.0)],
}


@dataclass(frozen=True)
class Material:
    """A concrete surface for synthetic/texture to paint: texture kind, two linear-RGB colours, scale, offset,
    per-instance seed, depth-hole probability and noise tile.
    """
    kind: str
    c1: tuple[float, float, float]     # linear RGB 0..1
    c2: tuple[float, float, float]
    scale: float                       # texture frequency multiplier
    off: tuple[float, float]           # texture offset (m), so frames do not share one noise pattern
    seed: int                          # per-instance hash seed (plank tones, book colours)
    hole: float                        # depth-sensor hole probability (glass, mirrors, dark gloss)
    tile: int                          # which noise tile


def _colour(pool: str, rng, dom: Domain) -> tuple[float, float, float]:
    cols = POOLS[pool]
    r, g, b = cols[int(rng.integers(len(cols)))]
    j = rng.random(3) * 0.16 + 0.92
    h, s, v = colorsys.rgb_to_hsv(*(min(c * float(f), 255) / 255 for c, f in zip((r, g, b), j)))
    r, g, b = colorsys.hsv_to_rgb((h + dom.hue) % 1.0, min(1.0, s * dom.sat), v)
    return (r * r, g * g, b * b)       # display gamma 2 -> linear


@lru_cache(maxsize=1024)
def kind_bias(style: int, role: str, n: int) -> np.ndarray:
    """Per-domain preference among a role's texture kinds (style 0: none), e.g. more carpet, fewer planks."""
    if style == 0:
        return np.ones(n)
    r = np.random.default_rng(np.random.SeedSequence([0x4B1D, style, zlib.crc32(role.encode())]))
    return 0.2 + 1.6 * r.random(n)


def make_material(role: str, rng, dom: Domain) -> Material:
    """A concrete material for a role, drawn with the appearance generator `rng`."""
    options = ROLES[role]
    w = np.array([o[0] for o in options], np.float64) * kind_bias(dom.style, role, len(options))
    k = int(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"))
    _, kind, p1, p2, scale, hole = options[min(k, len(options) - 1)]
    c1, c2 = _colour(p1, rng, dom), _colour(p2, rng, dom)
    off = (float(rng.random() * 97.0), float(rng.random() * 89.0))
    jitter = 0.75 + 0.5 * float(rng.random())
    return Material(kind, c1, c2, scale * jitter * dom.tex, off, int(rng.integers(1 << 30)), hole,
                    int(rng.integers(3)))
