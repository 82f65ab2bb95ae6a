"""The ingest process: any source's frames -> one commit on a store (created on first use).

Sources (stores/sources/*) read and validate files; this module creates the store if needed, drives
the AppendWriter with a progress bar, and records what was ingested and how in the commit metadata.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pipeline.runtime import progress_bar
from stores.errors import StoreError, UserError
from stores.files import storage_errors
from stores.location import ObjectLocation, is_url, locate
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
    annotated: dict = field(default_factory=dict)   # task -> names of existing frames that gained it
    replaced: dict = field(default_factory=dict)    # task -> names of existing frames whose one was replaced
    unmatched: list = field(default_factory=list)   # annotation files that paired with no frame


def open_or_create(store_path, *, classes: list[dict], frame_size, name: str | None = None,
                   size_asked=None) -> FrameStore:
    """Open an existing store (checking its class list, and its frame size against `size_asked` (H, W),
    the --size the user gave), or create one with these classes and size (atomically; a store another
    ingest creates at the same time is opened instead; in object storage, one whose creation was killed is
    completed). StoreError naming the store on a mismatch."""
    check_store_path(store_path)
    if not is_url(store_path) and FrameStore.exists(store_path):
        store = FrameStore.open(store_path)
    else:
        store = FrameStore.create(store_path, name=name or Path(str(locate(store_path))).stem, classes=classes,
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
    """Fail before reading any source if the path is neither a store nor free for a new one (a URL: also
    when its bucket or endpoint cannot be reached, see stores/location.py)."""
    p = locate(store_path)
    if isinstance(p, ObjectLocation):
        FrameStore.exists(p)                    # StoreError naming the URL when it cannot be read
        return
    if p.exists() and not FrameStore.exists(p) and (not p.is_dir() or any(p.iterdir())):
        raise StoreError(f"{store_path}: not a mtdistill store (no icechunk repository there)")


def run_ingest(store: FrameStore, frames: Iterable[Frame], *, kind: str, source: dict,
               skips: SkipLog, total: int | None = None, replace: bool = False) -> IngestResult:
    """Append every frame from `frames` in one commit; annotations of frames already in the store are
    written into them (a different existing one refused unless `replace`); nothing is committed if
    anything fails. The commit metadata records skipped files and unmatched annotation files. A store
    that open_or_create made for this ingest is removed again when the ingest fails (unless another
    process wrote to it meanwhile). A full or read-only disk is one StoreError naming the store, saying
    nothing was committed and how many chunk files of the failed write are left."""
    md = base_metadata("ingest", source_kind=kind, source=source, unmatched=list(skips.unmatched))
    started = time.time()
    try:
        with storage_errors(store.path, "nothing was committed"), \
                store.append(f"ingest {kind}: {source.get('path', source.get('preset', ''))}", md,
                             replace=replace) as w:
            add_all(w, frames, skips, kind, total)
            w.metadata["skipped"] = list(skips.skipped)
    except BaseException as e:
        removed = discard_new(store)
        if isinstance(e, UserError) and "nothing was committed" in str(e):
            raise StoreError(str(e) + ("; the new store was removed" if removed else
                                       leftover_note(store.path, started))) from None
        raise
    return IngestResult(w.snapshot_id, w.added, w.duplicates, list(skips.skipped), w.n,
                        {t: v for t, v in w.annotated.items() if v}, {t: v for t, v in w.replaced.items() if v},
                        list(skips.unmatched))


def add_all(w, frames: Iterable[Frame], skips: SkipLog, kind: str, total: int | None) -> None:
    """Add every frame to the append writer `w` under a progress bar that counts the bad files skipped on
    the way too, so the bar ends exactly at `total`."""
    seen = len(skips.skipped)                       # files left out before this loop (listing, sizing)
    with progress_bar(f"ingest {kind}", total) as advance:
        for frame in frames:
            w.add(frame)
            passed, seen = len(skips.skipped) - seen, len(skips.skipped)   # bad files skipped on the way
            advance(1 + passed, info=f"new {w.new_frames} dup {w.duplicates}")
        if len(skips.skipped) > seen:                                      # bad files after the last frame
            advance(len(skips.skipped) - seen)


def discard_new(store: FrameStore) -> bool:
    """Remove `store` if this process created it and nothing else was written; True if it was removed."""
    try:
        return store.created and store.discard_if_unused()
    except Exception:  # noqa: BLE001 - cleanup after a failure must not hide that failure
        return False


def leftover_note(store_path, since: float) -> str:
    """'; N chunk file(s) (B bytes) of the failed write are left in STORE/chunks' or '' if none: chunk
    files written since `since` (epoch seconds) that no commit references (not looked for in object storage)."""
    if is_url(store_path):
        return ""
    chunks = Path(store_path) / "chunks"
    files = [p for p in chunks.glob("*") if p.is_file() and p.stat().st_mtime >= since] if chunks.is_dir() else []
    if not files:
        return ""
    size = sum(p.stat().st_size for p in files)
    return (f"; {len(files)} chunk file(s) ({size} bytes) of the failed write are left in {chunks} "
            f"(no version refers to them)")


def first_frame_size(items: list, path_of, skips: SkipLog) -> tuple[tuple[int, int], list]:
    """((H, W) of the first image that reads, as a viewer shows it (EXIF orientation applied), the items
    from that one on). Leading bad images are `skips.fail`ed (an error, or skipped with --skip-bad) and
    left out of the items, so the progress total stays exact. UserError when no image reads."""
    from stores.errors import UserError
    from stores.sources.images import BadInput, image_size

    for k, item in enumerate(items):
        try:
            return image_size(path_of(item)), items[k:]
        except BadInput as bad:
            skips.fail(bad.path, bad.problem)
    raise UserError(f"none of the {len(items)} image(s) could be read (all skipped as bad); no store made")


def format_result(r: IngestResult, store_path) -> tuple[list[str], list[str]]:
    """(lines for stdout, lines for stderr): new frames, annotations written into frames already there,
    the version; every skipped file and every group of annotation files that paired with no frame."""
    updates = [f"{task} {what} {len(names)} frame(s) already in the store"
               for what, d in (("added to", r.annotated), ("replaced on", r.replaced))
               for task, names in sorted(d.items())]
    if r.snapshot_id:
        out = [f"ingested {r.added} new frame(s) into {store_path} ({r.duplicates} already there); "
               f"{r.total_frames} frames now; version {r.snapshot_id}", *updates]
    else:
        out = [f"nothing new: {r.duplicates} frame(s) already in {store_path} with these annotations; "
               f"no version made"]
    err = [f"skipped {s['file']}: {s['problem']}" for s in r.skipped]
    return out, err + SkipLog(unmatched=r.unmatched).unmatched_lines()
