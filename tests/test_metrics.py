"""Pooled segmentation and depth metrics against values computed by hand."""
import math

import numpy as np
import pytest
import torch

from pipeline.evaluate.metrics import (DepthMetrics, SegmMetrics, confusion_matrix, eigen_crop, garg_crop,
                              segm_scores)

GT = np.array([[0, 0, 1, 1, 2, 255]])
PRED = np.array([[0, 1, 1, 1, 0, 2]])


def test_confusion_matrix_and_iou_by_hand():
    conf = confusion_matrix(PRED, GT, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows gt, cols pred; 255 dropped
    s = segm_scores(conf)
    # IoU0 = 1 / (2 + 2 - 1), IoU1 = 2 / (2 + 3 - 2), IoU2 = 0 / (1 + 0 - 0)
    assert s["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s["miou"] == pytest.approx(1 / 3)
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["pixels"] == 5


def test_classes_with_empty_union_are_left_out_of_the_mean():
    s = segm_scores(confusion_matrix(PRED, GT, 4))  # class 3: never in gt nor prediction
    assert math.isnan(s["iou"][3])
    assert s["miou"] == pytest.approx(1 / 3)  # not (1/3 + 2/3 + 0 + 0) / 4


def test_segm_accumulator_pools_one_matrix_and_takes_torch():
    m = SegmMetrics(2)
    m.update(torch.tensor([[0, 0]]), torch.tensor([[0, 0]]))  # image 1: IoU0 = 1, class 1 absent
    m.update(np.array([[1, 1, 1, 0]]), np.array([[1, 0, 0, 0]]))  # image 2: IoU0 = 1/3, IoU1 = 1/3
    s = m.compute()
    # pooled: TP0 = 3, FP0 = 0, FN0 = 2 -> 3/5; TP1 = 1, FP1 = 2 -> 1/3; a per-image mean would give
    # ((1) + (1/3 + 1/3) / 2) / 2 = 2/3
    assert s["iou"] == pytest.approx([3 / 5, 1 / 3])
    assert s["miou"] == pytest.approx((3 / 5 + 1 / 3) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="upsample"):
        SegmMetrics(3).update(np.zeros((2, 4)), np.zeros((4, 4)))


def _pooled():
    m = DepthMetrics()
    m.update(np.array([[1.5, 2.0, 5.0, 18.0]]), np.array([[1.0, 2.0, 0.0, 10.0]]))  # gt 0 ignored
    m.update(torch.tensor([[1.0]]), torch.tensor([[4.0]]))
    return m.compute()


def test_depth_metrics_by_hand():
    r = _pooled()
    # valid pairs (pred, gt): (1.5, 1), (2, 2), (18, 10), (1, 4); errors .5, 0, 8, -3
    assert r["pixels"] == 4
    assert r["rmse"] == pytest.approx(math.sqrt((0.25 + 64 + 9) / 4))  # 4.279311
    logs = [math.log(1.5), 0.0, math.log(1.8), math.log(0.25)]
    assert r["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))  # 0.779697
    assert r["abs_rel"] == pytest.approx((0.5 + 0 + 0.8 + 0.75) / 4)
    assert r["sq_rel"] == pytest.approx((0.25 + 0 + 6.4 + 2.25) / 4)
    # ratios 1.5, 1, 1.8, 4 against thresholds 1.25, 1.5625, 1.953125
    assert (r["delta1"], r["delta2"], r["delta3"]) == pytest.approx((0.25, 0.5, 0.75))


def test_pooled_rmse_is_not_the_mean_of_per_image_rmse():
    per_image = (math.sqrt((0.25 + 64) / 3) + 3.0) / 2  # 3.813907
    assert _pooled()["rmse"] == pytest.approx(4.279311, abs=1e-6)
    assert abs(_pooled()["rmse"] - per_image) > 0.4


def test_depth_cap_masks_gt_and_clips_predictions():
    m = DepthMetrics(cap=5.0)
    m.update(np.array([[7.0, 3.0, 0.0]]), np.array([[4.0, 9.0, 2.0]]))  # gt 9 > cap: ignored
    r = m.compute()
    assert r["pixels"] == 2
    # 7 clipped to 5 -> err 1; 0 clipped to min_depth 1e-3 -> err 1.999
    assert r["rmse"] == pytest.approx(math.sqrt((1.0 + 1.999 ** 2) / 2))
    assert np.isfinite(r["rmse_log"])


def test_crops_match_the_standard_windows():
    assert eigen_crop(480, 640) == (slice(45, 471), slice(41, 601))
    assert eigen_crop(240, 320) == (slice(22, 236), slice(20, 300))
    # the standard constants 0.40810811 / 0.99189189 truncate to rows 151..366 at 370
    assert garg_crop(370, 1226) == (slice(151, 366), slice(44, 1181))
    assert garg_crop(375, 1242) == (slice(153, 371), slice(44, 1197))


@pytest.mark.parametrize("crop, hw", [("eigen", (480, 640)), ("garg", (370, 1226))])
def test_crop_ignores_pixels_outside_the_window(crop, hw):
    gt = np.full(hw, 2.0)
    pred = np.full(hw, 7.0)
    rows, cols = (eigen_crop if crop == "eigen" else garg_crop)(*hw)
    pred[rows, cols] = 2.0  # perfect inside the crop, wrong outside
    cropped, full = DepthMetrics(crop=crop), DepthMetrics()
    cropped.update(pred, gt)
    full.update(pred, gt)
    assert cropped.compute()["rmse"] == 0.0
    assert cropped.compute()["pixels"] == (rows.stop - rows.start) * (cols.stop - cols.start)
    assert full.compute()["rmse"] > 1.0


def test_unknown_crop_lists_options_and_empty_set_gives_nan():
    with pytest.raises(KeyError, match="eigen.*garg"):
        DepthMetrics(crop="kitti")
    m = DepthMetrics()
    m.update(np.ones((2, 2)), np.zeros((2, 2)))
    r = m.compute()
    assert r["pixels"] == 0 and math.isnan(r["rmse"])


def test_a_prediction_outside_the_class_list_is_a_miss_not_a_free_pass():
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 255, 1, 1]])          # one pixel of class 0 left unlabeled by the model
    m = SegmMetrics(2)
    m.update(pred, gt)
    r = m.compute()
    assert r["iou"] == [0.5, 1.0] and r["miou"] == 0.75 and r["pixel_acc"] == 0.75 and r["pixels"] == 4
    q = SegmMetrics(2, invalid_pred="ignore")   # qa: measured only where a pseudo-label exists
    q.update(pred, gt)
    assert q.compute()["iou"] == [1.0, 1.0] and q.compute()["pixels"] == 3
