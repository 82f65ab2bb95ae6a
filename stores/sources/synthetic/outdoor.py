"""The outdoor (KITTI-like) scene builder: a straight street seen from a car-mounted level camera.

Sits under synthetic/render, beside synthetic/indoor: `outdoor_scene(rng, ...)` draws from the
*geometry* generator a road with kerbed sidewalks, rows of buildings with gaps, trees and hedges,
parked and driving cars, poles (void, label 255), and the sun. The street runs along +x; the camera
drives at x = 0 in the right-hand lane, 1.65 m above the road. Classes are KITTI-6 ids.
"""
from __future__ import annotations

import math

from stores.classes import KITTI6
from stores.sources.synthetic.indoor import Scene
from stores.sources.synthetic.raycast import BOX, CYL, ELL, GROUND, STRIP, Camera, Prim

K = {c["name"]: c["id"] for c in KITTI6}
VOID = 255
CAM_HEIGHT = 1.65


def _car(r, x, y, heading_x: bool, gid, prims):
    """A car centred at (x, y) on the road: body, cabin with glass, roof, four wheels."""
    L, Wd = 3.8 + 1.0 * r.random(), 1.65 + 0.25 * r.random()
    h0, h1, h2 = 0.28, 0.85 + 0.15 * r.random(), 1.35 + 0.2 * r.random()
    def b(x0, y0, z0, x1, y1, z1, role, g):
        if not heading_x:
            x0, y0, x1, y1 = y0, x0, y1, x1
        prims.append(Prim(BOX, (x + x0, y + y0, z0), (x + x1, y + y1, z1), K["car"], role, g))
    b(-L / 2, -Wd / 2, h0, L / 2, Wd / 2, h1, "carpaint", gid)
    cab0, cab1 = -L * (0.3 + 0.1 * r.random()), L * (0.15 + 0.1 * r.random())
    b(cab0, -Wd / 2 + 0.08, h1, cab1, Wd / 2 - 0.08, h2 - 0.06, "carglass", gid + 1)
    b(cab0 + 0.1, -Wd / 2 + 0.1, h2 - 0.06, cab1 - 0.05, Wd / 2 - 0.1, h2, "carpaint", gid)
    for wx in (-L / 2 + 0.75, L / 2 - 0.75):
        for wy in (-Wd / 2 + 0.02, Wd / 2 - 0.24):
            b(wx - 0.33, wy, 0.0, wx + 0.33, wy + 0.22, 0.62, "tire", gid + 2)
    return gid + 3


def _tree(r, x, y, gid, prims):
    h = 2.0 + 2.5 * r.random()
    rad = 1.2 + 1.8 * r.random()
    trunk = 0.12 + 0.12 * r.random()
    prims.append(Prim(CYL, (x, y, trunk), (0.0, h + rad * 0.3, 0.0), K["vegetation"], "bark", gid))
    prims.append(Prim(ELL, (x, y, h + rad * 0.8), (rad, rad, rad * (0.8 + 0.5 * r.random())),
                      K["vegetation"], "foliage", gid + 1))
    return gid + 2


def outdoor_scene(r, size, intrinsics, max_depth=80.0) -> Scene:
    """One street scene (see the module docstring) with the camera 1.65 m up in the right-hand lane and a sun.
    r: geometry Generator; size (H, W); intrinsics (fx, fy, cx, cy); max_depth 80 m. Classes are KITTI-6 ids.
    Draws from `r` in a fixed order: street, roadside (right, then left), traffic, camera and sun.
    """
    road = 6.5 + 5.5 * r.random()                 # road width (m)
    walk = (1.5 + 2.5 * r.random(), 1.5 + 2.5 * r.random())    # sidewalk widths, right (-y) and left (+y)
    lawn = (r.random() < 0.5, r.random() < 0.5)  # grass strip beyond each sidewalk
    yr, yl = -road / 2, road / 2
    far_r, far_l = yr - walk[0], yl + walk[1]
    prims, kerb = _street(r, yr, yl, far_r, far_l, lawn)
    gid = 4
    for side, front in ((-1, far_r), (1, far_l)):
        gid = _roadside(r, side, front, lawn, yr, yl, gid, prims)
    feet = []
    cy = _traffic(r, road, gid, prims, feet)
    yaw = 0.12 * (r.random() - 0.5)
    norm = math.sqrt(1.0 + yaw * yaw)
    fx, fy, ccx, ccy = intrinsics
    cam = Camera((0.0, cy, CAM_HEIGHT), (1.0 / norm, yaw / norm), fx, fy, ccx, ccy, size[0], size[1])
    sx, sy = 2 * r.random() - 1, 2 * r.random() - 1
    sz = 0.5 + 1.2 * r.random()
    n = math.sqrt(sx * sx + sy * sy + sz * sz)
    lights = [("sun", (sx / n, sy / n, sz / n), 1.0)]
    return Scene(cam, prims, lights, max_depth, feet,
                 {"camera_height": CAM_HEIGHT, "road": (yr, yl), "kerb": kerb, "sidewalks": (far_r, far_l)})


