"""Furniture for the synthetic indoor world: each builder returns parts in the object's own frame.

Sits under synthetic/indoor (which places objects in a room and turns parts into `Prim`s). An object
stands on the footprint x in [0, w], y in [0, d], z up from 0, with its front at y = 0 and its back at
y = d (against a wall when wall-standing). A part is (shape, a, b, class name, role, part name); parts
with the same part name share one material. Shapes: "box" (a = lo, b = hi), "cyl" (a = (x, y, r),
b = (z0, z1)), "ell" (a = centre, b = radii). Classes are NYUDv2-40 names.
"""
from __future__ import annotations

from functools import partial


def box(lo, hi, cls, role, part=None):
    """Axis-aligned box part from corner `lo` (x, y, z) to `hi`, metres in the object frame."""
    return ("box", tuple(lo), tuple(hi), cls, role, part or role)


def cyl(x, y, r, z0, z1, cls, role, part=None):
    """Vertical cylinder part: axis at (x, y), radius r, from height z0 to z1 (metres)."""
    return ("cyl", (x, y, r), (z0, z1, 0.0), cls, role, part or role)


def ell(c, radii, cls, role, part=None):
    """Axis-aligned ellipsoid part with centre `c` (x, y, z) and semi-axes `radii`, metres."""
    return ("ell", tuple(c), tuple(radii), cls, role, part or role)


def legs(w, d, h, t, cls, role):
    """Four square legs (side t, height h) inset 2 cm from the corners of a w x d footprint; part "frame"."""
    return [box((x, y, 0), (x + t, y + t, h), cls, role, "frame")
            for x in (0.02, w - t - 0.02) for y in (0.02, d - t - 0.02)]


def props_on(r, x0, y0, x1, y1, z, n):
    """n small things on a surface: books, boxes, bottles, paper, a table lamp."""
    out = []
    for i in range(n):
        x = x0 + (x1 - x0) * (0.1 + 0.8 * r.random())
        y = y0 + (y1 - y0) * (0.2 + 0.6 * r.random())
        k = r.random()
        p = f"prop{i}"
        if k < 0.25:
            rad = 0.03 + 0.04 * r.random()
            out.append(cyl(x, y, rad, z, z + 0.1 + 0.25 * r.random(), "otherprop", "prop", p))
        elif k < 0.45:
            w, d = 0.15 + 0.2 * r.random(), 0.12 + 0.15 * r.random()
            out.append(box((x - w / 2, y - d / 2, z), (x + w / 2, y + d / 2, z + 0.03 + 0.1 * r.random()),
                           "books", "books", p))
        elif k < 0.6:
            s = 0.15 + 0.2 * r.random()
            out.append(box((x - s / 2, y - s / 2, z), (x + s / 2, y + s / 2, z + s * 0.8),
                           "box", "cardboard", p))
        elif k < 0.75:
            out.append(box((x - 0.11, y - 0.15, z), (x + 0.11, y + 0.15, z + 0.005), "paper", "paper", p))
        elif k < 0.88:
            out += [cyl(x, y, 0.07, z, z + 0.03, "lamp", "metal", p),
                    cyl(x, y, 0.012, z, z + 0.35, "lamp", "metal", p),
                    cyl(x, y, 0.13, z + 0.3, z + 0.5, "lamp", "shade", p + "s")]
        else:
            out.append(ell((x, y, z + 0.06), (0.12, 0.1, 0.06), "bag", "fabric", p))
    return out


def table(r, w, d, h, cls="table"):
    """Table (or coffee table via `cls`): top of random thickness on four legs, 0-3 props on top.

    Like every builder here: r is the geometry numpy Generator, w, d, h the size in metres; returns parts.
    """
    t = 0.03 + 0.02 * r.random()
    out = [box((0, 0, h - t), (w, d, h), cls, "wood", "frame")] + legs(w, d, h - t, 0.05, cls, "wood")
    return out + props_on(r, 0, 0, w, d, h, int(r.integers(0, 4)))


