"""The Teacher wrapper: one model (nn.Module, TorchScript or ONNX) + its task, normalisation, version, classes.

Sits between the teacher files (external.py, archs.py) and the label job (pipeline/label/job.py): the job
calls `load_teacher(...)` once per worker and `teacher.predict(rgb)` per shard, then writes
pseudo/<name>/{segm, conf, depth} and records `teacher.provenance()` in the commit.

    predict(rgb (B, H, W, 3) uint8) ->
        segm:  {"segm": uint8 (B, H, W) store ids after remap (255 = unmapped),
                "conf": uint8 (B, H, W) round(prob of that class * 255), 0 where segm is 255,
                with topk = K > 0 also "topk_class": uint8 (B, K, H, W) the K most probable store ids,
                most probable first, and "topk_prob": uint8 (B, K, H, W) round(their probs * 255),
                0 where segm is 255 (soft targets for distillation)}
        depth: {"depth": float32 (B, H, W) metres}

Always at the input resolution: the input is padded (mean colour) to a multiple of the model's stride,
logits/depths are upsampled bilinearly to the padded size and cropped, softmax comes after upsampling.
Always eval mode under torch.inference_mode. Optional horizontal-flip TTA averages probabilities (segm)
or depths of the image and of its mirror image flipped back.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stores.errors import UserError
from stores.files import atomic_write, sha256_file
from student.model import IMAGENET_MEAN, IMAGENET_STD
from student.onednn import onednn_1x1
from teachers import external, hf
from teachers.archs import arch_dict, arch_task
from teachers.remap import IGNORE, Remap, class_names, load_remap, remap_by_name

TASKS = ("segm", "depth")
IMAGENET_NORM = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "range": 1.0, "bgr": False}


def parse_task(task: str) -> str:
    """`task` if it is "segm" or "depth"; UserError listing the tasks otherwise."""
    if task not in TASKS:
        raise UserError(f"unknown teacher task {task!r}; choose one of {list(TASKS)}")
    return task


def parse_norm(norm: dict | None) -> dict:
    """Input normalisation: x = (rgb / 255 * range - mean) / std, channels reversed first if bgr.
    Defaults to ImageNet on [0, 1]; use range 255 with mean/std in 0..255 units for caffe-style models."""
    out = dict(IMAGENET_NORM)
    unknown = set(norm or {}) - set(out)
    if unknown:
        raise UserError(f"unknown normalisation keys {sorted(unknown)}; known: {sorted(out)}")
    out.update(norm or {})
    mean, std = [float(v) for v in out["mean"]], [float(v) for v in out["std"]]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or float(out["range"]) <= 0:
        raise UserError(f"bad normalisation {norm!r}: need 3 means, 3 stds > 0 and range > 0")
    return {"mean": mean, "std": std, "range": float(out["range"]), "bgr": bool(out["bgr"])}


def parse_rgb(rgb) -> np.ndarray:
    """`rgb` as a numpy array if it is uint8 (B, H, W, 3); ValueError giving the dtype and shape otherwise."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"predict expects uint8 (B, H, W, 3) frames, got {rgb.dtype} {rgb.shape}")
    return rgb


