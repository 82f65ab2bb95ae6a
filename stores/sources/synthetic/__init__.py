"""The built-in synthetic RGB-D world: the default dataset of the demo and of the tests.

Sits at the top of the flow as a source beside folder / nyud / kitti: `iter_frames(config)` yields
`Frame`s that `mtdistill ingest synthetic` writes into a store. Two presets:
- indoor  (NYUDv2-like): furnished rooms, NYUDv2-40 classes, Kinect-like depth with holes, 640x480.
- outdoor (KITTI-like):  streets, KITTI-6 classes, sparse 64-beam LiDAR depth to 80 m, 1216x352.
Every frame is rendered independently by `render_frame` (pure numpy ray casting) with exact ground
truth; the same (preset, index, seed, size, style) gives byte-identical frames on any machine (only
elementwise IEEE arithmetic touches pixels; tests pin a digest). Frames are independent: render them
in parallel (`iter_frames(..., workers=N)`) or resume at any index (`start=`).

Asymmetric annotations: which frames carry segmentation / depth and which split a frame is in are
decided from the index and seed alone (no rendering), by low-discrepancy sequences, so fractions hold
closely on any run of consecutive indices. `test` frames always carry both (clean segmentation, depth
as configured); `unlabeled` frames carry none.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from stores.classes import KITTI6, NYUD40
from stores.lifetime import die_with
from stores.sources.base import SPLITS, Frame, SourceError
from stores.sources.synthetic.render import build_scene, generators, render_scene

PRESETS = {
    # default (H, W), intrinsics (fx, fy, cx, cy) at that size, max depth (m)
    "indoor": ((480, 640), (518.8579, 519.4696, 325.5824, 253.7362), 10.0),
    "outdoor": ((352, 1216), (721.5377, 721.5377, 596.5593, 149.854), 80.0),
}
MIN_SIZE = (16, 16)
MAX_SIZE = (4096, 4096)


def class_list_for(preset: str) -> list[dict]:
    """NYUD40 for indoor, KITTI6 for outdoor."""
    return {"indoor": NYUD40, "outdoor": KITTI6}[parse_preset(preset)]


def parse_preset(preset) -> str:
    """`preset` if it is "indoor" or "outdoor"; SourceError listing the presets otherwise."""
    if preset not in PRESETS:
        raise SourceError(f"synthetic preset {preset!r} unknown; choose one of {sorted(PRESETS)}")
    return preset


def parse_size(preset: str, size) -> tuple[int, int]:
    """(H, W) or None for the preset default; at least 16x16."""
    if size is None:
        return PRESETS[preset][0]
    try:
        h, w = (int(v) for v in size)
        if (h, w) != tuple(size):
            raise ValueError
    except (TypeError, ValueError):
        raise SourceError(f"synthetic size {size!r} is not (height, width) in whole pixels") from None
    if not (MIN_SIZE[0] <= h <= MAX_SIZE[0] and MIN_SIZE[1] <= w <= MAX_SIZE[1]):
        raise SourceError(f"synthetic size {size!r} out of range: height and width must be in 16..4096")
    return h, w


def intrinsics(preset: str, size) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the preset camera scaled to size (H, W) (pixel centres at integers)."""
    (h0, w0), (fx, fy, cx, cy), _ = PRESETS[preset]
    h, w = size
    sx, sy = w / w0, h / h0
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def _parse_int(name: str, value, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise SourceError(f"synthetic {name} {value!r} must be a whole number >= {lo}")
    return int(value)


def _parse_fraction(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"synthetic {name} {value!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise SourceError(f"synthetic {name} {value!r} must be within [0, 1]")
    return v


def _parse_annotated(name: str, value) -> tuple[float, float]:
    """A fraction for train and val alike, or {"train": f, "val": f} / (train, val)."""
    if isinstance(value, Mapping):
        bad = set(value) - {"train", "val"}
        if bad:
            raise SourceError(f"synthetic {name} keys {sorted(bad)} not allowed; only 'train' and 'val' "
                              "(test always has both annotations, unlabeled none)")
        return (_parse_fraction(f"{name}['train']", value.get("train", 1.0)),
                _parse_fraction(f"{name}['val']", value.get("val", 1.0)))
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise SourceError(f"synthetic {name} {value!r} must be one fraction or (train, val)")
        return _parse_fraction(name, value[0]), _parse_fraction(name, value[1])
    v = _parse_fraction(name, value)
    return v, v


def _parse_splits(value) -> tuple[float, float, float, float]:
    """Fractions for (train, val, test, unlabeled), given as a 4-sequence or a dict; they must sum to 1."""
    if isinstance(value, Mapping):
        bad = set(value) - set(SPLITS)
        if bad:
            raise SourceError(f"synthetic splits keys {sorted(bad)} unknown; choose from {list(SPLITS)}")
        value = [value.get(s, 0.0) for s in SPLITS]
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise SourceError(f"synthetic splits {value!r} must be 4 fractions for {'/'.join(SPLITS)}")
    fr = tuple(_parse_fraction(f"splits[{s}]", v) for s, v in zip(SPLITS, value))
    if abs(sum(fr) - 1.0) > 1e-6:
        raise SourceError(f"synthetic splits {value!r} must sum to 1 (they sum to {sum(fr):.6g})")
    return fr


@dataclass(frozen=True)
class SyntheticConfig:
    """What to render. Values are validated on construction (bad ones raise SourceError naming them) and
    normalised: size -> (H, W) (the preset default when None); segm_fraction / depth_fraction ->
    (train, val) (one number applies to both; a dict sets "train" / "val", a missing one is 1; test
    frames always have both annotations, unlabeled frames none); splits -> (train, val, test, unlabeled)
    summing to 1 (a dict of split -> fraction is accepted). dataclasses.asdict() is JSON-able and
    SyntheticConfig(**that) gives the same config back."""
    preset: str = "indoor"                 # "indoor" (NYUDv2-40) | "outdoor" (KITTI-6)
    frames: int = 200                      # frame indices 0 .. frames-1
    size: tuple[int, int] | None = None    # (H, W); None = preset default (480x640 / 352x1216)
    seed: int = 0                          # world seed: geometry, splits, annotation choice
    style: int = 0                         # appearance domain: textures, palettes, light, noise
    segm_fraction: float | tuple | Mapping = 0.5   # share of train/val frames with segmentation
    depth_fraction: float | tuple | Mapping = 1.0  # share of train/val frames with depth
    splits: tuple | Mapping = (0.7, 0.1, 0.1, 0.1)  # fractions for train, val, test, unlabeled
    sensor: bool = True                    # real depth = sensor-simulated (holes / LiDAR); False = clean

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "preset", parse_preset(self.preset))
        set_(self, "frames", _parse_int("frames", self.frames))
        set_(self, "size", parse_size(self.preset, self.size))
        set_(self, "seed", _parse_int("seed", self.seed))
        set_(self, "style", _parse_int("style", self.style))
        set_(self, "segm_fraction", _parse_annotated("segm_fraction", self.segm_fraction))
        set_(self, "depth_fraction", _parse_annotated("depth_fraction", self.depth_fraction))
        set_(self, "splits", _parse_splits(self.splits))
        if not isinstance(self.sensor, bool):
            raise SourceError(f"synthetic sensor {self.sensor!r} must be true or false")


# ---- split and annotation assignment: index-based, no rendering --------------------------------
_MASK = (1 << 64) - 1
_WEYL = (0x9E3779B97F4A7C15, 0xC13FA9A902A6328F, 0x91E10DA5C79E7B1D)   # split, segm, depth


def _u(index: int, seed: int, which: int) -> float:
    """Low-discrepancy value in [0, 1): a Weyl sequence over the index with a seed-dependent offset."""
    off = int(np.random.SeedSequence([seed, 77, which]).generate_state(1, np.uint64)[0])
    return ((index * _WEYL[which] + off) & _MASK) / 2.0 ** 64


def assignment(config: SyntheticConfig, index: int) -> tuple[str, bool, bool]:
    """(split, has segm, has depth) of frame `index`, from the seed and index only."""
    u = _u(index, config.seed, 0)
    acc, split = 0.0, SPLITS[-1]
    for name, f in zip(SPLITS, config.splits):
        acc += f
        if u < acc:
            split = name
            break
    if split == "test":
        return split, True, True
    if split == "unlabeled":
        return split, False, False
    k = 0 if split == "train" else 1
    return (split, _u(index, config.seed, 1) < config.segm_fraction[k],
            _u(index, config.seed, 2) < config.depth_fraction[k])


def frame_name(config: SyntheticConfig, index: int) -> str:
    """Frame name "synthetic/<preset>/s<seed>[-y<style>]/NNNNNN": unique per world, stable across runs."""
    style = f"-y{config.style}" if config.style else ""
    return f"synthetic/{config.preset}/s{config.seed}{style}/{index:06d}"


# ---- rendering ---------------------------------------------------------------------------------
def render_frame(preset: str = "indoor", index: int = 0, seed: int = 0, size=None, style: int = 0):
    """One frame -> (rgb (H, W, 3) uint8, segm (H, W) uint8 class ids / 255, depth_clean (H, W) float32
    metres, 0 = no depth (sky, past max range), depth_sensor (H, W) float32: clean where measured, else 0)."""
    preset = parse_preset(preset)
    size = parse_size(preset, size)
    index, seed, style = _parse_int("index", index), _parse_int("seed", seed), _parse_int("style", style)
    scene = build_scene(preset, index, seed, size, intrinsics(preset, size))
    _, app, sen = generators(preset, index, seed, style)
    return render_scene(scene, preset, style, app, sen)


def scene_info(preset: str, index: int, seed: int = 0, size=None) -> dict:
    """Geometry facts of a frame (camera height, room size, ...), without rendering: for tests and QA."""
    preset = parse_preset(preset)
    size = parse_size(preset, size)
    scene = build_scene(preset, index, seed, size, intrinsics(preset, size))
    return dict(scene.info, intrinsics=intrinsics(preset, size), max_depth=scene.max_depth)


def make_frame(config: SyntheticConfig, index: int) -> Frame:
    """Frame `index` of a config, with annotations dropped as the assignment says."""
    split, has_segm, has_depth = assignment(config, index)
    rgb, segm, clean, sensor = render_frame(config.preset, index, config.seed, config.size, config.style)
    return Frame(rgb=rgb, split=split, name=frame_name(config, index),
                 segm=segm if has_segm else None,
                 depth=(sensor if config.sensor else clean) if has_depth else None)


def iter_frames(config: SyntheticConfig, start: int = 0, workers: int = 1) -> Iterator[Frame]:
    """Frames start .. config.frames - 1, in index order (resume with start=). workers > 1 renders in
    that many processes (same bytes, same order; at most 2 * workers frames in flight), which end when
    this process ends, even by kill -9 (stores.lifetime.die_with)."""
    start, workers = _parse_int("start", start), _parse_int("workers", workers, lo=1)
    indices = range(start, config.frames)
    if workers == 1 or len(indices) < 2:
        for index in indices:
            yield make_frame(config, index)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=die_with,
                             initargs=(os.getpid(),)) as pool:
        pending = deque()
        for index in indices:
            pending.append(pool.submit(make_frame, config, index))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

