"""Published ResNet-38 A1 weights -> teachers/resnet38.py (`mtdistill teacher import resnet38`, and
`teacher train --arch resnet38 --init FILE`).

Two layouts are read, both checked name by name and shape by shape against the published model:
- the authors' MXNet `.params` (itijyou/ademxapp; read by teachers/mxnet.py): `conv1a_weight`,
  units `res2a`, `res2b1`, ... `res5b2`, `res6a`, `res7a` with `res<unit>_branch<b>_weight` convs and
  `bn<unit>_branch<b>_{gamma, beta, moving_mean, moving_var}` BatchNorms, `bn7_*`; the ImageNet model
  ends in an fc `linear1000_*` (dropped), the segmentation models (FCRNA, output stride 8) in
  `conv6a_{weight, bias}` (3x3 4096 -> 512, dilation 12) and `linear<C>_{weight, bias}` (3x3 512 -> C);
- the widely used PyTorch conversion (torch.save of a state dict): `conv1a`, `b2`, `b2_1`, ... `b7`,
  `bn7`, units with `bn_branch2a`, `conv_branch2a`, `bn_branch2b1`, `conv_branch2b1`, `conv_branch1`
  (and `bn_branch2b2`, `conv_branch2b2` in b6 and b7).
MXNet names are first renamed to the PyTorch conversion's, then to ours (trunk.b2.0.bn1, ...). Both
layouts use BatchNorm eps 1e-5, as ours does, so tensors copy unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from stores.errors import UserError
from stores.files import read_weights
from teachers.mxnet import LIST_MAGIC, read_params
from teachers.resnet38 import ResNet38, ResNet38Config

BN_MX = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
BRANCHES = {"branch2a": "1", "branch2b1": "2", "branch2b2": "3"}      # -> bn1/conv1, bn2/conv2, bn3/conv3
MX_HEAD = {"conv6a": "head.conv1"}


def mx_to_torch_name(name: str) -> str | None:
    """An MXNet ResNet-38 name -> the PyTorch conversion's name (head names -> ours); None when unknown or
    the ImageNet classifier."""
    if name == "conv1a_weight":
        return "conv1a.weight"
    m = re.fullmatch(r"(res|bn)(\d)(a|b(\d+))_(branch\w+?)_(weight|gamma|beta|moving_mean|moving_var)", name)
    if m:
        kind, stage, _, k, branch, field = m.groups()
        unit = f"b{stage}" + (f"_{k}" if k else "")
        return f"{unit}.{'conv' if kind == 'res' else 'bn'}_{branch}.{BN_MX.get(field, field)}"
    m = re.fullmatch(r"bn7_(gamma|beta|moving_mean|moving_var)", name)
    if m:
        return f"bn7.{BN_MX[m[1]]}"
    m = re.fullmatch(r"(conv6a|linear\d+)_(weight|bias)", name)
    if m:
        return f"{MX_HEAD.get(m[1], 'head.conv2')}.{m[2]}"
    return None


def torch_to_our_name(name: str) -> str | None:
    """The PyTorch conversion's name -> ours (trunk.*); head.* passes through; None when unknown."""
    if name.startswith("head."):
        return name
    if name in ("conv1a.weight",) or name.startswith("bn7."):
        return f"trunk.{name}"
    m = re.fullmatch(r"b(\d)(?:_(\d))?\.(bn|conv)_(branch2a|branch2b1|branch2b2|branch1)\.(\w+)", name)
    if not m:
        return None
    stage, k, kind, branch, field = m.groups()
    if stage in "67" and k:
        return None
    unit = f"b{stage}" if stage in "67" else f"b{stage}.{k or 0}"
    layer = "shortcut" if branch == "branch1" else f"{kind}{BRANCHES[branch]}"
    return f"trunk.{unit}.{layer}.{field}"


def is_mxnet(path: Path) -> bool:
    """True when the file starts with the NDArray list magic of an MXNet .params file."""
    try:
        with open(path, "rb") as f:
            return int.from_bytes(f.read(8).ljust(8, b"\0"), "little") == LIST_MAGIC
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def read_resnet38(path) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """(tensors under our names, dropped names, layout "mxnet" | "pytorch") of a published file; UserError
    naming the file and the first unknown names when it is neither layout. A torch file is read
    weights-only (a pickle that would run code is refused)."""
    path = Path(path)
    if is_mxnet(path):
        raw = {k: torch.from_numpy(np.array(v)) for k, v in read_params(path).items()}
        dropped = [k for k in raw if k.startswith("linear1000_")]           # the ImageNet classifier (fc)
        renamed, layout = {k: None if k in dropped else mx_to_torch_name(k) for k in raw}, "mxnet"
    else:
        obj = read_weights(path, "ResNet-38 weights file")
        raw = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise UserError(f"{path}: not a ResNet-38 weights file (neither MXNet .params nor a state dict of tensors)")
        raw = {k.removeprefix("module."): v for k, v in raw.items()}
        renamed, layout, dropped = {k: k for k in raw}, "pytorch", []
    ours = {k: torch_to_our_name(t) if t else None for k, t in renamed.items()}
    unknown = [k for k, v in ours.items() if v is None and k not in dropped]
    if unknown:
        shown = ", ".join(sorted(unknown)[:4]) + (f" (+{len(unknown) - 4} more)" if len(unknown) > 4 else "")
        raise UserError(f"{path}: not ResNet-38 A1 weights ({layout} layout): unknown names {shown}")
    return {ours[k]: v for k, v in raw.items() if ours[k]}, sorted(dropped), layout


