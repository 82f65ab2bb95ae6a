"""What every source (folder, nyud, kitti, synthetic) yields to the store's writer.

A source is a plain iterator of `Frame`s, already at the store's frame size and validated; reading and
checking files is the source's job, writing and deduplication is the store's. A source that meets a bad
file raises `SourceError` naming it; with `skip_bad` it records the file in `skipped` and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stores.errors import UserError
from stores.schema import SPLITS  # noqa: F401 - the one split list, re-exported for the sources



class SourceError(UserError):
    """A user's input file is bad; the message names the file and the problem, on one line."""


@dataclass
class Frame:
    """One frame as a source yields it, at the store's (H, W); None annotations mean "not annotated"."""
    rgb: np.ndarray                    # (H, W, 3) uint8
    split: str                         # one of SPLITS
    name: str                          # where it came from (relative path, or "synthetic/indoor/000123")
    segm: np.ndarray | None = None     # (H, W) uint8 class ids, 255 = unlabeled pixel; None = not annotated
    depth: np.ndarray | None = None    # (H, W) float32 metres, 0 = invalid pixel; None = not annotated


@dataclass
class SkipLog:
    """Bad inputs passed over with --skip-bad, and annotation files that pair with no frame; both are
    recorded in the ingest commit's metadata and told to the user."""
    skip_bad: bool = False
    skipped: list[dict] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)   # {"folder", "file", "reason"}

    def report(self, folder, what: str, files) -> None:
        """Record annotation files of `folder` that were not ingested: (path, reason) pairs."""
        self.unmatched += [{"folder": str(folder), "what": what, "file": str(p), "reason": why} for p, why in files]

    def unmatched_lines(self, shown: int = 3) -> list[str]:
        """One line per folder and reason: the count and the first names."""
        groups: dict[tuple, list[str]] = {}
        for u in self.unmatched:
            why = "no image of that name" if u["reason"].startswith("no image named") else u["reason"]
            groups.setdefault((u["folder"], u["what"], why), []).append(Path(u["file"]).name)
        return [f"{folder}: {len(names)} {what} file(s) not ingested ({why}): {', '.join(names[:shown])}"
                + (", ..." if len(names) > shown else "") for (folder, what, why), names in groups.items()]

    def fail(self, path, problem: str) -> None:
        """Raise for a bad file, or record it and return when skipping."""
        if not self.skip_bad:
            raise SourceError(f"{path}: {problem}")
        self.skipped.append({"file": str(path), "problem": problem})
