"""The student: Multi-Task Light-Weight RefineNet (MobileNet-v2 encoder, LW-RefineNet decoder, two heads).

Flow: image (B,3,H,W), ImageNet-normalised -> encoder taps -> Decoder -> heads ->
{"segm": (B,C,H/4,W/4) logits, "depth": (B,1,H/4,W/4) metres}. Outputs stay at 1/4 resolution;
losses, metrics and predictions upsample them outside the network.
"""
from __future__ import annotations

import torch
from torch import nn

from student.encoder import MobileNetV2Encoder
from student.refinenet import Decoder

TASKS = ("segm", "depth")
# The student's input contract: RGB uint8 -> /255 -> ImageNet mean/std (torchvision/timm convention)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_RGB = tuple(round(255 * m) for m in IMAGENET_MEAN)  # padding colour: the mean image colour (uint8)


def normalize(rgb: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 RGB (B,3,H,W), 0..255 -> float32 (B,3,H,W): x / 255, minus mean, divided by std (per channel),
    on whatever device `rgb` is."""
    m = torch.tensor(mean, device=rgb.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=rgb.device).view(1, 3, 1, 1)
    return (rgb.float() / 255.0 - m) / s


class Head(nn.Sequential):
    """Task head: depthwise 1x1 (no bias) -> ReLU6 -> 3x3 conv (bias) to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size=1, groups=in_channels, bias=False),
            nn.ReLU6(),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
        )


class MTLWRefineNet(nn.Module):
    """Joint semantic segmentation and depth on one shared decoder feature (Nekrasov et al., ICRA 2019):
    MobileNet-v2 encoder -> LW-RefineNet Decoder -> one Head per task; ~3.07 M parameters at 40 classes."""

    def __init__(self, num_classes: int, encoder: MobileNetV2Encoder):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = encoder
        self.decoder = Decoder(in_channels=encoder.out_channels)
        self.heads = nn.ModuleDict({
            "segm": Head(self.decoder.out_channels, num_classes),
            "depth": Head(self.decoder.out_channels, 1),
        })

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """float32 (B,3,H,W) ImageNet-normalised RGB (see `normalize`) -> {"segm": (B,num_classes,H/4,W/4) logits,
        "depth": (B,1,H/4,W/4) metres, before ReLU} (sizes round up for odd H, W).
        """
        feature = self.decoder(self.encoder(x))  # (B,256,H/4,W/4)
        return {task: head(feature) for task, head in self.heads.items()}


def build_student(num_classes: int, encoder_weights: dict | None = None, pretrained: bool = False,
                  source: str = "encoder weights", encoder: str = "timm") -> MTLWRefineNet:
    """The paper's student. encoder_weights: an already-read timm MobileNet-v2 state dict (ImageNet weights;
    the student reads no files: pipeline/checkpoint.py does); pretrained=True asks timm to download them
    instead (needs network access). encoder: "timm" or "reference" (the authors' variant, see
    student/encoder.py; no ImageNet weights). Raises WeightsError (naming `source`) if the weights do not
    fit, ValueError for a bad num_classes or encoder."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    encoder = MobileNetV2Encoder(pretrained=pretrained, weights=encoder_weights, source=source, variant=encoder)
    return MTLWRefineNet(num_classes, encoder)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of `model`."""
    return sum(p.numel() for p in model.parameters())
