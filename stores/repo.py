"""FrameStore: the versioned frame store (icechunk repository of zarr v3 arrays) every stage uses.

Ingest appends frames through `FrameStore.append` (one commit), labeling writes pseudo-label groups
through `writable_session` + `commit`, training reads a fixed snapshot. Every ref update (commit, tag,
reset) runs under the store's commit lock (a local folder) or relies on icechunk's conflict detection
(object storage, stores/location.py).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path

import icechunk as ic
import numpy as np
import zarr

from stores.errors import CommitConflict, StoreError, UserError
from stores.files import storage_errors
from stores.location import ObjectLocation, check_writable, locate, object_errors, storage
from stores.lock import CREATING_PREFIX, commit_lock, creation_lock
from stores.schema import DEFAULT_SHARD_FRAMES, SPLIT_CODES, SPLIT_NAMES, create_layout
from stores.versions import Versions, resolve_ref

ic.set_logs_filter("error")
MANIFEST_SPLIT_FRAMES = 1024


def _config() -> ic.RepositoryConfig:
    cfg = ic.RepositoryConfig.default()
    split = ic.ManifestSplittingConfig.from_dict(
        {ic.ManifestSplitCondition.AnyArray(): {ic.ManifestSplitDimCondition.Axis(0): MANIFEST_SPLIT_FRAMES}})
    cfg.manifest = ic.ManifestConfig(splitting=split)
    return cfg


def code_version() -> str:
    """Installed mtdistill package version, or "unknown" when running from an uninstalled checkout."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mtdistill")
    except PackageNotFoundError:
        return "unknown"


def base_metadata(kind: str, **extra) -> dict:
    """What every commit records: what ran, the code version, and the stage's own fields."""
    md = {"kind": kind, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
          "code_version": code_version()}
    md.update(extra)
    return json.loads(json.dumps(md, default=str))  # plain JSON values only


def _build_store(path: Path, **layout) -> None:
    """An icechunk repository at `path` (must not exist) with the store layout committed on main."""
    repo = ic.Repository.create(ic.local_filesystem_storage(str(path)), config=_config())
    repo.save_config()
    _commit_layout(repo, **layout)


def _commit_layout(repo: ic.Repository, *, name: str, classes: list[dict], frame_size, shard_frames: int) -> None:
    """Commit the store layout (stores/schema.py) on main; icechunk's ConflictError if main moved meanwhile."""
    session = repo.writable_session("main")
    create_layout(zarr.open_group(session.store, mode="a"), name=name, classes=classes,
                  frame_size=tuple(frame_size), shard_frames=shard_frames)
    session.commit(f"create store {name!r}", metadata=base_metadata(
        "create", name=name, frame_size=list(frame_size), classes=len(classes)))


def _has_layout(repo: ic.Repository) -> bool:
    """Whether main holds the store layout (False on a repository whose creation is still under way or died)."""
    try:
        return "frames" in zarr.open_group(repo.readonly_session(branch="main").store, mode="r")
    except zarr.errors.GroupNotFoundError:
        return False


def _create_remote(loc: ObjectLocation, exist_ok: bool, layout: dict) -> bool:
    """Create the store at an object-storage prefix without a lock: the repository (icechunk refuses a second
    creation), then the layout commit (icechunk's conflict detection lets one creator win). A repository
    left without layout by a killed creation is completed. Returns whether this call wrote the layout."""
    st = loc.storage()
    if not ic.Repository.exists(st):
        try:
            ic.Repository.create(st, config=_config()).save_config()
        except ic.IcechunkError:
            if not ic.Repository.exists(st):
                raise                                   # not a lost race: the real error
    repo = ic.Repository.open(st)
    if _has_layout(repo):
        if not exist_ok:
            raise StoreError(f"{loc}: already exists")
        return False
    try:
        _commit_layout(repo, **layout)
    except ic.ConflictError:                            # another creator committed the layout first
        return False
    return True


