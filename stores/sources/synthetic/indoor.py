"""The indoor (NYUDv2-like) scene builder: one furnished room and a level camera inside it.

Sits under synthetic/render: `indoor_scene(rng, ...)` draws everything from the *geometry* generator
(room size and type, doors, windows, furniture from synthetic/furniture, camera pose, lights) and
returns a `Scene` of `Prim`s with NYUDv2-40 class ids. Appearance is chosen later (synthetic/palette),
so a style change never moves anything.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

from stores.classes import NYUD40
from stores.sources.synthetic.furniture import FURNITURE, ROOMS
from stores.sources.synthetic.raycast import BOX, CYL, ELL, FACE, ROOM, Camera, Prim

CLS = {c["name"]: c["id"] for c in NYUD40}
ROOM_TYPES = ("bedroom", "living", "office", "kitchen", "dining", "bathroom")
ROOM_WEIGHTS = (0.22, 0.22, 0.18, 0.15, 0.13, 0.10)


@dataclass
class Scene:
    """What a scene builder returns and synthetic/render draws: camera, primitives, lights, max depth (m),
    floor footprints for contact shadows and `info` facts for tests.
    """
    camera: Camera
    prims: list[Prim]
    lights: list[tuple]                  # ("point", (x, y, z), strength) / ("sun", (dx, dy, dz), strength)
    max_depth: float
    footprints: list[tuple] = field(default_factory=list)   # (x0, y0, x1, y1): contact shadows on the floor
    info: dict = field(default_factory=dict)                 # camera height, room size: for tests and QA


def _rot(k, x, y):
    return ((x, y), (-y, x), (-x, -y), (y, -x))[k]


def _place(parts, k, tx, ty, gid0, prims):
    """Turn object-frame parts into world prims (rotation by k * 90 degrees, then translation)."""
    groups = {}
    for shape, a, b, cls, role, part in parts:
        g = groups.setdefault(part, gid0 + len(groups))
        if shape == "box":
            (x0, y0), (x1, y1) = _rot(k, a[0], a[1]), _rot(k, b[0], b[1])
            prims.append(Prim(BOX, (min(x0, x1) + tx, min(y0, y1) + ty, a[2]),
                              (max(x0, x1) + tx, max(y0, y1) + ty, b[2]), CLS[cls], role, g))
        elif shape == "cyl":
            x, y = _rot(k, a[0], a[1])
            prims.append(Prim(CYL, (x + tx, y + ty, a[2]), b, CLS[cls], role, g))
        else:
            x, y = _rot(k, a[0], a[1])
            rx, ry = (b[0], b[1]) if k % 2 == 0 else (b[1], b[0])
            prims.append(Prim(ELL, (x + tx, y + ty, a[2]), (rx, ry, b[2]), CLS[cls], role, g))
    return gid0 + len(groups)


def _wall_pose(wall, u, w, d, W, D, gap):
    """Rotation and translation putting an object's back against wall 0..3 (-x, +x, -y, +y) at offset u."""
    if wall == 3:
        return 0, u, D - d - gap, (u, D - d - gap, u + w, D - gap)
    if wall == 2:
        return 2, u + w, d + gap, (u, gap, u + w, d + gap)
    if wall == 1:
        return 3, W - d - gap, u + w, (W - d - gap, u, W - gap, u + w)
    return 1, d + gap, u, (gap, u, d + gap, u + w)


def _overlaps(rect, rects, m=0.05):
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] + m and b[0] < x1 + m and y0 < b[3] + m and b[1] < y1 + m for b in rects)


def _wall_box(wall, u0, u1, z0, z1, th, W, D):
    """A thin box on the inside of a wall, spanning u0..u1 along it."""
    if wall == 0:
        return (0.0, u0, z0), (th, u1, z1)
    if wall == 1:
        return (W - th, u0, z0), (W, u1, z1)
    if wall == 2:
        return (u0, 0.0, z0), (u1, th, z1)
    return (u0, D - th, z0), (u1, D, z1)


