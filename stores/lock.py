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


class LockBusy(Exception):
    """A non-blocking lock that another process holds."""


@contextmanager
def file_lock(path: Path, wait: bool = True):
    """Exclusive fcntl.flock on `path` (created if missing) for the `with` block; the OS releases it if the
    process dies. wait=False raises LockBusy at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockBusy(str(path)) from None
        yield
    finally:
        os.close(fd)          # closing the descriptor releases the lock


def commit_lock(store_path):
    """Held around every commit, tag and branch reset of the store at `store_path` (blocks)."""
    return file_lock(Path(store_path) / ".mtdistill-commit.lock")


def append_lock(store_path):
    """Held for a whole ingest, so two ingests cannot claim the same frame indices (blocks)."""
    return file_lock(Path(store_path) / ".mtdistill-append.lock")


def label_lock(store_path, name: str):
    """Held by the labeling job writing pseudo set `name`; raises LockBusy if another job holds it."""
    return file_lock(Path(store_path) / f".mtdistill-label-{name}.lock", wait=False)
