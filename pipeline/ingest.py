"""The ingest process: any source's frames -> one commit on a store (created on first use).

Sources (stores/sources/*) read and validate files; this module creates the store if needed, drives
the AppendWriter with a progress bar, and records what was ingested and how in the commit metadata.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline.runtime import progress_bar
from stores.errors import StoreError, UserError
from stores.files import storage_errors
from stores.repo import FrameStore, base_metadata
from stores.sources.base import Frame, SkipLog


@dataclass
class IngestResult:
    """Outcome of one ingest: new snapshot id (None when nothing was new), frames added, duplicates skipped by
    content key, bad files skipped, and the store's frame count after it.
    """
    snapshot_id: str | None
    added: int
    duplicates: int
    skipped: list
    total_frames: int


def open_or_create(store_path, *, classes: list[dict], frame_size, name: str | None = None,
                   size_asked=None) -> FrameStore:
    """Open an existing store (checking its class list, and its frame size against `size_asked` (H, W),
    the --size the user gave), or create one with these classes and size (atomically; a store another
    ingest creates at the same time is opened instead). StoreError naming the store on a mismatch."""
    check_store_path(store_path)
    if FrameStore.exists(store_path):
        store = FrameStore.open(store_path)
    else:
        store = FrameStore.create(store_path, name=name or Path(store_path).stem, classes=classes,
                                  frame_size=frame_size, exist_ok=True)
    if [c["name"] for c in store.classes] != [c["name"] for c in classes]:
        raise StoreError(f"{store_path}: store has {store.num_classes} classes "
                         f"({store.classes[0]['name']}, ...), this source has {len(classes)} "
                         f"({classes[0]['name']}, ...)")
    if size_asked is not None and tuple(size_asked) != tuple(store.frame_size):
        (h, w), (ah, aw) = store.frame_size, size_asked
        raise StoreError(f"{store_path}: store frames are {w}x{h}; --size {aw}x{ah} cannot change an existing "
                         f"store (leave --size out, or ingest into a new store)")
    return store


def check_store_path(store_path) -> None:
    """Fail before reading any source if the path is neither a store nor free for a new one."""
    p = Path(store_path)
    if p.exists() and not FrameStore.exists(p) and (not p.is_dir() or any(p.iterdir())):
        raise StoreError(f"{store_path}: not a mtdistill store (no icechunk repository there)")


def run_ingest(store: FrameStore, frames: Iterable[Frame], *, kind: str, source: dict,
               skips: SkipLog, total: int | None = None) -> IngestResult:
    """Append every frame from `frames` in one commit; nothing is committed if anything fails. A store
    that open_or_create made for this ingest is removed again when the ingest fails (unless another
    process wrote to it meanwhile). A full or read-only disk is one StoreError naming the store, saying
    nothing was committed and how many chunk files of the failed write are left."""
    md = base_metadata("ingest", source_kind=kind, source=source)
    started = time.time()
    try:
        with storage_errors(store.path, "nothing was committed"), \
                store.append(f"ingest {kind}: {source.get('path', source.get('preset', ''))}", md) as w:
            with progress_bar(f"ingest {kind}", total) as advance:
                for frame in frames:
                    w.add(frame)
                    advance(1, info=f"new {w.new_frames} dup {w.duplicates}")
            w.metadata["skipped"] = list(skips.skipped)
    except BaseException as e:
        removed = discard_new(store)
        if isinstance(e, UserError) and "nothing was committed" in str(e):
            raise StoreError(str(e) + ("; the new store was removed" if removed else
                                       leftover_note(store.path, started))) from None
        raise
    return IngestResult(w.snapshot_id, w.added, w.duplicates, list(skips.skipped), w.n)


def discard_new(store: FrameStore) -> bool:
    """Remove `store` if this process created it and nothing else was written; True if it was removed."""
    try:
        return store.created and store.discard_if_unused()
    except Exception:  # noqa: BLE001 - cleanup after a failure must not hide that failure
        return False


def leftover_note(store_path, since: float) -> str:
    """'; N chunk file(s) (B bytes) of the failed write are left in STORE/chunks' or '' if none: chunk
    files written since `since` (epoch seconds) that no commit references."""
    chunks = Path(store_path) / "chunks"
    files = [p for p in chunks.glob("*") if p.is_file() and p.stat().st_mtime >= since] if chunks.is_dir() else []
    if not files:
        return ""
    size = sum(p.stat().st_size for p in files)
    return (f"; {len(files)} chunk file(s) ({size} bytes) of the failed write are left in {chunks} "
            f"(no version refers to them)")
