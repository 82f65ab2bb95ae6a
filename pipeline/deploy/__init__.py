"""Using a trained student: predict (pictures from image files), visual (colour maps, panels), export
(ONNX), quantize (int8), bench (latency and throughput)."""
