"""Helpers shared by the CLI modules: one-line user errors, JSON output, option parsers."""
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
    """Print `obj` as indented JSON (non-JSON values through str())."""
    click.echo(json.dumps(obj, indent=2, default=str))


def parse_size(text: str, what: str = "--size") -> tuple[int, int]:
    """'640x480' (W x H, as people write it) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 8 or h < 8:
        raise UserError(f"{what} {text!r}: frames must be at least 8x8")
    return h, w
