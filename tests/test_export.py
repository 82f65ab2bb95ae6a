"""ONNX export: exact inference rewrites, ONNX Runtime vs PyTorch at two sizes, the export command."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pipeline.cli import cli
from pipeline.deploy.export import SeparableMaxPool2d, inference_copy, ort_session, run_onnx


@pytest.fixture(scope="module")
def student(student_export):
    return student_export.model


@pytest.fixture(scope="module")
def onnx_path(student_export):
    """The session's one export, made through the `export` command (conftest.student_export)."""
    assert f"wrote {student_export.fp32}" in student_export.export_output
    return student_export.fp32


def test_separable_max_pool_equals_square_pool():
    x = torch.randn(2, 3, 9, 7)
    assert torch.equal(SeparableMaxPool2d(5, 2)(x), nn.MaxPool2d(5, stride=1, padding=2)(x))


def test_inference_rewrites_do_not_change_outputs(student):
    fast = inference_copy(student)
    assert not any(isinstance(m, nn.MaxPool2d) for m in fast.modules())
    assert fast.heads["depth"][-1].conv.out_channels == 16
    x = torch.randn(2, 3, 65, 47)
    with torch.no_grad():
        a, b = student(x), fast(x)
    assert b["depth"].shape == a["depth"].shape == (2, 1, 17, 12)
    for task in a:
        assert torch.allclose(a[task], b[task], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 97, 130)])
def test_onnx_runtime_matches_pytorch(student, onnx_path, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = student(x)
    out = run_onnx(ort_session(onnx_path, threads=1), x)
    for task in ("segm", "depth"):
        assert out[task].shape == tuple(ref[task].shape)
        scale = ref[task].abs().max().item()
        assert np.abs(out[task] - ref[task].numpy()).max() <= 1e-4 * max(scale, 1.0)


def test_exported_graph_has_dynamic_batch_height_width(onnx_path):
    import onnx

    dims = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]
    assert dims[1].dim_value == 3


def test_export_command_names_a_missing_checkpoint(tmp_path):
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "none.pt"), "--onnx", str(tmp_path / "s.onnx")])
    assert res.exit_code == 2 and "none.pt" in res.output and "does not exist" in res.output
