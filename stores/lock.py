"""Inter-process file locks around every commit, tag and branch reset of a store.

Local-filesystem icechunk silently drops commits made by several processes at once (STORAGE.md), so
every ref update goes through `commit_lock`. Appending frames also holds `append_lock` for the whole
ingest, so two ingests cannot claim the same frame indices; labeling jobs only take the commit lock.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def commit_lock(store_path) -> "contextmanager":
    return file_lock(Path(store_path) / ".mtdistill-commit.lock")


def append_lock(store_path) -> "contextmanager":
    return file_lock(Path(store_path) / ".mtdistill-append.lock")
