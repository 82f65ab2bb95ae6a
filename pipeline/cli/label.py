"""`mtdistill teacher train`, `mtdistill label` and `mtdistill qa`: thin commands over pipeline.train.loop
(the one training loop), pipeline.label.job (the dask labeling job) and pipeline.evaluate.qa (the quality report)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipeline.cli.train import build_config, loop_options, summarize_run
from pipeline.train.teacher import train_teacher
from pipeline.cli.util import (BATCH, REF, STORE, TEXT, DeviceType, FiniteFloat, IntListType, NameType, count,
                               echo_json, in_file, out_file, out_folder, user_errors, workers)
from stores.errors import UserError
from stores.files import atomic_write_text


# ---- teacher train --------------------------------------------------------------------------------
@click.group()
def teacher():
    """Teacher networks: train one on a store's real targets (then label with it)."""


def teacher_arch(store_path, ref, task, arch, width, units, no_dropout, encoder) -> dict:
    """The click options -> a validated teacher arch dict (teachers.archs.arch_dict)."""
    from stores.repo import FrameStore
    from teachers.archs import ARCHS, arch_dict, config_from_dict

    if ARCHS[arch][2] != task:
        raise UserError(f"--arch {arch} is a {ARCHS[arch][2]} network, not --task {task}")
    fields = {}
    if arch.startswith("resnet38"):
        if encoder:
            raise UserError(f"--encoder applies to lwrefinenet_depth, not {arch}")
        fields.update(width=width, dropout=not no_dropout)
        if units:
            fields["units"] = list(units) * 4 if len(units) == 1 else list(units)
        if arch == "resnet38":
            fields["num_classes"] = FrameStore.open(store_path, ref).num_classes
    else:
        if units or width != 1.0 or no_dropout:
            raise UserError("--width, --units and --no-dropout apply to the resnet38 teachers")
        if encoder:
            fields["encoder"] = encoder
    return arch_dict(config_from_dict({"name": arch, **fields}, source="--arch"))


@teacher.command("train")
@click.argument("store", type=STORE)
@click.option("--task", type=click.Choice(["segm", "depth"]), required=True)
@click.option("--arch", type=click.Choice(["resnet38", "resnet38_depth", "lwrefinenet_depth"]), required=True)
@click.option("--width", type=FiniteFloat(0, 2, min_open=True), default=1.0, show_default=True,
              help="Channel width multiplier (resnet38*; 1 = the published ResNet-38).")
@click.option("--units", type=IntListType((1, 4), 1, 8), default=None,
              help="Residual units in B2..B5: N or four numbers, each 1..8 (resnet38*; default 3,3,6,3).")
@click.option("--no-dropout", is_flag=True, help="No B6/B7 dropout (resnet38*).")
@click.option("--encoder", type=TEXT, default=None, help="timm encoder of lwrefinenet_depth (default resnet101).")
@click.option("--pretrained", is_flag=True, help="ImageNet encoder weights through timm (lwrefinenet_depth; needs network).")
@click.option("--init", type=in_file(), default=None,
              help="Start the ResNet-38 trunk from this file: published weights (mtdistill teacher import) or a teacher file.")
@click.option("--teacher-out", type=out_file(), default=None,
              help="Teacher file to write (default OUT/RUN/teacher.pt).")
