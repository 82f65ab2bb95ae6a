"""Helpers shared by the CLI modules: one-line user errors, JSON output, option parsers."""
from __future__ import annotations

import functools
import json
import math
import os
import re
import sys

import click

from stores.errors import UserError


def user_errors(fn):
    """Turn the project's user-facing exceptions, and reads of a damaged store chunk, into one clear line
    and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except Exception as e:  # a damaged chunk read anywhere: name the store, array and frame
            from stores.verify import explain_corruption
            message = explain_corruption(e)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
    return wrapper


def echo_json(obj) -> None:
    """Print `obj` as indented JSON (non-JSON values through str())."""
    click.echo(json.dumps(obj, indent=2, default=str))


def parse_size(text: str, what: str = "--size", min_side: int = 8, max_side: int = 8192) -> tuple[int, int]:
    """'640x480' (W x H, as people write it) -> (H, W); each side in [min_side, max_side] pixels.
    Raises UserError naming `what` and the text otherwise."""
    try:
        w, h = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if not (min_side <= w <= max_side and min_side <= h <= max_side):
        raise UserError(f"{what} {text!r}: width and height must be in {min_side}..{max_side} pixels")
    return h, w


# ---- option types: every value a user can type is checked here, at parse time, before any side effect --
MAX_SIDE = 8192            # pixels per frame side (a 8192x8192 RGB frame is 200 MB)
MAX_BATCH = 1024           # images per batch (train, evaluate, label, bench)
MAX_PIXELS_PER_BATCH = 64 * 640 * 480   # bench: batch x height x width


class SizeType(click.ParamType):
    """'WIDTHxHEIGHT' -> (H, W) in pixels, each side in [min_side, MAX_SIDE]."""
    name = "WIDTHxHEIGHT"

    def __init__(self, min_side: int = 8, max_side: int = MAX_SIDE):
        self.min_side, self.max_side = min_side, max_side

    def get_metavar(self, param, ctx=None):
        """How --help shows the value: WIDTHxHEIGHT."""
        return "WIDTHxHEIGHT"

    def convert(self, value, param, ctx):
        """'WIDTHxHEIGHT' text -> (H, W); fails (usage error) naming the value otherwise."""
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(str(value), f"--{param.name}" if param else "size",
                              min_side=self.min_side, max_side=self.max_side)
        except UserError as e:
            self.fail(str(e).split(": ", 1)[-1], param, ctx)


class FiniteFloat(click.FloatRange):
    """A float that is finite (no nan, inf) and inside the range; e.g. FiniteFloat(0, 1)."""
    name = "finite float"

    def convert(self, value, param, ctx):
        """A finite float within the type's range; fails for NaN, inf, text or out-of-range values."""
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)


class DeviceType(click.ParamType):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N', checked against this machine by pipeline.runtime.resolve_device;
    the text is passed on (each stage resolves it again)."""
    name = "DEVICE"

    def __init__(self, choices: tuple[str, ...] | None = None, local: bool = True):
        self.choices, self.local = choices, local

    def convert(self, value, param, ctx):
        """The device text, lower-cased; fails (usage error) for an unknown form or, when `local`, for a
        device this machine lacks (labeling on a remote --scheduler checks the workers instead)."""
        from pipeline.runtime import DEVICE_FORMS, resolve_device

        text = str(value).strip().lower()
        if self.choices and text.split(":")[0] not in self.choices:
            self.fail(f"{value!r}: choose one of {', '.join(self.choices)}", param, ctx)
        if not self.local:
            if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
                self.fail(f"{value!r}: choose {DEVICE_FORMS}", param, ctx)
            return text
        try:
            resolve_device(text, f"--{param.name}" if param else "--device")
        except UserError as e:
            self.fail(str(e).split(" ", 1)[-1], param, ctx)      # "VALUE: reason" (click names the option)
        return text


class OpsetType(click.ParamType):
    """An ONNX opset that both the installed exporter (torch.onnx) and onnx support (17 at least)."""
    name = "OPSET"

    def convert(self, value, param, ctx):
        """An int opset the installed exporter and onnx support; fails otherwise."""
        lo, hi = 17, max_opset()
        return click.IntRange(lo, hi).convert(value, param, ctx)


def max_opset() -> int:
    """The highest ONNX opset the installed torch.onnx exporter and onnx package both support."""
    import onnx
    from torch.onnx import _constants

    return min(int(_constants.ONNX_MAX_OPSET), int(onnx.defs.onnx_opset_version()))


class NameType(click.ParamType):
    """A run / tag name: letters, digits and . _ @ / - (not first), no '..' and at most 100 characters."""
    name = "NAME"

    def convert(self, value, param, ctx):
        """The name, checked against the allowed characters; fails otherwise."""
        text = str(value)
        if (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@/-]{0,99}", text) or ".." in text
                or text.endswith("/")):
            self.fail(f"{text!r}: use letters, digits and . _ @ / - (not first), no '..'", param, ctx)
        return text


def count(lo: int = 0, hi: int = 10**9) -> click.IntRange:
    """A whole number in [lo, hi]."""
    return click.IntRange(lo, hi)


def workers(lo: int = 0) -> click.IntRange:
    """A number of worker processes: lo .. 4 x this machine's cores (at least 8)."""
    return click.IntRange(lo, max(8, 4 * (os.cpu_count() or 1)))


