"""The `kitti` source: KITTI frames with optional colour-coded KITTI-6 labels and LiDAR depth PNGs.

Sits at the start of the flow (`mtdistill ingest kitti`): KITTI files -> validated `Frame`s at the
store's size -> the store's writer. Images come from `image_2/` (given the folder or its parent) or
any flat folder; `segm/<stem>.png` is colour-coded with KITTI6_COLORS in class order and black =
void (255); `depth/<stem>.png` is uint16, metres = value / 256, 0 = invalid (sparse). Colours must
match exactly unless `color_tolerance` > 0 (then the nearest class colour within that per-channel
distance is taken, for labels saved through a lossy step). KITTI frames vary slightly in size
(~1226x370); the size policy (`fit`) brings each to the store's size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from stores.classes import KITTI6_COLORS, KITTI_VOID_COLOR
from stores.errors import UserError
from stores.sources.base import Frame, SkipLog
from stores.sources.folder import describe_dict, iter_entries, load_entry
from stores.sources.tree import (IMAGE_EXTS, Entry, depth_folder, index_folder, match_annotations, pick_one,
                                 read_split_file, segm_folder)
from stores.sources.images import (decode_colors, parse_fit, parse_split, parse_tolerance,
                                   read_depth_png, read_rgb)

KITTI_DEPTH_SCALE = 256.0


@dataclass(frozen=True)
class KittiConfig:
    """Options of `mtdistill ingest kitti`; UserError on construction for a bad fit,
    split or color_tolerance.
    """
    images: str                        # image_2/ folder, a folder holding image_2/, or a flat folder
    segm: str | None = None            # colour-coded KITTI-6 label PNGs, same stem as the image
    depth: str | None = None           # uint16 depth PNGs (metres = value / 256, 0 = invalid), same stem
    color_tolerance: int = 0           # 0: exact colours; > 0: nearest class colour within this distance
    split: str = "train"               # split of every frame not named in split_file
    split_file: str | None = None      # lines "<name> <split>", the split last (stores/sources/tree.py)
    fit: str = "resize"                # resize | crop: how frames of another size reach the store size
    segm_suffix: str | None = None     # label files are <stem><suffix>.png (default: same stem or a usual suffix)
    depth_suffix: str | None = None    # depth files are <stem><suffix>.png

    def __post_init__(self):
        parse_fit(self.fit)
        parse_split(self.split)
        parse_tolerance(self.color_tolerance)

    @property
    def image_dir(self) -> Path:
        """The folder images are read from: `images`/image_2 when that exists, else `images` itself."""
        p = Path(self.images)
        return p / "image_2" if (p / "image_2").is_dir() else p

    def to_dict(self) -> dict:
        """Plain dict for the ingest commit's metadata: the fields plus depth_scale 256 and the KITTI-6 colour map."""
        return {"source": "kitti", "path": self.images, **asdict(self), "depth_scale": KITTI_DEPTH_SCALE,
                "colors": [list(c) for c in KITTI6_COLORS], "void_color": list(KITTI_VOID_COLOR)}

    def describe(self) -> str:
        """One line "kitti <path> key=value ..." of the options that are set (colour map left out)."""
        return describe_dict({k: v for k, v in self.to_dict().items() if k not in ("colors", "void_color")})


def read_kitti_segm(path, tolerance: int = 0):
    """(h, w) uint8 KITTI-6 ids from a colour-coded label PNG (black -> 255)."""
    return decode_colors(path, read_rgb(path), KITTI6_COLORS, (KITTI_VOID_COLOR,), tolerance)


def list_kitti(cfg: KittiConfig, skips: SkipLog) -> list[Entry]:
    """Every frame the kitti source will read, in order (for a progress bar's total)."""
    root = cfg.image_dir
    found = index_folder(root, IMAGE_EXTS, recursive=False)
    folders = (segm_folder(cfg.segm, cfg.segm_suffix), depth_folder(cfg.depth, cfg.depth_suffix, (".png",)))
    segm, depth = (match_annotations(f, found, False, skips) if f else {} for f in folders)
    splits = read_split_file(cfg.split_file, found, skips, str(root)) if cfg.split_file else {}
    entries = []
    for key, paths in found.items():
        ok = [pick_one(x, skips) for x in (paths, segm.get(key), depth.get(key))]
        if all(o for o, _ in ok):
            (_, rgb), (_, s), (_, d) = ok
            entries.append(Entry(rgb.name, key, rgb, splits.get(key, cfg.split), s, d))
    return entries


def count_kitti(cfg: KittiConfig) -> int:
    """Number of frames the kitti source would yield (bad files skipped, not raised), for a progress total."""
    return len(list_kitti(cfg, SkipLog(skip_bad=True)))


def iter_kitti(cfg: KittiConfig, frame_size, num_classes: int, skips: SkipLog,
               entries: list[Entry] | None = None) -> Iterator[Frame]:
    """Frames at `frame_size` (H, W). Pass `entries` from list_kitti to avoid a second scan."""
    if num_classes < len(KITTI6_COLORS):
        raise UserError(f"kitti labels have {len(KITTI6_COLORS)} classes; the store has {num_classes}")

    def load(e):
        return load_entry(e, frame_size, cfg.fit, lambda p: read_kitti_segm(p, cfg.color_tolerance),
                          lambda p: read_depth_png(p, KITTI_DEPTH_SCALE))

    return iter_entries(list_kitti(cfg, skips) if entries is None else entries, skips, load)
