"""Before a labeling job runs (coordinator side of pipeline/label/job.py): who labels, what is left to do.

Flow: job.py opens the store and the teachers (`open_teachers`) -> `identity` (what makes two runs the same labeling)
-> `prepare_arrays` creates pseudo/<name>/ or grows it to the store's frame count (one commit, only
when something changed) and refuses to mix provenance under one name -> `pending_shards` (done flag
unset) -> the dask job. Also the per-name run lock: one job per pseudo set at a time (another name may run
beside it; commits from both go through the store's commit lock and rebase).
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import zarr

from pipeline.label.anchor import FIT_FIELDS, anchor_relative, is_relative
from stores.errors import StoreError, UserError
from stores.lock import LockBusy, label_lock
from stores.schema import TOPK_ARRAYS, create_array, create_pseudo

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PSEUDO_KEYS = ("segm", "conf", "depth")
OPTIONAL_KEYS = ("depth_conf", "depth_fit", *TOPK_ARRAYS)


def parse_name(name: str) -> str:
    """`name` if it can be a pseudo set name (letters, digits, . _ -, at most 100, first a letter or digit);
    UserError otherwise.
    """
    if not NAME_RE.match(name or ""):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (pseudo set names are "
                        f"store paths), starting with a letter or digit")
    return name


@contextmanager
def run_lock(store_path, name: str):
    """Non-blocking exclusive lock of pseudo set `name`; released on exit, and by the OS if killed."""
    try:
        with label_lock(store_path, name):
            yield
    except LockBusy:
        raise UserError(f"{store_path}: another label job is writing pseudo set {name!r} right now; "
                        f"wait for it or use another --name") from None


def open_teachers(store, teachers, *, remap=None, flip: bool = False, batch_size: int = 8, topk: int = 0) -> dict:
    """task -> Teacher for `teachers` ((task, spec) pairs, job.parse_teachers), each loaded once here on the
    CPU: validates files, classes and remap before any cluster starts (a segmentation teacher's output
    class count is checked against the remap or the store with one forward pass, so no class id the
    store does not have is ever written), and gives the weight hashes for provenance. A relative-depth
    hf: teacher is anchored to the store's real depth here (anchor.anchor_relative). Workers load their
    own copies from each teacher's `spec`. `topk` > 0: the segmentation teacher also gives its top-k classes.
    UserError naming the teacher for any of these problems, or a top-k above the store's class count."""
    from teachers.base import load_teacher

    if topk > len(store.classes):
        raise UserError(f"--topk {topk}: the store has only {len(store.classes)} classes")
    out = {}
    for task, spec in teachers:
        def open_spec(spec, task=task):
            return load_teacher(spec, task, remap=remap if task == "segm" else None, device="cpu",
                                store_classes=store.classes if task == "segm" else None, flip=flip,
                                batch_size=batch_size, topk=topk if task == "segm" else 0)
        out[task] = anchor_relative(open_spec(spec), store, open_spec)
        out[task].check_classes(store.classes, tuple(store.frame_size))
    return out


def identity(teachers: dict, frames: str, topk: int = 0) -> dict:
    """What must match for a re-run to continue a pseudo set: teacher weights, remap, flip, frame choice and
    the top-k soft targets' K (absent when 0). `teachers`: task -> Teacher (opened by the coordinator)."""
    out = {"frames": frames, "teachers": {}, **({"topk": topk} if topk else {})}
    for task, t in sorted(teachers.items()):
        prov = t.provenance()
        out["teachers"][task] = {"version": t.version, "flip": t.flip,
                                 "remap": prov["remap"]["table"] if prov["remap"] else None}
    return out


def describe_identity(ident: dict) -> str:
    """One line of a labeling identity for messages: frame choice, each teacher's version (12 hex), +flip, +remap."""
    parts = [f"frames={ident.get('frames')}"] + ([f"topk={ident['topk']}"] if ident.get("topk") else [])
    for task, t in sorted(ident.get("teachers", {}).items()):
        parts.append(f"{task} teacher {t['version'][:12]}" + (" +flip" if t.get("flip") else "")
                     + (" +remap" if t.get("remap") else ""))
    return ", ".join(parts)