SEED = click.IntRange(0, 2**32 - 1)
BATCH = click.IntRange(1, MAX_BATCH)
THREADS = click.IntRange(1, 1024)


class StorePathType(click.ParamType):
    """A store folder path (need not exist yet): not empty, and not an existing file; or an object-storage
    URL s3:// gs:// az://BUCKET/PREFIX (stores/location.py; checked for form only, not reached yet)."""
    name = "STORE"

    def convert(self, value, param, ctx):
        """The path or URL text; fails for an empty value, a path that cannot be a store or a bad URL."""
        from stores.location import is_url, parse_url

        text = str(value)
        if not text.strip():
            self.fail("empty path: give the store's folder", param, ctx)
        if is_url(text):
            try:
                return parse_url(text).url
            except UserError as e:
                self.fail(str(e), param, ctx)
        if os.path.exists(text) and not os.path.isdir(text):
            self.fail(f"{text}: is a file, not a store folder", param, ctx)
        return text


STORE = StorePathType()


class OutPath(click.Path):
    """An output path (click.Path with its file / folder rules) that is not empty: '' would mean the
    current folder."""

    def convert(self, value, param, ctx):
        """The output path text; fails for an empty value or a path of the wrong kind."""
        if not str(value).strip():
            self.fail("empty path", param, ctx)
        return super().convert(value, param, ctx)


def out_folder() -> OutPath:
    """An output folder (created if missing; an existing file there is refused)."""
    return OutPath(file_okay=False)


def out_file() -> OutPath:
    """An output file (an existing folder there is refused)."""
    return OutPath(dir_okay=False)


def in_file() -> click.Path:
    """An existing, readable input file."""
    return click.Path(exists=True, dir_okay=False, readable=True)


class TextType(click.ParamType):
    """Free text that must not be empty or blank (a split, a pseudo set, a class list, an encoder, a store
    version...); `hint` says what to give instead."""

    def __init__(self, name: str = "TEXT", hint: str = "empty value"):
        self.name, self.hint = name, hint

    def convert(self, value, param, ctx):
        """The text as given; fails (usage error, with the hint) for an empty or blank value."""
        if not str(value).strip():
            self.fail(self.hint, param, ctx)
        return str(value)


TEXT = TextType()
REF = TextType("REF", "empty: give a branch, tag or snapshot id")   # checked against the store when opened


class IntListType(click.ParamType):
    """'N' or 'A,B,C,D': whole numbers in [lo, hi], as many as one of `lengths` -> tuple of ints."""
    name = "N[,N...]"

    def __init__(self, lengths=(1, 4), lo: int = 1, hi: int = 8):
        self.lengths, self.lo, self.hi = tuple(lengths), lo, hi

    def convert(self, value, param, ctx):
        """Comma-separated ints -> list[int] within the bounds; fails otherwise."""
        if isinstance(value, tuple):
            return value
        try:
            parts = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r}: expected {' or '.join(str(n) for n in self.lengths)} whole number(s)", param, ctx)
        if len(parts) not in self.lengths or not all(self.lo <= p <= self.hi for p in parts):
            self.fail(f"{value!r}: expected {' or '.join(str(n) for n in self.lengths)} whole number(s) in "
                      f"{self.lo}..{self.hi}", param, ctx)
        return parts
