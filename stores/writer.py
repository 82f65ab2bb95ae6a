"""AppendWriter: adds validated frames to a store in shard-aligned blocks and commits once.

Used by every ingest. Holds the store's append lock for its whole life (two ingests never claim the
same indices) and the commit lock only while committing. Frames already in the store (same content
key) are not added again, but annotations they bring are written into them (annotations that arrive
after their frames): a frame without that annotation gains it, the same annotation is a no-op, a
different one is refused unless `replace`; the commit metadata lists which frames gained (or had
replaced) which annotation. An exception inside the `with` block discards everything: the branch
stays at its last commit.

In object storage there is no append lock: when another ingest committed first (icechunk reports the
conflict), the writer replays its frames from its own uncommitted session onto the new head (dedup and
annotation rules applied again) and commits again, up to COMMIT_TRIES times.
"""
from __future__ import annotations

import numpy as np
import zarr

from stores.errors import CommitConflict, StoreError
from stores.lock import append_lock
from stores.schema import FRAME_ARRAYS, SPLIT_CODES, SPLIT_NAMES, content_key
from stores.sources.base import Frame


TASKS = ("segm", "depth")
COMMIT_TRIES = 10


class AppendWriter:
    """Context manager from `FrameStore.append`: `add(frame)` queues frames, flushes whenever the store's end
    reaches a shard boundary, and commits once on a clean exit (`snapshot_id`; None when nothing was new).

    StoreError from `add` when a frame does not fit: rgb not uint8 (H, W, 3), segm not uint8 (H, W) with ids
    < num_classes or 255, depth not (H, W) finite and >= 0, or an unknown split.
    """
    def __init__(self, store, message: str, metadata: dict, branch: str = "main", replace: bool = False):
        self.store, self.message, self.metadata, self.branch = store, message, dict(metadata), branch
        self.replace = replace
        self.added = self.duplicates = 0
        self.annotated: dict[str, list[str]] = {t: [] for t in TASKS}   # existing frames that gained one
        self.replaced: dict[str, list[str]] = {t: [] for t in TASKS}
        self.snapshot_id: str | None = None
        self._touched: set[int] = set()            # frames stored before this ingest that it annotated
        self._lock = append_lock(store.path)

    # ---- context -----------------------------------------------------------------------------
    def __enter__(self) -> "AppendWriter":
        self._lock.__enter__()
        try:
            self._open()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _open(self) -> None:
        """A writable session at the branch head and this writer's view of it (nothing added yet)."""
        self.session = self.store.writable_session(self.branch)
        self.root = zarr.open_group(self.session.store, mode="a")
        self.h, self.w = self.root.attrs["frame_size"]
        self.shard = int(self.root.attrs["shard_frames"])
        self.num_classes = len(self.root.attrs["classes"])
        self.start = self.n = self.root["frames/rgb"].shape[0]
        self.index = {bytes(k): i for i, k in enumerate(self.root["frames/key"][:])}
        self._buf: list[tuple[Frame, bytes]] = []

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._flush()
                self.snapshot_id = self._commit()
        finally:
            self._lock.__exit__(None, None, None)
        return False

    def _commit(self) -> str | None:
        """Commit what was added or annotated (None when nothing); in object storage, replay onto the new head
        and commit again when another writer came first."""
        for attempt in range(COMMIT_TRIES):
            if not (self.added or self.updated):
                return None
            md = {**self.metadata, "frames_added": self.added, "duplicates": self.duplicates,
                  "range": [self.start, self.n],
                  "annotations_added": {t: v for t, v in self.annotated.items() if v},
                  "annotations_replaced": {t: v for t, v in self.replaced.items() if v}}
            note = ", ".join(f"{t} {'added to' if d is self.annotated else 'replaced on'} {len(v)} "
                             f"existing frame(s)" for d in (self.annotated, self.replaced)
                             for t, v in d.items() if v)
            try:
                return self.store.commit(self.session, self.message + (f" ({note})" if note else ""), md)
            except CommitConflict:
                if not self.store.remote or attempt == COMMIT_TRIES - 1:
                    raise
                self._replay()
        return None

    def _replay(self) -> None:
        """Add this writer's frames again, read back from its uncommitted session, onto the branch's new head."""
        old, first, stop, dups = self.root, self.start, self.n, self.duplicates
        touched = sorted(i for i in self._touched if i < first)
        self._open()
        self.added = self.duplicates = 0
        self._touched.clear()
        for d in (self.annotated, self.replaced):
            for v in d.values():
                v.clear()
        for i in touched:                                   # annotations written into frames stored before
            self.add(_stored_frame(old, i))
        self.duplicates = dups
        for a in range(first, stop, self.shard):
            block = {k: old[k][a:min(a + self.shard, stop)] for k in FRAME_ARRAYS}
            for j in range(len(block["frames/rgb"])):
                self.add(_stored_frame(old, a + j, {k: v[j] for k, v in block.items()}))
        self._flush()

    @property
    def updated(self) -> int:
        """Annotations written into frames that were already in the store."""
        return sum(len(v) for d in (self.annotated, self.replaced) for v in d.values())

    @property
    def new_frames(self) -> int:
        """Frames accepted so far (written or queued)."""
        return self.added + len(self._buf)

    # ---- adding ------------------------------------------------------------------------------
    def add(self, frame: Frame) -> bool:
        """Queue one frame; False if its content is already in the store (no frame added; its
        annotations go into the stored frame, see the module docstring)."""
        self._check(frame)
        key = content_key(frame.rgb)
        if key in self.index:
            self.duplicates += 1
            self._annotate(self.index[key], frame)
            return False
        self.index[key] = self.n + len(self._buf)
        self._buf.append((frame, key))
        if (self.n + len(self._buf)) % self.shard == 0:  # writes stay shard-aligned
            self._flush()
        return True

    def _annotate(self, i: int, frame: Frame) -> None:
        """Write `frame`'s annotations into frame i (stored, or still queued in this writer)."""
        queued = self._buf[i - self.n][0] if i >= self.n else None
        for task in TASKS:
            new = getattr(frame, task)
            if new is None:
                continue
            if queued is not None:
                old = getattr(queued, task)
            else:
                old = self.root[f"real/{task}"][i] if self.root[f"real/has_{task}"][i] else None
            if old is not None and np.array_equal(old, new):
                continue
            name = queued.name if queued is not None else str(self.root["frames/name"][i])
            if old is not None and not self.replace:
                where = "this ingest" if queued is not None else "the store"
                raise StoreError(f"{frame.name}: frame {i} ({name}) already has a different {task} "
                                 f"annotation in {where}; use --replace to overwrite it")
            if queued is not None:                        # the same picture twice in this ingest
                setattr(queued, task, new)
                continue
            (self.replaced if old is not None else self.annotated)[task].append(name)
            self._touched.add(i)
            self.root[f"real/{task}"][i] = new.astype(self.root[f"real/{task}"].dtype)
            self.root[f"real/has_{task}"][i] = True

    def _check(self, f: Frame) -> None:
        hw = (self.h, self.w)
        if f.rgb.shape != (*hw, 3) or f.rgb.dtype != np.uint8:
            raise StoreError(f"{f.name}: rgb {f.rgb.shape} {f.rgb.dtype} does not fit store frames {hw}")
        if f.split not in SPLIT_CODES:
            raise StoreError(f"{f.name}: unknown split {f.split!r}; choose one of {list(SPLIT_CODES)}")
        if f.segm is not None:
            if f.segm.shape != hw or f.segm.dtype != np.uint8:
                raise StoreError(f"{f.name}: segmentation {f.segm.shape} {f.segm.dtype} does not fit {hw} uint8")
            bad = (f.segm >= self.num_classes) & (f.segm != 255)
            if bad.any():
                raise StoreError(f"{f.name}: label value {int(f.segm[bad][0])} outside the store's "
                                 f"{self.num_classes} classes")
        if f.depth is not None:
            if f.depth.shape != hw:
                raise StoreError(f"{f.name}: depth {f.depth.shape} does not fit {hw}")
            if not np.isfinite(f.depth).all() or (f.depth < 0).any():
                raise StoreError(f"{f.name}: depth has NaN, infinite or negative values")

    def _flush(self) -> None:
        if not self._buf:
            return
        frames = [f for f, _ in self._buf]
        k, a, b = len(frames), self.n, self.n + len(frames)
        empty_segm = np.full((self.h, self.w), 255, np.uint8)
        empty_depth = np.zeros((self.h, self.w), np.float32)
        block = {
            "frames/rgb": np.stack([f.rgb for f in frames]),
            "frames/key": np.stack([np.frombuffer(key, np.uint8) for _, key in self._buf]),
            "frames/split": np.array([SPLIT_CODES[f.split] for f in frames], np.uint8),
            "frames/name": np.array([f.name for f in frames], dtype=object),
            "real/segm": np.stack([empty_segm if f.segm is None else f.segm for f in frames]),
            "real/depth": np.stack([empty_depth if f.depth is None else f.depth.astype(np.float32)
                                    for f in frames]),
            "real/has_segm": np.array([f.segm is not None for f in frames]),
            "real/has_depth": np.array([f.depth is not None for f in frames]),
        }
        assert block.keys() == FRAME_ARRAYS.keys()
        for path, values in block.items():
            arr = self.root[path]
            arr.resize((b, *arr.shape[1:]))
            arr[a:b] = values if path != "frames/name" else np.array([str(v) for v in values])
        self.n, self.added = b, self.added + k
        self._buf.clear()


def _stored_frame(root, i: int, row: dict | None = None) -> Frame:
    """Frame i of a store's zarr root as a source would yield it (its FRAME_ARRAYS row, read if not given)."""
    row = row or {k: root[k][i] for k in FRAME_ARRAYS}
    return Frame(rgb=row["frames/rgb"], split=SPLIT_NAMES[int(row["frames/split"])], name=str(row["frames/name"]),
                 segm=row["real/segm"] if row["real/has_segm"] else None,
                 depth=row["real/depth"] if row["real/has_depth"] else None)
