"""`mtdistill export --int8 --calibrate STORE` on a tiny synthetic store (calibration frames, agreement
with fp32, a runnable int8 graph at another size), its argument checks, and the student commands' help."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from student.model import normalize
from pipeline.deploy.export import ort_session, run_onnx
from pipeline.deploy.quantize import store_calibration
from stores.classes import NYUD40
from stores.repo import FrameStore
from student.model import build_student
from conftest import run_cli as run


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """10 synthetic indoor frames (NYUD-40 classes) at 64x64: 7 train, the rest val/test/unlabeled."""
    path = tmp_path_factory.mktemp("store") / "tiny.ice"
    run("ingest", "synthetic", path, "--frames", 10, "--size", "64x64", "--workers", 1)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    torch.save({"model": build_student(40).state_dict(), "arch": {"name": "student", "num_classes": 40},
                "classes": NYUD40, "tasks": ["segm", "depth"], "config": {}}, path)
    return path


def test_calibration_frames_come_from_the_store(tiny_store):
    store = FrameStore.open(tiny_store)
    train = store.indices("train")
    calib, held = store_calibration(tiny_store, 3)
    rgb = store.root["frames/rgb"]
    chosen = [train[0], train[len(train) // 2], train[-1]]  # evenly spread, ends included
    assert len(calib) == 3 and all(x.shape == (1, 3, 64, 64) and x.dtype == np.float32 for x in calib)
    for x, i in zip(calib, chosen):
        ref = normalize(torch.from_numpy(rgb[int(i)].transpose(2, 0, 1).copy())[None]).numpy()
        np.testing.assert_array_equal(x, ref)
    assert len(held) == 3 and not any(np.array_equal(h, c) for h in held for c in calib)  # other frames


def test_export_int8_calibrated_on_store_frames(ckpt, tiny_store, tmp_path):
    out = tmp_path / "m" / "student.int8.onnx"
    res = json.loads(run("export", ckpt, "--onnx", out, "--int8", "--calibrate", tiny_store,
                         "--calibrate-frames", 4, "--threads", 1, "--json").stdout)
    assert res["int8"] == str(out) and out.is_file()
    for what in ("calibration", "held_out"):
        a = res[what]
        assert a["frames"] == 4
        assert 0.8 < a["segm_agreement"] <= 1.0  # random weights: near-ties in the logits flip some pixels
        assert 0 < a["depth_mean_diff"] < 0.25 * a["depth_mean"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    y = run_onnx(ort_session(out, threads=1), np.zeros((1, 3, 96, 128), np.float32))  # dynamic H/W kept
    assert y["segm"].shape == (1, 40, 24, 32) and y["depth"].shape == (1, 1, 24, 32)


@pytest.mark.parametrize("case", ["int8_alone", "calibrate_alone", "other_classes", "small_frames", "no_store"])
def test_export_argument_errors(case, ckpt, tiny_store, tmp_path):
    out = tmp_path / "s.onnx"
    args = [ckpt, "--onnx", out, "--int8", "--calibrate", tiny_store]
    if case == "int8_alone":
        args, expect = [ckpt, "--onnx", out, "--int8"], "--int8 needs --calibrate"
    elif case == "calibrate_alone":
        args, expect = [ckpt, "--onnx", out, "--calibrate", tiny_store], "--calibrate is only used with --int8"
    elif case == "other_classes":
        six = tmp_path / "six.pt"
        torch.save({"model": build_student(6).state_dict(), "arch": {"name": "student", "num_classes": 6}}, six)
        args[0], expect = six, "store has 40 classes"
    elif case == "small_frames":
        small = tmp_path / "small.ice"
        run("ingest", "synthetic", small, "--frames", 2, "--size", "48x40", "--workers", 1)
        args[-1], expect = small, "frames are 48x40; calibration needs at least 64x64"
    else:
        args[-1], expect = tmp_path / "none.ice", "none.ice"
    r = run("export", *args, ok=False)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "export", "bench"])
def test_student_commands_have_help_with_an_example(command):
    r = run(command, "--help")
    assert "Example" in r.output and f"mtdistill {command} " in r.output
