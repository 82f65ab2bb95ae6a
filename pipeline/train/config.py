"""The training run's configuration (one frozen dataclass, saved in every checkpoint) and its pure
learning-rate schedule. Read by pipeline/train/loop.py; built by the CLI (pipeline/cli/train.py) and the demo."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from pipeline.train.augment import AugmentConfig
from stores.errors import UserError
from stores.merge import MergePolicy


OPTIMIZERS = ("sgd", "adamw")
FINETUNE_LR = 1e-3     # encoder lr for ImageNet-pretrained weights (the paper fine-tunes at 1e-3 / 1e-2)
SCRATCH_LR = 1e-2      # encoder lr from random initialisation: the encoder must learn as fast as the decoder


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (saved as config.json and in every checkpoint; `--resume` must
    match it). Learning rates are SGD rates per parameter group (encoder / decoder + heads); `milestones`
    are fractions of the run at which both are multiplied by `gamma`; `optimizer` "adamw" uses AdamW (Loshchilov &
    Hutter 2019) with the same rates and weight decay instead of SGD with momentum; `task_weights` scale the per-task
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
    optimizer: str = "sgd"                        # "sgd" (with momentum, the paper's) or "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-5
    milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of the run where the lr is multiplied by gamma
    gamma: float = 0.1
    grad_clip: float = 0.0                        # clip the gradients' global L2 norm to this; 0 = no clipping
    warmup: float = 0.0                           # fraction of the run with a linear lr warm-up from 0
    pseudo_drop: float = 0.0                      # share of highest-loss pseudo-target pixels ignored per batch
    task_weights: tuple[tuple[str, float], ...] = (("segm", 0.5), ("depth", 0.5))
    amp: str = "auto"                             # bf16 autocast: "auto" (CUDA, CPUs with bf16), "on", "off"
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    encoder_weights: str | None = None
    pretrained: bool = False
    ckpt_every: int = 0                           # steps between checkpoints; 0 = at each epoch end
    stop_after: int = 0                           # stop (as if killed) after this many steps; 0 = never
    batch_norm: str = "plain"                     # "plain" (under torchrun: per process), "sync" (CUDA), "frozen"

    def __post_init__(self):
        if self.amp not in ("auto", "on", "off"):
            raise UserError(f"amp {self.amp!r}: choose auto, on or off")
        if self.batch_norm not in ("plain", "sync", "frozen"):
            raise UserError(f"batch_norm {self.batch_norm!r}: choose plain, sync or frozen")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer {self.optimizer!r}: choose one of {list(OPTIMIZERS)}")
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


def lr_factor(step: int, total: int, milestones, gamma: float, warmup: float = 0.0) -> float:
    """Step decay: multiply by gamma at each milestone (a fraction of `total` steps); during the first
    `warmup` fraction of the steps the factor also rises linearly from 1/w to 1 (w = warm-up steps)."""
    factor = gamma ** sum(step >= math.ceil(m * total) for m in milestones)
    w = math.ceil(warmup * total)
    return factor * min(1.0, (step + 1) / w) if w else factor
