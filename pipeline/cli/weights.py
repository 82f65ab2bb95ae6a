"""`mtdistill import-weights` and `mtdistill teacher import`: published weights -> our checkpoint files,
thin commands over teachers.published (the paper's student) and teachers.import_resnet38 (ResNet-38 A1)."""
from __future__ import annotations

import click

from pipeline.cli.util import echo_json, in_file, out_file, user_errors
from stores.classes import CLASS_LISTS


@click.command("import-weights")
@click.argument("file", type=in_file())
@click.option("--out", type=out_file(), required=True, help="Student checkpoint to write.")
@click.option("--classes", type=click.Choice(sorted(CLASS_LISTS)), default=None,
              help="Class list to record [by count: 40 -> nyud40, 6 -> kitti6, else none].")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def import_weights(file, out, classes, as_json):
    """Convert one of the paper's released student checkpoints (the authors' MT-LW-RefineNet `Net`) into
    our student on the reference MobileNet-v2: a teacher for `label`, or a model to evaluate, predict,
    export and bench. Every tensor's name and shape is checked; the file is read weights-only.

    \b
    Examples:
      mtdistill import-weights ExpKITTI_joint.ckpt --out kitti_student.pt
      mtdistill label kitti.ice --teacher segm=kitti_student.pt --teacher depth=kitti_student.pt --name paper
    """
    from teachers.published import import_student

    result = import_student(file, out, classes)
    if as_json:
        return echo_json(result)
    dropped = f"; dropped {', '.join(result['dropped'])}" if result["dropped"] else ""
    click.echo(f"wrote {out}: the paper's student, {result['num_classes']} classes "
               f"({result['classes'] or 'no class list recorded'}), {result['parameters']:,} parameters{dropped}")


@click.command("import")
@click.argument("arch", type=click.Choice(["resnet38"]))
@click.argument("file", type=in_file())
@click.option("--out", type=out_file(), required=True, help="Teacher file to write.")
@click.option("--num-classes", type=click.IntRange(1, 255), default=None,
              help="Classes of a new segmentation head, for ImageNet weights (which have none).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def teacher_import(arch, file, out, num_classes, as_json):
    """Read published ResNet-38 A1 weights (the authors' MXNet .params, or the PyTorch conversion with
    layers conv1a, b2, b2_1, ... b7, bn7) into a teacher file. A file with the segmentation head (the
    Cityscapes model) gives a teacher ready to label; ImageNet weights give the trunk with a new head of
    --num-classes, to train on (or start `teacher train --arch resnet38 --init FILE` from either file).

    \b
    Examples:
      mtdistill teacher import resnet38 cityscapes_rna-a1_cls19_s8_ep-0001.params --out cs.pt
      mtdistill label kitti.ice --teacher segm=cs.pt --remap teachers/remaps/cityscapes19_to_kitti6.json --name cs
      mtdistill teacher import resnet38 ilsvrc-cls_rna-a1_cls1000_ep-0001.params --out a1.pt --num-classes 6
    """
    from teachers.base import save_teacher
    from teachers.import_resnet38 import resnet38_from_file
    from teachers.remap import CITYSCAPES19

    model, info = resnet38_from_file(file, num_classes)
    classes = list(CITYSCAPES19) if info["head"] == "file" and info["num_classes"] == len(CITYSCAPES19) else None
    version = save_teacher(out, model, model.config, "segm", classes=classes,
                           extra={"imported": {**info, "file": str(file)}})
    info = {**info, "out": str(out), "version": version, "classes": classes}
    if as_json:
        return echo_json(info)
    head = "its segmentation head" if info["head"] == "file" else "a new, untrained head"
    click.echo(f"wrote {out}: ResNet-38 A1 ({info['layout']} layout, width {info['width']:g}, units "
               f"{','.join(map(str, info['units']))}) with {head} of {info['num_classes']} classes"
               + (f"; dropped {', '.join(info['dropped'])}" if info["dropped"] else ""))
