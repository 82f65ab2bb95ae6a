"""Student losses against values computed by hand on tiny tensors; empty-target behaviour."""
import math

import pytest
import torch

from student.losses import MultiTaskLoss, berhu_loss, segm_loss
from student.model import build_student


def test_cross_entropy_upsamples_logits_and_ignores_255():
    # class-0 logits [0, 4] over 2 columns, upsampled bilinearly (align_corners=False) to 4 columns:
    # [0, 1, 3, 4]; class-1 logits stay 0
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 1] = 4.0
    target = torch.tensor([[[1, 0, 255, 0]]])
    expected = (math.log(2) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-4))) / 3  # 0.341520
    assert segm_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_cross_entropy_all_ignored_is_zero_and_keeps_graph():
    logits = (-1 - torch.rand(2, 3, 4, 4)).requires_grad_(True)          # a negative sum: no -0.0 either
    loss = segm_loss(logits, torch.full((2, 8, 8), 255))
    assert loss.item() == 0.0 and f"{loss.item():.3f}" == "0.000" and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_berhu_by_hand():
    pred = torch.tensor([1.0, 2.0, 3.0, -1.0]).view(1, 1, 1, 4)  # ReLU -> [1, 2, 3, 0]
    gt = torch.tensor([1.5, 0.0, 1.0, 3.0]).view(1, 1, 4)          # pixel 1 invalid
    # err = [0.5, 2, 3], c = 0.6: 0.5 | (4 + .36) / 1.2 | (9 + .36) / 1.2
    expected = (0.5 + 4.36 / 1.2 + 9.36 / 1.2) / 3  # 3.977778
    assert berhu_loss(pred, gt).item() == pytest.approx(expected, abs=1e-6)


def test_berhu_upsamples_prediction_to_target_size():
    pred = torch.full((1, 1, 1, 1), 2.0)
    gt = torch.tensor([[[1.0, 0.0], [2.0, 4.0]]])  # (B,H,W); err = [1, 0, 2], c = 0.4
    expected = ((1 + 0.16) / 0.8 + 0.0 + (4 + 0.16) / 0.8) / 3  # 2.216667
    assert berhu_loss(pred, gt).item() == pytest.approx(expected, abs=1e-6)
    assert berhu_loss(pred, gt.unsqueeze(1)).item() == pytest.approx(expected, abs=1e-6)


def test_berhu_perfect_prediction_has_finite_zero_gradient():
    gt = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]])
    pred = gt.unsqueeze(1).clone().requires_grad_(True)
    loss = berhu_loss(pred, gt)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_berhu_without_valid_pixels_is_zero_and_keeps_graph():
    pred = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = berhu_loss(pred, torch.zeros(2, 8, 8))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_multitask_loss_weights_and_parts():
    torch.manual_seed(0)
    outputs = {"segm": torch.randn(2, 3, 4, 4), "depth": torch.rand(2, 1, 4, 4) * 5}
    targets = {"segm": torch.randint(0, 3, (2, 8, 8)), "depth": torch.rand(2, 8, 8) * 5}
    s, d = segm_loss(outputs["segm"], targets["segm"]), berhu_loss(outputs["depth"], targets["depth"])
    out = MultiTaskLoss()(outputs, targets)
    assert set(out) == {"loss", "segm", "depth"}
    assert out["loss"].item() == pytest.approx(0.5 * s.item() + 0.5 * d.item(), rel=1e-6)
    out = MultiTaskLoss({"segm": 1.0, "depth": 0.1})(outputs, targets)
    assert out["loss"].item() == pytest.approx(s.item() + 0.1 * d.item(), rel=1e-6)


def test_multitask_loss_unknown_task_lists_options():
    with pytest.raises(KeyError, match="normals.*depth.*segm"):
        MultiTaskLoss({"segm": 0.5, "normals": 0.5})


def test_empty_depth_batch_still_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_student(3)
    out = model(torch.randn(2, 3, 64, 64))
    targets = {"segm": torch.randint(0, 3, (2, 64, 64)), "depth": torch.zeros(2, 64, 64)}
    losses = MultiTaskLoss()(out, targets)
    assert losses["depth"].item() == 0.0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    head = model.heads["depth"][2]
    assert head.weight.grad is not None and torch.equal(head.weight.grad, torch.zeros_like(head.weight))
    assert model.heads["segm"][2].weight.grad.abs().sum() > 0
