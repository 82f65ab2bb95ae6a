"""`mtdistill export-for-review`: the most doubtful frames of a pseudo set, with their pseudo
segmentation as an editable starting point, in a form a labeling tool imports, plus a manifest.

Layouts (frame files are named by store frame index, `000123.png`):
- cvat: CVAT's "Segmentation mask 1.1": images/ (lossless PNG, the stored pixels), SegmentationClass/
  (class-coloured PNG masks, void black), labelmap.txt (`name:r,g,b::`, background = void first),
  ImageSets/Segmentation/default.txt, and annotations.zip of those three for CVAT's upload;
- folder: images/ and masks/ (8-bit class ids, 255 = void).
manifest.json ties every file to its frame index, content key and name, and names the store version,
the pseudo set and the review round; `mtdistill ingest review` (stores/sources/review.py) reads it.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.deploy.visual import colorize_segm
from pipeline.review.stats import frame_stats, select
from pipeline.runtime import progress_bar
from stores.errors import UserError
from stores.files import storage_errors

MANIFEST = "manifest.json"
VOID = (0, 0, 0)                                   # CVAT's background colour
MASKS = {"cvat": "SegmentationClass", "folder": "masks"}


def labelmap(classes: list[dict]) -> str:
    """CVAT labelmap.txt text: background (void, black) then one `name:r,g,b::` line per class in id order;
    UserError for a class CVAT cannot tell from void (black, named background, or a ':' in its name)."""
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    for c in classes:
        if tuple(c["color"]) == VOID or c["name"] == "background" or ":" in c["name"]:
            raise UserError(f"class {c['name']!r} ({c['color']}) clashes with CVAT's black 'background' or "
                            f"its ':' separator; export with --format folder")
        lines.append(f"{c['name']}:{','.join(str(v) for v in c['color'])}::")
    return "\n".join(lines) + "\n"


def export_for_review(store, pseudo: str, out, selection: str = "lowest-confidence:200", fmt: str = "cvat",
                      round_name: str | None = None) -> dict:
    """Write the frames `selection` picks (pipeline/review/stats.select) into the new folder `out` in
    layout `fmt` ('cvat' | 'folder'); returns the manifest. The folder appears whole or not at all.
    UserError when `out` exists and is not empty, for a bad selection or format."""
    if fmt not in MASKS:
        raise UserError(f"format {fmt!r}: choose cvat or folder")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; choose a new folder for the export")
    cvat_labels = labelmap(store.classes) if fmt == "cvat" else None
    frames = np.sort(select(frame_stats(store, pseudo), selection, store.classes))
    round_name = round_name or f"review-{pseudo}-{datetime.date.today().isoformat()}"
    manifest = {"kind": "mtdistill review export", "version": 1, "store": str(store.path),
                "snapshot": store.snapshot_id, "pseudo": pseudo, "round": round_name, "format": fmt,
                "selection": selection, "images": "images", "masks": MASKS[fmt], "classes": store.classes,
                "frames": []}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with storage_errors(out, "nothing was exported"):
            for sub in ("images", MASKS[fmt]):
                (tmp / sub).mkdir(parents=True)
            write_frames(store, pseudo, frames, tmp, fmt, manifest["frames"])
            if fmt == "cvat":
                write_cvat_files(tmp, cvat_labels, [f["file"] for f in manifest["frames"]])
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def write_frames(store, pseudo: str, frames: np.ndarray, folder: Path, fmt: str, records: list) -> None:
    """Image and mask files of store frames `frames` (sorted) into `folder`; a manifest record per frame
    appended to `records`."""
    g, root, s = store.pseudo(pseudo), store.root, store.shard_frames
    names, keys = root["frames/name"][:], root["frames/key"][:]
    with progress_bar("export for review", len(frames)) as advance:
        for start in range(0, int(frames.max()) + 1, s):
            sel = frames[(frames >= start) & (frames < start + s)]
            if not len(sel):
                continue
            lo, hi = int(sel.min()), int(sel.max()) + 1
            rgb, segm = root["frames/rgb"][lo:hi][sel - lo], g["segm"][lo:hi][sel - lo]
            for j, i in enumerate(sel):
                file = f"{int(i):06d}.png"
                Image.fromarray(rgb[j]).save(folder / "images" / file)
                mask = colorize_segm(segm[j], store.classes) if fmt == "cvat" else segm[j]
                Image.fromarray(mask).save(folder / MASKS[fmt] / file)
                records.append({"file": file, "index": int(i), "key": bytes(keys[int(i)]).hex(),
                                "name": str(names[int(i)])})
                advance(1)


def write_cvat_files(folder: Path, labels: str, files: list[str]) -> None:
    """labelmap.txt, ImageSets/Segmentation/default.txt and annotations.zip (those two + SegmentationClass/)."""
    (folder / "labelmap.txt").write_text(labels, encoding="utf-8")
    sets = folder / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "default.txt").write_text("".join(Path(f).stem + "\n" for f in files), encoding="utf-8")
    with zipfile.ZipFile(folder / "annotations.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(folder / "labelmap.txt", "labelmap.txt")
        z.write(sets / "default.txt", "ImageSets/Segmentation/default.txt")
        for f in files:
            z.write(folder / MASKS["cvat"] / f, f"SegmentationClass/{f}")
