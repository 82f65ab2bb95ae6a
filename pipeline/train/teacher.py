"""Teacher training (`mtdistill teacher train`, the demo's ResNet-38 teachers): the one training loop
(pipeline/train/loop.py) on a store's real targets, then a teacher file that `mtdistill label --teacher` loads."""
from __future__ import annotations

from pipeline.checkpoint import model_from_checkpoint
from pipeline.train.loop import train
from teachers.base import IMAGENET_NORM, save_teacher


def train_teacher(cfg, task: str, teacher_out, resume: bool = False) -> dict:
    """Train with the one loop (pipeline.train.loop), then write a teacher file that `label --teacher` loads
    (under torchrun rank 0 alone writes it, from the checkpoint it alone wrote)."""
    result = train(cfg, resume=resume)
    if result["rank"]:
        return result
    model, ckpt = model_from_checkpoint(result["checkpoint"])
    version = save_teacher(teacher_out, model, ckpt["arch"], task, norm=IMAGENET_NORM,
                           classes=ckpt["classes"] if task == "segm" else None, name=cfg.run,
                           extra={"trained_on": {"store": ckpt["store"], "snapshot": ckpt["snapshot"],
                                                 "run": cfg.run, "step": ckpt["step"]}})
    return {**result, "teacher": str(teacher_out), "version": version}
