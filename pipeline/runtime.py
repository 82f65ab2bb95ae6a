"""What every process of the pipeline shares at run time: the device choice, JSON-safe values and one
progress-bar style. Sits under every stage of pipeline/ (ingest, label, train, evaluate, deploy, demo);
imports nothing of pipeline/ itself. Files are written through stores.files.atomic_write."""
from __future__ import annotations

import math
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