def desk(r, w, d, h):
    """Desk against a wall: top, side panel, modesty panel, drawer block; often a monitor; 1-3 props on top."""
    out = [box((0, 0, h - 0.03), (w, d, h), "desk", "wood", "frame"),
           box((0, 0, 0), (0.03, d, h - 0.03), "desk", "wood", "frame"),
           box((0.45, d - 0.03, 0.3), (w - 0.03, d, h - 0.03), "desk", "wood", "frame")]
    out.append(box((w - 0.45, 0.02, 0), (w, d, h - 0.03), "desk", "cabinet", "drawers"))
    if r.random() < 0.7:
        mw = 0.45 + 0.2 * r.random()
        x = 0.2 + (w - mw - 0.4) * r.random()
        c = x + mw / 2
        out += [box((c - 0.1, d - 0.3, h), (c + 0.1, d - 0.15, h + 0.12), "television", "metal", "mon"),
                box((x, d - 0.25, h + 0.1), (x + mw, d - 0.2, h + 0.1 + mw * 0.6),
                    "television", "screen", "mon")]
    return out + props_on(r, 0, 0, w, d * 0.6, h, int(r.integers(1, 4)))


def chair(r, w, d, h):
    """Chair: four legs, a fabric or wooden seat at 42-48 cm, a backrest up to h."""
    seat = 0.42 + 0.06 * r.random()
    out = legs(w, d, seat - 0.04, 0.035, "chair", "wood")
    out += [box((0, 0, seat - 0.04), (w, d, seat), "chair", "fabric" if r.random() < 0.5 else "wood", "seat"),
            box((0, d - 0.05, seat), (w, d, h), "chair", "wood", "frame")]
    return out


def sofa(r, w, d, h):
    """Sofa against a wall: seat, back, two arms, short legs, 0-3 pillows (class "pillow")."""
    arm = 0.15 + 0.1 * r.random()
    out = [box((0, 0.05, 0.08), (w, d, 0.44), "sofa", "fabric", "body"),
           box((0, d - 0.22, 0.44), (w, d, h), "sofa", "fabric", "body"),
           box((0, 0, 0.08), (arm, d, 0.62), "sofa", "fabric", "body"),
           box((w - arm, 0, 0.08), (w, d, 0.62), "sofa", "fabric", "body")]
    out += legs(w, d, 0.08, 0.05, "sofa", "wood")
    for i in range(int(r.integers(0, 4))):
        x = arm + 0.25 + (w - 2 * arm - 0.5) * r.random()
        out.append(ell((x, d - 0.3, 0.62), (0.2, 0.08, 0.18), "pillow", "bedding", f"pillow{i % 2}"))
    return out


def bed(r, w, d, h):
    """Bed: frame, sheet, blanket, headboard, one or two pillows, sometimes clothes on it."""
    out = [box((0, 0, 0.08), (w, d, 0.35), "bed", "wood", "frame"),
           box((0.03, 0.03, 0.35), (w - 0.03, d - 0.08, 0.56), "bed", "bedding", "sheet"),
           box((0.0, 0.0, 0.36), (w, d * 0.62, 0.6), "bed", "bedding", "blanket"),
           box((0, d - 0.07, 0), (w, d, h), "bed", "wood", "frame")]
    n = 1 if w < 1.2 else 2
    for i in range(n):
        x = w * (i + 0.5) / n
        out.append(ell((x, d - 0.35, 0.62), (w / n * 0.38, 0.2, 0.09), "pillow", "bedding", "pillow"))
    if r.random() < 0.3:
        out.append(ell((w * r.random(), d * 0.3, 0.62), (0.3, 0.25, 0.08), "clothes", "fabric", "clothes"))
    return out


def cabinet(r, w, d, h, cls="cabinet"):
    """Cabinet (or dresser via `cls`) on a plinth; low ones often carry 1-2 props."""
    out = [box((0, 0, 0.05), (w, d, h), cls, "cabinet", "body"),
           box((0.03, 0.03, 0), (w - 0.03, d, 0.05), cls, "wood", "base")]
    if h < 1.2 and r.random() < 0.6:
        out += props_on(r, 0, 0, w, d, h, int(r.integers(1, 3)))
    return out


