"""What every process of the pipeline shares at run time: the device choice, the allocator settings of
processes that run networks, JSON-safe values and one progress-bar style. Sits under every stage of
pipeline/ (ingest, label, train, evaluate, deploy, demo); imports nothing of pipeline/ itself. Files are
written through stores.files.atomic_write."""
from __future__ import annotations

import ctypes
import math
import os
import platform
import re
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from stores.errors import UserError

console = Console(stderr=True)
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str, what: str = "--device"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device. 'auto' is the first CUDA device if there is one,
    else the CPU. Raises UserError naming `what` for any other text, for CUDA on a machine without it, and
    for a CUDA index past the last device."""
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    found = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not found:
        raise UserError(f"{what} {name!r}: choose {DEVICE_FORMS}")
    if not torch.cuda.is_available():
        raise UserError(f"{what} {name}: no CUDA device on this machine")
    index = int(found.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"{what} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


# glibc malloc settings for processes that run networks on the CPU (see keep_freed_memory): one arena for
# every thread, blocks up to 1 GiB from the heap, up to 1 GiB of free heap top kept. As environment variables
# for a process about to start (glibc reads them once, before any thread runs); mallopt(3) for this one.
_MALLOPT = {"MALLOC_ARENA_MAX": (-8, 1), "MALLOC_MMAP_THRESHOLD_": (-3, 1 << 30),
            "MALLOC_TRIM_THRESHOLD_": (-1, 1 << 30)}      # variable -> (mallopt option M_*, value)
ALLOCATOR_ENV = {variable: str(value) for variable, (_, value) in _MALLOPT.items()}
MMAP_THRESHOLD_OLD_GLIBC = 32 << 20          # older glibc refuses mmap thresholds above this (mallopt(3))


def keep_freed_memory(respect_environ: bool = True) -> bool:
    """Let this process reuse the memory a network's forward pass frees instead of handing it back to the
    system: ALLOCATOR_ENV's settings through mallopt(3); with `respect_environ`, each one unless its variable
    is set in this process's environment (yours, or ALLOCATOR_ENV itself: glibc read it at start). glibc
    only; True when every setting is in place, False elsewhere (nothing changes) or when glibc refused one.

    A CPU forward pass frees and allocates the same activations, tens to hundreds of MB, every batch.
    glibc's defaults serve a block above its dynamic mmap threshold (128 KiB, raised as blocks are freed, at
    most 32 MiB) with a fresh mmap and trim freed heap tops, so every batch pays page faults and zeroed pages
    again; and each thread that allocates gets an arena of its own, whose heaps cannot hold blocks that
    large at all. ALLOCATOR_ENV's settings make a CPU teacher's batches and the student's training steps
    faster (benchmarks/bench_allocator.py; BENCHMARKS.md, "Allocator"). The cost: memory the process freed
    stays mapped (its peak). The arena limit only binds threads that have not allocated yet: a process
    started with ALLOCATOR_ENV in its environment gets all three from its first instruction."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = True
    for variable, (option, value) in _MALLOPT.items():
        if respect_environ and variable in os.environ:
            continue
        done = mallopt(option, value) == 1
        if not done and variable == "MALLOC_MMAP_THRESHOLD_":
            done = mallopt(option, MMAP_THRESHOLD_OLD_GLIBC) == 1
        ok = ok and done
    return ok


@contextmanager
def environ(values: dict):
    """Set these environment variables (value None: unset them) for the duration of the block, for the
    processes started inside it; restores exactly those keys afterwards and touches no other."""
    def put(items: dict) -> None:
        for k, v in items.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    saved = {k: os.environ.get(k) for k in values}
    try:
        put(values)
        yield
    finally:
        put(saved)


def json_safe(obj):
    """A copy of nested dicts/lists/tuples with every NaN or infinite float replaced by None (JSON has no
    NaN; e.g. the IoU of a class absent from a split), so logs and reports stay valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "frames"):
    """One progress bar style for every long job (rich, on stderr). Yields `advance(n=1, info="")`; shows
    done/total, the rate in `unit`/s, elapsed time and ETA. `total` None: no bar length, no ETA."""
    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="", info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.advance(task, n)
            t = bar.tasks[task]
            speed = t.finished_speed or t.speed
            rate = f"{speed:.1f} {unit}/s" if speed else ""
            bar.update(task, rate=rate, info=info)

        yield advance
