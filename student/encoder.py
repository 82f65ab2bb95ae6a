"""Student encoder: MobileNet-v2 (timm `mobilenetv2_100`) returning all seven stage outputs ("taps").

Flow: image -> **encoder** -> taps -> refinenet.Decoder -> model heads. The classifier and the final
1x1-1280 conv (`conv_head`, `bn2`) are dropped, as in the paper; `features_only` would return only five
taps, so the stem and the seven block groups are run here by hand.

Two variants (VARIANTS): "timm", the standard network (its t=1 first block has no 1x1 expansion), and
"reference", the authors' MobileNet-v2, whose first block keeps a 1x1 32->32 expansion (+ BN + ReLU6)
before the depthwise conv: 1,088 parameters more (3,070,057 for the 40-class student, PAPER.md). The
reference variant exists to load the paper's released checkpoints (pipeline/import_weights.py).
"""
from __future__ import annotations

import timm
import torch
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

# keys of a full timm checkpoint that belong to the dropped classification head
HEAD_PREFIXES = ("classifier.", "conv_head.", "bn2.")
NESTED_KEYS = ("state_dict", "model")
VARIANTS = ("timm", "reference")


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the network; the message names the file."""


class MobileNetV2Encoder(nn.Module):
    """MobileNet-v2 (width 1.0) feature extractor.

    forward(x: (B,3,H,W)) -> list of 7 tensors, channels @ stride:
    16@1/2, 24@1/4, 32@1/8, 64@1/16, 96@1/16, 160@1/32, 320@1/32 (strides round up for odd sizes).
    """

    out_channels: tuple[int, ...] = (16, 24, 32, 64, 96, 160, 320)
    reductions: tuple[int, ...] = (2, 4, 8, 16, 16, 32, 32)

    def __init__(self, pretrained: bool = False, weights: dict | None = None, source: str = "encoder weights",
                 variant: str = "timm"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown encoder variant {variant!r}; choose one of {list(VARIANTS)}")
        if variant == "reference" and (pretrained or weights is not None):
            raise ValueError("the reference encoder has no timm ImageNet weights; start it from the paper's "
                             "checkpoint (mtdistill import-weights)")
        self.variant = variant
        net = timm.create_model("mobilenetv2_100", pretrained=pretrained)
        self.conv_stem = net.conv_stem  # 3 -> 32, stride 2
        self.bn1 = net.bn1              # BN + ReLU6
        self.blocks = net.blocks        # 7 inverted-residual groups
        if variant == "reference":      # first block: 1x1 32->32 expansion, 3x3 depthwise, 1x1 -> 16
            self.blocks[0][0] = InvertedResidual(32, 16, exp_ratio=1.0, act_layer=nn.ReLU6)
        if weights is not None:
            load_encoder_weights(self, weights, source)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """float32 (B,3,H,W) normalised RGB -> 7 taps (B,C_i,ceil(H/r_i),ceil(W/r_i)), C_i = out_channels,
        r_i = reductions.
        """
        x = self.bn1(self.conv_stem(x))  # (B,32,H/2,W/2)
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(x)
        return taps


def unwrap_state_dict(obj, source: str = "encoder weights") -> dict[str, torch.Tensor]:
    """An already-read weights object -> its state dict: unwraps {"state_dict": ...} / {"model": ...}.
    Raises WeightsError naming `source` if the result is not a dict of tensors."""
    for key in NESTED_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{source}: not a state dict of tensors")
    return obj


def load_encoder_weights(encoder: MobileNetV2Encoder, weights, source: str = "encoder weights") -> None:
    """Copy a timm MobileNet-v2 state dict (already read; may be nested, see unwrap_state_dict) into
    `encoder`; head keys are ignored, anything else must match. Raises WeightsError naming `source`."""
    state = {k: v for k, v in unwrap_state_dict(weights, source).items() if not k.startswith(HEAD_PREFIXES)}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            problems.append(f"{len(keys)} {what} keys: {shown}")
    if problems:
        raise WeightsError(f"{source} do not fit mobilenetv2_100: " + "; ".join(problems))
    encoder.load_state_dict(state, strict=True)