class Teacher:
    """A frozen teacher ready to label frames; see the module docstring for `predict`'s contract."""

    def __init__(self, model, task: str, *, name: str = "teacher", version: str | None = None,
                 norm: dict | None = None, classes=None, remap: Remap | None = None, device="cpu",
                 flip: bool = False, pad_to: int | None = None, batch_size: int = 8, origin: dict | None = None,
                 topk: int = 0):
        self.task = parse_task(task)
        self.topk = check_topk(topk, self.task)
        self.origin = origin                                   # where the weights came from (hf: model, revision)
        self.spec: str | None = None                           # what load_teacher opened (workers open the same)
        self.device = torch.device(device)
        if isinstance(model, nn.Module):
            model = model.to(self.device).eval()
            version = version or external.state_dict_hash(model)
        if version is None:
            raise ValueError("a Teacher around a non-Module model needs an explicit version (its file hash)")
        self.model, self.name, self.version = model, name, version
        self.norm = parse_norm(norm)
        self.classes = class_names(classes) if classes is not None else None
        if remap is not None and self.task != "segm":
            raise UserError(f"{name}: a class remap only applies to segmentation teachers")
        if remap is not None and self.classes is not None and len(remap.table) != len(self.classes):
            raise UserError(f"{remap.source}: remap covers {len(remap.table)} teacher classes, "
                            f"teacher {name} has {len(self.classes)}")
        self.remap, self.flip, self.batch_size = remap, flip, max(1, int(batch_size))
        self.pad_to = int(pad_to or getattr(model, "input_multiple", 1))
        mean, std = torch.tensor(self.norm["mean"]), torch.tensor(self.norm["std"])
        self._mean = mean.view(1, 3, 1, 1).to(self.device)
        self._std = std.view(1, 3, 1, 1).to(self.device)

    @property
    def num_classes(self) -> int | None:
        """Number of the teacher's own classes (before any remap), or None when the file records no class list."""
        return len(self.classes) if self.classes is not None else None

    @property
    def store_classes(self) -> list[str] | None:
        """Class names of predict's "segm" ids: the remap's targets, else the teacher's own classes."""
        if self.remap is not None:
            return list(self.remap.store_classes) if self.remap.store_classes else None
        return self.classes

    def output_classes(self, size=(64, 64)) -> int:
        """Channels of the model's segmentation output, from one forward pass on a noise frame of (H, W) =
        `size` (the store's frame size: some exported models take only that). UserError naming the
        teacher if the model cannot run on it."""
        gen = torch.Generator().manual_seed(0)
        rgb = torch.randint(0, 256, (1, *size, 3), generator=gen, dtype=torch.uint8).to(self.device)
        try:
            with torch.inference_mode():
                return int(self._dense(self._normalise(rgb)).shape[1])
        except UserError:
            raise
        except Exception as e:  # any model error: the user needs its name and the first line
            first = (str(e).strip().splitlines() or [""])[0]
            raise UserError(f"{self.name}: cannot run on a {size[1]}x{size[0]} frame to check its classes "
                            f"({type(e).__name__}: {first})") from None

    def check_classes(self, store_classes, size=(64, 64)) -> None:
        """Before labeling: the model's class count must be what the remap takes (its teacher classes),
        else the teacher's own class list, else the store's classes. UserError naming the teacher, the
        counts and what to give otherwise; a no-op for depth teachers."""
        if self.task != "segm":
            return
        got = self.output_classes(size)
        names = class_names(store_classes)
        if self.remap is not None:
            want, what = len(self.remap.table), f"the remap {self.remap.source} maps {len(self.remap.table)}"
        elif self.classes is not None:
            want, what = len(self.classes), f"its class list names {len(self.classes)}"
        else:
            want, what = len(names), f"the store has {len(names)} ({', '.join(names[:3])}, ...) and no remap is given"
        if got != want:
            hint = "" if self.remap is not None else "; give --remap FILE mapping its classes to the store's"
            raise UserError(f"{self.name}: the teacher outputs {got} classes but {what}{hint}")

    def provenance(self) -> dict:
        """What a label commit records about this teacher."""
        remap = None if self.remap is None else {"source": self.remap.source, "table": list(self.remap.table)}
        out = {"name": self.name, "version": self.version, "task": self.task, "classes": self.classes,
               "remap": remap, "flip": self.flip, "norm": self.norm}
        return {**out, "origin": self.origin} if self.origin is not None else out

    def _normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.permute(0, 3, 1, 2).float()                     # (B, 3, H, W) in 0..255
        if self.norm["bgr"]:
            x = x.flip(1)
        return (x * (self.norm["range"] / 255.0) - self._mean) / self._std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model output for the task as (B, C, h, w) float32, whatever container the model returns."""
        out = self.model(x)
        if isinstance(out, dict):
            if self.task in out:
                out = out[self.task]
            elif len(out) == 1:
                out = next(iter(out.values()))
            else:
                raise UserError(f"{self.name}: model outputs {sorted(out)}, none named {self.task!r}")
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 3 and self.task == "depth":
            out = out[:, None]                                  # (B, h, w) -> (B, 1, h, w)
        if out.ndim != 4:
            raise UserError(f"{self.name}: expected a (B, C, h, w) output, got shape {tuple(out.shape)}")
        if self.task == "depth" and out.shape[1] != 1:
            raise UserError(f"{self.name}: a depth teacher must output 1 channel, got {out.shape[1]}")
        return out.float()

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> segm probabilities (B, C, H, W) or depth (B, 1, H, W) at input size."""
        h, w = x.shape[-2:]
        ph, pw = -h % self.pad_to, -w % self.pad_to
        xp = F.pad(x, (0, pw, 0, ph))                          # zeros = the mean colour after normalising
        y = self._forward(xp)                                  # (B, C, h', w'), e.g. 1/8 of the padded size
        y = F.interpolate(y, size=(h + ph, w + pw), mode="bilinear", align_corners=False)[..., :h, :w]
        return y.softmax(1) if self.task == "segm" else y

    def _predict_batch(self, rgb: np.ndarray) -> dict:
        rgb = np.ascontiguousarray(rgb)                        # mirrored views have negative strides
        rgb = rgb if rgb.flags.writeable else rgb.copy()       # torch wants writable memory
        x = self._normalise(torch.from_numpy(rgb).to(self.device))
        y = self._dense(x)
        if self.flip:
            y = (y + self._dense(x.flip(-1)).flip(-1)) / 2     # mirror, predict, mirror back, average
        if self.task == "depth":
            return {"depth": y[:, 0].cpu().numpy().astype(np.float32)}
        if self.num_classes is not None and y.shape[1] != self.num_classes:
            raise UserError(f"{self.name}: model outputs {y.shape[1]} classes, expected {self.num_classes}")
        if y.shape[1] > IGNORE:
            raise UserError(f"{self.name}: {y.shape[1]} classes do not fit uint8 labels (max 255)")
        p = y if self.remap is None else self.remap.apply_probs(y)   # (B, C_store, H, W): merged classes summed
        conf, ids = p.max(1)                                   # (B, H, W)
        if self.remap is not None:
            unmapped = (1.0 - p.sum(1)) > conf                 # the ignored teacher classes win
            ids = ids.masked_fill(unmapped, IGNORE)
            conf = conf.masked_fill(unmapped, 0.0)
        out = {"segm": ids.to(torch.uint8).cpu().numpy(), "conf": _to_uint8(conf)}
        if self.topk:
            if self.topk > p.shape[1]:
                raise UserError(f"{self.name}: --topk {self.topk} exceeds its {p.shape[1]} classes")
            probs, classes = p.topk(self.topk, dim=1)          # (B, K, H, W), most probable first
            if self.remap is not None:
                probs = probs.masked_fill(unmapped[:, None], 0.0)
            out.update(topk_class=classes.to(torch.uint8).cpu().numpy(), topk_prob=_to_uint8(probs))
        return out

    def predict(self, rgb) -> dict:
        """uint8 (B, H, W, 3) -> dict of (B, H, W) (topk: (B, K, H, W)) arrays (module docstring); runs in chunks of batch_size.
        ValueError for another dtype/shape; UserError when the model's output does not fit the task or classes."""
        rgb = parse_rgb(rgb)
        b, h, w, _ = rgb.shape
        if b == 0:
            keys = {"segm": ("segm", "conf"), "depth": ("depth",)}[self.task]
            out = {k: np.zeros((0, h, w), np.float32 if k == "depth" else np.uint8) for k in keys}
            if self.topk:
                out.update({k: np.zeros((0, self.topk, h, w), np.uint8) for k in ("topk_class", "topk_prob")})
            return out
        with torch.inference_mode():
            parts = [self._predict_batch(rgb[i:i + self.batch_size]) for i in range(0, b, self.batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _to_uint8(p: torch.Tensor) -> np.ndarray:
    """Probabilities (any shape, 0..1) -> uint8 round(p * 255) as a numpy array."""
    return (p * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def check_topk(topk, task: str) -> int:
    """`topk` as an int if 0 (off) or 2..255 for a segmentation teacher; UserError naming the value otherwise."""
    topk = int(topk)
    if topk and task != "segm":
        raise UserError(f"--topk applies to segmentation teachers, not {task}")
    if topk and not 2 <= topk <= IGNORE:
        raise UserError(f"--topk {topk}: give 0 (off) or 2..{IGNORE} classes")
    return topk


def _open_spec(spec: str, task: str, device, weights) -> tuple[object, dict]:
    """spec -> (model, metadata with at least name and version); dispatch on file type or module:function."""
    if hf.is_hf_spec(spec):
        return hf.open_hf(spec, task, device)
    path = Path(spec)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a teacher file")
    if path.is_file():
        kind = external.file_kind(path)
        meta = {"name": path.stem, "version": sha256_file(path)}
        if kind == "checkpoint":
            model, ckpt = external.load_teacher_checkpoint(path)
            tasks = ckpt.get("tasks") or [ckpt["task"]]
            if task not in tasks:
                raise UserError(f"{path}: is a {' and '.join(tasks)} teacher, asked for {task}")
            meta.update({k: ckpt[k] for k in ("norm", "classes")
                         if ckpt.get(k) is not None and (k != "classes" or task == "segm")})
            meta["name"] = ckpt.get("name") or meta["name"]
            return model, meta
        loaders = {"torchscript": lambda: external.load_torchscript(path, device),
                   "onnx": lambda: external.OnnxModel(path, device)}
        return loaders[kind](), meta
    if external.is_entry_point(spec):
        model = external.load_entry_point(spec, weights)
        version = sha256_file(weights) if weights else external.state_dict_hash(model)
        return model, {"name": spec.replace(":", "."), "version": version}
    raise UserError(f"{spec}: no such teacher file (and not a module:function entry point)")


def load_teacher(spec: str, task: str, remap=None, device="cpu", *, weights=None, name=None, norm=None,
                 classes=None, store_classes=None, flip=False, pad_to=None, batch_size=8, topk=0) -> Teacher:
    """Open a teacher: .pt/.pth (our checkpoint, weights_only), .ts/.torchscript or a TorchScript zip, .onnx,
    `module:function` (+ optional `weights` state dict), or `hf:NAME_OR_DIR` (teachers/hf.py; its classes
    are matched to `store_classes` by name, a remap file mapping the rest). `remap` is a Remap or a .json/.toml path;
    `norm`/`classes` override what the file records (external files record none: ImageNet by default);
    `topk` > 0: predict also returns each pixel's `topk` most probable classes (check_topk). On the CPU the
    module's plain 1x1 convolutions run through oneDNN at one thread too (student/onednn.py). UserError for
    a missing/unreadable file, a task mismatch, or teacher classes that differ from
    `store_classes` with no remap."""
    task = parse_task(task)
    if weights is not None and not external.is_entry_point(str(spec)):
        raise UserError(f"{spec}: a separate weights file only goes with a module:function entry point")
    model, meta = _open_spec(str(spec), task, device, weights)
    classes = classes if classes is not None else meta.get("classes")
    if "hf" in meta and task == "segm" and store_classes is not None and not isinstance(remap, Remap):
        remap = remap_by_name(classes, store_classes, remap, source=str(spec))
    elif isinstance(remap, (str, os.PathLike)):
        remap = load_remap(remap, teacher_classes=classes, store_classes=store_classes)
    elif remap is not None and store_classes is not None:
        remap.check_store_classes(store_classes)
    elif remap is None and None not in (store_classes, classes) and class_names(store_classes) != class_names(classes):
        raise UserError(f"{spec}: teacher classes {class_names(classes)} differ from the store's "
                        f"{class_names(store_classes)}; give a remap file")
    teacher = Teacher(model, task, name=name or meta["name"], version=meta["version"],
                      norm=norm if norm is not None else meta.get("norm"), classes=classes, remap=remap,
                      device=device, flip=flip, pad_to=pad_to, batch_size=batch_size, origin=meta.get("hf"),
                      topk=topk)
    teacher.spec = str(spec)
    if isinstance(teacher.model, nn.Module) and teacher.device.type == "cpu":   # same outputs, faster on one
        onednn_1x1(teacher.model)   # thread (an entry point's shared module: its 1x1 convolutions change class)
    return teacher


def check_plain(obj, where: str) -> None:
    """ValueError naming the path (`where`) of a value a weights_only load could not read back (dataclasses,
    numpy arrays, custom objects)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"{where}: key {k!r} must be a str or int")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))):
        raise ValueError(f"{where}: {type(obj).__name__} cannot go in a teacher checkpoint "
                         f"(tensors, numbers, strings and plain containers only)")


def save_teacher(path, model: nn.Module, arch_config, task: str, norm=None, classes=None, *,
                 name: str | None = None, extra: dict | None = None) -> str:
    """Write our own checkpoint {"format", "arch", "task", "model", "norm", "classes", "name", **extra}
    atomically; returns its version (sha256 of the file). `extra` must hold only tensors and plain
    containers/numbers/strings (ValueError otherwise, so load_teacher can read the file back); ValueError
    too when `arch_config` is not a `task` model."""
    task = parse_task(task)
    arch = arch_dict(arch_config)
    if arch_task(arch) != task:
        raise ValueError(f"architecture {arch['name']} is a {arch_task(arch)} model, not {task}")
    check_plain(extra or {}, "extra")
    path = Path(path)
    ckpt = {"format": external.CHECKPOINT_FORMAT, "arch": arch, "task": task,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "norm": parse_norm(norm), "classes": class_names(classes) if classes is not None else None,
            "name": name or path.stem, **(extra or {})}
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
    return sha256_file(path)