def indoor_scene(r, size, intrinsics, max_depth=10.0) -> Scene:
    """One furnished room (bedroom, living, office, kitchen, dining or bathroom) with doors, windows, furniture,
    ceiling lights, and a level camera by a wall looking across it. r: geometry Generator; size (H, W);
    intrinsics (fx, fy, cx, cy); max_depth in metres. Classes are NYUDv2-40 ids.
    """
    W, D, H = 3.0 + 3.2 * r.random(), 3.0 + 3.6 * r.random(), 2.4 + 0.6 * r.random()
    kind = ROOM_TYPES[int(r.choice(len(ROOM_TYPES), p=ROOM_WEIGHTS))]
    if kind == "bathroom":
        W, D = 0.55 * W + 0.6, 0.55 * D + 0.6
    prims = [Prim(ROOM, (0.0, 0.0, 0.0), (W, D, H), CLS["wall"], "wall", 0)]     # + 5 faces: see Prim
    prims += [Prim(FACE, (), (), CLS["wall"], "wall", 0 if r.random() < 0.85 else 1) for _ in range(3)]
    prims += [Prim(FACE, (), (), CLS["floor"], "floor", 2), Prim(FACE, (), (), CLS["ceiling"], "ceiling", 3)]
    gid = 4
    cam, rects = _camera(r, W, D, intrinsics, size)
    wall_used = {w: [] for w in range(4)}        # (u0, u1, z0, z1) per wall
    lens = (D, D, W, W)
    gid = _openings(r, kind, W, D, H, lens, rects, wall_used, prims, gid)
    tables = []
    for name, prob, most in ROOMS[kind]:
        for _ in range(int(r.integers(1, most + 1)) if r.random() < prob else 0):
            gid = _furnish(r, name, W, D, H, lens, rects, wall_used, tables, prims, gid)
    gid = _wall_extras(r, kind, H, W, D, lens, wall_used, prims, gid)
    lights = [("point", (W * (0.3 + 0.4 * r.random()), D * (0.3 + 0.4 * r.random()), H - 0.05), 1.0)]
    if r.random() < 0.5:
        lights.append(("point", (W * r.random(), D * r.random(), H - 0.05), 0.6))
    foot = [rc for rc in rects[1:]]
    return Scene(cam, prims, lights, max_depth, foot, {"camera_height": cam.pos[2], "room": (W, D, H), "type": kind})


def _camera(r, W: float, D: float, intrinsics, size) -> tuple:
    """A level camera by a wall or in a corner, looking across the room at a point on the far side;
    returns (Camera, [its 0.9 m floor rectangle]) so furniture keeps clear of it."""
    cam_wall = int(r.integers(4))
    span = W if cam_wall >= 2 else D
    corner = r.random() < 0.5
    u = (0.3 + 0.6 * r.random()) if corner else span * (0.25 + 0.5 * r.random())
    if corner and r.random() < 0.5:
        u = span - u
    off = 0.25 + (0.6 if corner else 0.9) * r.random()
    cx, cy = ((off, u), (W - off, u), (u, off), (u, D - off))[cam_wall]
    tx, ty = W * (0.1 + 0.8 * r.random()), D * (0.1 + 0.8 * r.random())
    far = ((W, ty), (0.0, ty), (tx, D), (tx, 0.0))[cam_wall]
    vx, vy = far[0] - cx, far[1] - cy
    norm = math.sqrt(vx * vx + vy * vy)
    cz = 1.0 + 0.6 * r.random()
    fx, fy, ccx, ccy = intrinsics
    cam = Camera((cx, cy, cz), (vx / norm, vy / norm), fx, fy, ccx, ccy, size[0], size[1])
    return cam, [(cx - 0.45, cy - 0.45, cx + 0.45, cy + 0.45)]


def _openings(r, kind: str, W, D, H, lens, rects, wall_used, prims, gid: int) -> int:
    """One door and 0-2 windows (none required in a bathroom) on free wall spans, windows dressed with
    curtains or blinds; returns the next group id."""
    for name in ["door"] + ["window"] * int(r.integers(0 if kind == "bathroom" else 1, 3)):
        for _ in range(10):
            wall = int(r.integers(4))
            if name == "door":
                w, z0, z1 = 0.8 + 0.15 * r.random(), 0.0, 2.0 + 0.1 * r.random()
            else:
                w, z0 = 0.7 + 1.3 * r.random(), 0.7 + 0.3 * r.random()
                z1 = min(H - 0.15, z0 + 1.0 + 0.6 * r.random())
            u0 = 0.2 + (lens[wall] - w - 0.4) * r.random()
            if u0 < 0.1 or u0 + w > lens[wall] - 0.1 or \
                    any(u0 < b[1] + 0.2 and b[0] < u0 + w + 0.2 for b in wall_used[wall]):
                continue
            wall_used[wall].append((u0, u0 + w, z0, z1))
            lo, hi = _wall_box(wall, u0, u0 + w, z0, z1, 0.03, W, D)
            prims.append(Prim(BOX, lo, hi, CLS[name], "door" if name == "door" else "window", gid))
            gid += 1
            if name == "door":
                _, _, _, rect = _wall_pose(wall, u0, w, 0.9, W, D, 0.0)
                rects.append(rect)
            else:
                gid = _dressing(r, wall, u0, w, z0, z1, H, W, D, prims, gid, wall_used)
            break
    return gid


