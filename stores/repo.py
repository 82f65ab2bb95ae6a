"""FrameStore: the versioned frame store (icechunk repository of zarr v3 arrays) every stage uses.

Ingest appends frames through `FrameStore.append` (one commit), labeling writes pseudo-label groups
through `writable_session` + `commit`, training reads a fixed snapshot. Every ref update (commit, tag,
reset) runs under the store's commit lock.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import icechunk as ic
import numpy as np
import zarr

from stores.errors import StoreError
from stores.lock import commit_lock
from stores.schema import DEFAULT_SHARD_FRAMES, SPLIT_CODES, create_layout

ic.set_logs_filter("error")
MANIFEST_SPLIT_FRAMES = 1024


def _config() -> ic.RepositoryConfig:
    cfg = ic.RepositoryConfig.default()
    split = ic.ManifestSplittingConfig.from_dict(
        {ic.ManifestSplitCondition.AnyArray(): {ic.ManifestSplitDimCondition.Axis(0): MANIFEST_SPLIT_FRAMES}})
    cfg.manifest = ic.ManifestConfig(splitting=split)
    return cfg


def code_version() -> str:
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


class FrameStore:
    """One dataset's store opened at a branch, tag or snapshot (read side); writers get sessions."""

    def __init__(self, path: Path, repo: ic.Repository, snapshot_id: str, ref: str):
        self.path, self.repo, self.snapshot_id, self.ref = path, repo, snapshot_id, ref
        self.session = repo.readonly_session(snapshot_id=snapshot_id)
        self.root = zarr.open_group(self.session.store, mode="r")

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, name: str, classes: list[dict], frame_size, shard_frames=DEFAULT_SHARD_FRAMES):
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path}: already exists and is not empty")
        repo = ic.Repository.create(ic.local_filesystem_storage(str(path)), config=_config())
        repo.save_config()
        with commit_lock(path):
            session = repo.writable_session("main")
            create_layout(zarr.open_group(session.store, mode="a"), name=name, classes=classes,
                          frame_size=tuple(frame_size), shard_frames=shard_frames)
            sid = session.commit(f"create store {name!r}", metadata=base_metadata(
                "create", name=name, frame_size=list(frame_size), classes=len(classes)))
        return cls(path, repo, sid, "main")

    @classmethod
    def open(cls, path, ref: str | None = None) -> "FrameStore":
        path = Path(path)
        if not path.is_dir() or not (path / "refs").is_dir():
            raise StoreError(f"{path}: not a mtdistill store (no icechunk repository there)")
        try:
            repo = ic.Repository.open(ic.local_filesystem_storage(str(path)))
        except Exception as e:  # icechunk raises its own error types; the user needs one line
            raise StoreError(f"{path}: cannot open store: {e}") from None
        ref = ref or "main"
        return cls(path, repo, resolve_ref(repo, ref, path), ref)

    @classmethod
    def exists(cls, path) -> bool:
        path = Path(path)
        return path.is_dir() and (path / "refs").is_dir()

    def reopen(self, ref: str | None = None) -> "FrameStore":
        return FrameStore.open(self.path, ref or self.ref)

    # ---- attributes --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    @property
    def classes(self) -> list[dict]:
        return self.root.attrs["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def frame_size(self) -> tuple[int, int]:
        h, w = self.root.attrs["frame_size"]
        return h, w

    @property
    def shard_frames(self) -> int:
        return int(self.root.attrs["shard_frames"])

    @property
    def num_frames(self) -> int:
        return self.root["frames/rgb"].shape[0]

    def pseudo_sets(self) -> list[str]:
        return sorted(name for name, _ in self.root["pseudo"].groups())

    def pseudo(self, name: str) -> zarr.Group:
        if name not in self.pseudo_sets():
            raise StoreError(f"{self.path}: no pseudo-label set {name!r} at {self.ref}; "
                             f"available: {self.pseudo_sets() or 'none'}")
        return self.root[f"pseudo/{name}"]

    # ---- reading -----------------------------------------------------------------------------
    def read(self, start: int, stop: int, fields=("frames/rgb", "real/segm", "real/depth")) -> dict:
        """Arrays for frames [start, stop), keyed by their store path."""
        return {f: self.root[f][start:stop] for f in fields}

    def splits(self) -> np.ndarray:
        return self.root["frames/split"][:]

    def indices(self, split: str | None = None) -> np.ndarray:
        if split is None:
            return np.arange(self.num_frames)
        if split not in SPLIT_CODES:
            raise StoreError(f"unknown split {split!r}; choose one of {list(SPLIT_CODES)}")
        return np.flatnonzero(self.splits() == SPLIT_CODES[split])

    # ---- writing -----------------------------------------------------------------------------
    def writable_session(self, branch: str = "main") -> ic.Session:
        return self.repo.writable_session(branch)

    def commit(self, session: ic.Session, message: str, metadata: dict) -> str:
        """Commit under the store's lock; rebases over commits that touched other arrays."""
        with commit_lock(self.path):
            try:
                return session.commit(message, metadata=metadata, rebase_with=ic.BasicConflictSolver())
            except ic.RebaseFailedError as e:
                raise StoreError(f"{self.path}: commit conflicts with a concurrent change: {e}") from None

    def append(self, message: str, metadata: dict, branch: str = "main", replace: bool = False):
        """An AppendWriter (stores/writer.py): new frames appended, annotations of frames already stored
        written into them; a different existing annotation is refused unless `replace`."""
        from stores.writer import AppendWriter
        return AppendWriter(self, message, metadata, branch, replace=replace)

    # ---- versions ----------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        return resolve_ref(self.repo, ref, self.path)

    def log(self, ref: str | None = None, limit: int | None = None) -> list[dict]:
        sid = self.resolve(ref or self.ref)
        out = []
        for snap in self.repo.ancestry(snapshot_id=sid):
            out.append({"id": snap.id, "message": snap.message, "written_at": snap.written_at.isoformat(),
                        "metadata": dict(snap.metadata or {})})
            if limit and len(out) >= limit:
                break
        return out

    def tags(self) -> dict[str, str]:
        return {_tag_name(t): self.repo.lookup_tag(t) for t in sorted(self.repo.list_tags())}

    def branches(self) -> dict[str, str]:
        return {b: self.repo.lookup_branch(b) for b in sorted(self.repo.list_branches())}

    def tag(self, name: str, ref: str | None = None) -> str:
        sid = self.resolve(ref or self.ref)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@/-]*", name):
            raise StoreError(f"tag name {name!r}: use letters, digits and . _ @ / - (not first)")
        with commit_lock(self.path):
            if _tag_ref(name) in self.repo.list_tags():
                raise StoreError(f"{self.path}: tag {name!r} already exists")
            self.repo.create_tag(_tag_ref(name), sid)
        return sid

    def reset(self, branch: str, ref: str) -> tuple[str, str]:
        """Point `branch` at an earlier snapshot; returns (old, new) snapshot ids."""
        sid = self.resolve(ref)
        with commit_lock(self.path):
            if branch not in self.repo.list_branches():
                raise StoreError(f"{self.path}: no branch {branch!r}")
            old = self.repo.lookup_branch(branch)
            ancestors = {s.id for s in self.repo.ancestry(snapshot_id=old)}
            if sid not in ancestors:
                raise StoreError(f"{self.path}: {ref!r} is not an ancestor of branch {branch!r}")
            self.repo.reset_branch(branch, sid)
        return old, sid

    def diff(self, from_ref: str, to_ref: str) -> dict:
        a, b = self.resolve(from_ref), self.resolve(to_ref)
        d = self.repo.diff(from_snapshot_id=a, to_snapshot_id=b)
        old, new = FrameStore(self.path, self.repo, a, from_ref), FrameStore(self.path, self.repo, b, to_ref)
        return {
            "from": a, "to": b,
            "frames": {"from": old.num_frames, "to": new.num_frames},
            "pseudo_sets": {"added": sorted(set(new.pseudo_sets()) - set(old.pseudo_sets())),
                            "removed": sorted(set(old.pseudo_sets()) - set(new.pseudo_sets()))},
            "new_arrays": sorted(d.new_arrays), "updated_arrays": sorted(d.updated_arrays),
            "deleted_arrays": sorted(d.deleted_arrays),
            "updated_chunks": {k: len(v) for k, v in sorted(d.updated_chunks.items())},
        }

    def size_on_disk(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.path):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return total


def resolve_ref(repo: ic.Repository, ref: str, path) -> str:
    """A branch name, tag name or snapshot id -> snapshot id; StoreError naming the ref otherwise."""
    if ref in repo.list_branches():
        return repo.lookup_branch(ref)
    if _tag_ref(ref) in repo.list_tags():
        return repo.lookup_tag(_tag_ref(ref))
    try:
        return repo.lookup_snapshot(ref).id
    except Exception:
        raise StoreError(f"{path}: no branch, tag or snapshot named {ref!r}") from None


def _tag_ref(name: str) -> str:
    """icechunk refuses '/' in ref names (and lists %-escaped ones wrongly): train/<run> is stored as
    train:<run>; tag names cannot contain ':' themselves."""
    return name.replace("/", ":")


def _tag_name(ref: str) -> str:
    return ref.replace(":", "/")
