"""ONNX export of the student, and ONNX Runtime sessions for it.

Flow: checkpoint -> student (eval) -> **export_onnx** -> model.onnx (input "image" (B,3,H,W) with
dynamic B/H/W; outputs "segm" (B,C,H/4,W/4), "depth" (B,1,H/4,W/4)) -> ORT / quantize / bench.

Before export the network is copied and rewritten for inference, with identical results:
- any 5x5 stride-1 nn.MaxPool2d left becomes a 1x5 then a 5x1 max-pool (the student's CRP already pools so);
- the depth head's 3x3 conv (1 output) is computed with 16 output channels and sliced back to 1:
  ONNX Runtime's CPU kernels pad to 16-channel blocks anyway and take a slow path for one channel.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path

import torch
from torch import nn

from student.refinenet import SeparableMaxPool2d

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAMES = ("segm", "depth")
MIN_SIZE = 64  # smallest exported height/width: the 1/32 tap must be at least 2x2


class WideConv2d(nn.Module):
    """A conv computed with `width` output channels (extra ones tiny copies of the first), sliced back."""

    def __init__(self, conv: nn.Conv2d, width: int):
        super().__init__()
        self.out_channels = conv.out_channels
        self.conv = nn.Conv2d(conv.in_channels, width, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            # non-zero filler keeps per-channel int8 weight scales well defined
            filler = conv.weight[:1] * 1e-3
            self.conv.weight.copy_(torch.cat([conv.weight, filler.expand(width - conv.out_channels, -1, -1, -1)]))
            if conv.bias is not None:
                self.conv.bias.zero_()
                self.conv.bias[: conv.out_channels] = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, out_channels, H', W'): the wide conv's output with the filler channels sliced off."""
        return self.conv(x)[:, : self.out_channels]


def _is_square_same_pool(m: nn.Module) -> bool:
    return (isinstance(m, nn.MaxPool2d) and m.stride in (1, (1, 1)) and isinstance(m.kernel_size, int)
            and isinstance(m.padding, int) and 2 * m.padding + 1 == m.kernel_size and m.dilation == 1)


def inference_copy(model: nn.Module, head_width: int = 16) -> nn.Module:
    """Eval-mode deep copy with the exact inference rewrites (separable max-pool, widened depth head)."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_square_same_pool(child):
                setattr(parent, name, SeparableMaxPool2d(child.kernel_size, child.padding))
    heads = getattr(model, "heads", None)
    if head_width and heads is not None and "depth" in heads:
        last = heads["depth"][-1]
        if isinstance(last, nn.Conv2d) and last.out_channels < head_width:
            heads["depth"][-1] = WideConv2d(last, head_width)
    return model


def export_onnx(model: nn.Module, path: str | Path, opset: int = OPSET, dynamic: bool = True,
                example_size: tuple[int, int] = (MIN_SIZE, MIN_SIZE), rewrite: bool = True) -> Path:
    """Write `model` to `path` as one self-contained ONNX file and return the path.

    dynamic: batch, height and width are free (height, width >= 64); otherwise fixed to a batch of 1 at
    example_size (H, W). rewrite: apply the exact inference rewrites (see module docstring) first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = inference_copy(model) if rewrite else copy.deepcopy(model).eval()
    net = net.to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
    h, w = example_size
    example = torch.zeros(2 if dynamic else 1, 3, h, w)  # batch 2 so the batch dim is not specialised
    shapes = None
    if dynamic:
        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=MIN_SIZE),
                3: torch.export.Dim("width", min=MIN_SIZE)}
        shapes = {"x": dims}
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          opset_version=opset, dynamic_shapes=shapes, external_data=False, verbose=False)
    return path


def ort_session(path: str | Path, threads: int | None = None):
    """ONNX Runtime CPU session with all graph optimisations, `threads` intra-op threads, one inter-op."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    # no busy-waiting between runs: spinning pool threads would steal the cores from whatever runs next
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, image) -> dict:
    """Run an exported student on a normalised (B,3,H,W) float32 array / tensor -> {"segm": (B,C,H/4,W/4)
    logits, "depth": (B,1,H/4,W/4) metres} numpy float32 arrays (depth before ReLU)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: image})
    return dict(zip(OUTPUT_NAMES, outputs))
