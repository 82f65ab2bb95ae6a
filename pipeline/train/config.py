"""The training run's configuration (one frozen dataclass, saved in every checkpoint) and its pure
learning-rate schedule. Read by pipeline/train/loop.py; built by the CLI (pipeline/cli/train.py) and the demo."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from pipeline.train.augment import AugmentConfig
from stores.merge import MergePolicy


FINETUNE_LR = 1e-3     # encoder lr for ImageNet-pretrained weights (the paper fine-tunes at 1e-3 / 1e-2)
SCRATCH_LR = 1e-2      # encoder lr from random initialisation: the encoder must learn as fast as the decoder


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (saved as config.json and in every checkpoint; `--resume` must
    match it). Learning rates are SGD rates per parameter group (encoder / decoder + heads); `milestones`
    are fractions of the run at which both are multiplied by `gamma`; `task_weights` scale the per-task
    losses (student/losses.py); `augment` holds scale range, crop (H, W) and flip; `steps` > 0 fixes the
    number of optimiser steps, else `epochs` decide."""
    store: str
    run: str = "student"
    out: str = "runs"
    ref: str = "main"
    arch: dict = field(default_factory=lambda: {"name": "student"})  # num_classes filled from the store
    policy: MergePolicy = MergePolicy()
    split: str = "train"                          # one split, or several joined by commas
    val_split: str | None = "val"
    epochs: int = 10
    steps: int = 0                                # fixed step budget (overrides epochs); 0 = epochs decide
    batch_size: int = 6
    augment: AugmentConfig = AugmentConfig()
    lr_encoder: float | None = None               # None: FINETUNE_LR with pretrained weights, else SCRATCH_LR
    lr_decoder: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-5
    milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of the run where the lr is multiplied by gamma
    gamma: float = 0.1
    grad_clip: float = 0.0                        # clip the gradients' global L2 norm to this; 0 = no clipping
    task_weights: tuple[tuple[str, float], ...] = (("segm", 0.5), ("depth", 0.5))
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    encoder_weights: str | None = None
    pretrained: bool = False
    ckpt_every: int = 0                           # steps between checkpoints; 0 = at each epoch end
    stop_after: int = 0                           # stop (as if killed) after this many steps; 0 = never

    def __post_init__(self):
        if self.lr_encoder is None:
            pretrained = self.pretrained or self.encoder_weights or self.arch.get("pretrained", False)
            object.__setattr__(self, "lr_encoder", FINETUNE_LR if pretrained else SCRATCH_LR)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["milestones"], d["task_weights"] = list(self.milestones), [list(t) for t in self.task_weights]
        if d["augment"]["crop"] is not None:
            d["augment"]["crop"] = list(d["augment"]["crop"])
        return d


def lr_factor(step: int, total: int, milestones, gamma: float) -> float:
    """Step decay: multiply by gamma at each milestone (a fraction of `total` steps)."""
    return gamma ** sum(step >= math.ceil(m * total) for m in milestones)
