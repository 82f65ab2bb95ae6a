"""The `mtdistill` command: one click group, thin commands over library functions.

User errors (bad files, bad values, missing stores) print one line `error: ...` and exit 1; nothing
already stored is changed by a failed command.
"""
from __future__ import annotations

import click

from pipeline.cli import demo as cli_demo
from pipeline.cli import deploy as cli_student
from pipeline.cli import ingest as cli_ingest
from pipeline.cli import label as cli_label
from pipeline.cli import review as cli_review
from pipeline.cli import store as cli_store
from pipeline.cli import train as cli_train
from pipeline.cli import weights as cli_weights
from pipeline.cli.util import echo_json, user_errors  # noqa: F401 - for commands defined here
from pipeline.runtime import keep_freed_memory


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
for _cmd in (cli_store.show, cli_store.log, cli_store.tag, cli_store.diff, cli_store.reset, cli_store.verify):
    cli.add_command(_cmd)

# ---- synthetic world ----------------------------------------------------------------------------

# ---- teachers and labeling ----------------------------------------------------------------------
cli.add_command(cli_label.teacher)
cli_label.teacher.add_command(cli_weights.teacher_import)
cli.add_command(cli_label.label)
cli.add_command(cli_label.qa)
cli.add_command(cli_weights.import_weights)

# ---- review: look at pseudo-labels, export the doubtful ones, ingest the corrections --------------
cli.add_command(cli_review.review)
cli.add_command(cli_review.export_for_review)
cli_ingest.ingest.add_command(cli_review.ingest_review)

# ---- student: train, evaluate, predict, export, bench -------------------------------------------
cli.add_command(cli_train.train)
cli.add_command(cli_train.evaluate)
for _cmd in (cli_student.predict, cli_student.export_cmd, cli_student.bench):
    cli.add_command(_cmd)

# ---- demo ---------------------------------------------------------------------------------------
cli.add_command(cli_demo.demo)


def main() -> None:
    """The `mtdistill` console script: this process keeps the memory its networks free for reuse
    (runtime.keep_freed_memory; a process-wide setting, so not in the click group, which tests and other
    callers run inside their own process), then the click group."""
    keep_freed_memory()
    cli()
