"""CPU inference: 1x1 convolutions through oneDNN at one thread too (used by teachers/base.load_teacher).

PyTorch (ATen's ConvParams::use_mkldnn) sends a float32 1x1 convolution with stride 1, no dilation and a
batch below 16 to its native kernel (`_slow_conv2d_forward`) whenever intra-op parallelism is off
(torch.get_num_threads() == 1), on the premise that oneDNN wins only multi-threaded. The labeling job's
CPU workers run exactly so (one single-threaded worker per core, batch 8), and there it is the other way
round on the development CPU of BENCHMARKS.md ("Labeling"): the native kernel took half of a ResNet-38
teacher's time at one thread (7 of its 23 convolutions per batch), and through oneDNN the teacher ran
faster (48.1 -> 57.5 frames/s in bench_label.py's forward alone). `onednn_1x1` routes those convolutions to
oneDNN's kernel, the one PyTorch itself picks from two threads on; outputs match nn.Conv2d's to float32
rounding.
"""
from __future__ import annotations

import torch
from torch import nn


class OneDNNConv2d(nn.Conv2d):
    """nn.Conv2d whose inference on non-empty CPU float32 (B, C, H, W) tensors with float32 weights always
    runs oneDNN's convolution; anything else (autograd on, another device or dtype, oneDNN unavailable) runs
    nn.Conv2d.forward unchanged. For inference only: torch.jit.trace would record the oneDNN call, and
    torch.fx cannot trace the condition (nothing here traces or exports a loaded teacher)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and x.dim() == 4 and x.numel() > 0 and not torch.is_grad_enabled()
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride,
                                                     self.dilation, self.groups)
        return super().forward(x)


def onednn_1x1(model: nn.Module) -> nn.Module:
    """Make every plain 1x1 nn.Conv2d of `model` (exactly that class, zero padding given as numbers) a
    OneDNNConv2d, in place: same parameters, buffers and state_dict; returns `model`."""
    for m in model.modules():
        if (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.padding_mode == "zeros"
                and isinstance(m.padding, tuple)):
            m.__class__ = OneDNNConv2d
    return model
