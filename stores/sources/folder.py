"""The `folder` source: a folder of RGB images with optional matching segmentation and depth folders.

Sits at the start of the flow (`mtdistill ingest folder`): user files -> validated `Frame`s at the
store's size -> the store's writer. Also holds the per-frame loop that the nyud (preprocessed layout)
and kitti sources reuse, which hands a bad file to `SkipLog`; file matching is stores/sources/tree.py.

Matching: an image `images/<key>.<ext>` (ext png/jpg/jpeg/bmp, any case) pairs with `segm/<key>.png`
and `depth/<key>.png` (16-bit, metres = value / depth_scale) or `depth/<key>.npy` (float metres);
<key> is the path relative to the folder without its extension (just the stem when not recursive),
optionally followed by a suffix (`_mask`, `_label`, `_depth`, `_gt`, or `segm_suffix`/`depth_suffix`).
Annotation folders may be the images folder itself (photo1.jpg beside photo1_mask.png). Annotation
files that pair with no frame are reported (tree.py). A missing annotation means "not annotated"
(None). Order: sorted by relative path.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from stores.errors import UserError
from stores.sources.base import Frame, SkipLog
from stores.sources.images import (LABEL_FORMATS, BadInput, check_size, fit_frame, parse_fit,
                                   parse_positive, parse_split, parse_tolerance, read_depth,
                                   read_label, read_rgb)
from stores.sources.tree import (IMAGE_EXTS, Entry, depth_folder, index_folder, match_annotations, pick_one,
                                 read_split_file, segm_folder, strip_annotations)


@dataclass(frozen=True)
class FolderConfig:
    """Options of `mtdistill ingest folder`; UserError on construction for a bad
    fit, split, color_tolerance, depth_scale or label_format.
    """
    images: str                        # folder of RGB images
    segm: str | None = None            # folder of label PNGs, same key as the image
    depth: str | None = None           # depth maps: 16-bit PNG (value / depth_scale) or .npy metres
    recursive: bool = False            # also read sub-folders (key = relative path without extension)
    label_format: str = "auto"         # ids (grey/palette value = id) | color | auto (by PNG mode)
    colormap: str | None = None        # JSON [[r,g,b], ...] by class id, or {"classes": [...], "void": [...]}
    color_tolerance: int = 0           # colour labels: nearest colour within this per-channel distance
    depth_scale: float = 1000.0        # 16-bit depth PNGs: metres = value / depth_scale (1000 = millimetres)
    split: str = "train"               # split of every frame not named in split_file
    split_file: str | None = None      # lines "<name> <split>", the split last (stores/sources/tree.py)
    fit: str = "resize"                # resize | crop: how frames of another size reach the store size
    segm_suffix: str | None = None     # label files are <key><suffix>.png (default: same name or a usual suffix)
    depth_suffix: str | None = None    # depth files are <key><suffix>.png/.npy

    def __post_init__(self):
        parse_fit(self.fit)
        parse_split(self.split)
        parse_tolerance(self.color_tolerance)
        parse_positive(self.depth_scale, "depth_scale")
        for name in ("segm_suffix", "depth_suffix"):
            v = getattr(self, name)
            if v is not None and (not v or "/" in v or "\\" in v):
                raise UserError(f"bad {name} {v!r}; expected the end of a file name such as _mask")
        if self.label_format not in LABEL_FORMATS:
            raise UserError(f"bad label_format {self.label_format!r}; "
                            f"choose one of {', '.join(LABEL_FORMATS)}")

    def to_dict(self) -> dict:
        """Plain dict for the ingest commit's metadata (source "folder", path, every field)."""
        return {"source": "folder", "path": self.images, **asdict(self)}

    def describe(self) -> str:
        """One line "folder <path> key=value ..." of the options that are set, for progress output."""
        return describe_dict(self.to_dict())


def describe_dict(d: dict) -> str:
    """One line `source key=value ...` of the options that are set."""
    items = [f"{k}={v}" for k, v in d.items()
             if k not in ("source", "path") and v not in (None, False, d["path"])]
    return f"{d['source']} {d['path']} " + " ".join(items)


# ---- frames -------------------------------------------------------------------------------------

def load_entry(e: Entry, frame_size, fit: str, read_segm: Callable, read_depth_map: Callable) -> Frame:
    """Decode one entry's files, check their sizes against the image, apply the size policy."""
    rgb = read_rgb(e.rgb)
    segm = depth = None
    if e.segm is not None:
        segm = read_segm(e.segm)
        check_size(e.segm, "segmentation", segm, rgb, e.rgb)
    if e.depth is not None:
        depth = read_depth_map(e.depth)
        check_size(e.depth, "depth", depth, rgb, e.rgb)
    rgb, segm, depth = fit_frame(e.rgb, rgb, segm, depth, frame_size, fit)
    return Frame(rgb=rgb, split=e.split, name=e.name, segm=segm, depth=depth)


