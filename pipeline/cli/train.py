"""`mtdistill train` and `mtdistill evaluate`: thin wrappers over pipeline.train.loop / pipeline.evaluate."""
from __future__ import annotations

import json

import click

from pipeline.cli.util import (BATCH, REF, SEED, STORE, TEXT, DeviceType, FiniteFloat, NameType, SizeType,
                               count, echo_json, in_file, out_file, out_folder, user_errors, workers)


def merge_options(fn):
    """Click options of the merge rule; each maps 1:1 onto a MergePolicy field (see policy_from_options)."""
    for opt in reversed([
        click.option("--pseudo", type=TEXT, default=None, help="Pseudo-label set to merge in (default: real targets only)."),
        click.option("--segm-threshold", type=FiniteFloat(0, 1), default=0.5, show_default=True,
                     help="Use a pseudo label where the teacher's confidence >= this."),
        click.option("--segm-class-share", type=FiniteFloat(0, 1), default=0.0, show_default=True,
                     help="Class-balanced thresholds: per class, keep at least this share of the pixels the "
                          "teacher gives it, its most confident ones (0 = one global threshold)."),
        click.option("--segm-soft", is_flag=True,
                     help="Learn segmentation on pixels without a real label from the teacher's top-k class "
                          "probabilities (soft cross-entropy weighted by its confidence; the set must be "
                          "labeled with --topk) instead of thresholded hard labels."),
        click.option("--depth-threshold", type=FiniteFloat(0, 1), default=0.0, show_default=True,
                     help="Use pseudo depth where its confidence (flip-TTA agreement) >= this."),
        click.option("--depth-override", is_flag=True, help="Pseudo depth replaces valid real depth too."),
        click.option("--depth-fill", type=click.Choice(["holes", "frames"]), default="holes", show_default=True,
                     help="holes: pseudo depth in every pixel without real depth (LiDAR hole filling); "
                          "frames: only in frames without any real depth."),
        click.option("--pseudo-depth-classes", "depth_classes", type=click.Choice(["all", "observed"]),
                     default="all", show_default=True,
                     help="observed: pseudo depth only on classes that carry real depth in the training data "
                          "(a LiDAR never returns sky, so sky gets none)."),
        click.option("--depth-anchor", type=click.Choice(["none", "scale"]), default="none", show_default=True,
                     help="scale: multiply each frame's pseudo depth by median(real / pseudo) over its real pixels."),
        click.option("--anchor-max-residual", type=FiniteFloat(0, 100), default=0.0, show_default=True,
                     help="With --depth-anchor scale: no pseudo depth in frames whose fit misses their real "
                          "depth by a median relative error above this (0 = keep all)."),
        click.option("--depth-consistency", type=FiniteFloat(0, 100), default=0.0, show_default=True,
                     help="Drop pseudo depth near real pixels it misses by more than this relative error (0 = off)."),
        click.option("--depth-max", type=FiniteFloat(0, 1e5), default=0.0, show_default=True,
                     help="Drop pseudo depth beyond this many metres (0 = no cap)."),
    ]):
        fn = opt(fn)
    return fn


MERGE_FIELDS = ("pseudo", "segm_threshold", "segm_class_share", "segm_soft", "depth_threshold", "depth_override", "depth_fill",
                "depth_classes", "depth_anchor", "anchor_max_residual", "depth_consistency", "depth_max")


def policy_from_options(options: dict):
    """MergePolicy from (and popped out of) the click options of merge_options."""
    from stores.merge import MergePolicy

    fields = {k: options.pop(k) for k in MERGE_FIELDS}
    fields["depth_classes"] = None if fields["depth_classes"] == "all" else fields["depth_classes"]
    return MergePolicy(**fields)


