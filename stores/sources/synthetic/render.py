"""Render one synthetic frame: scene -> z-buffer -> labels, depth, shaded RGB, sensor depth.

Sits under stores/sources/synthetic/__init__.py (`render_frame`), above the scene builders (synthetic/indoor,
synthetic/outdoor), the ray caster, the painters (synthetic/palette, synthetic/texture) and the sensor
models (synthetic/sensor). Three generators per frame, all from SeedSequence(seed, preset, index):
geometry (no style: a style change never moves anything), appearance (+ style), sensor (+ style).
Shading: albedo x (ambient + Lambert point lights / sun with street shadows) x corner and contact
occlusion; windows, screens and sky emit. Then exposure, vignetting, gamma 2, sensor noise, 8 bits.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from stores.sources.synthetic.indoor import indoor_scene
from stores.sources.synthetic.outdoor import K as KITTI_IDS
from stores.sources.synthetic.outdoor import outdoor_scene
from stores.sources.synthetic.palette import domain, make_material
from stores.sources.synthetic.raycast import AX_CYL, AX_ELL, BOX, CYL, ELL, FACE, GROUND, ROOM, STRIP, cast
from stores.sources.synthetic.sensor import kinect_valid, lidar_valid
from stores.sources.synthetic.painters import paint
from stores.sources.synthetic.texture import LOCAL_KINDS, Patch, noise, noise_tile

PRESET_CODE = {"indoor": 1, "outdoor": 2}
VOID = 255


def generators(preset: str, index: int, seed: int, style: int):
    """The frame's three numpy Generators (geometry, appearance, sensor) from SeedSequence(seed, preset, index);
    only appearance and sensor depend on `style`.
    """
    base = [int(seed), PRESET_CODE[preset], int(index)]
    return (np.random.default_rng(np.random.SeedSequence(base + [0])),
            np.random.default_rng(np.random.SeedSequence(base + [1, int(style)])),
            np.random.default_rng(np.random.SeedSequence(base + [2, int(style)])))


def build_scene(preset: str, index: int, seed: int, size, intrinsics):
    """The `Scene` of frame `index` (indoor or outdoor builder, geometry generator only); size (H, W),
    intrinsics (fx, fy, cx, cy) at that size.
    """
    geo = generators(preset, index, seed, 0)[0]
    return (indoor_scene if preset == "indoor" else outdoor_scene)(geo, size, intrinsics)


def _bounds(prims):
    """(n, 3) lo and hi per primitive, for local texture coordinates (FACE/STRIP rows: from their base)."""
    lo, hi = np.zeros((len(prims), 3), np.float32), np.ones((len(prims), 3), np.float32)
    base = None
    for i, p in enumerate(prims):
        if p.kind in (BOX, ROOM):
            lo[i], hi[i] = p.a, p.b
            base = i
        elif p.kind == FACE:
            lo[i], hi[i] = lo[base], hi[base]
        elif p.kind in (GROUND, STRIP):
            y0, y1 = (p.a[0], p.a[1]) if p.kind == STRIP else (-1e4, p.a[1])
            lo[i], hi[i] = (-1e4, max(y0, -1e4), 0.0), (1e4, min(y1, 1e4), 1.0)
        elif p.kind == CYL:
            (x, y, rad), (z0, z1, _) = p.a, p.b
            lo[i], hi[i] = (x - rad, y - rad, z0), (x + rad, y + rad, z1)
        elif p.kind == ELL:
            lo[i] = [c - r for c, r in zip(p.a, p.b)]
            hi[i] = [c + r for c, r in zip(p.a, p.b)]
    return lo, hi


def render_scene(scene, preset: str, style: int, app, sen):
    """Render a scene: rgb (H, W, 3) uint8, segm (H, W) uint8 class ids (sky: KITTI sky or 255 void),
    depth_clean and depth_sensor (H, W) float32 metres along the optical axis (0 = no return).
    `app` and `sen` are the appearance and sensor generators (see `generators`), drawn in a fixed order."""
    cam = scene.camera
    dom = domain(style)
    g = surface_geometry(scene, preset)
    albedo, emit, hole_p, sky = material_albedo(g, scene.prims, app, dom, cam)
    rgb = shade(scene, preset, dom, app, sen, g, albedo, emit, sky)
    if preset == "indoor":
        lum = albedo[..., 0] * 0.3 + albedo[..., 1] * 0.59 + albedo[..., 2] * 0.11
        valid = kinect_valid(g.depth, g.cos_view, lum, hole_p, cam.fx, sen)
    else:
        valid = lidar_valid(g.depth, cam.fx, cam.fy, cam.cy, hole_p, sen, scene.max_depth)
    sensor = np.where(valid, g.depth, np.float32(0)).astype(np.float32)
    return rgb, g.segm, g.depth, sensor


class Geometry(SimpleNamespace):
    """Per-pixel results of the ray cast: segm, depth (H, W); primitive id pid and hit axis; surface point
    px, py, pz and normal nx, ny, nz (H, W) float32; texture coordinates s_co, t_co; ray directions dxf,
    dyf, dzf; cos_view (|cos| of the view angle) and foot (pixel footprint on the surface, metres)."""


def surface_geometry(scene, preset: str) -> Geometry:
    """Ray-cast the scene's camera: labels, depth, surface points, normals and texture coordinates."""
    cam, prims = scene.camera, scene.prims
    hits, (dx, dy, dz) = cast(cam, prims)
    pid, axis = hits.pid, hits.axis
    sky_cls = KITTI_IDS["sky"] if preset == "outdoor" else VOID
    cls_lut = np.array([p.cls for p in prims] + [sky_cls], np.uint8)
    segm = cls_lut[pid]                                               # pid -1 -> last entry (sky)
    t = hits.t
    hit = np.isfinite(t)
    depth = np.where(hit & (t <= scene.max_depth), t, np.float32(0)).astype(np.float32)
    t0 = np.where(hit, t, np.float32(0))
    o = cam.pos
    dxf, dyf, dzf = dx.astype(np.float32), dy.astype(np.float32), dz.astype(np.float32)
    px = np.float32(o[0]) + t0 * dxf[None, :]
    py = np.float32(o[1]) + t0 * dyf[None, :]
    pz = np.float32(o[2]) + t0 * dzf[:, None]
    nx, ny, nz = _normals(prims, pid, axis, px, py, pz, dxf, dyf, dzf)
    s_co = np.where(axis == 0, py, np.where(axis >= 3, px + py, px))
    t_co = np.where(axis == 2, py, pz)
    dn = np.sqrt(dxf[None, :] ** 2 + dyf[None, :] ** 2 + dzf[:, None] ** 2)
    cos_view = np.abs(nx * dxf[None, :] + ny * dyf[None, :] + nz * dzf[:, None]) / dn
    # pixel footprint on the surface (m), for fading patterns finer than a few pixels (no aliasing)
    foot = t0 * dn / (np.float32(min(cam.fx, cam.fy)) * np.maximum(cos_view, np.float32(0.15)))
    return Geometry(segm=segm, depth=depth, pid=pid, axis=axis, px=px, py=py, pz=pz, nx=nx, ny=ny, nz=nz,
                    s_co=s_co, t_co=t_co, dxf=dxf, dyf=dyf, dzf=dzf, cos_view=cos_view, foot=foot)


