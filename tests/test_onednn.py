"""1x1 convolutions through oneDNN at one thread (student/onednn.py), as load_teacher runs a CPU teacher's
module: same outputs, other kernels."""
import numpy as np
import pytest
import torch
from torch import nn

from student.onednn import OneDNNConv2d, onednn_1x1
from teachers.base import Teacher, load_teacher, save_teacher
from teachers.resnet38 import ResNet38, ResNet38Config

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU(),
                         nn.Conv2d(16, 4, 1, bias=False), nn.Conv2d(4, 4, 1, stride=2, groups=2)).eval()


def kernels(model, x) -> set[str]:
    with torch.inference_mode(), torch.profiler.profile() as prof:
        model(x)
    return {e.key for e in prof.key_averages()}


def test_one_thread_1x1_convs_run_onednn_with_the_same_outputs(one_thread):
    x = torch.randn(2, 3, 24, 20)
    plain, fast = net(), onednn_1x1(net())
    assert [type(m) for m in fast if isinstance(m, nn.Conv2d)] == [nn.Conv2d, OneDNNConv2d, OneDNNConv2d,
                                                                    OneDNNConv2d]
    assert "aten::_slow_conv2d_forward" in kernels(plain, x)        # PyTorch's own choice at one thread
    used = kernels(fast, x)
    assert "aten::_slow_conv2d_forward" not in used and "aten::mkldnn_convolution" in used
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
        x_cl = x.contiguous(memory_format=torch.channels_last)     # as Teacher._normalise hands frames over
        torch.testing.assert_close(fast(x_cl), plain(x), rtol=1e-5, atol=1e-5)
        assert fast(x[:0]).shape == (0, 4, 12, 10)                 # an empty batch: nn.Conv2d's own path
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_training_and_other_convs_keep_nn_conv2d():
    fast = onednn_1x1(nn.Sequential(nn.Conv2d(3, 4, 1, padding="same"), nn.Conv2d(4, 4, 1, padding_mode="reflect")))
    assert all(type(m) is nn.Conv2d for m in fast)                  # string padding, other padding modes
    fast, plain = onednn_1x1(net()).train(), net().train()
    x = torch.randn(2, 3, 8, 8)
    fast(x).sum().backward()                                        # autograd on: nn.Conv2d.forward
    plain(x).sum().backward()
    torch.testing.assert_close(fast[2].weight.grad, plain[2].weight.grad)


def test_load_teacher_swaps_the_1x1_convs_of_its_own_module_with_the_same_labels(tmp_path, one_thread):
    torch.manual_seed(0)
    cfg = ResNet38Config(num_classes=5, width=1 / 16, units=1)
    model = ResNet38(cfg).eval()
    save_teacher(tmp_path / "t.pt", model, cfg, "segm", classes=list("abcde"))
    loaded = load_teacher(tmp_path / "t.pt", "segm")
    assert any(isinstance(m, OneDNNConv2d) for m in loaded.model.modules())
    rgb = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    ref, got = Teacher(model, "segm", classes=list("abcde")).predict(rgb), loaded.predict(rgb)
    assert not any(isinstance(m, OneDNNConv2d) for m in model.modules())   # the caller's module is left as it was
    assert (ref["segm"] == got["segm"]).mean() > 0.99               # argmax ties may flip under float noise
    assert np.abs(ref["conf"].astype(int) - got["conf"].astype(int)).max() <= 1
    assert loaded.model.state_dict().keys() == model.state_dict().keys()
