"""Our own teacher architectures by name, and their configs as plain dicts (the checkpoint's "arch").

Sits between the teacher networks (resnet38.py, depth.py) and the code that saves/loads them
(base.save_teacher, external.load_teacher_checkpoint, `mtdistill teacher train`). A checkpoint stores
`{"name": <key of ARCHS>, **config fields}`; `build_model` turns that dict back into a module.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from stores.errors import UserError
from teachers.depth import LWRefineNetDepth, LWRefineNetDepthConfig, ResNet38Depth, ResNet38DepthConfig
from teachers.resnet38 import ResNet38, ResNet38Config

# name -> (config class, model class, task)
ARCHS = {
    "resnet38": (ResNet38Config, ResNet38, "segm"),
    "resnet38_depth": (ResNet38DepthConfig, ResNet38Depth, "depth"),
    "lwrefinenet_depth": (LWRefineNetDepthConfig, LWRefineNetDepth, "depth"),
}


def arch_entry(name: str):
    """(config class, model class, task) registered under `name` in ARCHS; KeyError listing the names otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown teacher architecture {name!r}; choose one of {sorted(ARCHS)}") from None


def arch_dict(config) -> dict:
    """A config dataclass (or an arch dict) -> {"name": ..., **fields} with lists, safe for weights_only."""
    if isinstance(config, dict):
        name = config.get("name")
        config = config_from_dict(config)
    else:
        name = next((n for n, (cls, _, _) in ARCHS.items() if type(config) is cls), None)
        if name is None:
            raise KeyError(f"unknown config type {type(config).__name__}; "
                           f"choose one of {[c.__name__ for c, _, _ in ARCHS.values()]}")
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    return {"name": name, **fields}


def config_from_dict(arch: dict, source: str = "arch"):
    """{"name": ..., **fields} -> config dataclass; UserError naming an unknown name or field."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise UserError(f"{source}: architecture must be a dict with a 'name'")
    try:
        cls, _, _ = arch_entry(arch["name"])
    except KeyError as e:
        raise UserError(f"{source}: {e.args[0]}") from None
    fields = {k: v for k, v in arch.items() if k != "name"}
    known = {f.name for f in dataclasses.fields(cls)}
    if set(fields) - known:
        raise UserError(f"{source}: unknown fields {sorted(set(fields) - known)} for {arch['name']}; "
                        f"known: {sorted(known)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except (TypeError, ValueError) as e:
        raise UserError(f"{source}: bad {arch['name']} config: {e}") from None


def build_model(arch: dict, source: str = "arch", pretrained_ok: bool = False) -> nn.Module:
    """Arch dict -> freshly initialised module. Rebuilding from a checkpoint never fetches pretrained
    encoder weights (the checkpoint's own weights replace them) unless `pretrained_ok`."""
    config = config_from_dict(arch, source)
    if not pretrained_ok and getattr(config, "pretrained", False):
        config = dataclasses.replace(config, pretrained=False)
    _, model_cls, _ = arch_entry(arch["name"])
    return model_cls(config)


def arch_task(arch: dict) -> str:
    """The task ("segm" or "depth") of the architecture an arch dict names; KeyError for an unknown name."""
    return arch_entry(arch["name"])[2]
