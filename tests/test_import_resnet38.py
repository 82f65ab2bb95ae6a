"""`mtdistill teacher import resnet38` and `teacher train --init`: small ResNet-38 A1 files written here in
the authors' MXNet .params layout and in the PyTorch conversion's layout (names from the public
definitions, made here independently of the importer) load into teachers/resnet38.py unchanged."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch
from conftest import run_cli

from pipeline.checkpoint import build_model
from stores.errors import UserError
from teachers.base import load_teacher
from teachers.mxnet import read_params, write_params
from teachers.resnet38 import ResNet38, ResNet38Config

CONFIG = ResNet38Config(num_classes=5, width=0.125, units=(2, 1, 2, 1), dropout=False)
LAYER = {"bn1": "bn_branch2a", "conv1": "conv_branch2a", "bn2": "bn_branch2b1", "conv2": "conv_branch2b1",
         "bn3": "bn_branch2b2", "conv3": "conv_branch2b2", "shortcut": "conv_branch1"}
BN_MX = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = ResNet38(CONFIG).eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias")):
                t.normal_(0, 0.1)
    return model


def pytorch_layout(model, head=True) -> dict:
    """Our tensors under the PyTorch conversion's names (conv1a, b2, b2_1, ..., b7, bn7)."""
    out = {}
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked") or (name.startswith("head.") and not head):
            continue
        parts = name.split(".")
        if parts[0] == "head":
            out[name] = t
        elif parts[1] in ("conv1a", "bn7"):
            out[".".join(parts[1:])] = t
        elif parts[1] in ("b6", "b7"):
            out[f"{parts[1]}.{LAYER[parts[2]]}.{parts[3]}"] = t
        else:
            unit = parts[1] if parts[2] == "0" else f"{parts[1]}_{parts[2]}"
            out[f"{unit}.{LAYER[parts[3]]}.{parts[4]}"] = t
    return out


def mxnet_layout(model, head=True) -> dict:
    """The same tensors under the authors' MXNet names (res2a_branch2a_weight, bn2b1_branch2a_gamma, ...),
    with arg:/aux: prefixes; without head: the ImageNet fc linear1000 instead."""
    out = {}
    for name, t in pytorch_layout(model, head).items():
        a = t.numpy()
        if name.startswith("head."):
            out[f"arg:{'conv6a' if name.startswith('head.conv1') else 'linear5'}_{name.rsplit('.', 1)[1]}"] = a
            continue
        layer, field = name.rsplit(".", 1)
        if layer == "conv1a":
            out["arg:conv1a_weight"] = a
            continue
        if layer == "bn7":
            unit, branch, kind = "7", None, "bn"
        else:
            unit_name, branch = layer.split(".")
            stage, _, k = unit_name[1:].partition("_")
            unit, kind = stage + (f"b{k}" if k else "a"), branch.split("_")[0]
            branch = branch.split("_", 1)[1]
        base = f"{kind if kind == 'bn' else 'res'}{unit}" + (f"_{branch}" if branch else "")
        if kind == "bn":
            out[f"{'aux' if field.startswith('running') else 'arg'}:{base}_{BN_MX[field]}"] = a
        else:
            out[f"arg:{base}_weight"] = a
    if not head:
        out["arg:linear1000_weight"] = np.zeros((1000, 64), np.float32)
        out["arg:linear1000_bias"] = np.zeros(1000, np.float32)
    return out


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)["segm"]


def test_mxnet_reader_reads_every_array_version(tmp_path):
    arrays = {"arg:a_weight": np.arange(6, dtype=np.float32).reshape(2, 3), "aux:b_moving_var": np.ones(4, np.float16)}
    write_params(tmp_path / "v2.params", arrays)
    got = read_params(tmp_path / "v2.params")
    assert list(got) == ["a_weight", "b_moving_var"]
    np.testing.assert_array_equal(got["a_weight"], arrays["arg:a_weight"])
    assert got["b_moving_var"].dtype == np.float16
    data = np.array([1.5, -2.0], np.float32).tobytes()
    v1 = struct.pack("<I I 1q iii", 0xF993FAC8, 1, 2, 1, 0, 0) + data          # V1: int64 dims, no storage type
    legacy = struct.pack("<I 1I iii", 1, 2, 1, 0, 0) + data                      # legacy: no magic, uint32 dims
    for body in (v1, legacy):
        name = b"arg:x"
        (tmp_path / "f.params").write_bytes(struct.pack("<QQQ", 0x112, 0, 1) + body
                                            + struct.pack("<QQ", 1, len(name)) + name)
        np.testing.assert_array_equal(read_params(tmp_path / "f.params")["x"], [1.5, -2.0])
    (tmp_path / "cut.params").write_bytes((tmp_path / "v2.params").read_bytes()[:40])
    with pytest.raises(UserError, match="cut.params: not an MXNet .params file \\(truncated"):
        read_params(tmp_path / "cut.params")


