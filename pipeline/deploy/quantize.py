"""Static int8 quantisation of an exported student (ONNX Runtime QDQ format) for the fastest CPU path.

Flow: model.onnx (pipeline/deploy/export.py) + a few calibration images -> **quantize_onnx** ->
model.int8.onnx -> ort_session / bench. `mtdistill export --int8 --calibrate STORE` goes through
**quantize_student**: frames of the store (store_calibration) calibrate, and the int8 model's agreement
with the fp32 export is measured on them and on other frames of the store.
Weights int8 per output channel, activations uint8 per tensor (min/max calibration). The accuracy cost
is not free: measure it against the float model (here, and pipeline/deploy/bench.py); calibrate on real
frames of the target dataset when there are any.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline.deploy.export import INPUT_NAME, MIN_SIZE
from stores.errors import UserError


def random_calibration(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """`count` ImageNet-normalised-looking (1,3,H,W) float32 images: N(0, 1) noise, for when no data is at hand."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, *size), dtype=np.float32) for _ in range(count)]


def quantize_onnx(src: str | Path, dst: str | Path, calibration: Iterable[np.ndarray]) -> Path:
    """Write a statically quantised copy of the ONNX model `src` to `dst`.

    calibration: (B,3,H,W) float32 arrays, normalised as the model expects (a handful is enough).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [{INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)} for x in calibration]
    if not batches:
        raise ValueError("quantize_onnx needs at least one calibration image")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    quiet = io.StringIO()
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs its progress at INFO/WARNING
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet):
            pre = Path(tmp) / "pre.onnx"
            # symbolic shape inference cannot follow the dynamic Resize sizes; ONNX inference suffices
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.getLogger().setLevel(previous)
    return dst


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` of `indices`, evenly spaced, first and last included."""
    if len(indices) == 0:
        return indices
    return indices[np.unique(np.linspace(0, len(indices) - 1, min(count, len(indices))).round().astype(int))]


def store_calibration(store_path, count: int, ref: str | None = None,
                      split: str = "train") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration, held_out): `count` frames of a store's split (all frames if the split is empty),
    evenly spaced, and up to `count` other frames of the store, each a normalised (1,3,H,W) float32 array."""
    import torch

    from student.model import normalize
    from stores.repo import FrameStore

    store = FrameStore.open(store_path, ref)
    h, w = store.frame_size
    if min(h, w) < MIN_SIZE:
        raise UserError(f"{store_path}: frames are {w}x{h}; calibration needs at least {MIN_SIZE}x{MIN_SIZE}")
    pool = store.indices(split)
    pool = pool if len(pool) else store.indices()
    if len(pool) == 0:
        raise UserError(f"{store_path}: the store has no frames to calibrate on")
    chosen = _spread(pool, count)
    held = _spread(np.setdiff1d(store.indices(), chosen), count)
    rgb = store.root["frames/rgb"]

    def load(i):
        x = torch.from_numpy(np.ascontiguousarray(rgb[int(i)].transpose(2, 0, 1)))[None]  # (1,3,H,W) uint8
        return normalize(x).numpy()

    return [load(i) for i in chosen], [load(i) for i in held]


def agreement(reference, candidate, images: Iterable[np.ndarray]) -> dict:
    """How closely ONNX session `candidate` follows `reference` on `images`, pooled over all of them:
    segm argmax agreement (pixels at the 1/4 output resolution), depth mean / max |difference| (metres)
    and the mean reference depth (for scale)."""
    from pipeline.deploy.export import run_onnx

    same = pixels = frames = 0
    diff_sum = ref_sum = diff_max = 0.0
    for x in images:
        a, b = run_onnx(reference, x), run_onnx(candidate, x)
        same += int((a["segm"].argmax(1) == b["segm"].argmax(1)).sum())
        pixels += a["segm"].shape[0] * a["segm"].shape[2] * a["segm"].shape[3]
        d = np.abs(a["depth"] - b["depth"])
        diff_sum, diff_max = diff_sum + float(d.sum()), max(diff_max, float(d.max()))
        ref_sum += float(np.abs(a["depth"]).sum())
        frames += len(x)
    if not frames:
        return {"frames": 0}
    return {"frames": frames, "segm_agreement": same / pixels, "depth_mean_diff": diff_sum / pixels,
            "depth_max_diff": diff_max, "depth_mean": ref_sum / pixels}


def quantize_student(model, dst: str | Path, calibration: list[np.ndarray], held_out: list[np.ndarray] = (),
                     opset: int | None = None, threads: int | None = None) -> dict:
    """Export `model`, quantise it statically on `calibration` into `dst`, and measure the int8 model
    against the fp32 export on the calibration frames and on `held_out` frames (None if there are none)."""
    from pipeline.deploy.export import OPSET, export_onnx, ort_session

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "student.onnx", opset=opset or OPSET)
        quantize_onnx(fp32, dst, calibration)
        ref, q = ort_session(fp32, threads), ort_session(dst, threads)
        return {"int8": str(dst), "calibration": agreement(ref, q, calibration),
                "held_out": agreement(ref, q, held_out) if len(held_out) else None}