def nightstand(r, w, d, h):
    """Night stand: one block with one prop on top."""
    out = [box((0, 0, 0), (w, d, h), "night stand", "cabinet", "body")]
    return out + props_on(r, 0, 0, w, d, h, 1)


def bookshelf(r, w, d, h, cls="bookshelf"):
    """Open bookshelf (or "shelves" via `cls`): sides, back, top, boards, filled with books, boxes and props."""
    t = 0.025
    sides = (((0, 0, 0), (t, d, h)), ((w - t, 0, 0), (w, d, h)),             # left, right
             ((0, d - 0.01, 0), (w, d, h)), ((0, 0, h - t), (w, d, h)))       # back, top
    out = [box(lo, hi, cls, "wood", "frame") for lo, hi in sides]
    z = 0.0
    gap = 0.28 + 0.1 * r.random()
    i = 0
    while z + gap < h - 0.1:
        out.append(box((t, 0, z), (w - t, d, z + t), cls, "wood", "frame"))
        x = t
        while x < w - t - 0.1:
            seg = min(w - t - x, 0.15 + 0.5 * r.random())
            k = r.random()
            if k < 0.65:
                front = 0.02 + 0.05 * r.random()
                out.append(box((x, front, z + t), (x + seg, d - 0.02, z + t + gap * (0.6 + 0.3 * r.random())),
                               "books", "books", f"books{i % 2}"))
            elif k < 0.8:
                out.append(box((x + 0.02, 0.04, z + t), (x + seg - 0.02, d - 0.03, z + t + gap * 0.7),
                               "box", "cardboard", f"b{i}"))
            elif k < 0.9:
                out.append(cyl(x + seg / 2, d / 2, min(0.05, seg / 3), z + t, z + t + gap * 0.6,
                               "otherprop", "prop", f"p{i}"))
            x += seg + 0.02
            i += 1
        z += gap
    return out


def lamp(r, w, d, h):
    """Floor lamp: round base, thin pole, shade at the top (all class "lamp")."""
    x, y = w / 2, d / 2
    return [cyl(x, y, 0.14, 0, 0.03, "lamp", "metal", "base"),
            cyl(x, y, 0.016, 0, h - 0.2, "lamp", "metal", "base"),
            cyl(x, y, 0.2, h - 0.35, h, "lamp", "shade", "shade")]


def tv_stand(r, w, d, h):
    """TV stand (cabinet or otherfurniture) with a television (foot + screen) on top."""
    tw = min(w - 0.1, 0.9 + 0.6 * r.random())
    x = (w - tw) / 2
    return [box((0, 0, 0), (w, d, h), "otherfurniture" if r.random() < 0.5 else "cabinet", "cabinet", "body"),
            box((w / 2 - 0.15, d / 2 - 0.1, h), (w / 2 + 0.15, d / 2 + 0.1, h + 0.05),
                "television", "metal", "tv"),
            box((x, d / 2 - 0.04, h + 0.05), (x + tw, d / 2 + 0.04, h + 0.05 + tw * 0.58),
                "television", "screen", "tv")]


def kitchen(r, w, d, h):
    """Kitchen run: lower cabinets, counter top at 86-90 cm, wall cabinets, often a sink, 1-3 props."""
    out = [box((0, 0.05, 0), (w, d, 0.86), "cabinet", "cabinet", "lower"),
           box((0, 0, 0.86), (w, d, 0.9), "counter", "counter", "top"),
           box((0, d - 0.35, 1.45), (w, d, 2.15), "cabinet", "cabinet", "upper")]
    if w > 1.2 and r.random() < 0.7:
        x = 0.3 + (w - 0.9) * r.random()
        out.append(box((x, 0.1, 0.9), (x + 0.55, d - 0.1, 0.91), "sink", "metal", "sink"))
    return out + props_on(r, 0, 0, w, d - 0.1, 0.9, int(r.integers(1, 4)))


def fridge(r, w, d, h):
    """Refrigerator: one box (class "refridgerator", the NYUDv2 spelling)."""
    return [box((0, 0, 0), (w, d, h), "refridgerator", "appliance", "body")]