def group_attrs(store, teachers: dict, ident: dict, depth_conf: bool, input_snapshot: str) -> dict:
    """Attributes of pseudo/<name>: read by `mtdistill show`, the merge rule's compatibility check and qa.
    "depth_fit": the set has a depth_fit array (a relative depth teacher: pipeline/label/anchor.py)."""
    return {
        "tasks": sorted(teachers),
        "teachers": {task: t.provenance() for task, t in sorted(teachers.items())},
        "identity": ident, "classes": store.classes, "depth_unit": "m", "frames": ident["frames"],
        "depth_conf": depth_conf, "depth_fit": "depth" in teachers and is_relative(teachers["depth"]),
        "input_snapshot": input_snapshot, "topk": ident.get("topk", 0),
    }


def optional_keys(group) -> tuple[str, ...]:
    """The optional per-frame arrays pseudo/<name> (a zarr group) has: depth_conf, depth_fit, top-k."""
    return tuple(k for k in OPTIONAL_KEYS if k in group)


def check_existing(store, name: str, ident: dict, overwrite: bool) -> bool:
    """True if pseudo/<name> exists and belongs to this labeling; False if absent (or to be replaced)."""
    if name not in store.pseudo_sets():
        return False
    old = dict(store.root[f"pseudo/{name}"].attrs).get("identity")
    if old == ident:
        return True
    if overwrite:
        return False
    was = describe_identity(old) if old else "something other than `mtdistill label`"
    raise UserError(f"{store.path}: pseudo set {name!r} was labeled by {was}; this run uses "
                    f"{describe_identity(ident)}. Use another --name, or --overwrite to relabel it")


def prepare_arrays(store, name: str, attrs: dict, keep: bool, message_md: dict) -> tuple[object, bool]:
    """Create (or replace) pseudo/<name> for all frames, or grow it to the store's frame count.
    Returns (store reopened at the new head, whether a commit was made)."""
    n, s = store.num_frames, store.shard_frames
    session = store.writable_session(store.ref)
    root = zarr.open_group(session.store, mode="a")
    changed = None
    if not keep:
        if f"pseudo/{name}" in root:
            del root[f"pseudo/{name}"]
        g = create_pseudo(root, name, n, attrs)
        if attrs["depth_conf"]:
            create_array(g, "depth_conf", "uint8", 0, tuple(store.frame_size), s, n)
        for key, (dtype, fill) in TOPK_ARRAYS.items() if attrs["topk"] else ():
            create_array(g, key, dtype, fill, (attrs["topk"], *store.frame_size), s, n)
        if attrs["depth_fit"]:                   # (N, 4) FIT_FIELDS; chunk = 1 frame, shard = S: workers write shards
            create_array(g, "depth_fit", "float32", np.nan, (len(FIT_FIELDS),), s, n)
        changed = f"label {name}: create pseudo arrays for {n} frames"
    else:
        g = root[f"pseudo/{name}"]
        old_n = g["segm"].shape[0]
        if old_n > n:
            raise StoreError(f"{store.path}: pseudo set {name!r} covers {old_n} frames, the store has {n}")
        if old_n < n:
            for key in (*PSEUDO_KEYS, *optional_keys(g)):
                g[key].resize((n, *g[key].shape[1:]))
            g["done"].resize((-(-n // s),))
            if old_n % s:
                g["done"][old_n // s] = False       # the old last shard grew: relabel it whole
            changed = f"label {name}: grow pseudo arrays {old_n} -> {n} frames"
    if changed is None:
        return store, False
    store.commit(session, changed, {**message_md, "frames_total": n})
    return store.reopen(), True


def pending_shards(store, name: str) -> np.ndarray:
    """Indices of shards whose done flag is unset."""
    return np.flatnonzero(~store.root[f"pseudo/{name}/done"][:])


def shard_range(shard: int, n: int, s: int) -> tuple[int, int]:
    """Frames [start, stop) of shard `shard` with `s` frames per shard in a store of `n` frames."""
    return shard * s, min(n, (shard + 1) * s)


def compact_ranges(shards) -> list[list[int]]:
    """[0, 1, 2, 5, 6] -> [[0, 2], [5, 6]] (inclusive), for commit metadata that stays small."""
    out: list[list[int]] = []
    for k in sorted(int(x) for x in shards):
        if out and out[-1][1] == k - 1:
            out[-1][1] = k
        else:
            out.append([k, k])
    return out


def expand_ranges(ranges) -> list[int]:
    """Inverse of compact_ranges: [[0, 2], [5, 6]] -> [0, 1, 2, 5, 6]."""
    return [k for a, b in ranges for k in range(a, b + 1)]
