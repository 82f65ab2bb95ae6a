"""ResNet-38 (Wu, Shen, van den Hengel, "Wider or Deeper", model A1): the KITTI segmentation teacher.

Sits at the top of the flow: a teacher network that `teachers.base.Teacher` wraps and the dask label job
runs offline; `mtdistill teacher train` trains it. Layout (PAPER.md), at width 1 and units (3, 3, 6, 3):

    conv1a 3x3 64, stride 1                                            1/1
    B2 3 x [3x3 128, 3x3 128], first unit stride 2                     1/2
    B3 3 x [3x3 256, 3x3 256], stride 2                                1/4
    B4 6 x [3x3 512, 3x3 512], stride 2                                1/8
    B5 3 x [3x3 512, 3x3 1024], dilation 2                             1/8
    B6 bottleneck 1x1 512 -> 3x3 1024 -> 1x1 2048, dilation 4, dropout 0.3
    B7 bottleneck 1x1 1024 -> 3x3 2048 -> 1x1 4096, dilation 4, dropout 0.5
    final BN + ReLU: 4096 channels at output stride 8
    head: 3x3 4096 -> 512 dilation 12 + ReLU, 3x3 512 -> C dilation 12

Units are pre-activation (BN -> ReLU -> conv); when the shape changes the shortcut is a 1x1 conv on the
*activated* input. Trunk convs carry no bias; head convs do. `width` scales every channel count and
`units` sets how many units B2..B5 hold, so tiny variants train on a CPU while the defaults give the
published model (124,033,363 parameters with 19 classes, 105,070,912 in the trunk; see
`param_count`).

Forward returns {"segm": logits (B, C, ceil(H/8), ceil(W/8))}, i.e. at 1/8 input resolution; the Teacher
upsamples them bilinearly to the input size before the softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STAGE_CHANNELS = {"b2": (128, 128), "b3": (256, 256), "b4": (512, 512), "b5": (512, 1024)}
BOTTLENECK_CHANNELS = {"b6": (512, 1024, 2048), "b7": (1024, 2048, 4096)}
FULL_UNITS = (3, 3, 6, 3)  # units in B2, B3, B4, B5 of the published model


def parse_units(units) -> tuple[int, int, int, int]:
    """An int n (n units in each of B2..B5) or four ints; names the bad value."""
    if isinstance(units, int):
        units = (units,) * 4
    units = tuple(units)
    if len(units) != 4 or not all(isinstance(u, int) and u >= 1 for u in units):
        raise ValueError(f"units must be an int >= 1 or four ints >= 1 (B2..B5), got {units!r}")
    return units


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier, never below 8."""
    return max(8, int(round(channels * width)))


@dataclass(frozen=True)
class ResNet38Config:
    """ResNet38 hyper-parameters, saved as the checkpoint's "arch"; the defaults are the published model A1.
    ValueError for width <= 0, bad units or num_classes outside 1..255 (uint8 labels).
    """
    num_classes: int = 19
    width: float = 1.0
    units: tuple[int, int, int, int] = FULL_UNITS
    head_channels: int = 512
    head_dilation: int = 12
    dropout: bool = True  # B6/B7 Dropout2d (0.3 / 0.5); off for tiny CPU variants if wanted

    def __post_init__(self):
        object.__setattr__(self, "units", parse_units(self.units))
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width!r}")
        if not 1 <= self.num_classes <= 255:
            raise ValueError(f"num_classes must be in 1..255 (uint8 labels), got {self.num_classes!r}")


