"""Vectorised ray casting for the synthetic world: a level pinhole camera against simple solids.

Sits under the synthetic source (stores/sources/synthetic/__init__.py): a scene builder (synthetic/indoor,
synthetic/outdoor) lists `Prim`s, `cast` fills one z-buffer per frame, synthetic/render shades it.

The camera is level (no pitch, no roll), so a pixel's ray direction has x, y parts that depend only on
its column and a z part that depends only on its row: slab tests run on 1-D vectors and only the last
max/min is 2-D. Rays are D = forward + a * right + b * down with a = (u - cx) / fx, b = (v - cy) / fy,
so the hit parameter t IS the depth along the optical axis. World axes: x, y horizontal, z up (metres).
Only elementwise IEEE operations (+ - * / sqrt min max) touch the arrays: identical bytes everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX, CYL, ELL, ROOM, GROUND = "box", "cyl", "ell", "room", "ground"
FACE, STRIP = "face", "strip"            # id placeholders after a ROOM (5 more faces) / GROUND (strips)
AX_CYL, AX_ELL, AX_NONE = 3, 4, 5   # hit-axis codes beyond 0/1/2 (box faces): curved surfaces, nothing
TINY = 1e-9


@dataclass(frozen=True)
class Camera:
    """Level pinhole camera: position (m), horizontal view direction, intrinsics in pixels, image H x W."""
    pos: tuple[float, float, float]   # world position (m)
    fwd: tuple[float, float]          # unit horizontal viewing direction
    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int

    def rays(self):
        """(dx, dy) per column (W,), dz per row (H,), float64."""
        a = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        b = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        fxw, fyw = self.fwd
        dx = fxw + a * fyw                 # right = (fy, -fx, 0)
        dy = fyw - a * fxw
        dz = -b                            # down = (0, 0, -1)
        return _nonzero(dx), _nonzero(dy), _nonzero(dz)


def _nonzero(d):
    return np.where(d == 0.0, TINY, d)


@dataclass(frozen=True)
class Prim:
    """One solid. box: lo/hi corners; cyl: a=(cx, cy, r), b=(z0, z1, 0); ell: a=centre, b=radii.
    room: the inside of box a/b; it and the 5 FACE prims after it are the faces -x, +x, -y, +y, floor,
    ceiling. ground: the plane z=0 split along y at the inner edges a=(-inf, y1, ..., inf); it and the
    STRIP prims after it are the strips, in order."""
    kind: str
    a: tuple
    b: tuple
    cls: int          # class id; 255 = void (labelled "unlabeled")
    role: str         # material role, made concrete by the appearance stage (synthetic/texture)
    group: int = -1   # primitives of one object share a material instance (-1: own material)


@dataclass
class Hits:
    """The z-buffer `cast` fills: per pixel the nearest hit's depth, primitive id and surface kind."""
    t: np.ndarray      # (H, W) float32 depth along the optical axis, inf = nothing hit
    pid: np.ndarray    # (H, W) int16 primitive id, -1 = nothing
    axis: np.ndarray   # (H, W) int8 0/1/2 box face axis, 3 cylinder side, 4 ellipsoid, 5 nothing


def cast(cam: Camera, prims: list[Prim]) -> tuple[Hits, tuple]:
    """Nearest hit of every pixel's ray against all primitives: (Hits of (H, W) arrays, the rays (dx, dy, dz)
    from `Camera.rays`)."""
    H, W = cam.height, cam.width
    dx, dy, dz = cam.rays()
    hits = Hits(np.full((H, W), np.inf, np.float32), np.full((H, W), -1, np.int16),
                np.full((H, W), AX_NONE, np.int8))
    casters = {BOX: _box, CYL: _cyl, ELL: _ell, ROOM: _room, GROUND: _ground}
    for i, p in enumerate(prims):
        if p.kind in casters:              # FACE / STRIP ids are filled by the ROOM / GROUND before them
            casters[p.kind](hits, cam.pos, dx, dy, dz, p, i)
    return hits, (dx, dy, dz)


def _slab(lo, hi, o, d):
    t1 = (lo - o) / d
    t2 = (hi - o) / d
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _span(mask):
    idx = np.flatnonzero(mask)
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else None


def _commit(hits, rows, cols, tnear, ok, pid, axis):
    sl = (slice(*rows), slice(*cols))
    win = ok & (tnear < hits.t[sl])
    np.copyto(hits.t[sl], tnear, where=win)
    np.copyto(hits.pid[sl], np.int16(pid), where=win)
    np.copyto(hits.axis[sl], axis, where=win)


def _box(hits, o, dx, dy, dz, p, pid):
    (x0, y0, z0), (x1, y1, z1) = p.a, p.b
    tnx, tfx = _slab(x0, x1, o[0], dx)
    tny, tfy = _slab(y0, y1, o[1], dy)
    tn_xy, tf_xy = np.maximum(tnx, tny), np.minimum(tfx, tfy)          # (W,)
    cols = _span((tn_xy <= tf_xy) & (tf_xy > 0))
    if cols is None:
        return
    tnz, tfz = _slab(z0, z1, o[2], dz)                                  # (H,)
    c = slice(*cols)
    rows = _span((tnz <= tf_xy[c].max()) & (tfz >= tn_xy[c].min()) & (tfz > 0))
    if rows is None:
        return
    r = slice(*rows)
    tn = np.maximum(tn_xy[None, c], tnz[r, None]).astype(np.float32)   # (h, w)
    tf = np.minimum(tf_xy[None, c], tfz[r, None]).astype(np.float32)
    ok = (tn <= tf) & (tn > 1e-4)
    ax_xy = np.where(tnx[c] >= tny[c], 0, 1).astype(np.int8)
    axis = np.where(tnz[r, None] > tn_xy[None, c], np.int8(2), ax_xy[None, :])
    _commit(hits, rows, cols, tn, ok, pid, axis)


