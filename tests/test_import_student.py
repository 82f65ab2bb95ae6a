"""`mtdistill import-weights`: the paper's released student checkpoints (written here in the authors'
key layout, PAPER.md) -> our student on the reference MobileNet-v2, checked against an independent
forward pass written from the paper's description in plain torch.nn.functional on the authors' tensors."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

from pipeline.checkpoint import build_model, read_student
from stores.errors import UserError
from student.model import build_student, count_parameters
from teachers.base import load_teacher

# MobileNet-v2 stages (t, c, n, s) of the authors' layer2 .. layer8
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
TAP = {3: 24, 4: 32, 5: 64, 6: 96, 7: 160, 8: 320}           # layerK -> its output channels


def paper_state(num_classes, normals=False, tracked=True, seed=0) -> dict:
    """Random weights under the authors' key names and shapes (PAPER.md, 'The authors' released checkpoints')."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(key, cout, cin, k, bias=False):
        sd[key + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2 / (cin * k * k))
        if bias:
            sd[key + ".bias"] = torch.randn(cout, generator=g) * 0.1

    def bn(key, c):
        sd.update({key + ".weight": 0.5 + torch.rand(c, generator=g), key + ".bias": torch.randn(c, generator=g) * 0.1,
                   key + ".running_mean": torch.randn(c, generator=g) * 0.1,
                   key + ".running_var": 0.5 + torch.rand(c, generator=g)})
        if tracked:
            sd[key + ".num_batches_tracked"] = torch.tensor(7)

    conv("layer1.0", 32, 3, 3)
    bn("layer1.1", 32)
    cin = 32
    for k, (t, c, n, _) in enumerate(STAGES, start=2):
        for j in range(n):
            hid, pre = cin * t, f"layer{k}.{j}.output"
            conv(f"{pre}.0.0", hid, cin, 1), bn(f"{pre}.0.1", hid)
            conv(f"{pre}.1.0", hid, 1, 3), bn(f"{pre}.1.1", hid)
            conv(f"{pre}.2.0", c, hid, 1), bn(f"{pre}.2.1", c)
            cin = c
    for k, c in TAP.items():
        conv(f"conv{k}", 256, c, 1)
    for k in (1, 2, 3, 4):
        for i in (1, 2, 3, 4):
            conv(f"crp{k}.0.{i}_outvar_dimred", 256, 1 if k == 1 else 256, 1)
    for k in (2, 3, 4):
        conv(f"conv_adapt{k}", 256, 256, 1)
    for head, c in (("segm", num_classes), ("depth", 1)) + ((("normal", 3),) if normals else ()):
        conv(f"pre_{head}", 256, 1, 1)
        conv(head, c, 256, 3, bias=True)
    return sd


def paper_forward(sd, x):
    """The authors' Net from the paper's description: MobileNet-v2 taps l3..l8, the LW-RefineNet decoder."""
    relu6 = lambda t: F.hardtanh(t, 0, 6)

    def bn(t, key):
        return F.batch_norm(t, sd[key + ".running_mean"], sd[key + ".running_var"], sd[key + ".weight"],
                            sd[key + ".bias"], False, 0.0, 1e-5)

    def conv(t, key, groups=1, stride=1, padding=0):
        return F.conv2d(t, sd[key + ".weight"], sd.get(key + ".bias"), stride, padding, 1, groups)

    x = relu6(bn(conv(x, "layer1.0", stride=2, padding=1), "layer1.1"))
    taps = {}
    for k, (_, _, n, s) in enumerate(STAGES, start=2):
        for j in range(n):
            pre = f"layer{k}.{j}.output"
            y = relu6(bn(conv(x, f"{pre}.0.0"), f"{pre}.0.1"))
            y = relu6(bn(conv(y, f"{pre}.1.0", groups=y.shape[1], stride=s if j == 0 else 1, padding=1), f"{pre}.1.1"))
            y = bn(conv(y, f"{pre}.2.0"), f"{pre}.2.1")
            x = y + x if y.shape == x.shape else y                 # residual when in == out and stride 1
        taps[k] = x

    def crp(t, name, groups=1):
        top = t
        for i in (1, 2, 3, 4):
            top = conv(F.max_pool2d(top, 5, 1, 2), f"{name}.0.{i}_outvar_dimred", groups=groups)
            t = t + top
        return t

    def up(t, ref):
        return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    l3, l4, l5, l6, l7, l8 = (taps[k] for k in range(3, 9))
    x = relu6(conv(l8, "conv8") + conv(l7, "conv7"))
    x = up(conv(crp(x, "crp4"), "conv_adapt4"), l6)
    x = relu6(conv(l5, "conv5") + conv(l6, "conv6") + x)
    x = up(conv(crp(x, "crp3"), "conv_adapt3"), l4)
    x = relu6(x + conv(l4, "conv4"))
    x = up(conv(crp(x, "crp2"), "conv_adapt2"), l3)
    x = crp(relu6(conv(l3, "conv3") + x), "crp1", groups=256)
    return {h: conv(relu6(conv(x, f"pre_{h}", groups=256)), h, padding=1) for h in ("segm", "depth")}


