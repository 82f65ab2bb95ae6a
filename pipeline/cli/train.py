"""`mtdistill train` and `mtdistill evaluate`: thin wrappers over pipeline.train.loop / pipeline.evaluate."""
from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli.util import echo_json, parse_size, user_errors


def merge_options(fn):
    for opt in reversed([
        click.option("--pseudo", default=None, help="Pseudo-label set to merge in (default: real targets only)."),
        click.option("--segm-threshold", type=float, default=0.5, show_default=True,
                     help="Use a pseudo label where the teacher's confidence >= this."),
        click.option("--depth-threshold", type=float, default=0.0, show_default=True),
        click.option("--depth-override", is_flag=True, help="Pseudo depth replaces valid real depth too."),
    ]):
        fn = opt(fn)
    return fn


def loop_options(fn):
    """Options of the one training loop, shared by `train` and `teacher train`."""
    for opt in reversed([
        click.option("--run", default=None, help="Run name: output in OUT/RUN, store tag train/RUN."),
        click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False)),
        click.option("--ref", default="main", show_default=True, help="Store branch, tag or snapshot id."),
        click.option("--split", default="train", show_default=True,
                     help="Training split(s), e.g. train or train,unlabeled."),
        click.option("--val-split", default="val", show_default=True, help="Evaluated each epoch ('' = none)."),
        click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True),
        click.option("--steps", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Fixed number of optimiser steps (overrides --epochs); 0 = epochs decide."),
        click.option("--batch-size", type=click.IntRange(min=1), default=6, show_default=True),
        click.option("--crop", default=None, help="Training crop WIDTHxHEIGHT (default: the frame size)."),
        click.option("--scale", nargs=2, type=float, default=(0.8, 2.0), show_default=True,
                     help="Random scale range (depth is divided by the scale)."),
        click.option("--no-flip", is_flag=True, help="No random horizontal flips."),
        click.option("--lr-encoder", type=float, default=1e-3, show_default=True),
        click.option("--lr-decoder", type=float, default=1e-2, show_default=True),
        click.option("--weight-decay", type=float, default=1e-5, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
                     help="DataLoader worker processes."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1..."),
        click.option("--ckpt-every", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Checkpoint every N steps (0 = each epoch)."),
        click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint."),
    ]):
        fn = opt(fn)
    return fn


def build_config(store, arch, run, out, ref, split, val_split, epochs, steps, batch_size, crop, scale, no_flip,
                 lr_encoder, lr_decoder, weight_decay, seed, workers, device, ckpt_every, policy,
                 task_weights=(("segm", 0.5), ("depth", 0.5)), encoder_weights=None, pretrained=False):
    from pipeline.train.augment import AugmentConfig
    from pipeline.train.config import TrainConfig

    if scale[0] <= 0 or scale[1] < scale[0]:
        from stores.errors import UserError
        raise UserError(f"--scale {scale[0]} {scale[1]}: need 0 < min <= max")
    return TrainConfig(
        store=store, run=run, out=out, ref=ref, arch=arch, policy=policy, split=split,
        val_split=val_split or None, epochs=epochs, steps=steps, batch_size=batch_size,
        augment=AugmentConfig(scale_min=scale[0], scale_max=scale[1],
                              crop=parse_size(crop, "--crop") if crop else None, flip=not no_flip),
        lr_encoder=lr_encoder, lr_decoder=lr_decoder, weight_decay=weight_decay, seed=seed, workers=workers,
        device=device, ckpt_every=ckpt_every, task_weights=task_weights, encoder_weights=encoder_weights,
        pretrained=pretrained)


def summarize_run(result: dict) -> None:
    m = result["metrics"].get("val", {})
    parts = []
    if "segm" in m:
        parts.append(f"val mIoU {100 * m['segm']['miou']:.1f}%")
    if "depth" in m:
        parts.append(f"val RMSE {m['depth']['rmse']:.3f} m")
    click.echo(f"step {result['step']}/{result['total_steps']}  {'  '.join(parts)}  "
               f"checkpoint {result['checkpoint']}  (store snapshot {result['snapshot']})")


@click.command()
@click.argument("store", type=click.Path())
@merge_options
@loop_options
@click.option("--segm-weight", type=float, default=0.5, show_default=True)
@click.option("--depth-weight", type=float, default=0.5, show_default=True)
@click.option("--encoder-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local MobileNet-v2 state dict (e.g. ImageNet weights) for the encoder.")
@click.option("--pretrained", is_flag=True, help="ImageNet encoder weights through timm (needs network).")
@user_errors
def train(store, pseudo, segm_threshold, depth_threshold, depth_override, run, segm_weight, depth_weight,
          encoder_weights, pretrained, resume, **loop):
    """Train the student (MT-LW-RefineNet) on real targets, merged with a pseudo-label set if given.

    \b
    Examples:
      mtdistill train data.ice --run baseline --epochs 20
      mtdistill train data.ice --run distilled --pseudo teachers-v1 --segm-threshold 0.7
      mtdistill train data.ice --run distilled --resume
    """
    from pipeline.train.loop import train as run_training
    from stores.merge import MergePolicy

    policy = MergePolicy(pseudo=pseudo, segm_threshold=segm_threshold, depth_threshold=depth_threshold,
                         depth_override=depth_override)
    cfg = build_config(store, {"name": "student"}, run or ("student-" + (pseudo or "real")), policy=policy,
                       task_weights=(("segm", segm_weight), ("depth", depth_weight)),
                       encoder_weights=encoder_weights, pretrained=pretrained, **loop)
    summarize_run(run_training(cfg, resume=resume))


@click.command()
@click.argument("store", type=click.Path())
@click.argument("checkpoint", type=click.Path())
@click.option("--split", default="test", show_default=True)
@click.option("--ref", default=None, help="Store version (default: the snapshot the run trained on's branch, main).")
@click.option("--depth-crop", type=click.Choice(["eigen", "garg"]), default=None, help="Standard depth crop.")
@click.option("--depth-cap", type=float, default=None, help="Ignore ground truth beyond this many metres.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--amp", is_flag=True, help="bf16 autocast on CUDA (faster; default fp32, same numbers as on CPU).")
@click.option("--out", "out_json", type=click.Path(dir_okay=False), default=None, help="Write metrics JSON here.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def evaluate(store, checkpoint, split, ref, depth_crop, depth_cap, device, batch_size, amp, out_json, as_json):
    """mIoU, per-class IoU, pixel accuracy and pooled depth metrics of a checkpoint on a split.

    \b
    Example:
      mtdistill evaluate data.ice runs/distilled/last.pt --split test --json
    """
    from pipeline.evaluate.evaluate import evaluate_model, format_metrics
    from pipeline.checkpoint import model_from_checkpoint
    from pipeline.runtime import json_safe, resolve_device
    from stores.repo import FrameStore

    s = FrameStore.open(store, ref)
    model, ckpt = model_from_checkpoint(checkpoint)
    check_classes(ckpt, s, checkpoint)
    dev = resolve_device(device)
    idx = s.indices(split)
    if len(idx) == 0:
        from stores.errors import UserError
        raise UserError(f"{store}: no frames in split {split!r}")
    res = evaluate_model(model.to(dev), s, idx, device=dev, tasks=ckpt.get("tasks", ("segm", "depth")),
                         batch_size=batch_size, depth_crop=depth_crop, depth_cap=depth_cap, amp=amp)
    res = json_safe({"checkpoint": str(checkpoint), "store": str(store), "snapshot": s.snapshot_id,
                     "split": split, **res})
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=2))
    if as_json:
        return echo_json(res)
    click.echo(format_metrics(res, [c["name"] for c in s.classes]))


def check_classes(ckpt: dict, store, path) -> None:
    from stores.errors import UserError
    names = [c["name"] for c in ckpt.get("classes", store.classes)]
    if "segm" in ckpt.get("tasks", ("segm",)) and names != [c["name"] for c in store.classes]:
        raise UserError(f"{path}: trained on {len(names)} classes, the store has {store.num_classes}")
