"""The ingest process: any source's frames -> one commit on a store (created on first use).

Sources (stores/sources/*) read and validate files; this module creates the store if needed, drives
the AppendWriter with a progress bar, and records what was ingested and how in the commit metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline.runtime import progress_bar
from stores.errors import StoreError
from stores.repo import FrameStore, base_metadata
from stores.sources.base import Frame, SkipLog


@dataclass
class IngestResult:
    snapshot_id: str | None
    added: int
    duplicates: int
    skipped: list
    total_frames: int


def open_or_create(store_path, *, classes: list[dict], frame_size, name: str | None = None) -> FrameStore:
    """Open an existing store (checking its class list), or create one with these classes and size."""
    check_store_path(store_path)
    if FrameStore.exists(store_path):
        store = FrameStore.open(store_path)
        if [c["name"] for c in store.classes] != [c["name"] for c in classes]:
            raise StoreError(f"{store_path}: store has {store.num_classes} classes "
                             f"({store.classes[0]['name']}, ...), this source has {len(classes)} "
                             f"({classes[0]['name']}, ...)")
        return store
    return FrameStore.create(store_path, name=name or Path(store_path).stem, classes=classes,
                             frame_size=frame_size)


def check_store_path(store_path) -> None:
    """Fail before reading any source if the path is neither a store nor free for a new one."""
    p = Path(store_path)
    if p.exists() and not FrameStore.exists(p) and (not p.is_dir() or any(p.iterdir())):
        raise StoreError(f"{store_path}: not a mtdistill store (no icechunk repository there)")


def run_ingest(store: FrameStore, frames: Iterable[Frame], *, kind: str, source: dict,
               skips: SkipLog, total: int | None = None) -> IngestResult:
    """Append every frame from `frames` in one commit; nothing is committed if anything fails."""
    md = base_metadata("ingest", source_kind=kind, source=source)
    seen = len(skips.skipped)                       # files left out before this loop (listing, sizing)
    with store.append(f"ingest {kind}: {source.get('path', source.get('preset', ''))}", md) as w:
        with progress_bar(f"ingest {kind}", total) as advance:
            for frame in frames:
                w.add(frame)
                passed, seen = len(skips.skipped) - seen, len(skips.skipped)   # bad files skipped on the way
                advance(1 + passed, info=f"new {w.new_frames} dup {w.duplicates}")
            if len(skips.skipped) > seen:                                      # bad files after the last frame
                advance(len(skips.skipped) - seen)
        w.metadata["skipped"] = list(skips.skipped)
    return IngestResult(w.snapshot_id, w.added, w.duplicates, list(skips.skipped), w.n)
