"""Static int8 quantisation of an exported student (ONNX Runtime QDQ format) for the fastest CPU path.

Flow: model.onnx (pipeline/export.py) + a few calibration images -> **quantize_onnx** ->
model.int8.onnx -> ort_session / bench. Weights int8 per output channel, activations uint8 per tensor
(min/max calibration). The accuracy cost is not free: measure it against the float model
(pipeline/bench.py reports segmentation argmax agreement and depth differences); calibrate on real
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

from pipeline.export import INPUT_NAME


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
