"""The versioned store: layout, append/dedup, reading, versions, faults, and real-process concurrency."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, H, W, ingest, random_frames

from stores.errors import StoreError
from stores.repo import FrameStore
from stores.schema import SPLIT_CODES, content_key
from stores.sources.base import Frame

WORKER = str(Path(__file__).with_name("store_worker.py"))


def test_layout_and_attrs(empty_store):
    s = empty_store
    assert s.num_frames == 0 and s.frame_size == (H, W) and s.num_classes == len(CLASSES)
    assert s.attrs["ignore_index"] == 255 and s.attrs["depth_unit"] == "m"
    rgb = s.root["frames/rgb"]
    assert rgb.chunks == (1, H, W, 3) and rgb.shards == (8, H, W, 3)
    assert s.root["real/depth"].dtype == np.float32


def test_append_roundtrip_and_not_annotated(empty_store):
    frames = list(random_frames(11, seed=3, segm_every=2, depth_every=3))
    sid = ingest(empty_store, frames)
    s = FrameStore.open(empty_store.path, sid)
    assert s.num_frames == 11
    got = s.read(0, 11, ["frames/rgb", "real/segm", "real/depth", "real/has_segm", "real/has_depth",
                         "frames/name"])
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(got["frames/rgb"][i], f.rgb)
        assert got["real/has_segm"][i] == (f.segm is not None)
        if f.segm is None:
            assert (got["real/segm"][i] == 255).all()
        else:
            np.testing.assert_array_equal(got["real/segm"][i], f.segm)
        if f.depth is None:
            assert (got["real/depth"][i] == 0).all()
        else:
            np.testing.assert_array_equal(got["real/depth"][i], f.depth)
        assert got["frames/name"][i] == f.name
    keys = s.root["frames/key"][:]
    assert bytes(keys[4]) == content_key(frames[4].rgb)


def test_reingest_adds_nothing_and_makes_no_commit(store):
    before = store.snapshot_id
    with store.append("again", {"kind": "ingest"}) as w:
        for f in random_frames(20, seed=1, segm_every=2, depth_every=3):
            w.add(f)
    assert w.added == 0 and w.duplicates == 20 and w.snapshot_id is None
    assert store.reopen().snapshot_id == before


def test_appends_continue_mid_shard(store):
    ingest(store, random_frames(5, seed=9))          # 20 -> 25, shard size 8
    s = store.reopen()
    assert s.num_frames == 25
    np.testing.assert_array_equal(s.read(20, 25, ["frames/rgb"])["frames/rgb"],
                                  np.stack([f.rgb for f in random_frames(5, seed=9)]))
    np.testing.assert_array_equal(s.read(0, 1, ["frames/rgb"])["frames/rgb"][0],
                                  next(random_frames(1, seed=1)).rgb)


def test_failed_ingest_leaves_store_at_last_commit(store):
    before = store.snapshot_id

    def frames():
        yield from random_frames(12, seed=5)
        raise RuntimeError("reader died")

    with pytest.raises(RuntimeError):
        ingest(store, frames())
    s = store.reopen()
    assert s.snapshot_id == before and s.num_frames == 20


def test_bad_frames_rejected_by_writer(store):
    rgb = np.zeros((H, W, 3), np.uint8)
    bad = [
        (Frame(rgb, "train", "wrong_size.png", segm=np.zeros((H, W - 1), np.uint8)), "wrong_size.png"),
        (Frame(rgb, "train", "label9.png", segm=np.full((H, W), 9, np.uint8)), "label value 9"),
        (Frame(rgb, "train", "nan.npy", depth=np.full((H, W), np.nan, np.float32)), "NaN"),
        (Frame(rgb, "train", "neg.npy", depth=np.full((H, W), -1, np.float32)), "negative"),
        (Frame(rgb, "nosuch", "split.png"), "unknown split"),
    ]
    for frame, words in bad:
        with pytest.raises(StoreError, match=words):
            ingest(store, [frame])
    assert store.reopen().snapshot_id == store.snapshot_id


def test_open_errors(tmp_path, store):
    with pytest.raises(StoreError, match="not a mtdistill store"):
        FrameStore.open(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a mtdistill store"):
        FrameStore.open(tmp_path / "plain")
    with pytest.raises(StoreError, match="no branch, tag or snapshot named 'nope'"):
        FrameStore.open(store.path, "nope")
    with pytest.raises(StoreError, match="already exists"):
        FrameStore.create(store.path, name="x", classes=CLASSES, frame_size=(H, W))


def test_versions_tag_diff_reset(store):
    first = store.snapshot_id
    store.tag("v1")
    with pytest.raises(StoreError, match="already exists"):
        store.tag("v1")
    store.tag("train/run-1")
    assert store.tags()["train/run-1"] == first and FrameStore.open(store.path, "train/run-1").num_frames == 20
    with pytest.raises(StoreError, match="tag name 'a:b'"):
        store.tag("a:b")
    ingest(store, random_frames(3, seed=7), message="three more")
    s = store.reopen()
    assert [e["message"] for e in s.log(limit=2)] == ["three more", "ingest test"]
    assert FrameStore.open(s.path, "v1").num_frames == 20
    d = s.diff("v1", "main")
    assert d["frames"] == {"from": 20, "to": 23} and "/frames/rgb" in d["updated_chunks"]
    old, new = s.reset("main", "v1")
    assert new == first and FrameStore.open(s.path).num_frames == 20
    assert FrameStore.open(s.path, old).num_frames == 23  # the old tip is still reachable by id
    with pytest.raises(StoreError, match="not an ancestor"):
        s.reset("main", old)


def test_indices_by_split(empty_store):
    ingest(empty_store, list(random_frames(4, seed=1)) + list(random_frames(3, seed=2, split="test")))
    s = empty_store.reopen()
    assert list(s.indices("test")) == [4, 5, 6]
    assert (s.splits()[:4] == SPLIT_CODES["train"]).all()
    with pytest.raises(StoreError, match="unknown split"):
        s.indices("holdout")


def _run(*args, **kw):
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent, **kw)


def test_killed_ingest_keeps_previous_version_and_rerun_completes(store):
    before = store.snapshot_id
    p = _run("ingest-slow", store.path, 42, 24, 0.05)
    assert p.stdout.readline().strip() == "halfway"  # 12 frames written (one full shard flushed)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    s = store.reopen()
    assert s.snapshot_id == before and s.num_frames == 20
    s.read(0, 20)  # still readable
    p = _run("ingest-slow", store.path, 42, 24, 0.0)
    assert p.wait() == 0
    s = store.reopen()
    assert s.num_frames == 44
    np.testing.assert_array_equal(s.read(20, 44, ["frames/rgb"])["frames/rgb"],
                                  np.stack([f.rgb for f in random_frames(24, seed=42)]))


def test_two_processes_committing_lose_nothing(store):
    procs = [_run("ingest-many", store.path, 1001, 6), _run("ingest-many", store.path, 1002, 6),
             _run("pseudo-many", store.path, 7, 6)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    s = store.reopen()
    assert s.num_frames == 20 + 2 * 6 * 2
    messages = [e["message"] for e in s.log()]
    for w in ("w1001 ingest", "w1002 ingest", "w7 pseudo"):
        assert sum(m.startswith(w) for m in messages) == 6, messages
    assert len(s.pseudo_sets()) == 6
    keys = {bytes(k) for k in s.root["frames/key"][:]}
    assert len(keys) == s.num_frames
    for i in range(6):
        assert (s.root[f"pseudo/p7_{i}/segm"][:] == i % 5).all()
