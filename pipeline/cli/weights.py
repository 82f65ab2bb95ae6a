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