def toilet(r, w, d, h):
    """Toilet: bowl block and cistern, ceramic."""
    return [box((0.1, 0.1, 0), (w - 0.1, d - 0.2, 0.4), "toilet", "ceramic", "c"),
            box((0.03, d - 0.2, 0.35), (w - 0.03, d, 0.8), "toilet", "ceramic", "c")]


def bathtub(r, w, d, h):
    """Bathtub with a shower curtain along its front edge, up to 2 m."""
    return [box((0, 0, 0), (w, d, h), "bathtub", "ceramic", "c"),
            box((0, -0.02, 0.6), (w, 0.0, 2.0), "shower curtain", "curtain", "sc")]


def vanity(r, w, d, h):
    """Washbasin unit: cabinet, sink top, mirror on the wall above."""
    return [box((0, 0, 0), (w, d, 0.8), "cabinet", "cabinet", "body"),
            box((0.05, 0.05, 0.8), (w - 0.05, d - 0.05, 0.88), "sink", "ceramic", "sink"),
            box((0.05, d - 0.02, 1.1), (w - 0.05, d, 1.8), "mirror", "mirror", "mirror")]


def boxes(r, w, d, h):
    """A cardboard box, sometimes a second one stacked on it."""
    out = [box((0, 0, 0), (w, d, h), "box", "cardboard", "b0")]
    if r.random() < 0.5:
        out.append(box((0.05, 0.05, h), (w * 0.8, d * 0.8, h * 1.7), "box", "cardboard", "b1"))
    return out


def bag(r, w, d, h):
    """A bag: one ellipsoid filling the footprint."""
    return [ell((w / 2, d / 2, h / 2), (w / 2, d / 2, h / 2), "bag", "fabric", "bag")]


def rug(r, w, d, h):
    """Rug: a 12 mm slab on the floor (class "floor mat")."""
    return [box((0, 0, 0), (w, d, 0.012), "floor mat", "rug", "rug")]


def ottoman(r, w, d, h):
    """Ottoman: one fabric block (class "otherfurniture")."""
    return [box((0, 0, 0), (w, d, h), "otherfurniture", "fabric", "body")]


def person(r, w, d, h):
    """Standing person of height h: legs, torso, arms (boxes) and head (ellipsoid), class "person"."""
    x = w / 2
    out = [box((x - 0.17, 0.1, 0), (x - 0.02, 0.25, 0.85), "person", "fabric", "legs"),
           box((x + 0.02, 0.1, 0), (x + 0.17, 0.25, 0.85), "person", "fabric", "legs"),
           box((x - 0.2, 0.06, 0.85), (x + 0.2, 0.3, h - 0.3), "person", "fabric", "shirt"),
           box((x - 0.28, 0.1, 0.9), (x - 0.2, 0.25, h - 0.35), "person", "fabric", "shirt"),
           box((x + 0.2, 0.1, 0.9), (x + 0.28, 0.25, h - 0.35), "person", "fabric", "shirt"),
           ell((x, 0.18, h - 0.14), (0.09, 0.11, 0.13), "person", "skin", "skin")]
    return out