def _wall_extras(r, kind: str, H, W, D, lens, wall_used, prims, gid: int) -> int:
    """Pictures, a whiteboard (offices), a towel (bathrooms) and sometimes a mirror on free wall space;
    returns the next group id."""
    extras = [("picture", "picture")] * int(r.integers(0, 4))
    if kind == "office" and r.random() < 0.6:
        extras.append(("whiteboard", "board"))
    if kind == "bathroom":
        extras.append(("towel", "bedding"))
    if r.random() < 0.15:
        extras.append(("mirror", "mirror"))
    for name, role in extras:
        for _ in range(8):
            wall = int(r.integers(4))
            w = {"whiteboard": 1.2 + 0.8 * r.random(), "towel": 0.4}.get(name, 0.3 + 0.7 * r.random())
            hgt = {"whiteboard": 0.9, "towel": 0.6}.get(name, w * (0.6 + 0.6 * r.random()))
            z0 = (0.9 if name in ("whiteboard", "towel") else 1.1) + 0.4 * r.random()
            if lens[wall] < w + 0.2 or z0 + hgt > H - 0.1:
                continue
            u0 = 0.1 + (lens[wall] - w - 0.2) * r.random()
            if any(u0 < b[1] and b[0] < u0 + w and z0 < b[3] and b[2] < z0 + hgt for b in wall_used[wall]):
                continue
            wall_used[wall].append((u0, u0 + w, z0, z0 + hgt))
            lo, hi = _wall_box(wall, u0, u0 + w, z0, z0 + hgt, 0.02 + 0.02 * r.random(), W, D)
            prims.append(Prim(BOX, lo, hi, CLS[name], role, gid))
            gid += 1
            break
    return gid


def _furnish(r, name, W, D, H, lens, rects, wall_used, tables, prims, gid):
    """Place one piece: against a free stretch of wall, at a table side (chairs), or free-standing."""
    build, wr, dr, hr, on_wall = FURNITURE[name]
    w, d = wr[0] + (wr[1] - wr[0]) * r.random(), dr[0] + (dr[1] - dr[0]) * r.random()
    h = min(H - 0.1, hr[0] + (hr[1] - hr[0]) * r.random())
    for attempt in range(12):
        if on_wall:
            wall = int(r.integers(4))
            if lens[wall] < w + 0.1:
                continue
            u0 = 0.05 + (lens[wall] - w - 0.1) * r.random()
            if any(u0 < b[1] and b[0] < u0 + w and b[2] < h for b in wall_used[wall]):
                continue
            k, px, py, rect = _wall_pose(wall, u0, w, d, W, D, 0.01)
        else:
            if name == "chair" and tables and attempt < 6:
                # facing a table side: k is the side (0 north, 1 west, 2 south, 3 east of the table)
                x0, y0, x1, y1 = tables[int(r.integers(len(tables)))]
                k = int(r.integers(4))
                ww, dd = (w, d) if k % 2 == 0 else (d, w)
                a = r.random()
                along_x, along_y = x0 + (x1 - x0 - ww) * a, y0 + (y1 - y0 - dd) * a
                cx0 = {0: along_x, 2: along_x, 1: x0 - ww - 0.08, 3: x1 + 0.08}[k]
                cy0 = {1: along_y, 3: along_y, 0: y1 + 0.08, 2: y0 - dd - 0.08}[k]
            else:
                k = int(r.integers(4))
                ww, dd = (w, d) if k % 2 == 0 else (d, w)
                cx0, cy0 = 0.1 + (W - ww - 0.2) * r.random(), 0.1 + (D - dd - 0.2) * r.random()
            rect = (cx0, cy0, cx0 + ww, cy0 + dd)
            px, py = {0: (cx0, cy0), 1: (cx0 + ww, cy0), 2: (cx0 + ww, cy0 + dd), 3: (cx0, cy0 + dd)}[k]
        if rect[0] < 0 or rect[1] < 0 or rect[2] > W or rect[3] > D:
            continue
        if name != "rug" and _overlaps(rect, rects):
            continue
        if name != "rug":
            rects.append(rect)
        if name in ("table", "coffee table"):
            tables.append(rect)
        if on_wall:
            wall_used[wall].append((u0, u0 + w, 0.0, h))
        return _place(build(r, w, d, h), k, px, py, gid, prims)
    return gid


def _dressing(r, wall, u0, w, z0, z1, H, W, D, prims, gid, wall_used):
    """Blinds, curtains or a radiator around a window."""
    k = r.random()
    if k < 0.35:
        drop = z1 - (z1 - z0) * (0.2 + 0.8 * r.random())
        lo, hi = _wall_box(wall, u0, u0 + w, drop, z1, 0.06, W, D)
        prims.append(Prim(BOX, lo, hi, CLS["blinds"], "blinds", gid))
        gid += 1
    elif k < 0.75:
        cw = 0.25 + 0.3 * r.random()
        for a, b in ((u0 - cw * 0.6, u0 - cw * 0.6 + cw), (u0 + w + cw * 0.6 - cw, u0 + w + cw * 0.6)):
            bottom = 0.05 if r.random() < 0.5 else z0 - 0.2
            lo, hi = _wall_box(wall, max(0.01, a), b, bottom, min(H, z1 + 0.15), 0.1, W, D)
            prims.append(Prim(BOX, lo, hi, CLS["curtain"], "curtain", gid))
        wall_used[wall].append((u0 - cw, u0 + w + cw, 0.0, H))
        gid += 1
    if z0 > 0.75 and r.random() < 0.4:
        lo, hi = _wall_box(wall, u0 + 0.05, u0 + w - 0.05, 0.15, min(z0 - 0.1, 0.7), 0.08, W, D)
        prims.append(Prim(BOX, lo, hi, CLS["otherstructure"], "radiator", gid))
        gid += 1
    return gid