def _normals(prims, pid, axis, px, py, pz, dxf, dyf, dzf):
    """Surface normals (H, W) float32 x3: facing the camera on axis-aligned faces, the gradient of the
    implicit surface on cylinders and ellipsoids."""
    sgx, sgy, sgz = -np.sign(dxf)[None, :], -np.sign(dyf)[None, :], -np.sign(dzf)[:, None]
    nx = np.where(axis == 0, sgx, np.float32(0))
    ny = np.where(axis == 1, sgy, np.float32(0))
    nz = np.where(axis == 2, sgz, np.float32(0))
    lo, hi = _bounds(prims)
    curved = np.flatnonzero((axis.ravel() == AX_CYL) | (axis.ravel() == AX_ELL))
    if curved.size:
        cp = pid.ravel()[curved]
        c = (lo[cp] + hi[cp]) * np.float32(0.5)
        rad = (hi[cp] - lo[cp]) * np.float32(0.5)
        qx, qy, qz = px.ravel()[curved] - c[:, 0], py.ravel()[curved] - c[:, 1], pz.ravel()[curved] - c[:, 2]
        is_ell = axis.ravel()[curved] == AX_ELL
        gx, gy = qx / (rad[:, 0] * rad[:, 0]), qy / (rad[:, 1] * rad[:, 1])
        gz = np.where(is_ell, qz / (rad[:, 2] * rad[:, 2]), np.float32(0))
        norm = np.sqrt(gx * gx + gy * gy + gz * gz) + np.float32(1e-12)
        nx.ravel()[curved], ny.ravel()[curved], nz.ravel()[curved] = gx / norm, gy / norm, gz / norm
    return nx, ny, nz