def _street(r, yr, yl, far_r, far_l, lawn) -> tuple[list, float]:
    """Ground strips (beyond-right | right walk | road | left walk | beyond-left) and the two raised
    sidewalks; returns (prims, kerb height in metres)."""
    edges = (float("-inf"), far_r, yr, yl, far_l, float("inf"))
    beyond = [("vegetation", "grass") if g else ("sidewalk", "paving") for g in lawn]
    prims = [Prim(GROUND, edges, (), K[beyond[0][0]], beyond[0][1], 0),
             Prim(STRIP, (far_r, yr), (), K["sidewalk"], "paving", 1),
             Prim(STRIP, (yr, yl), (), K["road"], "asphalt", 2),
             Prim(STRIP, (yl, far_l), (), K["sidewalk"], "paving", 1),
             Prim(STRIP, (far_l, 1e4), (), K[beyond[1][0]], beyond[1][1], 3)]
    kerb = 0.12 + 0.06 * r.random()
    prims.append(Prim(BOX, (-20.0, far_r, 0.0), (300.0, yr, kerb), K["sidewalk"], "paving", 1))
    prims.append(Prim(BOX, (-20.0, yl, 0.0), (300.0, far_l, kerb), K["sidewalk"], "paving", 1))
    return prims, kerb


def _roadside(r, side: int, front: float, lawn, yr: float, yl: float, gid: int, prims: list) -> int:
    """Buildings (or a park of trees and hedges) along one side (-1 right, +1 left) from x = -20 m to 200 m,
    then street trees and poles on its sidewalk; appends to `prims`, returns the next group id."""
    x = -10.0 - 10 * r.random()
    park = r.random() < 0.25                  # a park: trees and hedges instead of buildings
    setback = 0.0 if not lawn[side > 0] else 2.0 + 4.0 * r.random()
    while x < 200.0:
        w = 8.0 + 22.0 * r.random()
        kind = r.random()
        if not park and kind < 0.78:
            depth, height = 10.0 + 10 * r.random(), 5.0 + 20.0 * r.random()
            f = front + side * (setback + 1.5 * r.random() * (r.random() < 0.3))
            y0, y1 = (f, f + depth) if side > 0 else (f - depth, f)
            prims.append(Prim(BOX, (x, y0, 0.0), (x + w, y1, height), K["building"], "facade", gid))
            gid += 1
        else:
            for _ in range(int(r.integers(1, 4))):
                tx = x + w * r.random()
                ty = front + side * (1.5 + 6.0 * r.random())
                gid = _tree(r, tx, ty, gid, prims)
            if r.random() < 0.6:
                f = front + side * 0.3
                y0, y1 = (f, f + 0.8) if side > 0 else (f - 0.8, f)
                prims.append(Prim(BOX, (x, y0, 0.0), (x + w * 0.8, y1, 0.8 + 0.8 * r.random()),
                                  K["vegetation"], "foliage", gid))
                gid += 1
        x += w + (0.0 if r.random() < 0.6 else 2.0 + 8.0 * r.random())
    # street trees on the sidewalk, poles (void)
    for _ in range(int(r.integers(0, 6))):
        gid = _tree(r, 5.0 + 60.0 * r.random(), front - side * 0.8, gid, prims)
    for _ in range(int(r.integers(0, 4))):
        px = 4.0 + 50.0 * r.random()
        py = (yl if side > 0 else yr) + side * 0.4
        prims.append(Prim(CYL, (px, py, 0.06), (0.0, 4.0 + 3.0 * r.random(), 0.0), VOID, "pole", gid))
        gid += 1
    return gid


def _traffic(r, road: float, gid: int, prims: list, feet: list) -> float:
    """Parked cars along the kerbs of a wide road and a few driving ahead / oncoming (their footprints
    appended to `feet`); the ego lane stays clear. Returns the camera's lateral position y (m)."""
    parking = 2.1 if road > 9.0 else 0.0
    lane = (road / 2 - parking) / 2
    cy = -road / 2 + parking + lane + 0.3 * (r.random() - 0.5)
    for side in (-1, 1):
        x = -2.0 + 6.0 * r.random()
        while parking and x < 70.0:
            if r.random() < 0.6:
                y = side * (road / 2 - 1.05)
                gid = _car(r, x, y, True, gid, prims)
                feet.append((x - 2.4, y - 1.0, x + 2.4, y + 1.0))
            x += 5.0 + 4.0 * r.random()
    for _ in range(int(r.integers(0, 3))):
        y = (-1.0 if r.random() < 0.5 else 1.0) * (road / 2 - parking - lane) + 0.3 * (r.random() - 0.5)
        x = 9.0 + 50.0 * r.random()
        gid = _car(r, x, y, True, gid, prims)
        feet.append((x - 2.4, y - 1.0, x + 2.4, y + 1.0))
    return cy