@loop_options
@user_errors
def teacher_train(store, task, arch, width, units, no_dropout, encoder, pretrained, init, teacher_out, run, resume,
                  **loop):
    """Train a teacher on the store's real targets with the student's training loop; writes a teacher file.

    \b
    Examples:
      mtdistill teacher train data.ice --task segm --arch resnet38 --width 0.25 --units 1 --epochs 30
      mtdistill teacher train data.ice --task depth --arch resnet38_depth --run depth-t --teacher-out depth.pt
      mtdistill teacher train data.ice --task segm --arch resnet38 --init ilsvrc-cls_rna-a1_cls1000_ep-0001.params
      mtdistill label data.ice --teacher segm=runs/teacher-segm-resnet38/teacher.pt --name v1
    """
    from stores.merge import MergePolicy

    run = run or f"teacher-{task}-{arch}"
    if init and not arch.startswith("resnet38"):
        raise UserError(f"--init starts a resnet38 trunk; --arch {arch} has none (use --pretrained)")
    arch_d = teacher_arch(store, loop["ref"], task, arch, width, units, no_dropout, encoder)
    cfg = build_config(store, arch_d, run, policy=MergePolicy(), task_weights=((task, 1.0),),
                       pretrained=pretrained, encoder_weights=init, **loop)
    out = teacher_out or str(Path(cfg.out) / run / "teacher.pt")
    result = train_teacher(cfg, task, out, resume=resume)
    summarize_run(result)
    click.echo(f"wrote teacher {result['teacher']} (version {result['version'][:12]})")


# ---- label ----------------------------------------------------------------------------------------
@click.command()
@click.argument("store", type=STORE)
@click.option("--teacher", "teachers", type=TEXT, multiple=True, required=True, metavar="TASK=PATH",
              help="segm=FILE and/or depth=FILE: a teacher file (.pt/.ts/.onnx; these never run code) or "
                   "module:function, which IMPORTS AND RUNS that Python code in this process and in every "
                   "labeling worker: only code you trust.")
