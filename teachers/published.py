"""The paper's released student checkpoints -> our student (MT-LW-RefineNet on the reference MobileNet-v2).

Sits beside external.py: `mtdistill import-weights FILE --out student.pt` reads one of the authors' four
files (a torch pickle whose "state_dict" holds their `Net`; keys in PAPER.md), renames every tensor to
our student's layout, checks every name and shape, and writes a student checkpoint that `label`
(as a teacher), `evaluate`, `predict`, `export` and `bench` read. Key correspondence:

    layer1.0 / layer1.1                      encoder.conv_stem / encoder.bn1
    layerK.J.output.{0,1,2}.0  (K = 2..8)    encoder.blocks[K-2][J].{conv_pw, conv_dw, conv_pwl}
    layerK.J.output.{0,1,2}.1                encoder.blocks[K-2][J].{bn1, bn2, bn3}
    conv3 .. conv8 (taps 24 .. 320)          decoder.proj[0 .. 5]
    crp4, crp3, crp2, crp1 .0.{i}_outvar_dimred   decoder.crp[0 .. 3].convs[i-1]
    conv_adapt4, conv_adapt3, conv_adapt2    decoder.adapt[0 .. 2]
    pre_segm, segm / pre_depth, depth        heads.segm.{0, 2} / heads.depth.{0, 2}

The three-task file's normals head (pre_normal, normal) has no place in our student: it is dropped and
the dropped names are recorded. The file is read weights-only (stores.files.read_weights), so a pickle
that would run code is refused; BatchNorm's num_batches_tracked may be absent (older torch).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from stores.classes import CLASS_LISTS
from stores.errors import UserError
from stores.files import atomic_write, read_weights, sha256_file
from student.model import build_student

FORMAT = "mtdistill.student-import"
CONVS, BNS = ("conv_pw", "conv_dw", "conv_pwl"), ("bn1", "bn2", "bn3")
DROPPED = ("pre_normal.", "normal.")
HEADS = {"pre_segm.weight": "heads.segm.0.weight", "segm.weight": "heads.segm.2.weight",
         "segm.bias": "heads.segm.2.bias", "pre_depth.weight": "heads.depth.0.weight",
         "depth.weight": "heads.depth.2.weight", "depth.bias": "heads.depth.2.bias"}
RULES = (  # (pattern of the authors' key, our key from its groups)
    (r"layer1\.0\.(.+)", lambda m: f"encoder.conv_stem.{m[1]}"),
    (r"layer1\.1\.(.+)", lambda m: f"encoder.bn1.{m[1]}"),
    (r"layer([2-8])\.(\d+)\.output\.([012])\.([01])\.(.+)",
     lambda m: f"encoder.blocks.{int(m[1]) - 2}.{m[2]}.{(CONVS if m[4] == '0' else BNS)[int(m[3])]}.{m[5]}"),
    (r"conv([3-8])\.weight", lambda m: f"decoder.proj.{int(m[1]) - 3}.weight"),
    (r"crp([1-4])\.0\.([1-4])_outvar_dimred\.weight", lambda m: f"decoder.crp.{4 - int(m[1])}.convs.{int(m[2]) - 1}.weight"),
    (r"conv_adapt([2-4])\.weight", lambda m: f"decoder.adapt.{4 - int(m[1])}.weight"),
)


def our_key(key: str) -> str | None:
    """The authors' key -> our student's key, or None when it has no counterpart."""
    if key in HEADS:
        return HEADS[key]
    for pattern, name in RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return name(m)
    return None


def listed(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def paper_state(obj, source: str) -> dict[str, torch.Tensor]:
    """The authors' state dict inside a read file ({"state_dict": ...} or the dict itself, `module.`
    prefixes removed); UserError naming `source` when it is not a dict of tensors."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{source}: not a state dict of tensors (expected the authors' checkpoint with 'state_dict')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_student(state: dict[str, torch.Tensor], source: str) -> tuple[dict, int, list[str]]:
    """The authors' state dict -> (our student's state dict, num_classes, dropped keys). UserError naming
    `source` and the first offending keys when a key is unknown, one of ours is missing, or a shape differs."""
    dropped = sorted(k for k in state if k.startswith(DROPPED))
    mapped = {k: our_key(k) for k in state if k not in dropped}
    unknown = [k for k, v in mapped.items() if v is None]
    if unknown or "segm.weight" not in state:
        raise UserError(f"{source}: not the paper's student (keys {listed(unknown) or 'without segm.weight'} "
                        f"do not fit its layout: layer1..layer8, conv3..conv8, crp1..crp4, segm, depth)")
    segm = state["segm.weight"]
    num_classes = int(segm.shape[0]) if segm.ndim == 4 else 0
    if not 1 <= num_classes <= 255:
        raise UserError(f"{source}: segm.weight of shape {tuple(segm.shape)} is not a 3x3 head of 1..255 classes")
    want = build_student(num_classes, encoder="reference").state_dict()
    ours = {mapped[k]: v for k, v in state.items() if k not in dropped}
    for key, value in want.items():              # older torch wrote no num_batches_tracked
        if key.endswith("num_batches_tracked") and key not in ours:
            ours[key] = torch.zeros_like(value)
    missing, extra = set(want) - set(ours), set(ours) - set(want)
    back = {v: k for k, v in mapped.items()}
    if missing or extra:
        raise UserError(f"{source}: does not fit the paper's student: "
                        + "; ".join(p for p in (f"missing {listed(missing)}" if missing else "",
                                                f"unexpected {listed(back[k] for k in extra)}" if extra else "") if p))
    wrong = [f"{back.get(k, k)} {tuple(ours[k].shape)} (expected {tuple(v.shape)})"
             for k, v in want.items() if ours[k].shape != v.shape]
    if wrong:
        raise UserError(f"{source}: wrong tensor shapes: {listed(wrong, 2)}")
    return {k: ours[k].to(want[k].dtype) for k in want}, num_classes, dropped


def import_student(path, out, classes: str | None = None) -> dict:
    """Read the authors' checkpoint at `path`, convert it (convert_student) and write our student checkpoint
    {"format", "arch": {"name": "student", "num_classes", "encoder": "reference"}, "model", "classes",
    "tasks", "source"} to `out` atomically. `classes`: a name of stores.classes.CLASS_LISTS, or None to
    choose by class count (40 -> nyud40, 6 -> kitti6, else none recorded). Returns a summary dict."""
    path = Path(path)
    state, num_classes, dropped = convert_student(paper_state(read_weights(path, "checkpoint"), str(path)), str(path))
    if classes is None:
        classes = {40: "nyud40", 6: "kitti6"}.get(num_classes)
    class_list = CLASS_LISTS[classes] if classes else None
    if class_list is not None and len(class_list) != num_classes:
        raise UserError(f"--classes {classes}: {len(class_list)} classes, the checkpoint has {num_classes}")
    ckpt = {"format": FORMAT, "arch": {"name": "student", "num_classes": num_classes, "encoder": "reference"},
            "model": state, "classes": class_list, "tasks": ["segm", "depth"],
            "source": {"file": str(path.resolve()), "sha256": sha256_file(path), "dropped": dropped}}
    atomic_write(Path(out), lambda tmp: torch.save(ckpt, tmp))
    return {"out": str(out), "num_classes": num_classes, "classes": classes, "dropped": dropped,
            "parameters": sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)}