class PreActUnit(nn.Module):
    """Basic pre-activation unit: BN -> ReLU -> 3x3 (stride, first_dilation) -> BN -> ReLU -> 3x3 (dilation)."""

    def __init__(self, cin, mid, cout, stride=1, first_dilation=1, dilation=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        same = cin == cout and stride == 1
        self.shortcut = None if same else nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride) (sizes round up): conv branch + shortcut."""
        a = self.relu(self.bn1(x))  # activated input, also feeds the 1x1 shortcut
        short = x if self.shortcut is None else self.shortcut(a)
        y = self.conv1(a)
        y = self.conv2(self.relu(self.bn2(y)))
        return y + short


class PreActBottleneck(nn.Module):
    """Bottleneck pre-activation unit: 1x1 -> 3x3 (dilated) -> 1x1, Dropout2d before the last two convs."""

    def __init__(self, cin, channels, dilation=1, dropout=0.0):
        super().__init__()
        c1, c2, cout = channels
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, c1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, cout, 1, bias=False)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        """(B, cin, H, W) -> (B, cout, H, W): conv branch + shortcut (stride 1 always)."""
        a = self.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(a)
        y = self.conv1(a)
        y = self.conv2(self.drop(self.relu(self.bn2(y))))
        y = self.conv3(self.drop(self.relu(self.bn3(y))))
        return y + short


class ResNet38Trunk(nn.Module):
    """conv1a .. B7 + final BN/ReLU: (B, 3, H, W) -> (B, out_channels, ceil(H/8), ceil(W/8))."""

    output_stride = 8

    def __init__(self, width: float = 1.0, units=FULL_UNITS, dropout: bool = True):
        super().__init__()
        units = parse_units(units)
        c = lambda n: scaled(n, width)  # noqa: E731
        self.conv1a = nn.Conv2d(3, c(64), 3, padding=1, bias=False)
        cin = c(64)
        stages = []
        # (name, units, first-unit stride, first-unit first dilation, dilation)
        plan = [("b2", units[0], 2, 1, 1), ("b3", units[1], 2, 1, 1), ("b4", units[2], 2, 1, 1),
                ("b5", units[3], 1, 1, 2)]
        for name, n, stride, first_dil, dil in plan:
            mid, cout = (c(k) for k in STAGE_CHANNELS[name])
            blocks = [PreActUnit(cin, mid, cout, stride, first_dil, dil)]
            blocks += [PreActUnit(cout, mid, cout, 1, dil, dil) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.b2, self.b3, self.b4, self.b5 = stages
        b6 = tuple(c(k) for k in BOTTLENECK_CHANNELS["b6"])
        b7 = tuple(c(k) for k in BOTTLENECK_CHANNELS["b7"])
        self.b6 = PreActBottleneck(cin, b6, dilation=4, dropout=0.3 if dropout else 0.0)
        self.b7 = PreActBottleneck(b6[2], b7, dilation=4, dropout=0.5 if dropout else 0.0)
        self.bn7 = nn.BatchNorm2d(b7[2])
        self.out_channels = b7[2]

    def forward(self, x):
        """float32 (B, 3, H, W) normalised RGB -> (B, out_channels, ceil(H/8), ceil(W/8)) after the final BN + ReLU."""
        x = self.conv1a(x)                          # (B, 64, H, W)
        x = self.b4(self.b3(self.b2(x)))            # (B, 512, H/8, W/8)
        x = self.b7(self.b6(self.b5(x)))            # (B, 4096, H/8, W/8)
        return torch.relu(self.bn7(x))


class DilatedHead(nn.Module):
    """3x3 (dilated) in -> mid + ReLU, 3x3 (dilated) mid -> out; both with bias."""

    def __init__(self, cin: int, mid: int, cout: int, dilation: int = 12):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=dilation, dilation=dilation)

    def forward(self, x):
        """(B, cin, h, w) -> (B, cout, h, w) logits (or raw depth for ResNet38Depth)."""
        return self.conv2(torch.relu(self.conv1(x)))


class ResNet38(nn.Module):
    """Segmenter: trunk + dilated head. forward(x (B, 3, H, W)) -> {"segm": (B, C, ceil(H/8), ceil(W/8))}."""

    task = "segm"
    input_multiple = 8  # the Teacher pads inputs to a multiple of this

    def __init__(self, config: ResNet38Config = ResNet38Config()):
        super().__init__()
        self.config = config
        self.trunk = ResNet38Trunk(config.width, config.units, config.dropout)
        self.head = DilatedHead(self.trunk.out_channels, scaled(config.head_channels, config.width),
                                config.num_classes, config.head_dilation)

    def forward(self, x):
        """float32 (B, 3, H, W) normalised RGB -> {"segm": (B, num_classes, ceil(H/8), ceil(W/8)) logits}."""
        return {"segm": self.head(self.trunk(x))}


def trunk_param_count(width: float = 1.0, units=FULL_UNITS) -> int:
    """Parameters of ResNet38Trunk counted from the layout alone (no allocation); BN = weight + bias."""
    units = parse_units(units)
    c = lambda n: scaled(n, width)  # noqa: E731

    def unit(cin, mid, cout, shortcut):
        return 2 * cin + 9 * cin * mid + 2 * mid + 9 * mid * cout + (cin * cout if shortcut else 0)

    def bottleneck(cin, c1, c2, cout):
        shortcut = cin * cout if cin != cout else 0
        return 2 * cin + cin * c1 + 2 * c1 + 9 * c1 * c2 + 2 * c2 + c2 * cout + shortcut

    total, cin = 27 * c(64), c(64)
    for name, n in zip(("b2", "b3", "b4", "b5"), units):
        mid, cout = (c(k) for k in STAGE_CHANNELS[name])
        strided = name != "b5"
        total += unit(cin, mid, cout, shortcut=strided or cin != cout)
        total += (n - 1) * unit(cout, mid, cout, shortcut=False)
        cin = cout
    for name in ("b6", "b7"):
        c1, c2, cout = (c(k) for k in BOTTLENECK_CHANNELS[name])
        total += bottleneck(cin, c1, c2, cout)
        cin = cout
    return total + 2 * cin  # bn7


def param_count(config: ResNet38Config = ResNet38Config()) -> int:
    """Parameters of ResNet38(config) from the layout alone: trunk + head (convs with bias)."""
    cin = scaled(BOTTLENECK_CHANNELS["b7"][2], config.width)
    mid = scaled(config.head_channels, config.width)
    head = 9 * cin * mid + mid + 9 * mid * config.num_classes + config.num_classes
    return trunk_param_count(config.width, config.units) + head
