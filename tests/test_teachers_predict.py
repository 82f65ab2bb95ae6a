"""Teacher.predict: dtypes and shapes at odd sizes, remap with summed probabilities, flip TTA, batching."""
import numpy as np
import pytest
import torch
from torch import nn

from stores.errors import UserError
from teachers.base import Teacher, parse_norm
from teachers.depth import ResNet38Depth, ResNet38DepthConfig
from teachers.remap import parse_remap
from teachers.resnet38 import ResNet38, ResNet38Config


def frames(b=2, h=70, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def tiny_segm(classes=5):
    torch.manual_seed(0)
    return ResNet38(ResNet38Config(num_classes=classes, width=1 / 16, units=1))


def tiny_depth():
    torch.manual_seed(0)
    return ResNet38Depth(ResNet38DepthConfig(width=1 / 16, units=1))


class ConstantLogits(nn.Module):
    """Same class logits at every pixel, at 1/8 resolution: known probabilities after softmax."""

    input_multiple = 8

    def __init__(self, probs):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(probs).clamp_min(1e-12).log())

    def forward(self, x):
        b, _, h, w = x.shape
        return {"segm": self.logits.view(1, -1, 1, 1).expand(b, -1, h // 8, w // 8)}


def test_segm_predict_dtypes_and_shapes_at_odd_size():
    t = Teacher(tiny_segm(), "segm", classes=list("abcde"))
    assert not t.model.training
    out = t.predict(frames(h=70, w=50))
    assert set(out) == {"segm", "conf"}
    assert out["segm"].dtype == np.uint8 and out["segm"].shape == (2, 70, 50)
    assert out["conf"].dtype == np.uint8 and out["conf"].shape == (2, 70, 50)
    assert out["segm"].max() < 5
    assert out["conf"].min() >= 255 // 5                 # max of 5 probabilities is >= 1/5


def test_depth_predict_dtypes_shapes_positive():
    out = Teacher(tiny_depth(), "depth").predict(frames(h=70, w=50))
    assert set(out) == {"depth"}
    assert out["depth"].dtype == np.float32 and out["depth"].shape == (2, 70, 50)
    assert (out["depth"] > 0).all() and np.isfinite(out["depth"]).all()


def test_predict_rejects_bad_input_and_handles_empty():
    t = Teacher(tiny_segm(), "segm")
    with pytest.raises(ValueError, match="uint8"):
        t.predict(frames().astype(np.float32))
    with pytest.raises(ValueError, match="B, H, W, 3"):
        t.predict(frames()[0])
    view = frames(b=1)[:, :, ::-1]                        # negative strides, read-only
    view.flags.writeable = False
    assert t.predict(view)["segm"].shape == (1, 70, 50)
    empty = t.predict(np.zeros((0, 20, 30, 3), np.uint8))
    assert empty["segm"].shape == empty["conf"].shape == (0, 20, 30)


def test_remap_in_predict_sums_probabilities_and_marks_unmapped():
    remap = parse_remap({"map": {"a": "X", "b": "Y", "c": "Y"}}, list("abcd"), ["X", "Y"])
    # a 0.40, b 0.35, c 0.25: teacher argmax a -> X, but Y holds 0.60
    t = Teacher(ConstantLogits([0.4, 0.35, 0.25, 0.0]), "segm", classes=list("abcd"), remap=remap)
    out = t.predict(frames(h=70, w=50))
    assert (out["segm"] == 1).all() and (out["conf"] == round(0.6 * 255)).all()
    # d (unmapped) 0.5 beats X 0.3 and Y 0.2: ignore, with no confidence
    t = Teacher(ConstantLogits([0.3, 0.1, 0.1, 0.5]), "segm", classes=list("abcd"), remap=remap)
    out = t.predict(frames(h=70, w=50))
    assert (out["segm"] == 255).all() and (out["conf"] == 0).all()
    with pytest.raises(UserError, match="covers 4 teacher classes"):
        Teacher(tiny_segm(), "segm", classes=list("abcde"), remap=remap)


def test_without_remap_conf_is_max_probability():
    t = Teacher(ConstantLogits([0.1, 0.6, 0.3]), "segm")
    out = t.predict(frames(b=1))
    assert (out["segm"] == 1).all() and (out["conf"] == round(0.6 * 255)).all()


def test_softmax_comes_after_upsampling():
    class TwoCells(nn.Module):
        input_multiple = 8

        def forward(self, x):                                 # (B, 2, 1, 2): class 0 wins left, class 1 right
            logits = torch.tensor([[4.0, -4.0], [0.0, 0.0]]).view(1, 2, 1, 2)
            return logits.expand(x.shape[0], -1, -1, -1)

    out = Teacher(TwoCells(), "segm").predict(frames(b=1, h=8, w=16))
    logits = nn.functional.interpolate(TwoCells()(torch.zeros(1, 3, 8, 16)), size=(8, 16), mode="bilinear")
    p = logits.softmax(1)
    assert np.array_equal(out["conf"][0], (p.max(1).values[0] * 255).round().to(torch.uint8).numpy())
    assert np.array_equal(out["segm"][0], p.argmax(1)[0].numpy().astype(np.uint8))
    assert out["segm"][0, 0, 0] == 0 and out["segm"][0, 0, -1] == 1


class Lopsided(nn.Module):
    """A depth net that is clearly not mirror-symmetric: random 5x5 conv, pooled to 1/8."""

    input_multiple = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 5, padding=2)

    def forward(self, x):
        return {"depth": nn.functional.softplus(nn.functional.avg_pool2d(self.conv(x), 8))}


def test_flip_tta_is_equivariant_and_averages():
    """With TTA, predict(mirror) == mirror(predict) for any model; without it a lopsided net is not."""
    x = frames(h=70, w=50)
    mirror = x[:, :, ::-1].copy()
    plain, tta = Teacher(Lopsided(), "depth"), Teacher(Lopsided(), "depth", flip=True)
    assert not np.allclose(plain.predict(mirror)["depth"], plain.predict(x)["depth"][:, :, ::-1], rtol=1e-2)
    a, b = tta.predict(x)["depth"], tta.predict(mirror)["depth"][:, :, ::-1]
    assert a.shape == (2, 70, 50) and np.allclose(a, b, rtol=1e-5, atol=1e-6)
    expected = (plain.predict(x)["depth"] + plain.predict(mirror)["depth"][:, :, ::-1]) / 2
    assert np.allclose(a, expected, rtol=1e-5, atol=1e-6)
    seg = Teacher(tiny_segm(), "segm", flip=True)
    s, m = seg.predict(x), seg.predict(mirror)
    assert s["segm"].shape == s["conf"].shape == (2, 70, 50)
    assert (s["segm"] == m["segm"][:, :, ::-1]).mean() > 0.99
    assert np.abs(s["conf"].astype(int) - m["conf"][:, :, ::-1].astype(int)).max() <= 1


def test_batch_size_chunks_give_same_result():
    x = frames(b=3, h=40, w=48)
    whole = Teacher(tiny_depth(), "depth", batch_size=8).predict(x)["depth"]
    chunked = Teacher(tiny_depth(), "depth", batch_size=2).predict(x)["depth"]
    assert np.allclose(whole, chunked, rtol=1e-5, atol=1e-6)


def test_normalisation_is_applied():
    """A model that returns its input's first channel as depth shows the normalised value."""

    class Echo(nn.Module):
        def forward(self, x):
            return {"depth": x[:, :1]}

    x = np.full((1, 8, 8, 3), 255, np.uint8)
    x[..., 0] = 51                                        # red = 0.2
    imagenet = Teacher(Echo(), "depth").predict(x)["depth"]
    assert np.allclose(imagenet, (0.2 - 0.485) / 0.229, atol=1e-5)
    caffe = Teacher(Echo(), "depth", norm={"mean": [100, 0, 0], "std": [1, 1, 1], "range": 255, "bgr": True})
    assert np.allclose(caffe.predict(x)["depth"], 255 - 100, atol=1e-4)   # first channel is blue after bgr
    with pytest.raises(UserError, match="unknown normalisation keys"):
        parse_norm({"scale": 1})


def test_model_output_checks():
    class TwoChannelDepth(nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 2, 8, 8)

    with pytest.raises(UserError, match="1 channel"):
        Teacher(TwoChannelDepth(), "depth").predict(frames(b=1))
    with pytest.raises(UserError, match="outputs 5 classes, expected 3"):
        Teacher(tiny_segm(), "segm", classes=["a", "b", "c"]).predict(frames(b=1))
