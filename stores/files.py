"""Files written whole or not at all, and file digests: the one atomic writer of the project.

Sits at the bottom of the flow (stores/ imports no model and no process), so every layer uses it: store
sidecar files, training checkpoints (pipeline/train), teacher files (teachers/base), demo artefacts.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it over `path` (os.replace is atomic
    on POSIX): readers see the old file or the new one, never half of one. The temporary file is removed
    if `write` raises. Returns `path` as a Path; creates missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    """`text` (UTF-8) into `path` atomically (see atomic_write)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (hashlib.file_digest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
