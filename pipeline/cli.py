"""The `mtdistill` command: one click group, thin commands over library functions.

User errors (bad files, bad values, missing stores) print one line `error: ...` and exit 1; nothing
already stored is changed by a failed command.
"""
from __future__ import annotations

import click

from pipeline import cli_ingest, cli_label, cli_store, cli_train
from pipeline.cli_util import echo_json, user_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mtdistill")
def cli():
    """mtdistill: teacher pseudo-labels in a versioned store, and a real-time segmentation + depth student.

    \b
    Example:
      mtdistill ingest synthetic data.ice --preset indoor --frames 200
      mtdistill show data.ice
    """


# ---- store: ingest and versioning ---------------------------------------------------------------
cli.add_command(cli_ingest.ingest)
for _cmd in (cli_store.show, cli_store.log, cli_store.tag, cli_store.diff, cli_store.reset):
    cli.add_command(_cmd)

# ---- synthetic world ----------------------------------------------------------------------------

# ---- teachers and labeling ----------------------------------------------------------------------
cli.add_command(cli_label.teacher)
cli.add_command(cli_label.label)
cli.add_command(cli_label.qa)

# ---- student: train, evaluate, predict, export, bench -------------------------------------------
cli.add_command(cli_train.train)
cli.add_command(cli_train.evaluate)

@cli.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset.")
@user_errors
def export_cmd(checkpoint, out, opset):
    """Export a student checkpoint to ONNX (dynamic batch/height/width, outputs segm and depth at 1/4).

    \b
    Example:
      mtdistill export runs/nyud/best.pt student.onnx
    """
    from pipeline.bench import load_student
    from pipeline.export import export_onnx

    click.echo(f"wrote {export_onnx(load_student(checkpoint), out, opset=opset)}")


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option("--classes", type=click.IntRange(min=1), default=40, show_default=True,
              help="Number of classes for random weights (ignored with CHECKPOINT).")
@click.option("--size", default="640x480", show_default=True, help="Input WIDTHxHEIGHT.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads.")
@click.option("--iters", type=click.IntRange(min=1), default=10, show_default=True, help="Timed rounds.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def bench(checkpoint, classes, size, batch, device, threads, iters, as_json):
    """Latency / throughput of the student's execution paths (random weights without CHECKPOINT).

    \b
    Example:
      mtdistill bench --size 640x480 --batch 1 --device cpu --threads 2
    """
    from pipeline.bench import bench_student, format_table
    from pipeline.cli_util import parse_size

    result = bench_student(classes, size=parse_size(size), batch=batch, device=device, threads=threads,
                           checkpoint=checkpoint, iters=iters)
    if as_json:
        echo_json(result)
    else:
        click.echo(format_table(result))


# ---- demo ---------------------------------------------------------------------------------------
