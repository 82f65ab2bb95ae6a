"""Depth experts: teacher networks that output positive metric depth, for the label job's depth pseudo-labels.

Sits beside resnet38.py at the top of the flow (teacher networks -> Teacher.predict -> pseudo/<name>/depth).
Two architectures, both returning {"depth": (B, 1, h, w)} in metres, strictly positive
(softplus + min_depth, so 0 keeps meaning "no depth" in the store):

- ResNet38Depth: the ResNet-38 trunk with a dilated depth head; output at 1/8 input resolution.
- LWRefineNetDepth: a Light-Weight RefineNet decoder (CRP, sum-and-upsample) on a timm encoder
  (`features_only`, strides 4..32); output at 1/4 input resolution. `pretrained` is only passed
  through to timm (no download happens unless the caller asks for it and has the weights cached).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from student.refinenet import CRP
from teachers.resnet38 import FULL_UNITS, DilatedHead, ResNet38Trunk, parse_units, scaled


def positive_depth(x: torch.Tensor, min_depth: float) -> torch.Tensor:
    """Raw head output (any shape) -> softplus(x) + min_depth: metres > 0, same shape."""
    return F.softplus(x) + min_depth


@dataclass(frozen=True)
class ResNet38DepthConfig:
    """ResNet38Depth hyper-parameters, saved as the checkpoint's "arch": trunk width/units as in ResNet38Config,
    dilated head, min_depth (metres) added after softplus. ValueError for width <= 0 or bad units.
    """
    width: float = 1.0
    units: tuple[int, int, int, int] = FULL_UNITS
    head_channels: int = 512
    head_dilation: int = 12
    dropout: bool = True
    min_depth: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "units", parse_units(self.units))
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width!r}")


class ResNet38Depth(nn.Module):
    """forward(x (B, 3, H, W)) -> {"depth": (B, 1, ceil(H/8), ceil(W/8))} metres."""

    task = "depth"
    input_multiple = 8

    def __init__(self, config: ResNet38DepthConfig = ResNet38DepthConfig()):
        super().__init__()
        self.config = config
        self.trunk = ResNet38Trunk(config.width, config.units, config.dropout)
        self.head = DilatedHead(self.trunk.out_channels, scaled(config.head_channels, config.width), 1,
                                config.head_dilation)

    def forward(self, x):
        """float32 (B, 3, H, W) normalised RGB -> {"depth": (B, 1, ceil(H/8), ceil(W/8))} metres >= min_depth."""
        return {"depth": positive_depth(self.head(self.trunk(x)), self.config.min_depth)}


@dataclass(frozen=True)
class LWRefineNetDepthConfig:
    """LWRefineNetDepth hyper-parameters, saved as the checkpoint's "arch": timm encoder name and taps, decoder
    width, CRP stages, min_depth (metres). ValueError when out_indices is empty.
    """
    encoder: str = "resnet101"          # any timm model with features_only
    pretrained: bool = False            # passed through to timm.create_model only
    out_indices: tuple[int, ...] = (1, 2, 3, 4)  # encoder taps, shallow -> deep (strides 4..32 for resnets)
    decoder_channels: int = 256
    crp_stages: int = 4
    min_depth: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "out_indices", tuple(self.out_indices))
        if len(self.out_indices) < 1:
            raise ValueError("out_indices must name at least one encoder tap")


class LWRefineNetDepth(nn.Module):
    """timm encoder + LW-RefineNet decoder + 3x3 depth head.

    forward(x (B, 3, H, W)) -> {"depth": (B, 1, h, w)} metres, (h, w) = size of the shallowest tap.
    """

    task = "depth"
    input_multiple = 32

    def __init__(self, config: LWRefineNetDepthConfig = LWRefineNetDepthConfig()):
        super().__init__()
        import timm  # local: only this architecture needs it

        self.config = config
        self.encoder = timm.create_model(config.encoder, pretrained=config.pretrained, features_only=True,
                                         out_indices=config.out_indices)
        channels = self.encoder.feature_info.channels()   # shallow -> deep
        self.input_multiple = max(32, max(self.encoder.feature_info.reduction()))
        d = config.decoder_channels
        # one level per tap, deep -> shallow: 1x1 proj of the tap, CRP, 1x1 adapt before upsampling
        self.proj = nn.ModuleList(nn.Conv2d(c, d, 1, bias=False) for c in reversed(channels))
        self.crp = nn.ModuleList(CRP(d, config.crp_stages) for _ in channels)
        self.adapt = nn.ModuleList(nn.Conv2d(d, d, 1, bias=False) for _ in channels[1:])
        self.head = nn.Conv2d(d, 1, 3, padding=1)

    def forward(self, x):
        """float32 (B, 3, H, W) normalised RGB -> {"depth": (B, 1, h, w)} metres >= min_depth at the
        shallowest tap's size (H/4, W/4 for resnets); the Teacher pads H, W to a multiple of input_multiple.
        """
        feats = self.encoder(x)[::-1]                      # deep -> shallow
        y = None
        for i, f in enumerate(feats):
            p = self.proj[i](f)                            # (B, d, h_i, w_i)
            if y is not None:
                y = self.adapt[i - 1](y)
                y = F.interpolate(y, size=p.shape[-2:], mode="bilinear", align_corners=False)
                p = p + y
            y = self.crp[i](F.relu(p))
        return {"depth": positive_depth(self.head(y), self.config.min_depth)}  # (B, 1, H/4, W/4)
