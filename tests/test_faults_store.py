"""Issue 15 items 1, 2, 6, 7 and issue 10 item 5: store creation is atomic and serialized, a damaged
store opens in one line, read-only stores and folders and a full disk end in one line with nothing
half-written. Real processes (kill -9, races) and real filesystems (a tmpfs mounted read-only / small)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import icechunk as ic
import numpy as np
import pytest

from pipeline.ingest import open_or_create, run_ingest
from stores.errors import StoreError, UserError
from stores.repo import FrameStore
from stores.sources.base import Frame, SkipLog
from conftest import CLASSES, H, W, ingest, random_frames, run_cli

WORKER = str(Path(__file__).with_name("fault_worker.py"))


def _worker(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _one_error_line(r, *must):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output and all(m in lines[0] for m in must), r.output
    return lines[0]


def test_killed_creation_leaves_no_store_and_the_rerun_finishes(tmp_path):
    path = tmp_path / "new.ice"
    p = _worker("create-hang", path, 1, 8)
    assert p.stdout.readline().strip() == "building"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not path.exists() and len(list(tmp_path.iterdir())) == 1   # only the hidden build
    _one_error_line(run_cli("show", path, ok=False), str(path), "not a mtdistill store")
    p = _worker("create", path, 1, 8)
    assert p.communicate(timeout=120)[0].split() == ["done", "8"]
    assert FrameStore.open(path).num_frames == 8 and list(tmp_path.iterdir()) == [path]


def test_damaged_store_opens_in_one_line(tmp_path):
    path = tmp_path / "old.ice"     # what an interrupted creation of older versions left: no layout commit
    ic.Repository.create(ic.local_filesystem_storage(str(path)))
    for cmd in (["show", path], ["log", path], ["tag", path, "x"]):
        _one_error_line(run_cli(*cmd, ok=False), str(path), "damaged store")


def test_two_creations_race_and_both_land(tmp_path):
    path = tmp_path / "race.ice"
    for attempt in range(2):
        start = time.time() + 4.0
        procs = [_worker("create", path, seed + 10 * attempt, 40, start) for seed in (1, 2)]
        outs = [p.communicate(timeout=180) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        assert FrameStore.open(path).num_frames == 80 * (attempt + 1)


def test_failed_first_ingest_leaves_no_store(tmp_path):
    path = tmp_path / "new.ice"
    store = open_or_create(path, classes=CLASSES, frame_size=(H, W))
    bad = Frame(rgb=np.zeros((H, W, 3), np.uint8), split="train", name="bad",
                segm=np.full((H, W), len(CLASSES), np.uint8))
    with pytest.raises(StoreError, match=f"bad: label value {len(CLASSES)} outside"):
        run_ingest(store, iter([*random_frames(3), bad]), kind="test", source={}, skips=SkipLog())
    assert not path.exists()
    store = open_or_create(path, classes=CLASSES, frame_size=(H, W))   # an existing store is kept
    ingest(store, random_frames(2))
    with pytest.raises(StoreError):
        run_ingest(store.reopen(), iter([bad]), kind="test", source={}, skips=SkipLog())
    assert FrameStore.open(path).num_frames == 2


def test_existing_store_refuses_another_size(tmp_path):
    path = tmp_path / "s.ice"
    run_cli("ingest", "synthetic", path, "--frames", 2, "--size", "32x24", "--workers", 1)
    line = _one_error_line(run_cli("ingest", "synthetic", path, "--frames", 3, "--size", "64x48", ok=False))
    assert line == (f"error: {path}: store frames are 32x24; --size 64x48 cannot change an existing store "
                    f"(leave --size out, or ingest into a new store)")
    assert FrameStore.open(path).num_frames == 2


# ---- the filesystem says no ------------------------------------------------------------------------
@pytest.fixture
def mount(tmp_path):
    """A tmpfs at tmp_path/mnt: mount(options) mounts it, remount(options) changes it; unmounted after."""
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = []

    def do(options: str, remount: bool = False):
        opts = f"remount,{options}" if remount else options
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.decode().strip()}")
        mounted.append(where)
        return where
    yield do
    if mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_read_only_store_and_folder(mount, tmp_path):
    where = mount("size=32m")
    path = where / "s.ice"
    run_cli("ingest", "synthetic", path, "--frames", 2, "--size", "32x24", "--workers", 1)
    mount("ro", remount=True)
    for cmd in (["tag", path, "t1"], ["reset", path, "main", "--yes"],
                ["ingest", "synthetic", path, "--frames", 4, "--workers", 1]):
        _one_error_line(run_cli(*cmd, ok=False), str(path), "read-only", "nothing was written")
    _one_error_line(run_cli("ingest", "synthetic", where / "new.ice", "--frames", 2, "--size", "32x24",
                            ok=False), str(where / "new.ice"))
    assert "frames: 2 of 32x24" in run_cli("show", path).output          # reads keep working
    assert len(run_cli("log", path).output.splitlines()) >= 2
    assert sorted(p.name for p in where.iterdir()) == ["s.ice"]


def test_disk_full_commits_nothing_and_says_so(mount):
    where = mount("size=1m")
    path = where / "s.ice"
    store = FrameStore.create(path, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    sid = ingest(store, random_frames(2))
    with pytest.raises(UserError) as e:    # ~21 kB of random pixels and depth per frame: 1 MB is full
        run_ingest(store.reopen(), random_frames(200, seed=5), kind="test", source={}, skips=SkipLog())
    msg = str(e.value)
    assert msg.startswith(f"{path}: disk full (") and "nothing was committed" in msg and "\n" not in msg, msg
    assert FrameStore.open(path).snapshot_id == sid and FrameStore.open(path).num_frames == 2
    with open(where / "filler", "wb") as f:        # fill the last bytes: even a tag cannot be written
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    line = _one_error_line(run_cli("tag", path, "before", ok=False), str(path), "disk full")
    assert "before" in line and "before" not in FrameStore.open(path).tags()