def iter_entries(entries, skips: SkipLog, load: Callable[[Entry], Frame]) -> Iterator[Frame]:
    """The per-frame loop: a bad file raises (naming it) or, with skip_bad, is recorded and passed over."""
    for e in entries:
        try:
            frame = load(e)
        except BadInput as bad:
            skips.fail(bad.path, bad.problem)
            continue
        yield frame


def load_colormap(path, num_classes: int) -> tuple[list[tuple], list[tuple]]:
    """(class colours, void colours) from a JSON colour-map file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(path, "colour-map file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(path, f"cannot read colour map ({type(e).__name__}: {e})") from None
    classes, void = (data, None) if isinstance(data, list) else (
        (data.get("classes"), data.get("void", [])) if isinstance(data, dict) else (None, None))
    if not isinstance(classes, list):
        raise BadInput(path, 'expected a JSON list [[r, g, b], ...] or {"classes": [...], "void": [...]}')
    if len(classes) > num_classes:
        raise BadInput(path, f"{len(classes)} class colours for {num_classes} classes")
    colors = [_color(path, c, f"class {i}") for i, c in enumerate(classes)]
    void = default_void(colors) if void is None else [_color(path, c, "void") for c in void]
    seen = colors + void
    dup = next((c for i, c in enumerate(seen) if c in seen[:i]), None)
    if dup is not None:
        raise BadInput(path, f"colour {list(dup)} appears twice")
    return colors, void


def _color(path, c, what: str) -> tuple[int, int, int]:
    if (not isinstance(c, list) or len(c) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
        raise BadInput(path, f"{what}: bad colour {c!r}; expected [r, g, b] integers 0..255")
    return tuple(c)


def default_void(colors) -> list[tuple]:
    """Black is void unless it is a class colour."""
    return [] if (0, 0, 0) in [tuple(c) for c in colors] else [(0, 0, 0)]


def list_folder(cfg: FolderConfig, skips: SkipLog) -> list[Entry]:
    """Every frame the folder source will read, in order (for a progress bar's total); annotation files
    that pair with no frame are reported in `skips.unmatched` (stores/sources/tree.py)."""
    folders = {"segm": segm_folder(cfg.segm, cfg.segm_suffix), "depth": depth_folder(cfg.depth, cfg.depth_suffix)}
    here = Path(cfg.images).resolve()
    found = index_folder(cfg.images, IMAGE_EXTS, cfg.recursive, exclude=(cfg.segm, cfg.depth))
    found = strip_annotations(found, [f for f in folders.values() if f and Path(f.path).resolve() == here])
    ann = {t: match_annotations(f, found, cfg.recursive, skips) if f else {} for t, f in folders.items()}
    splits = read_split_file(cfg.split_file, found, skips, cfg.images) if cfg.split_file else {}
    entries = []
    for key, paths in found.items():
        ok_i, rgb = pick_one(paths, skips)
        ok_s, s = pick_one(ann["segm"].get(key), skips)
        ok_d, d = pick_one(ann["depth"].get(key), skips)
        if ok_i and ok_s and ok_d:
            name = rgb.relative_to(cfg.images).as_posix()
            entries.append(Entry(name, key, rgb, splits.get(key, cfg.split), s, d))
    return entries


def count_folder(cfg: FolderConfig) -> int:
    """Number of frames the folder source would yield (bad files skipped, not raised), for a progress total."""
    return len(list_folder(cfg, SkipLog(skip_bad=True)))


def iter_folder(cfg: FolderConfig, frame_size, num_classes: int, skips: SkipLog,
                class_colors=None, entries: list[Entry] | None = None) -> Iterator[Frame]:
    """Frames at `frame_size` (H, W); colour labels decode with cfg.colormap, else `class_colors`
    (the store's class colours, in id order). Pass `entries` from list_folder to avoid a second scan."""
    colors, void = (load_colormap(cfg.colormap, num_classes) if cfg.colormap else
                    (class_colors, default_void(class_colors or [])))

    def read_segm(p):
        return read_label(p, num_classes, cfg.label_format, colors, void, cfg.color_tolerance)

    def load(e):
        return load_entry(e, frame_size, cfg.fit, read_segm, lambda p: read_depth(p, cfg.depth_scale))

    return iter_entries(list_folder(cfg, skips) if entries is None else entries, skips, load)
