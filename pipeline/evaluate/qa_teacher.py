"""`mtdistill qa --teacher`: is a teacher worth labeling with? Its predictions against real targets, before
anything is labeled or written.

Flow: the teachers are opened as `mtdistill label` opens them (pipeline.label.plan.open_teachers: files,
classes, remap, a relative depth model anchored store-wide) -> the frames of the split that carry a real
target of a teacher's task (at most `limit`, evenly spread) are read in batches and predicted in this
process -> the same tallies, figures and verdicts as a labeled set (pipeline.evaluate.qa). Nothing is
written to the store.
"""
from __future__ import annotations

import numpy as np

from pipeline.evaluate.qa import _Tally, tally_report
from pipeline.label.plan import open_teachers
from stores.errors import UserError
from stores.schema import HAS_TARGET


def pick_frames(store, has: dict, split: str | None, limit: int) -> np.ndarray:
    """Sorted frame indices of `split` (None: all) with a real target of any task of `has` (task -> bool per
    frame), at most `limit` (0: all) evenly spread over them; UserError naming the split when there is none."""
    idx = store.indices(split, required=True)
    idx = idx[np.logical_or.reduce(list(has.values()))[idx]]
    if len(idx) == 0:
        where = f"split {split!r}" if split else "the store"
        raise UserError(f"{store.path}: no frame of {where} has a real {' or '.join(sorted(has))} target to "
                        f"measure the teacher on")
    if limit and len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).astype(int)]
    return idx


def teacher_report(store, teachers, *, split: str | None = None, limit: int = 0, remap=None, flip: bool = False,
                   batch_size: int = 8) -> dict:
    """qa's report (pipeline.evaluate.qa.quality_report's keys, "pseudo" None, "teacher_specs" added) of
    teachers ((task, spec) pairs as `label --teacher` takes them) on the frames with real targets.
    UserError (before any prediction) for a teacher that cannot be opened or mapped, or no frame to use."""
    opened = open_teachers(store, teachers, remap=remap, flip=flip, batch_size=batch_size)
    has = {t: store.root[HAS_TARGET[t]][:].astype(bool) for t in opened}
    frames = pick_frames(store, has, split, limit)
    tally = _Tally(store.num_classes)
    rgb_all = store.root["frames/rgb"]
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        rgb = np.stack([rgb_all[int(i)] for i in chunk])                  # (B, H, W, 3) uint8
        for task, teacher in opened.items():
            mine = has[task][chunk]
            if not mine.any():
                continue
            real = np.stack([store.root[f"real/{task}"][int(i)] for i in chunk[mine]])
            tally.add_arrays(task, chunk[mine], real, teacher.predict(rgb[mine]))
    head = {"store": str(store.path), "snapshot": store.snapshot_id, "pseudo": None, "split": split,
            "teacher_specs": [list(t) for t in teachers],
            "teachers": {t: v.provenance() for t, v in sorted(opened.items())}, "labeled_frames": len(frames)}
    return tally_report(tally, sorted(opened), head, "teacher", "no frame with both a prediction and a real target")