def material_albedo(g: Geometry, prims, app, dom, cam):
    """Albedo (H, W, 3), emission (H*W,), sensor hole probability (H*W,) and the flat indices of sky pixels.
    One material per (group, role), drawn in primitive order from the appearance generator `app`."""
    H, W = g.segm.shape
    n = len(prims)
    mats, mat_of = {}, np.zeros(n + 1, np.int16)
    for i, p in enumerate(prims):
        key = (p.group, p.role) if p.group >= 0 else (-1 - i, p.role)
        if key not in mats:
            mats[key] = (len(mats), make_material(p.role, app, dom))
        mat_of[i] = mats[key][0]
    mat_of[n] = len(mats)                                             # sky
    mat_list = [m for _, m in sorted(mats.values(), key=lambda v: v[0])]
    mid = mat_of[g.pid].ravel()
    order = np.argsort(mid, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(mid, minlength=len(mats) + 1))])
    albedo = np.zeros((H * W, 3), np.float32)
    emit = np.zeros(H * W, np.float32)
    hole_p = np.zeros(H * W, np.float32)
    lo, hi = _bounds(prims)
    flat = {k: v.ravel() for k, v in (("s", g.s_co), ("t", g.t_co), ("ax", g.axis), ("pid", g.pid),
                                      ("fp", g.foot))}
    for m, mat in enumerate(mat_list):
        idx = order[starts[m]:starts[m + 1]]
        if idx.size == 0:
            continue
        a, e = paint(mat, dom, _patch(mat, flat, idx, lo, hi))
        albedo[idx] = a
        if e is not None:
            emit[idx] = e
            hole_p[idx] = mat.hole * e
        else:
            hole_p[idx] = mat.hole
    sky = order[starts[len(mats)]:]
    return albedo.reshape(H, W, 3), emit, hole_p.reshape(H, W), sky


def _patch(mat, flat: dict, idx, lo, hi) -> Patch:
    """The texture `Patch` of pixels `idx` of one material (local coordinates for LOCAL_KINDS)."""
    ax, pm = flat["ax"][idx], flat["pid"][idx]
    s, tt = flat["s"][idx], flat["t"][idx]
    on_z = ax == 2
    if mat.kind in LOCAL_KINDS:
        l0, h0 = lo[pm], hi[pm]
        on_x = ax == 0
        ls = s - np.where(on_x, l0[:, 1], l0[:, 0])
        ws = np.where(on_x, h0[:, 1] - l0[:, 1], h0[:, 0] - l0[:, 0])
        lt = tt - np.where(on_z, l0[:, 1], l0[:, 2])
        wt = np.where(on_z, h0[:, 1] - l0[:, 1], h0[:, 2] - l0[:, 2])
    else:
        ls = lt = ws = wt = None
    return Patch(s, tt, ls, lt, ws, wt, ~on_z, flat["fp"][idx])