class FrameStore(Versions):
    """One dataset's store opened at a branch, tag or snapshot (read side); writers get sessions."""
    created = False      # True on the object FrameStore.create returns for a store it made

    def __init__(self, path: Path | ObjectLocation, repo: ic.Repository, snapshot_id: str, ref: str):
        self.path, self.repo, self.snapshot_id, self.ref = path, repo, snapshot_id, ref
        self.session = repo.readonly_session(snapshot_id=snapshot_id)
        self.root = zarr.open_group(self.session.store, mode="r")
        _OPENED.pop((str(path), snapshot_id), None)
        _OPENED[(str(path), snapshot_id)] = None        # most recent last (see opened_versions)

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, name: str, classes: list[dict], frame_size, shard_frames=DEFAULT_SHARD_FRAMES,
               exist_ok: bool = False) -> "FrameStore":
        """A new store with its layout commit, created atomically: built in a hidden sibling folder under
        the parent folder's creation lock, then renamed into place (a killed creation leaves only that
        sibling, removed by the next creation). exist_ok: a store that another process created meanwhile
        is opened instead (the returned store's `created` is then False). Raises StoreError naming the path
        if it is anything but a missing or empty folder, or the folder cannot be written. `path` may be an
        object-storage URL (stores/location.py): created there without a lock (see _create_remote)."""
        path = locate(path)
        layout = {"name": name, "classes": classes, "frame_size": frame_size, "shard_frames": shard_frames}
        if isinstance(path, ObjectLocation):
            check_writable(path)
            with object_errors(path, "nothing was created"):
                created = _create_remote(path, exist_ok, layout)
            store = cls.open(path)
            store.created = created
            return store
        with storage_errors(path, "nothing was created"), creation_lock(path):
            if exist_ok and cls.exists(path):
                return cls.open(path)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise StoreError(f"{path}: already exists and is not empty")
            tmp = path.with_name(f"{CREATING_PREFIX}{path.name}.{os.getpid()}")
            try:
                os.mkdir(tmp)
                _build_store(tmp, **layout)
                os.rename(tmp, path)             # atomic; replaces an empty folder
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        store = cls.open(path)
        store.created = True
        return store

    def discard_if_unused(self) -> bool:
        """Remove a store this process created whose only version is still the creation (a failed first
        ingest leaves no new store); True if removed. Nothing is removed once anything else was written.
        Object storage: never removed (False); an empty store stays at its URL."""
        from stores.lock import append_lock

        if self.remote:
            return False
        with creation_lock(self.path), append_lock(self.path), commit_lock(self.path):
            snaps = list(self.repo.ancestry(branch="main"))
            if (set(self.repo.list_branches()) != {"main"} or self.repo.list_tags()
                    or snaps[0].id != self.snapshot_id or len(snaps) > 2):
                return False
            shutil.rmtree(self.path)
        return True

    @classmethod
    def open(cls, path, ref: str | None = None) -> "FrameStore":
        """Open the store at `path` at a branch, tag or snapshot id (default "main"), read-only.

        StoreError when `path` is not an icechunk repository, cannot be opened, or `ref` does not resolve.
        `path` may be an object-storage URL (stores/location.py); an unreachable endpoint, a missing bucket
        or refused credentials are one StoreError naming the URL.
        """
        path = locate(path)
        if not cls.exists(path):
            raise StoreError(f"{path}: not a mtdistill store (no icechunk repository there)")
        try:
            with object_errors(path) if isinstance(path, ObjectLocation) else nullcontext():
                repo = ic.Repository.open(storage(path))
        except UserError:
            raise
        except Exception as e:  # icechunk raises its own error types; the user needs one line
            raise StoreError(f"{path}: cannot open store: {str(e).strip().splitlines()[0]}") from None
        ref = ref or "main"
        sid = resolve_ref(repo, ref, path)
        try:
            return cls(path, repo, sid, ref)
        except Exception as e:  # noqa: BLE001 - zarr / icechunk errors of a damaged store: one line
            fix = "ingest into it again to complete it" if isinstance(path, ObjectLocation) else \
                "delete the folder and ingest again"
            raise StoreError(f"{path}: damaged store: no readable layout at {ref} ({type(e).__name__}; an "
                             f"interrupted creation?): {fix}") from None

    @classmethod
    def exists(cls, path) -> bool:
        """True when `path` looks like a store (a folder with icechunk's refs/; opens nothing), or, for an
        object-storage URL, holds an icechunk repository (StoreError naming the URL when it cannot be read)."""
        path = locate(path)
        if isinstance(path, ObjectLocation):
            with object_errors(path):
                return ic.Repository.exists(path.storage())
        return path.is_dir() and (path / "refs").is_dir()

    @property
    def remote(self) -> bool:
        """True for a store in object storage (no local locks; see stores/location.py)."""
        return isinstance(self.path, ObjectLocation)

    def reopen(self, ref: str | None = None) -> "FrameStore":
        """The same store at `ref` (default: this store's ref), re-resolved: sees commits made since opening."""
        return FrameStore.open(self.path, ref or self.ref)

    # ---- attributes --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        """A copy of the root attributes: schema_version, name, classes, ignore_index, frame_size, depth_unit,
        shard_frames."""
        return dict(self.root.attrs)

    @property
    def classes(self) -> list[dict]:
        """The store's class list [{"id", "name", "color"}], in id order."""
        return self.root.attrs["classes"]

    @property
    def num_classes(self) -> int:
        """Number of classes; segm ids are 0..num_classes-1, 255 = ignore."""
        return len(self.classes)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of every frame in the store, pixels."""
        h, w = self.root.attrs["frame_size"]
        return h, w

    @property
    def shard_frames(self) -> int:
        """Frames per shard (S): the unit one labeling task writes and one `done` flag covers."""
        return int(self.root.attrs["shard_frames"])

    @property
    def num_frames(self) -> int:
        """N, the length of the frame axis at this snapshot."""
        return self.root["frames/rgb"].shape[0]

    def pseudo_sets(self) -> list[str]:
        """Names of the pseudo-label sets (groups under pseudo/) at this snapshot, sorted."""
        return sorted(name for name, _ in self.root["pseudo"].groups())

    def pseudo(self, name: str) -> zarr.Group:
        """The zarr group pseudo/<name> (segm, conf, depth, done); StoreError listing the sets when absent."""
        if name not in self.pseudo_sets():
            raise StoreError(f"{self.path}: no pseudo-label set {name!r} at {self.ref}; "
                             f"available: {self.pseudo_sets() or 'none'}")
        return self.root[f"pseudo/{name}"]

    # ---- reading -----------------------------------------------------------------------------
    def read(self, start: int, stop: int, fields=("frames/rgb", "real/segm", "real/depth")) -> dict:
        """Arrays for frames [start, stop), keyed by their store path: by default frames/rgb uint8 (n, H, W, 3),
        real/segm uint8 (n, H, W) 255 = none, real/depth float32 (n, H, W) metres, 0 = none."""
        return {f: self.root[f][start:stop] for f in fields}

    def splits(self) -> np.ndarray:
        """uint8 (N,) split code per frame (SPLIT_CODES: 0 train, 1 val, 2 test, 3 unlabeled)."""
        return self.root["frames/split"][:]

    def indices(self, split: str | None = None, required: bool = False) -> np.ndarray:
        """int64 frame indices of `split` (all frames when None), ascending; StoreError for an unknown split
        name and, with `required`, for a split that holds no frame (naming the frames per split)."""
        if split is None:
            return np.arange(self.num_frames)
        if split not in SPLIT_CODES:
            raise StoreError(f"unknown split {split!r}; choose one of {list(SPLIT_CODES)}")
        codes = self.splits()
        idx = np.flatnonzero(codes == SPLIT_CODES[split])
        if required and len(idx) == 0:
            have = ", ".join(f"{SPLIT_NAMES[int(c)]} {k}" for c, k in zip(*np.unique(codes, return_counts=True)))
            raise StoreError(f"{self.path}: no frames in split {split!r} (frames per split: {have or 'none'}); "
                             f"ingest sets splits (folder, kitti: --split, --split-file; nyud: --splits, "
                             f"--train-list, --test-list; synthetic: --splits)")
        return idx

    # ---- writing -----------------------------------------------------------------------------
    def writable_session(self, branch: str = "main") -> ic.Session:
        """A new icechunk writable session on `branch`; commit it with `commit` (which takes the commit lock).
        StoreError for an object-storage store opened without credentials."""
        check_writable(self.path)
        return self.repo.writable_session(branch)

    def commit(self, session: ic.Session, message: str, metadata: dict) -> str:
        """Commit under the store's lock; rebases over commits that touched other arrays. CommitConflict
        (nothing committed) when a concurrent commit changed the same arrays' metadata or chunks."""
        with storage_errors(self.path), commit_lock(self.path):
            try:
                return session.commit(message, metadata=metadata, rebase_with=ic.BasicConflictSolver())
            except ic.RebaseFailedError as e:
                raise CommitConflict(f"{self.path}: commit conflicts with a concurrent change: {e}; nothing "
                                     f"was committed: run it again") from None

    def append(self, message: str, metadata: dict, branch: str = "main", replace: bool = False):
        """An AppendWriter (stores/writer.py): new frames appended, annotations of frames already stored
        written into them; a different existing annotation is refused unless `replace`."""
        from stores.writer import AppendWriter
        return AppendWriter(self, message, metadata, branch, replace=replace)

    def size_on_disk(self) -> int:
        """Bytes under the store folder (every snapshot, not just this one); in object storage the bytes
        of the chunks every version refers to (metadata not counted)."""
        if self.remote:
            with storage_errors(self.path, "nothing was written"):
                return int(self.repo.chunk_storage_stats().native_bytes)
        total = 0
        for dirpath, _, files in os.walk(self.path):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return total


_OPENED: dict[tuple[str, str], None] = {}


def opened_versions() -> list[tuple[str, str]]:
    """(store path, snapshot id) of every store version this process opened, oldest first: where
    stores.verify looks for the damaged chunk behind a failed read."""
    return list(_OPENED)
