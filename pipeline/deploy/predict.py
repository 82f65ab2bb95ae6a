"""Run a trained student on image files (`mtdistill predict`): pictures for people and raw outputs for tools.

Flow: checkpoint -> student (pipeline/checkpoint.read_student) + its class list; each image file (any size,
grey/RGBA/palette converted to RGB) -> padded to a multiple of 32 with the mean colour -> student ->
logits / depth upsampled to the padded size and cropped back (pipeline/evaluate/evaluate.predict) -> files in
OUT, named after the image; NAME is the image's path relative to the folder all inputs share, without
its extension, so cam_left/frame.png and cam_right/frame.png land in OUT/cam_left/ and OUT/cam_right/
(two inputs that differ only in extension become NAME-png, NAME-jpg). Files already in OUT are never
replaced without `overwrite`:
  NAME_segm.png        uint8 class ids (0..C-1)
  NAME_depth.png       uint16 millimetres (clipped at 65.535 m), or NAME_depth.npy float32 metres
  NAME_segm_color.png  the class colours (NYUD-40 / KITTI-6 palettes)
  NAME_depth_color.png magma colour map, near bright, with a colour bar and its range
  NAME_panel.png       input | segmentation | depth, with a legend of the classes present
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.deploy import visual
from stores.classes import KITTI6, NYUD40, make_classes
from stores.errors import UserError

DEPTH_FORMATS = ("png", "npy")
MM_MAX = 65535  # uint16 millimetres


def classes_of(ckpt: dict, num_classes: int) -> list[dict]:
    """The checkpoint's class list; without one, NYUD-40 for 40 classes, KITTI-6 for 6, else generic names."""
    classes = ckpt.get("classes")
    if isinstance(classes, list) and len(classes) == num_classes and all(
            isinstance(c, dict) and {"id", "name", "color"} <= set(c) for c in classes):
        return classes
    return {40: NYUD40, 6: KITTI6}.get(num_classes) or make_classes([f"class {i}" for i in range(num_classes)])


