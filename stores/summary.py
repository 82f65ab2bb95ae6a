"""What `mtdistill show` reports about one store version: splits, annotation coverage, pseudo sets, size."""
from __future__ import annotations

import numpy as np

from stores.schema import SPLIT_NAMES


def summarize(store) -> dict:
    """JSON-safe report of one store version for `mtdistill show`: frames per split with segm/depth coverage
    (percent of frames annotated), pseudo sets (frames covered by done shards, teachers, tasks), tags,
    branches and size_on_disk in bytes.
    """
    split = store.splits()
    has_segm = store.root["real/has_segm"][:]
    has_depth = store.root["real/has_depth"][:]
    n = len(split)
    splits = {}
    for code, name in SPLIT_NAMES.items():
        m = split == code
        k = int(m.sum())
        if k:
            splits[name] = {"frames": k, "segm_pct": round(100 * has_segm[m].mean(), 1),
                            "depth_pct": round(100 * has_depth[m].mean(), 1)}
    s = store.shard_frames
    pseudo = {}
    for name in store.pseudo_sets():
        g = store.root[f"pseudo/{name}"]
        done = g["done"][:]
        frames = g["segm"].shape[0]
        shard_sizes = np.minimum(s, frames - np.arange(len(done)) * s)
        covered = int(shard_sizes[done].sum())
        pseudo[name] = {"frames": frames, "labeled_frames": covered,
                        "shards_done": f"{int(done.sum())}/{len(done)}",
                        "teachers": g.attrs.get("teachers", {}), "tasks": g.attrs.get("tasks", []),
                        "topk": int(g.attrs.get("topk", 0)),
                        "bytes_stored": {k: int(a.nbytes_stored()) for k, a in g.arrays() if k != "done"}}
    return {
        "path": str(store.path), "ref": store.ref, "snapshot": store.snapshot_id,
        "name": store.attrs.get("name"), "frame_size": list(store.frame_size),
        "classes": store.num_classes, "frames": n,
        "annotations": {"segm_pct": round(100 * float(np.mean(has_segm)), 1) if n else 0.0,
                        "depth_pct": round(100 * float(np.mean(has_depth)), 1) if n else 0.0},
        "splits": splits, "pseudo": pseudo, "tags": store.tags(), "branches": store.branches(),
        "size_bytes": store.size_on_disk(),
    }