def infer_config(state: dict, num_classes: int, source: str) -> ResNet38Config:
    """Width and units of the ResNet-38 in `state` (our names): width from conv1a's 64 channels, units from
    the unit names of B2..B5; the published file gives width 1 and units (3, 3, 6, 3)."""
    conv1a = state.get("trunk.conv1a.weight")
    if conv1a is None or conv1a.ndim != 4:
        raise UserError(f"{source}: does not fit ResNet-38 A1: no conv1a weight")
    units = [len({k.split(".")[2] for k in state if k.startswith(f"trunk.b{s}.")}) for s in (2, 3, 4, 5)]
    try:
        return ResNet38Config(num_classes=num_classes, width=conv1a.shape[0] / 64, units=tuple(units))
    except ValueError as e:
        raise UserError(f"{source}: does not fit ResNet-38 A1: {e}") from None


def resnet38_from_file(path, num_classes: int | None = None) -> tuple[ResNet38, dict]:
    """The ResNet-38 A1 of a published file with its weights (width and units read from the file: the
    published model is width 1, units 3, 3, 6, 3): the trunk always, the segmentation head too when the
    file has one (then its class count; `num_classes` must agree if given), else a freshly initialised
    head of `num_classes` (UserError when that is not given). Every tensor's name and shape is checked
    against that model: UserError naming the file and the first missing names or shape mismatches.
    Returns (model, {"layout", "dropped", "head": "file" | "new", "num_classes", "width", "units"})."""
    state, dropped, layout = read_resnet38(path)
    has_head = "head.conv2.weight" in state
    if has_head:
        file_classes = int(state["head.conv2.weight"].shape[0])
        if num_classes not in (None, file_classes):
            raise UserError(f"{path}: its segmentation head has {file_classes} classes, asked for {num_classes}")
        num_classes = file_classes
    elif num_classes is None:
        raise UserError(f"{path}: holds no segmentation head (ImageNet weights); give the number of classes")
    if not 1 <= num_classes <= 255:
        raise UserError(f"{path}: {num_classes} classes; 1..255 fit uint8 labels")
    config = infer_config(state, num_classes, str(path))
    model = ResNet38(config)
    own = model.state_dict()
    want = {k: v for k, v in own.items() if has_head or not k.startswith("head.")}
    missing = sorted(k for k in set(want) - set(state) if not k.endswith("num_batches_tracked"))
    if missing:
        raise UserError(f"{path}: does not fit ResNet-38 A1: missing {', '.join(missing[:4])}"
                        + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k].shape)})" for k in sorted(want)
             if k in state and state[k].shape != want[k].shape]
    wrong += [f"{k} (no such tensor)" for k in sorted(set(state) - set(want))]
    if wrong:
        raise UserError(f"{path}: does not fit ResNet-38 A1: {'; '.join(wrong[:2])}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    info = {"layout": layout, "dropped": dropped, "head": "file" if has_head else "new",
            "num_classes": num_classes, "width": config.width, "units": list(config.units)}
    return model, info


def trunk_state(path) -> dict[str, torch.Tensor]:
    """The ResNet-38 trunk tensors (our trunk.* names) of a published file (either layout) or of a teacher
    file of ours (teachers.base.save_teacher); UserError naming the file otherwise."""
    path = Path(path)
    ckpt = None if is_mxnet(path) else read_weights(path, "ResNet-38 weights file")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and "arch" in ckpt:
        state = ckpt["model"]
    else:
        state = read_resnet38(path)[0]
    trunk = {k: v for k, v in state.items() if k.startswith("trunk.")}
    if not trunk:
        raise UserError(f"{path}: holds no ResNet-38 trunk")
    return trunk


def load_trunk(model: torch.nn.Module, path) -> None:
    """Copy the trunk of `path` (trunk_state) into `model` (a ResNet38 or ResNet38Depth); UserError naming
    the file when a tensor is missing or its shape differs (e.g. another --width or --units)."""
    trunk, own = trunk_state(path), model.state_dict()
    want = {k for k in own if k.startswith("trunk.") and not k.endswith("num_batches_tracked")}
    missing = sorted(want - set(trunk))
    wrong = sorted(k for k in want & set(trunk) if trunk[k].shape != own[k].shape)
    extra = sorted(set(trunk) - set(own))
    if missing or wrong or extra:
        what = (f"{wrong[0]} is {tuple(trunk[wrong[0]].shape)}, the model's {tuple(own[wrong[0]].shape)}" if wrong
                else f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
        raise UserError(f"{path}: its ResNet-38 trunk does not fit this teacher ({what}; check --width and --units)")
    with torch.no_grad():
        for k, v in trunk.items():
            own[k].copy_(v)