def loop_options(fn):
    """Options of the one training loop, shared by `train` and `teacher train`."""
    for opt in reversed([
        click.option("--run", type=NameType(), default=None, help="Run name: output in OUT/RUN, store tag train/RUN."),
        click.option("--out", default="runs", show_default=True, type=out_folder()),
        click.option("--ref", type=REF, default="main", show_default=True, help="Store branch, tag or snapshot id."),
        click.option("--split", type=TEXT, default="train", show_default=True,
                     help="Training split(s), e.g. train or train,unlabeled."),
        click.option("--val-split", default="val", show_default=True, help="Evaluated each epoch ('' = none)."),
        click.option("--epochs", type=count(1, 10**5), default=10, show_default=True),
        click.option("--steps", type=count(0, 10**8), default=0, show_default=True,
                     help="Fixed number of optimiser steps (overrides --epochs); 0 = epochs decide."),
        click.option("--batch-size", type=BATCH, default=6, show_default=True),
        click.option("--crop", type=SizeType(), default=None,
                     help="Training crop WIDTHxHEIGHT (default: the frame size)."),
        click.option("--scale", nargs=2, type=FiniteFloat(0, 16, min_open=True), default=(0.8, 2.0),
                     show_default=True,
                     help="Random scale range (depth is divided by the scale)."),
        click.option("--no-flip", is_flag=True, help="No random horizontal flips."),
        click.option("--lr-encoder", type=FiniteFloat(0, 10), default=None,
                     help="Encoder learning rate [1e-3 with --pretrained or --encoder-weights (fine-tuning), "
                          "1e-2 from random initialisation]."),
        click.option("--lr-decoder", type=FiniteFloat(0, 10), default=1e-2, show_default=True),
        click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True,
                     help="sgd: SGD with momentum 0.9 (the paper's); adamw: AdamW with the same rates."),
        click.option("--weight-decay", type=FiniteFloat(0, 1), default=1e-5, show_default=True),
        click.option("--seed", type=SEED, default=0, show_default=True),
        click.option("--workers", type=workers(0), default=2, show_default=True,
                     help="DataLoader worker processes."),
        click.option("--device", type=DeviceType(), default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:1..."),
        click.option("--amp", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                     help="bf16 autocast + channels_last: auto = on CUDA and on CPUs with native bf16."),
        click.option("--ckpt-every", type=count(0, 10**8), default=0, show_default=True,
                     help="Checkpoint every N steps (0 = each epoch)."),
        click.option("--grad-clip", type=FiniteFloat(0, 1e6), default=0.0, show_default=True,
                     help="Clip the gradients' global L2 norm to this (0 = no clipping)."),
        click.option("--warmup", type=FiniteFloat(0, 1), default=0.0, show_default=True,
                     help="Fraction of the run with a linear learning-rate warm-up."),
        click.option("--pseudo-drop", type=FiniteFloat(0, 0.99), default=0.0, show_default=True,
                     help="Ignore this share of the highest-loss pseudo-labeled pixels of each batch."),
        click.option("--strong-augment", is_flag=True,
                     help="Colour jitter and blur on samples with pseudo targets, CutMix within batches."),
        click.option("--batch-norm", type=click.Choice(["plain", "sync", "frozen"]), default="plain",
                     show_default=True,
                     help="plain: batch statistics (under torchrun, of each process's share); sync: SyncBatchNorm "
                          "over the global batch (torchrun on CUDA); frozen: fixed running statistics."),
        click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint."),
    ]):
        fn = opt(fn)
    return fn


def build_config(store, arch: dict, run: str, policy, task_weights, **options):
    """The frozen TrainConfig of a run: the loop options map 1:1 onto its fields, except --scale, --crop
    and --no-flip (the AugmentConfig) and --val-split '' (no validation). UserError for a --scale range
    that is not 0 < min <= max."""
    from pipeline.train.augment import AugmentConfig
    from pipeline.train.config import TrainConfig

    (lo, hi), crop, flip = options.pop("scale"), options.pop("crop"), not options.pop("no_flip")
    strong = options.pop("strong_augment")
    if lo <= 0 or hi < lo:
        from stores.errors import UserError
        raise UserError(f"--scale {lo} {hi}: need 0 < min <= max")
    options["val_split"] = options["val_split"] or None
    return TrainConfig(store=store, arch=arch, run=run, policy=policy, task_weights=task_weights,
                       augment=AugmentConfig(scale_min=lo, scale_max=hi, crop=crop, flip=flip, strong=strong),
                       **options)


def summarize_run(result: dict) -> None:
    """Print one line about a finished run: step / total steps, val mIoU % and RMSE (m) when present,
    checkpoint path and store snapshot (under torchrun on rank 0 only, which wrote it).
    """
    if result.get("rank"):
        return
    m = result["metrics"].get("val", {})
    parts = []
    if "segm" in m:
        parts.append(f"val mIoU {100 * m['segm']['miou']:.1f}%")
    if "depth" in m:
        parts.append(f"val RMSE {m['depth']['rmse']:.3f} m")
    click.echo(f"step {result['step']}/{result['total_steps']}  {'  '.join(parts)}  "
               f"checkpoint {result['checkpoint']}  (store snapshot {result['snapshot']})")


