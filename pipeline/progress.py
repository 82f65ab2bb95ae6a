"""One progress bar style for every long job (rich), quiet when output is not a terminal-friendly stream."""
from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "frames"):
    """Yields `advance(n=1, **fields)`; shows done/total, rate in `unit`/s, elapsed and ETA."""
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
