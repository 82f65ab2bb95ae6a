"""Light-Weight RefineNet multi-task decoder: CRP blocks and the top-down fusion of encoder taps.

Flow: encoder taps -> **Decoder** -> one shared 256-channel feature at 1/4 resolution -> model heads.
All convs are bias-free 1x1, there is no BatchNorm, activations are ReLU6 and upsampling is bilinear
(align_corners=False) to the exact size of the next tap, so any input size works.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(in_channels: int, out_channels: int, groups: int = 1) -> nn.Conv2d:
    """Bias-free 1x1 convolution (groups=channels makes it depthwise), the decoder's only conv."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False, groups=groups)


class SeparableMaxPool2d(nn.Module):
    """k x k max-pool (stride 1, 'same' padding) as a 1 x k then a k x 1 max-pool: the same values,
    1.6-2x faster forward + backward on CPU (max is separable)."""

    def __init__(self, kernel_size: int = 5, padding: int = 2):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> max over each k x k window; (B,C,H,W) again when padding = k // 2 (the default 5 / 2)."""
        k, p = self.kernel_size, self.padding
        x = F.max_pool2d(x, (1, k), stride=1, padding=(0, p))
        return F.max_pool2d(x, (k, 1), stride=1, padding=(p, 0))


class CRP(nn.Module):
    """Chained Residual Pooling: top = x; repeat: top = conv1x1(maxpool5x5_s1(top)); x = x + top.

    depthwise=True makes each 1x1 conv per-channel (groups=channels), the paper's change for the
    last CRP (saves 46% of the student's multiply-adds).
    """

    def __init__(self, channels: int, stages: int = 4, depthwise: bool = False):
        super().__init__()
        groups = channels if depthwise else 1
        self.pool = SeparableMaxPool2d(kernel_size=5, padding=2)
        self.convs = nn.ModuleList(conv1x1(channels, channels, groups) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,C,H,W): x plus the chain of pooled-and-convolved residuals."""
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = x + top
        return x


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of x (B,C,h,w) to ref's spatial size -> (B,C,H_ref,W_ref)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """Multi-task Light-Weight RefineNet decoder over MobileNet-v2 taps.

    in_channels: the encoder's 7 tap widths (16, 24, 32, 64, 96, 160, 320); the 1/2 tap is unused.
    forward(taps) -> (B, channels, H/4, W/4), the shared feature for every task head.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256):
        super().__init__()
        if len(in_channels) != 7:
            raise ValueError(f"Decoder expects 7 encoder taps, got in_channels={tuple(in_channels)}")
        self.out_channels = channels
        # proj[i] projects tap i+1 (24@1/4 ... 320@1/32) to `channels`
        self.proj = nn.ModuleList(conv1x1(c, channels) for c in in_channels[1:])
        # coarse to fine: 1/32, 1/16, 1/8, 1/4 (last one depthwise)
        self.crp = nn.ModuleList([CRP(channels), CRP(channels), CRP(channels), CRP(channels, depthwise=True)])
        self.adapt = nn.ModuleList(conv1x1(channels, channels) for _ in range(3))
        self.act = nn.ReLU6()

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """The 7 encoder taps (B,C_i,H/r_i,W/r_i) -> shared feature float32 (B,channels,H/4,W/4), at the
        exact size of the 1/4 tap."""
        _, l2, l3, l4, l5, l6, l7 = taps  # 1/2 (unused), 1/4, 1/8, 1/16, 1/16, 1/32, 1/32
        p = self.proj
        x = self.act(p[5](l7) + p[4](l6))                 # (B,256,H/32,W/32)
        x = upsample_to(self.adapt[0](self.crp[0](x)), l5)
        x = self.act(p[3](l5) + p[2](l4) + x)             # (B,256,H/16,W/16)
        x = upsample_to(self.adapt[1](self.crp[1](x)), l3)
        x = self.act(p[1](l3) + x)                        # (B,256,H/8,W/8)
        x = upsample_to(self.adapt[2](self.crp[2](x)), l2)
        x = self.act(p[0](l2) + x)                        # (B,256,H/4,W/4)
        return self.crp[3](x)
