"""`mtdistill demo`: a thin command over pipeline/demo (config -> run -> report)."""
from __future__ import annotations

import click

from pipeline.cli.util import SEED, DeviceType, SizeType, count, out_folder, user_errors, workers


@click.command()
@click.option("--out", default="demo_out", show_default=True, type=out_folder())
@click.option("--preset", type=click.Choice(["indoor", "outdoor"]), default="outdoor", show_default=True,
              help="outdoor: KITTI-6 streets (6 classes, learnable in a CPU budget); indoor: NYUDv2-40 rooms.")
@click.option("--size", type=SizeType(min_side=16, max_side=4096), default=None,
              help="WIDTHxHEIGHT (default 256x80 outdoor, 128x96 indoor; --full: 1216x352 / 640x480).")
@click.option("--frames", type=count(20, 10**6), default=None, help="Target-domain frames (500).")
@click.option("--source-frames", type=count(10, 10**6), default=None, help="Teacher-domain frames.")
@click.option("--segm-fraction", type=click.FloatRange(0, 1), default=None,
              help="Share of target train frames with segmentation (default 0.1).")
@click.option("--student-steps", type=count(1, 10**8), default=None)
@click.option("--teacher-steps", type=count(1, 10**8), default=None)
@click.option("--segm-threshold", type=click.FloatRange(0, 1), default=None, help="Pseudo-label confidence.")
@click.option("--teacher", type=click.Choice(["student", "resnet38"]), default=None,
              help="Teacher networks: student architecture (CPU default) or ResNet-38 (--full default).")
@click.option("--seed", type=SEED, default=None)
@click.option("--device", type=DeviceType(), default=None, help="auto (default), cpu, cuda.")
@click.option("--workers", type=workers(1), default=None, help="Labeling / loader workers.")
@click.option("--full", is_flag=True, help="The larger configuration meant for a GPU.")
@user_errors
def demo(out, preset, size, frames, source_frames, segm_fraction, student_steps, teacher_steps, segm_threshold,
         teacher, seed, device, workers, full):
    """The paper's experiment end to end on the synthetic world: ingest, teachers, labeling, three
    students (real only / real + pseudo / oracle), evaluation, report.md. Re-running skips finished stages.

    \b
    Example:
      mtdistill demo --out demo_out
      mtdistill demo --full --device cuda --out demo_full
    """

    from pipeline.demo.config import demo_config
    from pipeline.demo.run import run_demo

    cfg = demo_config(full, out=out, preset=preset, size=size, frames=frames,
                      source_frames=source_frames, segm_fraction=segm_fraction, student_steps=student_steps,
                      teacher_steps=teacher_steps, segm_threshold=segm_threshold, teacher=teacher, seed=seed,
                      device=device, workers=workers)
    run_demo(cfg)
