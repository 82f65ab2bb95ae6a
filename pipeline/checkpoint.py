"""Which network a training run builds, and the one place that reads student files: training
checkpoints and local encoder weights, both through stores.files.read_weights (weights_only).

`arch` is a plain dict saved in every checkpoint: {"name": "student", "num_classes": C} for the
MT-LW-RefineNet student, or a teacher architecture dict (teachers.archs.arch_dict) for teachers.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from stores.errors import UserError
from stores.files import read_weights
from student.encoder import WeightsError
from student.model import build_student


def build_model(arch: dict, *, encoder_weights: str | None = None, pretrained: bool = False) -> nn.Module:
    """The network of `arch`; encoder_weights: the weights it starts from: a local MobileNet-v2 state dict
    file for the student's timm encoder, the whole student for the reference encoder (a file of `mtdistill
    import-weights`: `train --init`), or the ResNet-38 trunk of a resnet38 teacher (a published file or a
    teacher file: `teacher train --init`). Raises UserError naming the weights file if it is refused,
    unreadable or does not fit."""
    if arch["name"] == "student" and arch.get("encoder") == "reference" and encoder_weights is not None:
        return init_student(encoder_weights, arch["num_classes"])
    if arch["name"] == "student":
        try:
            return build_student(arch["num_classes"], encoder_weights=read_encoder_weights(encoder_weights),
                                 pretrained=pretrained, source=f"encoder weights {encoder_weights}",
                                 encoder=arch.get("encoder", "timm"))
        except WeightsError as e:
            raise UserError(str(e)) from None
    from teachers.archs import build_model as build_teacher
    model = build_teacher(arch, source="arch", pretrained_ok=pretrained)
    if encoder_weights is not None:
        from teachers.import_resnet38 import load_trunk
        load_trunk(model, encoder_weights)
    return model


def init_student(path, num_classes: int) -> nn.Module:
    """The reference-encoder student started from the whole network of `path` (a student checkpoint on the
    reference encoder, e.g. from `mtdistill import-weights`); its segmentation head's last conv starts fresh
    when its class count differs from `num_classes`. UserError naming the file otherwise."""
    ckpt = read_weights(path, "init checkpoint")
    arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
    if not isinstance(arch, dict) or arch.get("encoder") != "reference" or not isinstance(ckpt.get("model"), dict):
        raise UserError(f"{path}: --init takes a student checkpoint on the reference encoder "
                        f"(written by `mtdistill import-weights` or a run started from one)")
    model = build_student(num_classes, encoder="reference")
    state = dict(ckpt["model"])
    if int(arch.get("num_classes", -1)) != num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("heads.segm.2.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"heads.segm.2.weight", "heads.segm.2.bias"}:
        raise UserError(f"{path}: does not fit the reference student: {(unexpected or missing)[:3]}")
    return model


def model_tasks(arch: dict) -> tuple[str, ...]:
    """Tasks the arch dict's network predicts: ("segm", "depth") for the student, else the teacher's one task."""
    if arch["name"] == "student":
        return ("segm", "depth")
    from teachers.archs import arch_task
    return (arch_task(arch),)


def param_groups(model: nn.Module, lr_encoder: float, lr_decoder: float) -> list[dict]:
    """Encoder (or teacher trunk) at lr_encoder, everything else (decoder, heads) at lr_decoder."""
    backbone = getattr(model, "encoder", None) or getattr(model, "trunk", None)
    enc = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    return [
        {"params": [p for p in model.parameters() if id(p) in enc], "lr": lr_encoder, "name": "encoder"},
        {"params": [p for p in model.parameters() if id(p) not in enc], "lr": lr_decoder, "name": "decoder"},
    ]


def read_encoder_weights(path) -> dict | None:
    """A local encoder weights file -> its (unwrapped) state dict of tensors; None for None. UserError
    naming the file when it is missing, refused (names the refused globals) or not a state dict."""
    if path is None:
        return None
    from student.encoder import unwrap_state_dict
    try:
        return unwrap_state_dict(read_weights(path, "encoder weights"), f"encoder weights {path}")
    except WeightsError as e:
        raise UserError(str(e)) from None


def load_checkpoint(path) -> dict:
    """A training checkpoint dict ({"model", "arch", "config", ...}), read by stores.files.read_weights
    (weights_only: a checkpoint never runs code). UserError naming the file otherwise."""
    path = Path(path)
    ckpt = read_weights(path, "checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise UserError(f"{path}: not an mtdistill training checkpoint (no 'model'/'arch')")
    return ckpt


def model_from_checkpoint(path_or_ckpt) -> tuple[nn.Module, dict]:
    """(network in eval mode, checkpoint dict) from a checkpoint path or an already-read checkpoint dict."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    try:
        model = build_model(ckpt["arch"])
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        where = "checkpoint" if isinstance(path_or_ckpt, dict) else str(path_or_ckpt)
        raise UserError(f"{where}: weights do not fit {ckpt['arch'].get('name')!r} "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return model.eval(), ckpt


def read_student(checkpoint: str | Path) -> tuple[nn.Module, dict]:
    """(student in eval mode, checkpoint dict) from a training checkpoint ({"arch": {"name": "student",
    "num_classes", "encoder"?}, "config", "model", "classes", ...}), an imported paper checkpoint
    (mtdistill import-weights: arch encoder "reference") or a bare state dict, loaded with weights_only=True.
    num_classes comes from "arch", else "config", else the segmentation head's shape. Errors name the file."""
    path = Path(checkpoint)
    ckpt = read_weights(path, "checkpoint")
    ckpt = ckpt if isinstance(ckpt, dict) else {}
    arch = ckpt.get("arch") if isinstance(ckpt.get("arch"), dict) else {}
    if arch.get("name", "student") != "student":
        raise UserError(f"{path}: checkpoint holds a {arch['name']!r} network, not the student")
    state = ckpt.get("model", ckpt)
    head = "heads.segm.2.weight"
    if not isinstance(state, dict) or head not in state:
        raise UserError(f"{path}: checkpoint has no student state dict (expected key 'model' with {head!r})")
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    num_classes = int(arch.get("num_classes", config.get("num_classes", state[head].shape[0])))
    model = build_student(num_classes, encoder=arch.get("encoder", "timm"))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: checkpoint does not fit the student ({str(e).splitlines()[0]})") from None
    return model.eval(), (ckpt if "model" in ckpt else {"model": state})
