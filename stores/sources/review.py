"""The `review` source: corrected masks of a `mtdistill export-for-review` folder -> real segmentation of
the frames they were exported from (`mtdistill ingest review`).

Matching goes through the export's manifest.json (file -> frame index, content key, name), not through
file names alone: a mask pairs with the frame recorded for its file. A mask is refused, naming it, when
its frame changed since the export: the store no longer holds that content at that index (a reset, or
another store), or the frame got a real segmentation meanwhile (someone else labeled it). Masks are read
as the export wrote them: class-coloured with the export's class colours and black void (cvat), or
class ids with 255 void (folder); a CVAT download folder holding SegmentationClass/ works as it is.
Frames are yielded with the stored pixels, so the writer finds them by content key and writes the masks
into them (stores/writer.py: annotations that arrive later). Masks of exported frames that are missing
are simply not ingested.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stores.errors import UserError
from stores.schema import SPLIT_NAMES
from stores.sources.base import Frame, SkipLog
from stores.sources.images import BadInput, check_size, read_label

MANIFEST = "manifest.json"
VOID = ((0, 0, 0),)


def read_manifest(export, store) -> dict:
    """The manifest of export folder `export`; UserError naming the file when it is missing, unreadable,
    not an export manifest, or made with another class list than `store`'s."""
    path = Path(export) / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; give the folder `mtdistill export-for-review` wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read the manifest ({type(e).__name__}: {e})") from None
    keys = ("round", "format", "masks", "frames", "classes", "snapshot", "pseudo")
    if not isinstance(m, dict) or m.get("kind") != "mtdistill review export" or any(k not in m for k in keys):
        raise UserError(f"{path}: not a manifest of `mtdistill export-for-review`")
    if [c["name"] for c in m["classes"]] != [c["name"] for c in store.classes]:
        raise UserError(f"{path}: exported with another class list than {store.path}'s")
    return m


def mask_folder(export, manifest: dict, masks=None) -> Path:
    """Where the corrected masks are: `masks` (or its SegmentationClass/ sub-folder, as CVAT downloads
    it), else the export's own mask folder."""
    folder = Path(masks) if masks else Path(export) / manifest["masks"]
    return folder / "SegmentationClass" if (folder / "SegmentationClass").is_dir() else folder


def review_masks(export, manifest: dict, masks, skips: SkipLog) -> list[tuple[Path, dict]]:
    """(mask file, manifest record) for every manifest file that has a mask in the mask folder
    (mask_folder); PNGs there that are not in the manifest go to `skips.unmatched`. UserError when the
    folder is missing or none of its masks is in the manifest."""
    folder = mask_folder(export, manifest, masks)
    if not folder.is_dir():
        raise UserError(f"{folder}: mask folder not found")
    by_file = {f["file"]: f for f in manifest["frames"]}
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    skips.report(folder, "mask", [(p, f"not in {MANIFEST}") for p in found if p.name not in by_file])
    if not any(p.name in by_file for p in found):
        raise UserError(f"{folder}: none of its PNG masks is a file of {Path(export) / MANIFEST}")
    return [(p, by_file[p.name]) for p in found if p.name in by_file]


def iter_review(store, manifest: dict, pairs: list[tuple[Path, dict]], skips: SkipLog) -> Iterator[Frame]:
    """Frames (stored pixels, split and name; segm = the corrected mask) for the (mask, record) `pairs`
    of review_masks; a bad mask, or one of a changed frame, goes to `skips.fail` (module docstring)."""
    colors = [tuple(c["color"]) for c in manifest["classes"]] if manifest["format"] == "cvat" else None
    keys, has, splits = store.root["frames/key"][:], store.root["real/has_segm"][:], store.splits()
    for p, rec in pairs:
        i = int(rec["index"])
        try:
            segm = read_label(p, store.num_classes, "color" if colors else "ids", colors, VOID)
            changed = changed_since_export(rec, manifest, keys, has, store, segm)
            if changed:
                raise BadInput(p, f"frame {i} ({rec['name']}) {changed}; export it again, or leave this "
                                  f"mask out (--skip-bad)")
            rgb = store.root["frames/rgb"][i]
            check_size(p, "segmentation", segm, rgb, f"frame {i} ({rec['name']})")
        except BadInput as bad:
            skips.fail(bad.path, bad.problem)
            continue
        yield Frame(rgb=rgb, split=SPLIT_NAMES[int(splits[i])], name=rec["name"], segm=segm)


def changed_since_export(rec: dict, manifest: dict, keys: np.ndarray, has: np.ndarray, store,
                         segm: np.ndarray) -> str | None:
    """Why frame record `rec` no longer matches the store (keys uint8 (N, 16), has bool (N,)), or None.
    A real segmentation equal to `segm` (this mask, ingested before) is no change."""
    i = int(rec["index"])
    if i >= len(keys) or bytes(keys[i]).hex() != rec["key"]:
        return (f"is not in the store any more (no frame {i} with that content; store reset since version "
                f"{manifest['snapshot']}?)")
    if has[i] and not np.array_equal(store.root["real/segm"][i], segm):
        return f"got another real segmentation after the export (version {manifest['snapshot']})"
    return None
