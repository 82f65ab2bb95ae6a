"""Student network: parameter pins, tap and output shapes, CRP semantics, encoder weight loading."""
import pytest
import timm
import torch
from torch import nn

from pipeline.checkpoint import build_model
from stores.errors import UserError
from student.encoder import MobileNetV2Encoder, WeightsError
from student.model import build_student, count_parameters
from student.refinenet import CRP


@pytest.mark.parametrize("num_classes, expected", [(40, 3_068_969), (6, 2_990_599)])
def test_parameter_count_matches_paper_with_timm_encoder(num_classes, expected):
    assert count_parameters(build_student(num_classes)) == expected


def test_encoder_returns_seven_taps_at_paper_strides():
    torch.manual_seed(0)
    enc = MobileNetV2Encoder().eval()
    with torch.no_grad():
        taps = enc(torch.randn(2, 3, 64, 64))
    assert [t.shape[1] for t in taps] == list(enc.out_channels) == [16, 24, 32, 64, 96, 160, 320]
    assert [t.shape[-1] for t in taps] == [64 // r for r in (2, 4, 8, 16, 16, 32, 32)]


def test_decoder_and_heads_have_no_batchnorm_and_bias_free_decoder_convs():
    model = build_student(6)
    for part in (model.decoder, model.heads):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in part.modules())
    assert all(m.bias is None for m in model.decoder.modules() if isinstance(m, nn.Conv2d))
    assert count_parameters(model.decoder.crp[3]) == 4 * 256  # depthwise last CRP


@pytest.mark.parametrize("hw, out_hw", [((64, 64), (16, 16)), ((65, 47), (17, 12))])
def test_outputs_are_dicts_at_quarter_resolution(hw, out_hw):
    torch.manual_seed(0)
    model = build_student(40).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert set(out) == {"segm", "depth"}
    assert out["segm"].shape == (2, 40, *out_hw)
    assert out["depth"].shape == (2, 1, *out_hw)
    assert torch.isfinite(out["segm"]).all() and torch.isfinite(out["depth"]).all()


def test_full_size_odd_frame_runs():
    torch.manual_seed(0)
    model = build_student(6).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 468, 625))
    assert out["segm"].shape == (1, 6, 117, 157)
    assert out["depth"].shape == (1, 1, 117, 157)


def test_crp_chains_pooling_through_the_top_path():
    crp = CRP(1, stages=4)
    for conv in crp.convs:
        nn.init.constant_(conv.weight, 0.5)
    with torch.no_grad():
        # constant input: each stage halves the top path, chained: 1 + .5 + .25 + .125 + .0625
        const = crp(torch.full((1, 1, 6, 6), 2.0))
        assert torch.allclose(const, torch.full_like(const, 2.0 * 1.9375))
        for conv in crp.convs:
            nn.init.constant_(conv.weight, 1.0)
        # a spike spreads by a 5x5 window per stage: the centre collects 1 + 4, a pixel 4 away
        # (Chebyshev) only stages 2..4, one 8 away only stage 4, one 2 away all four
        x = torch.zeros(1, 1, 17, 17)
        x[0, 0, 8, 8] = 1.0
        y = crp(x)[0, 0]
    assert y[8, 8] == 5 and y[8, 12] == 3 and y[4, 4] == 3 and y[0, 16] == 1 and y[8, 10] == 4 and y[8, 11] == 3


def _timm_state(seed):
    torch.manual_seed(seed)
    return timm.create_model("mobilenetv2_100", pretrained=False).state_dict()  # with classifier keys


@pytest.mark.parametrize("nested", [None, "state_dict", "model"])
def test_encoder_weights_round_trip(tmp_path, nested):
    state = _timm_state(seed=123)
    path = tmp_path / "mnv2.pth"
    torch.save(state if nested is None else {nested: state, "epoch": 3}, path)

    torch.manual_seed(0)
    plain = build_student(6).eval()
    torch.manual_seed(0)
    loaded = build_model({"name": "student", "num_classes": 6}, encoder_weights=path).eval()

    own = loaded.encoder.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)
    assert not torch.equal(plain.encoder.conv_stem.weight, loaded.encoder.conv_stem.weight)
    # same seed: the decoder is identical, so any output change comes from the loaded encoder
    assert torch.equal(plain.decoder.proj[0].weight, loaded.decoder.proj[0].weight)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = plain(x), loaded(x)
    assert (a["segm"] - b["segm"]).abs().max() > 1e-4


def test_mismatched_weights_file_names_the_file(tmp_path):
    state = _timm_state(seed=0)
    state["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    del state["blocks.6.0.bn3.running_var"]
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"wrong\.pth.*missing.*wrong shape.*conv_stem\.weight"):
        build_model({"name": "student", "num_classes": 6}, encoder_weights=path)
    with pytest.raises(WeightsError, match=r"mine.*missing.*wrong shape.*conv_stem\.weight"):
        build_student(6, encoder_weights=state, source="mine")


def test_missing_or_unreadable_weights_file_names_the_file(tmp_path):
    arch = {"name": "student", "num_classes": 6}
    with pytest.raises(UserError, match="nope.pth: no such encoder weights file"):
        build_model(arch, encoder_weights=tmp_path / "nope.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"garbage.pth: unreadable encoder weights \(not a file written by torch.save\)"):
        build_model(arch, encoder_weights=bad)
