"""Teacher files: our own checkpoints, TorchScript, ONNX, and `module:function` entry points.

Sits under base.load_teacher (which picks one of these by file type) and above the networks. Security:
our own .pt/.pth checkpoints load ONLY through stores.files.read_weights (weights_only), so a teacher file can
never run code on load; anything else in the pickle is refused with a UserError. TorchScript archives
(torch.jit.load) and ONNX graphs (ONNX Runtime) carry no pickled Python objects. An entry point runs
the user's own code by design: it is a Python import the user names explicitly, run in the client and
in every labeling worker (only code you trust); an exception from it becomes one UserError line.
"""
from __future__ import annotations

import hashlib
import importlib
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stores.errors import UserError
from stores.files import read_weights
from teachers.archs import arch_task, build_model

ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
CHECKPOINT_FORMAT = "mtdistill.teacher"
# file suffix -> loader kind; .pt/.pth may also hold a TorchScript archive (see file_kind)
SUFFIX_KINDS = {".pt": "checkpoint", ".pth": "checkpoint", ".ts": "torchscript",
                ".torchscript": "torchscript", ".onnx": "onnx"}


def state_dict_hash(state) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, names sorted: a version for in-memory weights."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def is_torchscript_zip(path: Path) -> bool:
    """torch.jit.save archives hold <root>/code/... and constants.pkl; torch.save zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def file_kind(path: Path) -> str:
    """"checkpoint" | "torchscript" | "onnx" for an existing file; UserError naming the file otherwise."""
    kind = SUFFIX_KINDS.get(path.suffix.lower())
    if kind == "checkpoint" and is_torchscript_zip(path):
        return "torchscript"
    if kind is None and is_torchscript_zip(path):
        return "torchscript"
    if kind is None:
        raise UserError(f"{path}: unknown teacher file type {path.suffix!r}; expected one of "
                        f"{sorted(SUFFIX_KINDS)}, a TorchScript archive, or module:function")
    return kind


def first_line(e: Exception) -> str:
    """First line of an exception's message (its repr when the message is empty), for one-line UserErrors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else repr(e)


def load_teacher_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """Our own checkpoint -> (module, metadata with "task" or "tasks"): a teacher file {"arch", "model", "task",
    "norm", "classes", "name", ...} (teachers.base.save_teacher), or a student training checkpoint {"arch":
    {"name": "student", "num_classes"}, "model", "classes", "tasks", ...} (`mtdistill train`'s last.pt), so a
    distilled student can label a second round. UserError naming the file otherwise."""
    ckpt = read_weights(path, "teacher file")
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not a teacher checkpoint (needs 'arch' and 'model'; "
                        f"save one with teachers.base.save_teacher)")
    if isinstance(ckpt["arch"], dict) and ckpt["arch"].get("name") == "student":
        return _student_teacher(path, ckpt)
    model = build_model(ckpt["arch"], source=str(path))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit architecture {ckpt['arch'].get('name')!r}: "
                        f"{first_line(e)}") from None
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    meta.setdefault("task", arch_task(ckpt["arch"]))
    return model, meta


def _student_teacher(path: Path, ckpt: dict) -> tuple[nn.Module, dict]:
    """The MT-LW-RefineNet of a training checkpoint as a teacher of both its tasks."""
    from student.model import build_student

    try:
        model = build_student(int(ckpt["arch"]["num_classes"]), encoder=ckpt["arch"].get("encoder", "timm"))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: weights do not fit the student: {first_line(e)}") from None
    classes = ckpt.get("classes")
    meta = {"tasks": list(ckpt.get("tasks", ("segm", "depth"))), "name": Path(path).parent.name or Path(path).stem,
            "classes": [c["name"] if isinstance(c, dict) else c for c in classes] if classes else None}
    return model, meta


def load_torchscript(path: Path, device="cpu") -> nn.Module:
    """A TorchScript module (torch.jit.load onto `device`); UserError naming the file when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)       # torch marks jit.load deprecated; it still works
            return torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as e:
        raise UserError(f"{path}: unreadable TorchScript file ({first_line(e)})") from None


class OnnxModel:
    """An ONNX Runtime session behind a torch-in / {output name: tensor}-out call (CUDA provider when asked
    for and available, else CPU). Expects one float32 NCHW input. UserError when the file cannot be read
    or the graph has more than one input."""

    def __init__(self, path: Path, device="cpu"):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types
            raise UserError(f"{path}: unreadable ONNX file ({first_line(e)})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise UserError(f"{path}: ONNX teacher must take one image input, has {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = path

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feed = {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()}
        outs = self.session.run(self.output_names, feed)
        return {n: torch.from_numpy(np.asarray(o)).to(x.device) for n, o in zip(self.output_names, outs)}


def is_entry_point(spec: str) -> bool:
    """True when `spec` looks like `package.module:function` (checks the form only, imports nothing)."""
    return bool(ENTRY_POINT.match(spec))


def load_entry_point(spec: str, weights=None) -> nn.Module:
    """`package.module:function` -> function() -> nn.Module; optional weights file (state dict, or a dict
    with "model"/"state_dict") loaded weights_only and strictly. UserError when the import fails, the
    function returns no Module, or the weights do not fit."""
    module_name, func_name = spec.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as e:
        raise UserError(f"{spec}: cannot import module {module_name!r} ({e})") from None
    except AttributeError:
        raise UserError(f"{spec}: module {module_name!r} has no attribute {func_name!r}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise UserError(f"{spec}: importing {module_name!r} raised {type(e).__name__}: {first_line(e)}") from None
    if not callable(func):
        raise UserError(f"{spec}: {func_name!r} is not a function")
    try:
        model = func()
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is reported in one line
        raise UserError(f"{spec}: the teacher function raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec}: must return a torch.nn.Module, returned {type(model).__name__}")
    if weights is not None:
        state = read_weights(Path(weights), "weights file")
        if isinstance(state, dict) and ("model" in state or "state_dict" in state):
            state = state.get("model", state.get("state_dict"))
        if not isinstance(state, dict):
            raise UserError(f"{weights}: expected a state dict for {spec}")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"{weights}: weights do not fit {spec}: {first_line(e)}") from None
    return model