@click.option("--name", type=NameType(), required=True, help="Pseudo-label set: writes pseudo/NAME/, tags label/NAME.")
@click.option("--remap", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Ontology remap (JSON/TOML) from the segm teacher's classes to the store's.")
@click.option("--flip", is_flag=True, help="Horizontal-flip TTA; depth teachers also write depth_conf.")
@click.option("--frames", type=click.Choice(["missing", "all"]), default="missing", show_default=True,
              help="missing: per task only frames without that real target; all: every frame.")
@click.option("--topk", type=count(0, 255), default=0, show_default=True,
              help="Also store each pixel's K most probable classes and their probabilities (soft targets "
                   "for `train --segm-soft`; 2 x K bytes per pixel before compression; 0 = off).")
@click.option("--workers", type=workers(1), default=None,
              help="LocalCluster worker processes, each with its own copy of the teachers [CPU: cores / "
                   "--torch-threads (one per core by default), at most 4; one per visible GPU].")
@click.option("--threads-per-worker", type=count(1, 64), default=None,
              help="Shards in progress per worker; its teacher runs one batch at a time, the others read/write [2].")
@click.option("--torch-threads", type=count(0, 1024), default=0, show_default=True,
              help="Torch threads per worker (0: cores / workers locally, torch's default remotely).")
@click.option("--scheduler", type=TEXT, default=None, help="Use a running dask scheduler, e.g. tcp://host:8786.")
@click.option("--batch-size", type=BATCH, default=8, show_default=True)
@click.option("--commit-every", type=count(1, 10**6), default=8, show_default=True, help="Shards per commit.")
@click.option("--ref", type=REF, default="main", show_default=True, help="Branch to label and commit on.")
@click.option("--device", type=DeviceType(local=False), default="auto", show_default=True,
              help="auto, cpu, cuda (every visible GPU, one worker each) or cuda:N.")
@click.option("--retries", type=count(0, 100), default=2, show_default=True,
              help="Extra attempts of a failing shard before it is reported missing.")
@click.option("--overwrite", is_flag=True, help="Relabel a set that other teachers or settings made.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@user_errors
def label(store, teachers, name, remap, flip, frames, topk, workers, threads_per_worker, torch_threads, scheduler, batch_size,
          commit_every, ref, device, retries, overwrite, as_json):
    """Label frames with teachers into pseudo/NAME on dask (resumable: re-run to finish).

    Exits 1 listing the missing shards if some shard failed after its retries; the same command
    again labels only what is missing.

    \b
    Examples:
      mtdistill label data.ice --teacher segm=segm.pt --teacher depth=depth.pt --name v1 --workers 2
      mtdistill label data.ice --teacher segm=cityscapes.onnx --remap teachers/remaps/cityscapes19_to_kitti6.json \\
          --name cs-v1 --frames all --flip
      mtdistill label data.ice --teacher segm=segm.pt --name v1 --scheduler tcp://10.0.0.5:8786
    """
    from pipeline.label.job import LabelConfig, format_result, parse_teachers, run_label

    if scheduler and (workers or threads_per_worker):
        raise UserError("--workers/--threads-per-worker start a local cluster; not with --scheduler")
    cfg = LabelConfig(store=store, name=name, teachers=parse_teachers(teachers), remap=remap, flip=flip,
                      frames=frames, topk=topk, workers=workers or 0, threads_per_worker=threads_per_worker or 2,
                      torch_threads=torch_threads,
                      scheduler=scheduler, batch_size=batch_size, commit_every=commit_every, ref=ref,
                      device=device, retries=retries, overwrite=overwrite)
    try:
        result = run_label(cfg)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished shards are committed; run the same command again to label the "
                   f"rest of pseudo set {name!r}", err=True)
        sys.exit(130)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(format_result(result))
    if result.missing:
        sys.exit(1)


# ---- qa -------------------------------------------------------------------------------------------
@click.command()
@click.argument("store", type=STORE)
@click.option("--pseudo", type=TEXT, default=None, help="Pseudo-label set to assess.")
@click.option("--teacher", "teachers", multiple=True,
              help="Or assess teachers before labeling: segm=FILE and/or depth=FILE, as `label --teacher` takes them "
                   "(run here on the frames with real targets; nothing is written).")
@click.option("--remap", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --teacher: ontology remap for the segm teacher.")
@click.option("--flip", is_flag=True, help="With --teacher: horizontal-flip TTA.")
@click.option("--limit", type=count(0, 10**9), default=0, show_default=True,
              help="With --teacher: at most this many frames, evenly spread (0 = all with real targets).")
@click.option("--split", type=TEXT, default=None, help="Only this split (default: all frames).")
@click.option("--ref", type=REF, default="main", show_default=True)
@click.option("--out", type=out_folder(), default=None,
              help="Write qa.json and reliability.png here.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def qa(store, pseudo, teachers, remap, flip, limit, split, ref, out, as_json):
    """How far to trust a teacher: its pseudo-labels (or, with --teacher, its predictions) against real
    targets where both exist.

    mIoU and per-class IoU, confidence calibration (accuracy per bin, ECE, accuracy above each
    --segm-threshold), depth RMSE / abs rel / delta1, a held-out depth check, one verdict per task.
    Label with --frames all to have frames to compare.

    \b
    Examples:
      mtdistill label data.ice --teacher segm=segm.pt --name check --frames all
      mtdistill qa data.ice --pseudo check --split val --out qa/check
      mtdistill qa data.ice --teacher segm=hf:nvidia/segformer-b0-finetuned-ade-512-512 --split val --limit 200
    """
    from pipeline.evaluate.qa import format_report, quality_report, reliability_plot
    from pipeline.runtime import json_safe
    from stores.repo import FrameStore

    if bool(pseudo) == bool(teachers):
        raise UserError("give either --pseudo NAME (a labeled set) or --teacher TASK=FILE (a teacher to try)")
    if not teachers and (remap or flip or limit):
        raise UserError("--remap, --flip and --limit go with --teacher")
    s = FrameStore.open(store, ref)
    if teachers:
        from pipeline.evaluate.qa_teacher import teacher_report
        from pipeline.label.job import parse_teachers

        report = teacher_report(s, parse_teachers(teachers), split=split, limit=limit, remap=remap, flip=flip)
    else:
        report = quality_report(s, pseudo, split)
    report = json_safe(report)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        if "segm" in report:
            report["plot"] = reliability_plot(report, Path(out) / "reliability.png")
        atomic_write_text(Path(out) / "qa.json", json.dumps(report, indent=2))
    if as_json:
        return echo_json(report)
    click.echo(format_report(report, [c["name"] for c in s.classes]))
    if out:
        click.echo(f"wrote {Path(out) / 'qa.json'}" + (f" and {report['plot']}" if "plot" in report else ""))
