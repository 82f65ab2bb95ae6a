"""Teacher networks: ResNet-38 layout, stride and size; depth experts' positive output."""
import dataclasses

import pytest
import torch

from teachers.archs import arch_dict, build_model, config_from_dict
from teachers.depth import LWRefineNetDepth, LWRefineNetDepthConfig, ResNet38Depth, ResNet38DepthConfig
from teachers.resnet38 import ResNet38, ResNet38Config, param_count, trunk_param_count
from stores.errors import UserError

TINY = ResNet38Config(num_classes=5, width=1 / 16, units=1)
FULL_PARAMS_19 = 124_033_363        # ResNet-38 A1 + 19-class head (PAPER.md: ~124 M)
FULL_TRUNK_PARAMS = 105_070_912     # without the head (PAPER.md: ~105 M)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def full_meta():
    """The published model built once on the meta device: shapes only, no memory for weights."""
    with torch.device("meta"):
        return ResNet38(ResNet38Config(num_classes=19))


def test_full_param_count_pinned(full_meta):
    assert all(p.is_meta for p in full_meta.parameters())
    assert n_params(full_meta) == FULL_PARAMS_19
    assert param_count(ResNet38Config(num_classes=19)) == FULL_PARAMS_19   # analytic, no model at all
    assert abs(FULL_PARAMS_19 - 124e6) / 124e6 < 0.02
    assert n_params(full_meta.trunk) == trunk_param_count() == FULL_TRUNK_PARAMS


def test_full_layout_matches_paper(full_meta):
    t = full_meta.trunk
    assert t.conv1a.weight.shape == (64, 3, 3, 3) and t.conv1a.stride == (1, 1)
    assert [len(b) for b in (t.b2, t.b3, t.b4, t.b5)] == [3, 3, 6, 3]
    assert t.b2[0].conv1.stride == (2, 2) and t.b3[0].conv1.stride == (2, 2) and t.b4[0].conv1.stride == (2, 2)
    assert t.b2[0].conv2.weight.shape == (128, 128, 3, 3)
    assert t.b4[5].conv2.weight.shape == (512, 512, 3, 3) and t.b4[5].shortcut is None
    assert t.b5[0].conv1.weight.shape == (512, 512, 3, 3) and t.b5[0].conv2.weight.shape == (1024, 512, 3, 3)
    assert t.b5[0].shortcut.weight.shape == (1024, 512, 1, 1)
    assert all(u.conv2.dilation == (2, 2) and u.conv1.stride == (1, 1) for u in t.b5)
    assert [c.weight.shape[:2] for c in (t.b6.conv1, t.b6.conv2, t.b6.conv3)] == [(512, 1024), (1024, 512), (2048, 1024)]
    assert [c.weight.shape[:2] for c in (t.b7.conv1, t.b7.conv2, t.b7.conv3)] == [(1024, 2048), (2048, 1024), (4096, 2048)]
    assert t.b6.conv2.dilation == (4, 4) and t.b7.conv2.dilation == (4, 4)
    assert t.b6.drop.p == 0.3 and t.b7.drop.p == 0.5
    assert t.bn7.num_features == 4096
    h = full_meta.head
    assert h.conv1.weight.shape == (512, 4096, 3, 3) and h.conv1.dilation == (12, 12)
    assert h.conv2.weight.shape == (19, 512, 3, 3) and h.conv2.dilation == (12, 12)


@pytest.mark.parametrize("config", [TINY, ResNet38Config(num_classes=6, width=0.125, units=(1, 2, 1, 2))])
def test_analytic_count_matches_built_model(config):
    assert n_params(ResNet38(config)) == param_count(config)


@pytest.mark.parametrize("size", [(64, 64), (70, 50), (33, 97)])
def test_output_stride_8(size):
    torch.manual_seed(0)
    m = ResNet38(TINY).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, *size))
    assert set(out) == {"segm"}
    h, w = size
    assert out["segm"].shape == (2, 5, -(-h // 8), -(-w // 8))


def test_dilation_keeps_one_eighth_and_widens_context():
    """B5..B7 add no stride, and their dilations (2, 4, 4) spread a top-left change across the 1/8 map:
    from <= 5 cells after B4 to >= 12 after B7 (undilated, one unit each would add only ~4)."""
    torch.manual_seed(0)
    t = ResNet38(TINY).eval().trunk
    x = torch.randn(1, 3, 128, 128)
    x2 = x.clone()
    x2[..., :8, :8] += 5.0
    with torch.no_grad():
        f4, g4 = (t.b4(t.b3(t.b2(t.conv1a(v)))) for v in (x, x2))
        f7, g7 = t.b7(t.b6(t.b5(f4))), t.b7(t.b6(t.b5(g4)))
    assert f4.shape[-2:] == f7.shape[-2:] == (16, 16)

    def reach(a, b):                                             # furthest touched row/col index
        return int(((a - b).abs().sum(1)[0] > 0).nonzero().max())

    assert reach(f4, g4) <= 5
    assert reach(f7, g7) >= 12


def test_width_and_units_validation():
    with pytest.raises(ValueError, match="units"):
        ResNet38Config(units=(1, 2, 3))
    with pytest.raises(ValueError, match="num_classes"):
        ResNet38Config(num_classes=256)
    assert ResNet38Config(units=2).units == (2, 2, 2, 2)


def test_resnet38_depth_positive():
    torch.manual_seed(0)
    m = ResNet38Depth(ResNet38DepthConfig(width=1 / 16, units=1)).eval()
    with torch.no_grad():
        m.head.conv2.bias.fill_(-50.0)            # push the raw output far negative
        d = m(torch.randn(2, 3, 64, 64))["depth"]
    assert d.shape == (2, 1, 8, 8)
    assert torch.isfinite(d).all() and (d > 0).all()


def test_lwrefinenet_depth_positive_quarter_resolution():
    torch.manual_seed(0)
    m = LWRefineNetDepth(LWRefineNetDepthConfig(encoder="resnet18", decoder_channels=16)).eval()
    with torch.no_grad():
        d = m(torch.randn(2, 3, 64, 64))["depth"]
        d_odd = m(torch.randn(1, 3, 70, 50))["depth"]
    assert d.shape == (2, 1, 16, 16) and (d > 0).all()
    assert d_odd.shape == (1, 1, 18, 13) and (d_odd > 0).all()


def test_arch_dict_round_trip_and_errors():
    arch = arch_dict(TINY)
    assert arch["name"] == "resnet38" and arch["units"] == [1, 1, 1, 1]
    assert config_from_dict(arch) == TINY
    cfg = LWRefineNetDepthConfig(encoder="resnet18", pretrained=True, decoder_channels=8)
    m = build_model(arch_dict(cfg))              # offline: pretrained must not be fetched on rebuild
    assert m.config == dataclasses.replace(cfg, pretrained=False)
    with pytest.raises(UserError, match="unknown teacher architecture 'nope'"):
        config_from_dict({"name": "nope"})
    with pytest.raises(UserError, match="unknown fields \\['depth'\\]"):
        config_from_dict({"name": "resnet38", "depth": 3})
