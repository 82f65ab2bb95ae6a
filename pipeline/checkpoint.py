"""Which network a training run builds and how checkpoints name it.

`arch` is a plain dict saved in every checkpoint: {"name": "student", "num_classes": C} for the
MT-LW-RefineNet student, or a teacher architecture dict (teachers.archs.arch_dict) for teachers.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stores.errors import UserError
from student.model import build_student


def build_model(arch: dict, *, encoder_weights: str | None = None, pretrained: bool = False) -> nn.Module:
    """Freshly initialised network for an arch dict: the student for {"name": "student", "num_classes"}, else a
    teacher architecture (teachers.archs). encoder_weights applies to the student only; for a teacher,
    `pretrained` lets its config's own pretrained flag stand. UserError for an unknown teacher architecture.
    """
    if arch["name"] == "student":
        return build_student(arch["num_classes"], encoder_weights=encoder_weights, pretrained=pretrained)
    from teachers.archs import build_model as build_teacher
    return build_teacher(arch, source="arch", pretrained_ok=pretrained)


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


def load_checkpoint(path) -> dict:
    """A training checkpoint, loaded with weights_only=True (a checkpoint never runs code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise UserError(f"{path}: not an mtdistill training checkpoint (no 'model'/'arch')")
    return ckpt


def model_from_checkpoint(path_or_ckpt) -> tuple[nn.Module, dict]:
    """(network in eval mode with the checkpoint's weights, checkpoint dict) from a path or an already loaded
    checkpoint; UserError for a missing or unreadable file (see load_checkpoint), RuntimeError from
    load_state_dict when the weights do not fit the arch.
    """
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    model = build_model(ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