def shade(scene, preset: str, dom, app, sen, g: Geometry, albedo, emit, sky) -> np.ndarray:
    """Lighting, emission and sky; exposure and vignetting folded into one (H, W) gain; soft shoulder,
    gamma 2, triangular sensor noise from `sen` -> rgb (H, W, 3) uint8."""
    cam, prims = scene.camera, scene.prims
    H, W = g.segm.shape
    side = max(H, W)
    ru = ((np.arange(W, dtype=np.float32) - W / 2) / side) ** 2
    rv = ((np.arange(H, dtype=np.float32) - H / 2) / side) ** 2
    vig = np.float32(1) - np.float32(0.25) * ru[None, :] - np.float32(0.25) * rv[:, None]
    gain = (np.float32(dom.exposure) * vig).ravel()
    light = _lighting(scene, preset, dom, g.px, g.py, g.pz, g.nx, g.ny, g.nz, g.pid, g.axis, prims)
    x = (albedo * light * gain.reshape(H, W)[..., None]).reshape(-1, 3)
    e = np.flatnonzero(emit)
    if e.size:
        x[e] += (albedo.reshape(-1, 3)[e] * gain[e, None] - x[e]) * emit[e, None]
    if sky.size:
        x[sky] = _sky(dom, cam, app, g.dzf, sky) * gain[sky, None]
    x = x.reshape(H, W, 3)
    x = np.maximum(x, np.float32(0))
    x = np.sqrt(x / (np.float32(1) + np.float32(0.25) * x))           # soft shoulder, then gamma 2
    tri = sen.integers(0, 1 << 16, (H, W, 3), dtype=np.uint16)        # two random bytes -> triangular noise
    tri = (tri >> 8).astype(np.float32) + (tri & 255).astype(np.float32) - np.float32(255)
    x = x + np.float32(dom.noise / 255.0) * tri
    return np.clip(x * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)


def _lighting(scene, preset, dom, px, py, pz, nx, ny, nz, pid, axis, prims):
    """(H, W, 3) incident light: ambient + Lambert, times occlusion."""
    amb = np.float32(dom.ambient)
    lc = np.asarray(dom.light, np.float32)
    key = np.zeros(px.shape, np.float32)
    for kind, v, strength in scene.lights:
        if kind == "point":
            lx, ly, lz = np.float32(v[0]) - px, np.float32(v[1]) - py, np.float32(v[2]) - pz
            d2 = lx * lx + ly * ly + lz * lz + np.float32(1e-6)
            ndl = np.maximum(nx * lx + ny * ly + nz * lz, np.float32(0)) / np.sqrt(d2)
            key += np.float32(strength * dom.key * 3.2) * ndl / (np.float32(1) + np.float32(0.25) * d2)
        else:
            sx, sy, sz = (np.float32(c) for c in v)
            ndl = np.maximum(nx * sx + ny * sy + nz * sz, np.float32(0))
            key += np.float32(strength * dom.key * 1.3) * ndl * _street_shadow(scene, v, px, py, pz, prims)
    occ = np.ones(px.shape, np.float32)
    if preset == "indoor":
        W, D, H = scene.info["room"]
        room = pid < 6
        ex = np.minimum(px, np.float32(W) - px)
        ey = np.minimum(py, np.float32(D) - py)
        ez = np.minimum(pz, np.float32(H) - pz)
        big = np.float32(1e3)
        d = np.minimum(np.minimum(np.where(axis == 0, big, ex), np.where(axis == 1, big, ey)),
                       np.where(axis == 2, big, ez))                 # to the nearest other room face
        corner = np.float32(1) - np.float32(0.4) / (np.float32(1) + (d / np.float32(0.3)) ** 2)
        occ = np.where(room, corner, occ)
        floor = pid == 4
    else:
        floor = (pid >= 0) & (pid <= 4)
        walls = nx * nx + ny * ny                                  # vertical faces darken near the ground
        occ = occ - np.float32(0.25) * walls / (np.float32(1) + (pz / np.float32(0.5)) ** 2)
    up = np.maximum(nz, np.float32(0))
    fidx = np.flatnonzero(floor)
    if scene.footprints and fidx.size:
        occ = occ.copy()
        occ.ravel()[fidx] *= _contact_shadow(scene.footprints, px.ravel()[fidx], py.ravel()[fidx])
    ambient = amb * (np.float32(0.75) + np.float32(0.25) * up)
    return (ambient[..., None] + key[..., None] * lc) * occ[..., None]