def test_reference_encoder_has_the_papers_parameter_counts():
    for classes, want in ((40, 3_070_057), (6, 2_991_687)):
        layout = sum(v.numel() for k, v in paper_state(classes).items() if "running" not in k and "num_batches" not in k)
        assert layout == want == count_parameters(build_student(classes, encoder="reference"))
    assert count_parameters(build_student(40)) == 3_068_969            # timm's: no expansion in the first block


def test_import_matches_the_independent_forward(tmp_path):
    sd = paper_state(6, tracked=False)                                   # old torch: no num_batches_tracked
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "kitti.ckpt")
    r = run_cli("import-weights", tmp_path / "kitti.ckpt", "--out", tmp_path / "s.pt")
    assert "6 classes (kitti6), 2,991,687 parameters" in r.output
    model, ckpt = read_student(tmp_path / "s.pt")
    assert ckpt["arch"] == {"name": "student", "num_classes": 6, "encoder": "reference"}
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), paper_forward(sd, x)
    for task in ("segm", "depth"):
        assert got[task].shape == want[task].shape == (2, 6 if task == "segm" else 1, 16, 24)
        torch.testing.assert_close(got[task], want[task], rtol=1e-4, atol=1e-4 * want[task].abs().max().item())
    teacher = load_teacher(tmp_path / "s.pt", "segm", store_classes=["sky", "building", "road", "sidewalk",
                                                                      "vegetation", "car"])
    assert teacher.predict(torch.zeros(1, 48, 64, 3, dtype=torch.uint8).numpy())["segm"].shape == (1, 48, 64)


def test_three_task_file_drops_the_normals_head(tmp_path):
    torch.save({"state_dict": paper_state(40, normals=True)}, tmp_path / "nyud3.ckpt")
    r = run_cli("import-weights", tmp_path / "nyud3.ckpt", "--out", tmp_path / "s.pt", "--json")
    out = json.loads(r.output)
    assert (out["num_classes"], out["classes"], out["parameters"]) == (40, "nyud40", 3_070_057)
    assert out["dropped"] == ["normal.bias", "normal.weight", "pre_normal.weight"]
    assert torch.load(tmp_path / "s.pt", weights_only=True)["source"]["dropped"] == out["dropped"]


def test_bad_files_are_refused_naming_the_problem(tmp_path):
    out = tmp_path / "s.pt"
    cases = []
    sd = paper_state(6)
    sd["conv8.weight"] = torch.zeros(256, 300, 1, 1)
    cases.append(({"state_dict": sd}, r"wrong tensor shapes: conv8.weight \(256, 300, 1, 1\) \(expected \(256, 320, 1, 1\)\)"))
    sd = paper_state(6)
    del sd["layer4.1.output.1.0.weight"]
    cases.append(({"state_dict": sd}, r"missing encoder.blocks.2.1.conv_dw.weight"))
    cases.append(({"state_dict": {**paper_state(6), "aux.weight": torch.zeros(1)}}, r"keys aux.weight do not fit"))
    cases.append((build_student(6).state_dict(), r"not the paper.s student \(keys decoder"))
    cases.append(({"state_dict": paper_state(6), "hook": os.system}, r"refused to load.*posix.system"))
    for i, (obj, message) in enumerate(cases):
        torch.save(obj, tmp_path / f"bad{i}.ckpt")
        r = run_cli("import-weights", tmp_path / f"bad{i}.ckpt", "--out", out, ok=False)
        assert r.output.startswith("error: ") and f"bad{i}.ckpt" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
        assert __import__("re").search(message, r.output), r.output
        assert not out.exists()


def test_init_starts_the_whole_student_from_the_import(tmp_path, store):
    torch.save({"state_dict": paper_state(6)}, tmp_path / "k.ckpt")
    run_cli("import-weights", tmp_path / "k.ckpt", "--out", tmp_path / "s.pt")
    imported = read_student(tmp_path / "s.pt")[0].state_dict()
    arch = {"name": "student", "num_classes": 6, "encoder": "reference"}
    same = build_model(arch, encoder_weights=str(tmp_path / "s.pt")).state_dict()
    assert all(torch.equal(same[k], v) for k, v in imported.items())
    other = build_model({**arch, "num_classes": 5}, encoder_weights=str(tmp_path / "s.pt")).state_dict()
    assert other["heads.segm.2.weight"].shape[0] == 5                      # a fresh last conv for 5 classes
    assert all(torch.equal(other[k], v) for k, v in imported.items() if not k.startswith("heads.segm.2."))
    torch.save({"arch": {"name": "student", "num_classes": 6}, "model": build_student(6).state_dict()}, tmp_path / "t.pt")
    with pytest.raises(UserError, match="--init takes a student checkpoint on the reference encoder"):
        build_model(arch, encoder_weights=str(tmp_path / "t.pt"))
    run_cli("train", store.path, "--init", tmp_path / "s.pt", "--run", "p", "--out", tmp_path / "runs", "--steps", "1",
            "--batch-size", "2", "--workers", "0", "--val-split", "")
    _, ckpt = read_student(tmp_path / "runs" / "p" / "last.pt")
    assert ckpt["arch"] == {"name": "student", "num_classes": 5, "encoder": "reference"}
    r = run_cli("train", store.path, "--init", tmp_path / "s.pt", "--pretrained", "--out", tmp_path / "runs", ok=False)
    assert "not with --encoder-weights or --pretrained" in r.output