@click.command()
@click.argument("store", type=STORE)
@merge_options
@loop_options
@click.option("--segm-weight", type=FiniteFloat(0, 1000), default=0.5, show_default=True)
@click.option("--depth-weight", type=FiniteFloat(0, 1000), default=0.5, show_default=True)
@click.option("--encoder-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local MobileNet-v2 state dict (e.g. ImageNet weights) for the encoder.")
@click.option("--pretrained", is_flag=True, help="ImageNet encoder weights through timm (needs network).")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start the whole student from the paper's weights (a file of `mtdistill import-weights`; reference "
                   "MobileNet-v2). Its segmentation head's last conv starts fresh if the class count differs.")
@user_errors
def train(store, run, segm_weight, depth_weight, resume, init, **options):
    """Train the student (MT-LW-RefineNet) on real targets, merged with a pseudo-label set if given.

    \b
    Examples:
      mtdistill train data.ice --run baseline --epochs 20
      mtdistill train data.ice --run distilled --pseudo teachers-v1 --segm-threshold 0.7
      mtdistill train data.ice --run distilled --pseudo teachers-v1 --pseudo-depth-classes observed \\
          --depth-anchor scale --grad-clip 10
      mtdistill train data.ice --run distilled --resume
      mtdistill train kitti.ice --run from-paper --init kitti_student.pt   # from mtdistill import-weights
    """
    from pipeline.train.loop import train as run_training

    policy = policy_from_options(options)
    arch = {"name": "student"}
    if init:
        from stores.errors import UserError
        if options["encoder_weights"] or options["pretrained"]:
            raise UserError("--init starts the whole student; not with --encoder-weights or --pretrained")
        arch, options["encoder_weights"] = {"name": "student", "encoder": "reference"}, init
    cfg = build_config(store, arch, run or ("student-" + (policy.pseudo or "real")), policy=policy,
                       task_weights=(("segm", segm_weight), ("depth", depth_weight)), **options)
    summarize_run(run_training(cfg, resume=resume))


@click.command()
@click.argument("store", type=STORE)
@click.argument("checkpoint", type=in_file())
@click.option("--split", type=TEXT, default="test", show_default=True)
@click.option("--ref", type=REF, default=None, help="Store version (default: the snapshot the run trained on's branch, main).")
@click.option("--depth-crop", type=click.Choice(["eigen", "garg"]), default=None, help="Standard depth crop.")
@click.option("--depth-cap", type=FiniteFloat(0, 1e6, min_open=True), default=None, help="Ignore ground truth beyond this many metres.")
@click.option("--device", type=DeviceType(), default="auto", show_default=True)
@click.option("--batch-size", type=BATCH, default=4, show_default=True)
@click.option("--amp", is_flag=True, help="bf16 autocast on CUDA (faster; default fp32, same numbers as on CPU).")
@click.option("--out", "out_json", type=out_file(), default=None, help="Write metrics JSON here.")
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
    idx = s.indices(split, required=True)
    res = evaluate_model(model.to(dev), s, idx, device=dev, tasks=ckpt.get("tasks", ("segm", "depth")),
                         batch_size=batch_size, depth_crop=depth_crop, depth_cap=depth_cap, amp=amp)
    res = json_safe({"checkpoint": str(checkpoint), "store": str(store), "snapshot": s.snapshot_id,
                     "split": split, **res})
    if out_json:
        from stores.files import atomic_write_text
        atomic_write_text(out_json, json.dumps(res, indent=2))
    if as_json:
        return echo_json(res)
    click.echo(format_metrics(res, [c["name"] for c in s.classes]))


def check_classes(ckpt: dict, store, path) -> None:
    """UserError when a segm checkpoint's class names differ from the store's (a checkpoint without a class
    list passes).
    """
    from stores.errors import UserError
    names = [c["name"] for c in ckpt.get("classes", store.classes)]
    if "segm" in ckpt.get("tasks", ("segm",)) and names != [c["name"] for c in store.classes]:
        raise UserError(f"{path}: trained on {len(names)} classes, the store has {store.num_classes}")