# name: (builder, (w range), (d range), (h range), against a wall)
FURNITURE = {
    "table": (table, (0.8, 1.6), (0.6, 1.0), (0.72, 0.78), False),
    "coffee table": (table, (0.8, 1.2), (0.5, 0.7), (0.4, 0.48), False),
    "desk": (desk, (1.1, 1.8), (0.6, 0.8), (0.72, 0.76), True),
    "chair": (chair, (0.42, 0.5), (0.42, 0.5), (0.85, 1.0), False),
    "sofa": (sofa, (1.6, 2.4), (0.8, 0.95), (0.8, 0.95), True),
    "bed": (bed, (1.0, 1.8), (1.9, 2.1), (0.9, 1.2), True),
    "cabinet": (cabinet, (0.6, 1.4), (0.4, 0.6), (0.8, 2.0), True),
    "dresser": (partial(cabinet, cls="dresser"), (0.8, 1.5), (0.45, 0.55), (0.75, 1.1), True),
    "night stand": (nightstand, (0.4, 0.55), (0.35, 0.45), (0.5, 0.65), True),
    "bookshelf": (bookshelf, (0.6, 1.4), (0.28, 0.38), (1.2, 2.1), True),
    "shelves": (partial(bookshelf, cls="shelves"), (0.6, 1.2), (0.25, 0.35), (0.7, 1.1), True),
    "lamp": (lamp, (0.4, 0.4), (0.4, 0.4), (1.3, 1.7), False),
    "tv stand": (tv_stand, (1.0, 1.8), (0.4, 0.5), (0.45, 0.6), True),
    "kitchen": (kitchen, (1.6, 3.2), (0.6, 0.65), (2.2, 2.2), True),
    "fridge": (fridge, (0.6, 0.8), (0.65, 0.75), (1.7, 1.9), True),
    "toilet": (toilet, (0.4, 0.45), (0.65, 0.7), (0.8, 0.8), True),
    "bathtub": (bathtub, (1.5, 1.7), (0.7, 0.8), (0.5, 0.6), True),
    "vanity": (vanity, (0.6, 1.2), (0.45, 0.55), (1.8, 1.8), True),
    "boxes": (boxes, (0.3, 0.6), (0.3, 0.5), (0.25, 0.5), False),
    "bag": (bag, (0.3, 0.45), (0.2, 0.3), (0.3, 0.45), False),
    "rug": (rug, (1.2, 2.5), (1.0, 2.0), (0.01, 0.01), False),
    "ottoman": (ottoman, (0.4, 0.6), (0.4, 0.6), (0.38, 0.45), False),
    "person": (person, (0.6, 0.6), (0.35, 0.35), (1.6, 1.85), False),
}

# room type -> [(furniture name, probability, max count)]
ROOMS = {
    "bedroom": [("bed", 1.0, 1), ("night stand", 0.85, 2), ("dresser", 0.6, 1), ("lamp", 0.5, 1),
                ("rug", 0.4, 1), ("cabinet", 0.5, 2), ("bag", 0.5, 2), ("boxes", 0.4, 2), ("desk", 0.35, 1),
                ("chair", 0.5, 1), ("shelves", 0.35, 1), ("bookshelf", 0.3, 1), ("ottoman", 0.2, 1)],
    "living": [("sofa", 1.0, 2), ("coffee table", 0.8, 1), ("tv stand", 0.7, 1), ("lamp", 0.6, 2),
               ("bookshelf", 0.6, 2), ("rug", 0.5, 1), ("ottoman", 0.4, 2), ("chair", 0.5, 2),
               ("person", 0.12, 1), ("cabinet", 0.4, 2), ("table", 0.3, 1), ("boxes", 0.3, 2),
               ("bag", 0.3, 1), ("shelves", 0.3, 1)],
    "office": [("desk", 1.0, 3), ("chair", 0.9, 3), ("bookshelf", 0.7, 2), ("cabinet", 0.7, 2),
               ("boxes", 0.6, 3), ("shelves", 0.5, 2), ("bag", 0.4, 2), ("lamp", 0.3, 1), ("person", 0.15, 1),
               ("table", 0.3, 1)],
    "kitchen": [("kitchen", 1.0, 2), ("fridge", 0.8, 1), ("table", 0.7, 1), ("chair", 0.8, 4),
                ("cabinet", 0.5, 2), ("boxes", 0.3, 2), ("bag", 0.2, 1), ("person", 0.1, 1),
                ("shelves", 0.3, 1)],
    "dining": [("table", 1.0, 1), ("chair", 1.0, 6), ("cabinet", 0.7, 2), ("dresser", 0.4, 1),
               ("lamp", 0.4, 1), ("rug", 0.4, 1), ("bookshelf", 0.4, 1), ("boxes", 0.2, 1),
               ("shelves", 0.3, 1)],
    "bathroom": [("toilet", 1.0, 1), ("vanity", 1.0, 1), ("bathtub", 0.7, 1), ("cabinet", 0.4, 1),
                 ("bag", 0.3, 1), ("shelves", 0.3, 1)],
}