def _contact_shadow(footprints, fx, fy, cell=0.08, reach=1.2):
    """Soft darkening of the floor under and around objects: rasterised on a top-down grid of `cell`
    metres (each footprint only within `reach`), then read bilinearly at the floor points."""
    f = np.asarray(footprints, np.float64)
    x0, y0 = f[:, 0].min() - reach, f[:, 1].min() - reach
    nx_, ny_ = int((f[:, 2].max() + reach - x0) / cell) + 2, int((f[:, 3].max() + reach - y0) / cell) + 2
    grid = np.ones((ny_, nx_), np.float32)
    for a0, b0, a1, b1 in f:
        i0, i1 = int((a0 - reach - x0) / cell), int((a1 + reach - x0) / cell) + 2
        j0, j1 = int((b0 - reach - y0) / cell), int((b1 + reach - y0) / cell) + 2
        gx = (np.float32(x0) + np.arange(i0, i1, dtype=np.float32) * np.float32(cell))[None, :]
        gy = (np.float32(y0) + np.arange(j0, j1, dtype=np.float32) * np.float32(cell))[:, None]
        ddx = np.maximum(np.maximum(np.float32(a0) - gx, gx - np.float32(a1)), np.float32(0))
        ddy = np.maximum(np.maximum(np.float32(b0) - gy, gy - np.float32(b1)), np.float32(0))
        d2 = ddx * ddx + ddy * ddy
        grid[j0:j1, i0:i1] *= np.float32(1) - np.float32(0.45) / (np.float32(1) + d2 / np.float32(0.04))
    u = np.clip((fx - np.float32(x0)) / np.float32(cell), 0, nx_ - 1.001)
    v = np.clip((fy - np.float32(y0)) / np.float32(cell), 0, ny_ - 1.001)
    iu, iv = np.floor(u), np.floor(v)
    au, av = u - iu, v - iv
    iu, iv = iu.astype(np.int64), iv.astype(np.int64)
    g = grid.ravel()
    k = iv * nx_ + iu
    top = g[k] + (g[k + 1] - g[k]) * au
    bot = g[k + nx_] + (g[k + nx_ + 1] - g[k + nx_]) * au
    return top + (bot - top) * av


def _street_shadow(scene, sun, px, py, pz, prims):
    """1 lit / 0.15 shadowed: march from a point toward the sun to each building row's facade plane and
    look up the height of the building there (outdoor; buildings only)."""
    lit = np.ones(px.shape, np.float32)
    sx, sy, sz = sun
    if abs(sy) < 1e-3:
        return lit
    rows = {}
    for p in prims:
        if p.kind == BOX and p.cls == KITTI_IDS["building"]:
            side = 1 if p.a[1] > 0 else -1
            rows.setdefault(side, []).append(p)
    side = 1 if sy > 0 else -1
    blds = sorted(rows.get(side, []), key=lambda p: p.a[0])
    if not blds:
        return lit
    front = np.float32(min(abs(p.a[1]) if side > 0 else abs(p.b[1]) for p in blds)) * side
    starts = np.array([p.a[0] for p in blds], np.float32)
    ends = np.array([p.b[0] for p in blds], np.float32)
    heights = np.array([p.b[2] for p in blds], np.float32)
    s = (front - py) / np.float32(sy)
    ok = s > 0
    xh = px + s * np.float32(sx)
    zh = pz + s * np.float32(sz)
    k = np.clip(np.searchsorted(starts, xh, side="right") - 1, 0, len(blds) - 1)
    inside = (xh >= starts[k]) & (xh <= ends[k])
    shadow = ok & inside & (zh < heights[k])
    return np.where(shadow, np.float32(0.15), lit)


def _sky(dom, cam, app, dzf, idx):
    """(n, 3) sky radiance at flat pixel indices idx: horizon-to-zenith gradient with clouds."""
    W = cam.width
    over = float(app.random())
    zen = np.array([0.25, 0.42, 0.8], np.float32) * (1 - over) + np.float32(0.75 * over)
    hor = np.array([0.8, 0.85, 0.9], np.float32)
    v, u = idx // W, idx % W
    up = np.clip(dzf[v] * np.float32(3.0), 0, 1)[:, None]
    base = hor + (zen - hor) * up
    scale = np.float32(60.0 / max(cam.height, W))
    vv = v.astype(np.float32) * scale + np.float32(app.random() * 50)
    uu = u.astype(np.float32) * scale
    cloud = noise(noise_tile(dom.style, 1), uu, vv * np.float32(2.5))
    cloud = np.clip((cloud - np.float32(0.45)) * np.float32(2.5), 0, 1)
    return base + (np.float32(0.95) - base) * (cloud * np.float32(0.8))[:, None]
