"""Checking a store version chunk by chunk: `mtdistill verify`, and naming the damaged chunk when a read
anywhere fails on a corrupt one.

Sits in stores/ beside repo.py (reads through FrameStore only). Stores of schema 2 keep a crc32c checksum
at the end of every chunk (stores/schema.py), so any flipped byte fails the read; stores of schema 1
have none: their arrays cannot be verified, though frames/rgb is still checked against the content key
stored per frame (frames/key) and undecodable chunks are still found.
"""
from __future__ import annotations

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ShardingCodec

from stores.schema import content_key

# how zarr, the codecs and icechunk word a damaged chunk -> what the user is told
_CORRUPT_TEXTS = {
    "Stored and computed checksum do not match": "checksum mismatch",
    "Requested range was invalid": "chunk file truncated",
    "decompression error": "undecodable chunk",
    "error during blosc decompression": "undecodable chunk",
    "Zstd decompression error": "undecodable chunk",
}


def corruption_reason(error: BaseException) -> str | None:
    """'checksum mismatch' / 'chunk file truncated' / 'undecodable chunk' when `error` (or its cause, or
    the text of an error re-raised from a worker process) is a damaged chunk; None otherwise."""
    seen = error
    while seen is not None:
        for text, reason in _CORRUPT_TEXTS.items():
            if text.lower() in str(seen).lower():
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


def array_paths(group: zarr.Group, prefix: str = "") -> list[str]:
    """Paths of every array under `group`, sorted ('frames/rgb', 'pseudo/v1/segm', ...)."""
    out = []
    for name, node in group.members():
        path = f"{prefix}{name}"
        out.extend(array_paths(node, path + "/") if isinstance(node, zarr.Group) else [path])
    return sorted(out)


def has_checksums(arr: zarr.Array) -> bool:
    """True if every chunk of `arr` ends in a crc32c checksum (inner codecs of a sharded array)."""
    codecs = list(arr.metadata.codecs)
    for c in codecs:
        if isinstance(c, ShardingCodec):
            codecs = list(c.codecs)
    return any(isinstance(c, Crc32cCodec) for c in codecs)


def damaged_frames(arr: zarr.Array, stop_at_first: bool = False) -> list[tuple[int, int, str]]:
    """[(first frame, last frame, reason)] of the chunks of `arr` that fail to read: reads shard by shard,
    then chunk by chunk inside a failing shard. Other errors (not corruption) propagate."""
    n = arr.shape[0] if arr.ndim else 0
    step, chunk = (arr.shards or arr.chunks)[0], arr.chunks[0]
    found = []
    for a in range(0, n, step):
        try:
            arr[a:min(a + step, n)]
            continue
        except Exception as e:  # noqa: BLE001 - sorted by corruption_reason below
            if corruption_reason(e) is None:
                raise
        for c in range(a, min(a + step, n), chunk):
            try:
                arr[c:min(c + chunk, n)]
            except Exception as e:  # noqa: BLE001
                reason = corruption_reason(e)
                if reason is None:
                    raise
                found.append((c, min(c + chunk, n) - 1, reason))
                if stop_at_first:
                    return found
    return found


def key_mismatches(root: zarr.Group, frames=None) -> list[int]:
    """Frames whose decoded RGB no longer has the content key stored for it at ingest (frames/key)."""
    rgb, keys = root["frames/rgb"], root["frames/key"]
    bad = []
    for i in range(rgb.shape[0]) if frames is None else frames:
        if content_key(rgb[i]) != bytes(np.asarray(keys[i], np.uint8)):
            bad.append(int(i))
    return bad


def verify(store) -> dict:
    """Read and check every chunk of every array of a FrameStore version.

    Returns {"store", "ref", "snapshot", "arrays": {path: {"frames", "checksums"}}, "damaged": [{"array",
    "frames": [first, last], "reason"}], "unverifiable": [paths written without checksums]}."""
    root, damaged, arrays = store.root, [], {}
    for path in array_paths(root):
        arr = root[path]
        arrays[path] = {"frames": int(arr.shape[0]) if arr.ndim else 0, "checksums": has_checksums(arr)}
        damaged += [{"array": path, "frames": [a, b], "reason": r} for a, b, r in damaged_frames(arr)]
    bad_rgb = {d["frames"][0] for d in damaged if d["array"] in ("frames/rgb", "frames/key")}
    if not bad_rgb:
        damaged += [{"array": "frames/rgb", "frames": [i, i], "reason": "content key mismatch"}
                    for i in key_mismatches(root)]
    return {"store": str(store.path), "ref": store.ref, "snapshot": store.snapshot_id, "arrays": arrays,
            "damaged": damaged, "unverifiable": [p for p, a in arrays.items() if not a["checksums"]]}


def describe(store_path, array: str, first: int, last: int, reason: str) -> str:
    """'STORE: frames/rgb frame 15 is corrupt (checksum mismatch)' (or 'frames 0-4095 are')."""
    where = f"frame {first} is" if first == last else f"frames {first}-{last} are"
    return f"{store_path}: {array} {where} corrupt ({reason})"


def first_damage(store) -> str | None:
    """describe() of the first damaged chunk of a FrameStore version, or None if every chunk reads."""
    for path in array_paths(store.root):
        found = damaged_frames(store.root[path], stop_at_first=True)
        if found:
            return describe(store.path, path, *found[0])
    return None


def explain_corruption(error: BaseException) -> str | None:
    """For an exception from reading a damaged chunk anywhere (this process, a DataLoader worker):
    one line naming the store, array and frame, found by scanning the store versions this process
    opened (most recent first); None if `error` is not about a damaged chunk."""
    reason = corruption_reason(error)
    if reason is None:
        return None
    from stores.repo import FrameStore, opened_versions

    for path, snapshot in reversed(opened_versions()):
        try:
            found = first_damage(FrameStore.open(path, snapshot))
        except Exception:  # noqa: BLE001 - a store that no longer opens says nothing here
            continue
        if found:
            return found
    return f"a store chunk is corrupt ({reason}); `mtdistill verify STORE` names it"