def load_predictor(checkpoint) -> tuple[torch.nn.Module, list[dict]]:
    """(student in eval mode, its class list) from a checkpoint file; UserError naming the file when it is
    not a student checkpoint (see pipeline.checkpoint.read_student).
    """
    from pipeline.checkpoint import read_student

    model, ckpt = read_student(checkpoint)
    return model, classes_of(ckpt, model.num_classes)


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 from any 8-bit image file; a missing or undecodable file is a UserError naming it."""
    from stores.sources.images import read_rgb

    return read_rgb(path)


def predict_image(model: torch.nn.Module, rgb: np.ndarray, device: torch.device,
                  amp: bool = False) -> dict[str, np.ndarray]:
    """(H, W, 3) uint8 -> {"segm": uint8 (H, W) ids, "prob": float32 (H, W), "depth": float32 (H, W) metres},
    through pipeline.evaluate.evaluate.predict (the padded inference `evaluate` uses too)."""
    from pipeline.evaluate.evaluate import predict

    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]      # (1,3,H,W) uint8
    out = predict(model, x, device, amp=amp)
    return {"segm": out["segm"][0].to(torch.uint8).cpu().numpy(),
            "prob": out["prob"][0].float().cpu().numpy(),
            "depth": out["depth"][0].float().cpu().numpy()}


def depth_to_mm(depth: np.ndarray) -> tuple[np.ndarray, int]:
    """float metres -> (uint16 millimetres, number of pixels clipped at 65.535 m)."""
    mm = np.round(np.nan_to_num(depth, nan=0.0) * 1000.0)
    clipped = int((mm > MM_MAX).sum())
    return np.clip(mm, 0, MM_MAX).astype(np.uint16), clipped


def save_outputs(out: Path, name: str, rgb: np.ndarray, pred: dict, classes: list[dict],
                 depth_range: tuple[float, float] | None = None, depth_format: str = "png") -> dict:
    """Write the five files of one image (see module docstring); returns what was written and seen."""
    segm, depth = pred["segm"], pred["depth"]
    vmin, vmax = depth_range or visual.depth_range(depth)
    files = output_files(out, name, depth_format)
    files["segm"].parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(segm).save(files["segm"])
    clipped = 0
    if depth_format == "npy":
        np.save(files["depth"], depth.astype(np.float32))
    else:
        mm, clipped = depth_to_mm(depth)
        Image.fromarray(mm).save(files["depth"])  # uint16 -> 16-bit grey PNG
    segm_rgb = visual.colorize_segm(segm, classes)
    text = int(np.clip(rgb.shape[0] // 18, 12, 28))
    depth_rgb = visual.with_colorbar(visual.colorize_depth(depth, vmin, vmax, invalid_color=None), vmin, vmax,
                                     size=text)
    Image.fromarray(segm_rgb).save(files["segm_color"])
    Image.fromarray(depth_rgb).save(files["depth_color"])
    present = np.unique(segm).tolist()
    cells = [[("input", rgb), ("segmentation", segm_rgb), ("depth", depth_rgb)]]
    width = sum(a.shape[1] for _, a in cells[0]) + 2 * 6
    key = visual.legend(classes, present, width=width, size=text)
    Image.fromarray(visual.panel(cells, size=text, footer=key)).save(files["panel"])
    return {"files": {k: str(v) for k, v in files.items()}, "size": [rgb.shape[0], rgb.shape[1]],
            "classes_present": [classes[i]["name"] for i in present if i < len(classes)],
            "depth_range": [vmin, vmax], "depth_clipped_px": clipped}


def output_files(out: Path, name: str, depth_format: str = "png") -> dict[str, Path]:
    """The five files `save_outputs` writes for output name `name` (which may hold folders)."""
    ext = "npy" if depth_format == "npy" else "png"
    return {"segm": out / f"{name}_segm.png", "segm_color": out / f"{name}_segm_color.png",
            "depth": out / f"{name}_depth.{ext}", "depth_color": out / f"{name}_depth_color.png",
            "panel": out / f"{name}_panel.png"}


def output_names(images: Sequence[Path]) -> list[str]:
    """One collision-free output name per image (posix, no extension): its path relative to the folder all
    inputs share (cam_left/frame.png, cam_right/frame.png -> cam_left/frame, cam_right/frame); inputs that
    would still share a name (x.png, x.jpg in one folder) keep their extension (x-png, x-jpg).
    `images` must be distinct files (see `check_images`)."""
    paths = [Path(p).resolve() for p in images]
    if not paths:
        return []
    root = Path(os.path.commonpath([p.parent for p in paths]))
    rel = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
    shared = {r for r in rel if rel.count(r) > 1}
    names = [f"{r}-{p.suffix.lstrip('.').lower() or 'none'}" if r in shared else r for r, p in zip(rel, paths)]
    if len(set(names)) < len(names):                       # x.PNG and x.png on a case-sensitive disk
        names = [f"{n}-{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    return names


def check_free(out: Path, names: Sequence[str], depth_format: str, overwrite: bool) -> list[Path]:
    """The output files that already exist; UserError naming them unless `overwrite`."""
    taken = [f for n in names for f in output_files(out, n, depth_format).values() if f.exists()]
    if taken and not overwrite:
        shown = ", ".join(str(f) for f in taken[:3]) + (", ..." if len(taken) > 3 else "")
        raise UserError(f"{out}: {len(taken)} output file(s) already exist ({shown}); use --overwrite to "
                        "replace them, or another --out")
    return taken


def check_images(images: Sequence) -> list[Path]:
    """Every path is a file whose header an image decoder recognises (cheap: pixels are not decoded)."""
    from stores.sources.images import BadInput

    paths = list(dict.fromkeys(Path(p) for p in images))          # the same path twice: predicted once
    if not paths:
        raise UserError("no image given")
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: {'is a directory, not an image' if p.is_dir() else 'file not found'}")
        try:
            with Image.open(p):
                pass
        except (OSError, SyntaxError, ValueError) as e:
            raise BadInput(p, f"cannot decode image ({type(e).__name__}: {e})") from None
    return paths


def check_options(depth_format: str, depth_range, out) -> None:
    """UserError naming a bad depth format, depth range (metres) or output path."""
    if depth_format not in DEPTH_FORMATS:
        raise UserError(f"depth format {depth_format!r}: choose one of {', '.join(DEPTH_FORMATS)}")
    if depth_range is not None and not (0 <= depth_range[0] < depth_range[1]):
        raise UserError(f"depth range {depth_range[0]:g} {depth_range[1]:g}: need 0 <= MIN < MAX (metres)")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"{out}: exists and is not a directory")


def predict_files(checkpoint, images: Sequence, out, device: str = "auto", threads: int | None = None,
                  depth_range: tuple[float, float] | None = None, depth_format: str = "png",
                  progress=None, amp: bool = False, overwrite: bool = False) -> list[dict]:
    """Predict every image file into `out`; returns one record per image (files, size, classes, range,
    `replaced`: whether its files existed before). Output names: `output_names`; existing output files
    are a UserError naming them unless `overwrite`. fp32 unless `amp` (bf16 autocast on CUDA).

    All inputs are checked before any work (options, checkpoint, image headers); an image that still
    fails to decode stops the run with a UserError naming it (earlier images' files stay written).
    progress: optional `progress(description, total, unit=...)` context manager yielding advance(n)."""
    from pipeline.runtime import resolve_device

    check_options(depth_format, depth_range, out)
    images, out = check_images(images), Path(out)
    names = output_names(images)
    taken = set(check_free(out, names, depth_format, overwrite))
    model, classes = load_predictor(checkpoint)
    dev = resolve_device(device)
    model.to(dev, memory_format=torch.channels_last)  # same outputs; faster convs on CPU (BENCHMARKS.md)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    records = []
    bar = progress("predict", len(images), unit="images") if progress else contextlib.nullcontext(lambda n: None)
    try:
        with bar as advance:
            for path, name in zip(images, names):
                rgb = read_image(path)
                pred = predict_image(model, rgb, dev, amp=amp)
                replaced = any(f in taken for f in output_files(out, name, depth_format).values())
                records.append({"image": str(path), "replaced": replaced,
                                **save_outputs(out, name, rgb, pred, classes, depth_range, depth_format)})
                advance(1)
    finally:
        torch.set_num_threads(old_threads)
    return records
