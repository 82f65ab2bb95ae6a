"""Class lists (names, ids, colours) for the datasets mtdistill knows: NYUDv2-40 and KITTI-6.

Sits under every stage: stores record the list in their root attributes, the synthetic world renders
with it, predict colours with it. A class list is a plain list of {"id", "name", "color"} dicts.
"""
from __future__ import annotations

import colorsys

IGNORE_INDEX = 255

NYUD40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)

KITTI6_NAMES = ("sky", "building", "road", "sidewalk", "vegetation", "car")
KITTI6_COLORS = (
    (128, 128, 128), (128, 0, 0), (128, 64, 128), (0, 0, 192), (128, 128, 0), (64, 0, 128),
)
KITTI_VOID_COLOR = (0, 0, 0)


def distinct_colors(n: int) -> list[tuple[int, int, int]]:
    """n well-separated RGB colours (golden-ratio hue walk, alternating value), deterministic."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.45 * ((i // 2) % 2)
        v = 0.95 if i % 2 == 0 else 0.65
        r, g, b = colorsys.hsv_to_rgb(h, s, v)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def make_classes(names, colors=None) -> list[dict]:
    """Class list [{"id", "name", "color": [r, g, b]}] with ids 0..n-1 in `names` order; colours default to
    `distinct_colors`.
    """
    colors = colors or distinct_colors(len(names))
    return [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(zip(names, colors))]


NYUD40 = make_classes(NYUD40_NAMES)
KITTI6 = make_classes(KITTI6_NAMES, KITTI6_COLORS)
CLASS_LISTS = {"nyud40": NYUD40, "kitti6": KITTI6}


def class_list(name: str) -> list[dict]:
    """The named class list ("nyud40" or "kitti6"); KeyError listing the names otherwise."""
    try:
        return CLASS_LISTS[name]
    except KeyError:
        raise KeyError(f"unknown class list {name!r}; choose one of {sorted(CLASS_LISTS)}") from None


def palette(classes: list[dict]):
    """(256, 3) uint8 lookup table: class id -> colour, everything else (255 = ignore) black."""
    import numpy as np

    lut = np.zeros((256, 3), np.uint8)
    for c in classes:
        lut[c["id"]] = c["color"]
    return lut
