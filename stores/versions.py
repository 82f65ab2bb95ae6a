"""Versions of a store: resolve a ref, log, tags, branches, tag, reset and diff (icechunk refs).

Mixed into FrameStore (stores/repo.py), which supplies `path`, `repo` (the icechunk Repository) and
`ref`. Every ref update runs under the store's commit lock (stores/lock.py).
"""
from __future__ import annotations

import re

import icechunk as ic

from stores.errors import StoreError
from stores.files import storage_errors
from stores.lock import commit_lock


class Versions:
    """The version operations of FrameStore; see the module docstring."""

    def resolve(self, ref: str) -> str:
        """Snapshot id of a branch, tag or snapshot id; StoreError naming `ref` when none matches."""
        return resolve_ref(self.repo, ref, self.path)

    def log(self, ref: str | None = None, limit: int | None = None) -> list[dict]:
        """Commits reachable from `ref` (default this store's ref), newest first, at most `limit`:
        [{"id", "message", "written_at" (ISO 8601), "metadata"}].
        """
        sid = self.resolve(ref or self.ref)
        out = []
        for snap in self.repo.ancestry(snapshot_id=sid):
            out.append({"id": snap.id, "message": snap.message, "written_at": snap.written_at.isoformat(),
                        "metadata": dict(snap.metadata or {})})
            if limit and len(out) >= limit:
                break
        return out

    def tags(self) -> dict[str, str]:
        """Tag name -> snapshot id (names shown with '/', e.g. train/<run>)."""
        return {_tag_name(t): self.repo.lookup_tag(t) for t in sorted(self.repo.list_tags())}

    def branches(self) -> dict[str, str]:
        """Branch name -> snapshot id of its head."""
        return {b: self.repo.lookup_branch(b) for b in sorted(self.repo.list_branches())}

    def tag(self, name: str, ref: str | None = None) -> str:
        """Tag the snapshot `ref` resolves to (default this store's ref) as `name`; returns the snapshot id.

        StoreError for a bad name (letters, digits, . _ @ / -), an existing tag or an unknown ref.
        """
        sid = self.resolve(ref or self.ref)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@/-]*", name):
            raise StoreError(f"tag name {name!r}: use letters, digits and . _ @ / - (not first)")
        with storage_errors(self.path, f"tag {name!r} not made"), commit_lock(self.path):
            if _tag_ref(name) in self.repo.list_tags():
                raise StoreError(f"{self.path}: tag {name!r} already exists")
            self.repo.create_tag(_tag_ref(name), sid)
        return sid

    def reset(self, branch: str, ref: str) -> tuple[str, str]:
        """Point `branch` at an earlier snapshot; returns (old, new) snapshot ids."""
        sid = self.resolve(ref)
        with storage_errors(self.path, f"branch {branch!r} not moved"), commit_lock(self.path):
            if branch not in self.repo.list_branches():
                raise StoreError(f"{self.path}: no branch {branch!r}")
            old = self.repo.lookup_branch(branch)
            ancestors = {s.id for s in self.repo.ancestry(snapshot_id=old)}
            if sid not in ancestors:
                raise StoreError(f"{self.path}: {ref!r} is not an ancestor of branch {branch!r}")
            self.repo.reset_branch(branch, sid)
        return old, sid

    def diff(self, from_ref: str, to_ref: str) -> dict:
        """What changed from one version to a later one. StoreError if `to_ref` does not descend from
        `from_ref` (icechunk diffs along history only); the same version twice is an empty diff."""
        a, b = self.resolve(from_ref), self.resolve(to_ref)
        if a == b:
            d = None
        elif a not in {s.id for s in self.repo.ancestry(snapshot_id=b)}:
            raise StoreError(f"{self.path}: {to_ref!r} does not descend from {from_ref!r}; give the older "
                             f"version first")
        else:
            d = self.repo.diff(from_snapshot_id=a, to_snapshot_id=b)
        old, new = type(self)(self.path, self.repo, a, from_ref), type(self)(self.path, self.repo, b, to_ref)
        return {
            "from": a, "to": b,
            "frames": {"from": old.num_frames, "to": new.num_frames},
            "pseudo_sets": {"added": sorted(set(new.pseudo_sets()) - set(old.pseudo_sets())),
                            "removed": sorted(set(old.pseudo_sets()) - set(new.pseudo_sets()))},
            "new_arrays": sorted(d.new_arrays) if d else [],
            "updated_arrays": sorted(d.updated_arrays) if d else [],
            "deleted_arrays": sorted(d.deleted_arrays) if d else [],
            "updated_chunks": {k: len(v) for k, v in sorted(d.updated_chunks.items())} if d else {},
        }


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
