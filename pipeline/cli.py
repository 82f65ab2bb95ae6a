"""The `mtdistill` command: one click group, thin commands over library functions.

User errors (bad files, bad values, missing stores) print one line `error: ...` and exit 1; nothing
already stored is changed by a failed command.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from stores.errors import UserError


def user_errors(fn):
    """Turn the project's user-facing exceptions into one clear line and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
    return wrapper


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


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

# ---- synthetic world ----------------------------------------------------------------------------

# ---- teachers and labeling ----------------------------------------------------------------------

# ---- student: train, evaluate, predict, export, bench -------------------------------------------

# ---- demo ---------------------------------------------------------------------------------------
