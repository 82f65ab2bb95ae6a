"""Inter-process file locks around every commit, tag and branch reset of a store.

Local-filesystem icechunk silently drops commits made by several processes at once (STORAGE.md), so
every ref update goes through `commit_lock`. Appending frames also holds `append_lock` for the whole
ingest, so two ingests cannot claim the same frame indices; labeling jobs only take the commit lock.
Creating a store holds `creation_lock` on its parent folder (two creations of one store are serialized).
A lock that cannot be created (read-only store or folder) is one StoreError line; nothing is written.
Stores in object storage (URLs, stores/location.py) take none of these locks: their commits rely on
icechunk's conflict detection (conditional writes of the branch refs; FrameStore.commit rebases), two
ingests at once end in one committing and the other refused with nothing written, and two label jobs of
one pseudo set are not excluded (they compute the same shards).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path

from stores.errors import StoreError
from stores.location import check_writable, is_url

CREATING_PREFIX = ".mtdistill-creating-"   # + store name + "." + pid: a store being built, beside it


class LockBusy(Exception):
    """A non-blocking lock that another process holds."""


@contextmanager
def file_lock(path: Path, wait: bool = True):
    """Exclusive fcntl.flock on `path` (created if missing) for the `with` block; the OS releases it if the
    process dies. wait=False raises LockBusy at once when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(f"{Path(path).parent}: read-only ({e.strerror}: cannot write the lock file "
                             f"{Path(path).name}); nothing was written") from None
        if e.errno == errno.ENOSPC:
            raise StoreError(f"{Path(path).parent}: disk full (cannot write the lock file {Path(path).name}); "
                             f"nothing was written") from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockBusy(str(path)) from None
        yield
    finally:
        os.close(fd)          # closing the descriptor releases the lock


def commit_lock(store_path):
    """Held around every commit, tag and branch reset of the store at `store_path` (blocks). A URL takes no
    lock; StoreError there when there are no credentials to write."""
    if is_url(store_path):
        check_writable(store_path)
        return nullcontext()
    return file_lock(Path(store_path) / ".mtdistill-commit.lock")


def append_lock(store_path):
    """Held for a whole ingest, so two ingests cannot claim the same frame indices (blocks); none for a URL."""
    if is_url(store_path):
        return nullcontext()
    return file_lock(Path(store_path) / ".mtdistill-append.lock")


def label_lock(store_path, name: str):
    """Held by the labeling job writing pseudo set `name`; raises LockBusy if another job holds it; none for
    a URL."""
    if is_url(store_path):
        return nullcontext()
    return file_lock(Path(store_path) / f".mtdistill-label-{name}.lock", wait=False)


@contextmanager
def creation_lock(store_path):
    """Held while a store is created at `store_path`: an exclusive flock on its parent folder (created if
    missing; the OS releases it if the process dies). Builds left by killed creations of this store
    (hidden `CREATING_PREFIX` siblings) are removed under the lock. StoreError if the folder cannot be
    made or locked."""
    path = Path(store_path).absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the store's folder ({e.strerror}); nothing was written") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in path.parent.glob(f"{CREATING_PREFIX}{path.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)   # under the lock every build left is a dead one
        yield
    finally:
        os.close(fd)