@pytest.mark.parametrize("layout", ["mxnet", "pytorch"])
def test_import_gives_the_same_network(tiny, tmp_path, layout):
    src = tmp_path / ("cs.params" if layout == "mxnet" else "cs.pth")
    if layout == "mxnet":
        write_params(src, mxnet_layout(tiny))
    else:
        torch.save(pytorch_layout(tiny), src)
    out = json.loads(run_cli("teacher", "import", "resnet38", src, "--out", tmp_path / "t.pt", "--json").output)
    assert (out["layout"], out["head"], out["num_classes"], out["units"], out["width"]) == (layout, "file", 5, [2, 1, 2, 1], 0.125)
    teacher = load_teacher(tmp_path / "t.pt", "segm")
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(teacher.model, x), logits(tiny, x))


def test_imagenet_weights_need_classes_and_give_a_new_head(tiny, tmp_path):
    write_params(tmp_path / "in.params", mxnet_layout(tiny, head=False))
    r = run_cli("teacher", "import", "resnet38", tmp_path / "in.params", "--out", tmp_path / "t.pt", ok=False)
    assert "holds no segmentation head (ImageNet weights); give the number of classes" in r.output
    r = run_cli("teacher", "import", "resnet38", tmp_path / "in.params", "--out", tmp_path / "t.pt", "--num-classes", "3")
    assert "a new, untrained head of 3 classes; dropped linear1000_bias, linear1000_weight" in r.output
    teacher = load_teacher(tmp_path / "t.pt", "segm")
    own = teacher.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tiny.state_dict().items() if k.startswith("trunk."))
    # teacher train --init: the trunk of either file starts a resnet38 of the same width and units
    arch = {"name": "resnet38", "num_classes": 7, "width": 0.125, "units": [2, 1, 2, 1], "dropout": False}
    for init in (tmp_path / "in.params", tmp_path / "t.pt"):
        model = build_model(arch, encoder_weights=str(init))
        assert torch.equal(model.state_dict()["trunk.b4.1.conv2.weight"], tiny.state_dict()["trunk.b4.1.conv2.weight"])
    with pytest.raises(UserError, match="its ResNet-38 trunk does not fit this teacher .*check --width and --units"):
        build_model({**arch, "units": [1, 1, 1, 1]}, encoder_weights=str(tmp_path / "in.params"))


def test_files_that_do_not_fit_are_refused(tiny, tmp_path):
    out = tmp_path / "t.pt"
    bad = {}
    state = mxnet_layout(tiny)
    state["arg:res4b1_branch2b1_weight"] = np.zeros((64, 64, 1, 1), np.float32)
    bad["shape.params"] = (state, r"trunk.b4.1.conv2.weight \(64, 64, 1, 1\) \(expected \(64, 64, 3, 3\)\)")
    bad["unknown.params"] = ({**mxnet_layout(tiny), "arg:fc8_weight": np.zeros(3, np.float32)}, "unknown names fc8_weight")
    state = pytorch_layout(tiny)
    del state["b3.conv_branch1.weight"]
    bad["missing.pth"] = (state, "missing trunk.b3.0.shortcut.weight")
    bad["code.pth"] = ({**pytorch_layout(tiny), "x": os.system}, "refused to load.*posix.system")
    bad["junk.params"] = (b"\x12\x01\0\0\0\0\0\0" + b"\xff" * 20, "not an MXNet .params file")
    for name, (content, message) in bad.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif name.endswith(".params"):
            write_params(path, content)
        else:
            torch.save(content, path)
        r = run_cli("teacher", "import", "resnet38", path, "--out", out, ok=False)
        assert r.output.startswith(f"error: {path}") and len(r.output.strip().splitlines()) == 1, r.output
        assert __import__("re").search(message, r.output), r.output
        assert not out.exists()
