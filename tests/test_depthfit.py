"""The per-frame depth fit (stores/depthfit.py): known scale / inverse-depth transforms are recovered,
outliers do not move the fit, and too few points give no fit."""
import numpy as np
import pytest

from stores.depthfit import fit_depth


def _scene(seed=0, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(2.0, 40.0, shape).astype(np.float32)
    lidar = np.where(rng.random(shape) < 0.2, depth, 0).astype(np.float32)
    return depth, lidar


def test_scale_fit_recovers_a_metric_teachers_scale():
    depth, lidar = _scene()
    fit = fit_depth(depth / 1.7, lidar, "scale")
    assert fit.scale == pytest.approx(1.7, rel=1e-4)
    assert fit.residual < 1e-4 and fit.points == int((lidar > 0).sum())
    np.testing.assert_allclose(fit.apply(depth / 1.7), depth, rtol=1e-4)


def test_inverse_fit_recovers_scale_and_shift_despite_outliers():
    depth, lidar = _scene(1)
    rel = (1.0 / depth - 0.01) / 0.02            # relative inverse depth: 1/d = 0.02 * rel + 0.01
    noisy = lidar.copy()
    bad = np.flatnonzero(lidar.ravel() > 0)[:20]   # 20 wrong LiDAR returns of ~700
    noisy.ravel()[bad] = 80.0
    fit = fit_depth(rel, noisy, "inverse")
    assert fit.scale == pytest.approx(0.02, rel=0.05) and fit.shift == pytest.approx(0.01, abs=2e-3)
    assert fit.residual < 0.05
    out = fit.apply(rel)
    assert np.median(np.abs(out - depth) / depth) < 0.05


def test_no_fit_without_enough_points_and_held_out_mask_is_respected():
    depth, lidar = _scene(2)
    sparse = np.zeros_like(lidar)
    sparse[0, :5] = lidar[0, :5] + 1
    assert fit_depth(depth, sparse, "scale") is None
    mask = np.zeros(depth.shape, bool)
    mask[:24] = True
    fit = fit_depth(depth * 2, lidar, "scale", mask=mask)
    assert fit.points == int((lidar[:24] > 0).sum()) and fit.scale == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mode"):
        fit_depth(depth, lidar, "affine")