def _cyl(hits, o, dx, dy, dz, p, pid):
    (cx, cy, rad), (z0, z1, _) = p.a, p.b
    ox, oy = o[0] - cx, o[1] - cy
    qa = dx * dx + dy * dy
    qb = ox * dx + oy * dy
    qc = ox * ox + oy * oy - rad * rad
    disc = qb * qb - qa * qc
    cols = _span((disc >= 0) & (qc > 0))
    if cols is None:
        return
    c = slice(*cols)
    ts = (-qb[c] - np.sqrt(np.maximum(disc[c], 0.0))) / qa[c]          # side, (w,)
    ts = np.where(disc[c] >= 0, ts, np.inf)
    # side: z at the hit within [z0, z1]; top cap: t where z = z1, inside the disc
    zs = o[2] + ts[None, :] * dz[:, None]                                # (H, w)
    side_ok = (zs >= z0) & (zs <= z1) & (ts[None, :] > 1e-4)
    tcap = (z1 - o[2]) / dz                                              # (H,)
    px = ox + tcap[:, None] * dx[None, c]
    py = oy + tcap[:, None] * dy[None, c]
    cap_ok = (px * px + py * py <= rad * rad) & (tcap[:, None] > 1e-4) & (o[2] > z1)
    t = np.where(side_ok, ts[None, :], np.inf)
    t = np.where(cap_ok & (tcap[:, None] < t), tcap[:, None], t)
    ok = np.isfinite(t)
    rows = _span(ok.any(axis=1))
    if rows is None:
        return
    r = slice(*rows)
    axis = np.where(side_ok[r] & (t[r] == ts[None, :]), np.int8(AX_CYL), np.int8(2))
    _commit(hits, rows, cols, t[r].astype(np.float32), ok[r], pid, axis)


def _ell(hits, o, dx, dy, dz, p, pid):
    (cx, cy, cz), (rx, ry, rz) = p.a, p.b
    ox, oy, oz = (o[0] - cx) / rx, (o[1] - cy) / ry, (o[2] - cz) / rz
    ex, ey, ez = dx / rx, dy / ry, dz / rz
    # columns whose vertical ray-fan can touch the ellipsoid: circle test on the horizontal parts
    qa_xy = ex * ex + ey * ey
    qb_xy = ox * ex + oy * ey
    cols = _span(qb_xy * qb_xy - qa_xy * (ox * ox + oy * oy - 1.0) >= 0)
    if cols is None:
        return
    c = slice(*cols)
    qa = qa_xy[None, c] + (ez * ez)[:, None]                             # (H, w)
    qb = qb_xy[None, c] + (oz * ez)[:, None]
    qc = ox * ox + oy * oy + oz * oz - 1.0
    disc = qb * qb - qa * qc
    ok = (disc >= 0) & (qc > 0)
    rows = _span(ok.any(axis=1))
    if rows is None:
        return
    r = slice(*rows)
    t = (-qb[r] - np.sqrt(np.maximum(disc[r], 0.0))) / qa[r]
    ok = ok[r] & (t > 1e-4)
    _commit(hits, rows, cols, t.astype(np.float32), ok, pid, np.int8(AX_ELL))


def _room(hits, o, dx, dy, dz, p, pid):
    """Inside of a box: the ray leaves through the nearest far face; id = pid + 2 * axis + (d > 0)."""
    (x0, y0, z0), (x1, y1, z1) = p.a, p.b
    _, tfx = _slab(x0, x1, o[0], dx)
    _, tfy = _slab(y0, y1, o[1], dy)
    _, tfz = _slab(z0, z1, o[2], dz)
    ax_xy = np.where(tfx <= tfy, 0, 1)
    t_xy = np.minimum(tfx, tfy)
    face_xy = np.where(ax_xy == 0, dx > 0, dy > 0) + 2 * ax_xy          # (W,)
    zwin = tfz[:, None] < t_xy[None, :]
    t = np.where(zwin, tfz[:, None], t_xy[None, :]).astype(np.float32)
    face = np.where(zwin, (4 + (dz > 0))[:, None], face_xy[None, :])
    axis = np.where(zwin, np.int8(2), ax_xy.astype(np.int8)[None, :])
    win = t < hits.t
    np.copyto(hits.t, t, where=win)
    np.copyto(hits.pid, (pid + face).astype(np.int16), where=win)
    np.copyto(hits.axis, axis, where=win)


def _ground(hits, o, dx, dy, dz, p, pid):
    """Plane z = 0 below the horizon, one id per strip between consecutive y edges in p.a."""
    below = dz < 0
    rows = _span(below)
    if rows is None:
        return
    r = slice(*rows)
    t = np.where(below[r], -o[2] / dz[r], np.inf)                       # (h,)
    py = o[1] + t[:, None] * dy[None, :]                                 # (h, W)
    edges = np.asarray(p.a[1:-1], np.float64)
    strip = np.searchsorted(edges, py, side="right")
    tt = np.broadcast_to(t[:, None], py.shape).astype(np.float32)
    win = np.isfinite(tt) & (tt < hits.t[r])
    np.copyto(hits.t[r], tt, where=win)
    np.copyto(hits.pid[r], (pid + strip).astype(np.int16), where=win)
    np.copyto(hits.axis[r], np.int8(2), where=win)
