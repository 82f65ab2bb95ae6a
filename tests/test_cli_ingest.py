"""`mtdistill ingest` end to end through the CLI: real-format files in, one commit per ingest, bad input
gives one error line and leaves the store at its last commit, --skip-bad records what it skipped."""
from __future__ import annotations

import json
import shutil

import numpy as np
from source_fixtures import REAL, make_nyud_tree, truncate, write_png

from stores.repo import FrameStore
from conftest import run_cli as run


def test_nyud_tree_ingest_show_and_reingest(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud", n=3, h=24, w=32)
    store = tmp_path / "n.ice"
    out = json.loads(run("ingest", "nyud", root, store, "--size", "32x24", "--json").stdout)
    assert out["added"] == 3 and out["snapshot_id"]
    s = FrameStore.open(store)
    assert s.num_frames == 3 and s.frame_size == (24, 32) and s.num_classes == 40
    md = s.log(limit=1)[0]["metadata"]
    assert md["source_kind"] == "nyud" and md["source"]["size_policy"] == "resize" and md["frames_added"] == 3
    again = run("ingest", "nyud", root, store)
    assert "nothing new: 3 frame(s) already" in again.output
    assert FrameStore.open(store).snapshot_id == s.snapshot_id


def test_real_nyud_and_kitti_frames(tmp_path):
    nyud = tmp_path / "nyud"
    for sub, suffix in (("rgb", "rgb"), ("masks", "segm"), ("depth", "depth")):
        (nyud / sub).mkdir(parents=True)
        shutil.copy(REAL / f"nyud_000464_{suffix}.png", nyud / sub / "000464.png")
    (nyud / "test.txt").write_text("000464\n")
    (nyud / "train.txt").write_text("")
    run("ingest", "nyud", nyud, tmp_path / "n.ice")
    s = FrameStore.open(tmp_path / "n.ice")
    assert s.frame_size == (480, 640) and list(s.indices("test")) == [0]
    d = s.read(0, 1, ["real/depth", "real/segm"])
    valid = d["real/depth"][0] > 0
    assert valid.mean() > 0.5 and d["real/depth"][0][valid].max() <= 10
    assert set(np.unique(d["real/segm"])) <= set(range(40)) | {255}

    kitti = tmp_path / "kitti"
    (kitti / "img").mkdir(parents=True)
    (kitti / "segm").mkdir()
    shutil.copy(REAL / "kitti6_000099_rgb.png", kitti / "img" / "000099.png")
    shutil.copy(REAL / "kitti6_000099_segm_color.png", kitti / "segm" / "000099.png")
    run("ingest", "kitti", kitti / "img", tmp_path / "k.ice", "--segm", kitti / "segm", "--fit", "crop",
        "--size", "1216x352")
    k = FrameStore.open(tmp_path / "k.ice")
    segm = k.read(0, 1, ["real/segm"])["real/segm"][0]
    assert k.num_classes == 6 and set(np.unique(segm)) <= set(range(6)) | {255}
    assert (segm != 255).mean() > 0.5


def test_bad_file_one_line_store_unchanged_then_skip_bad(tmp_path):
    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(imgs / f"im{i}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    store = tmp_path / "f.ice"
    run("ingest", "folder", imgs, store, "--split", "val")
    before = FrameStore.open(store).snapshot_id
    for i in range(4, 7):
        write_png(imgs / f"im{i}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    truncate(imgs / "im5.png")
    r = run("ingest", "folder", imgs, store, ok=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1 and "im5.png" in errors[0], r.output
    assert FrameStore.open(store).snapshot_id == before
    r = run("ingest", "folder", imgs, store, "--skip-bad")
    assert "ingested 2 new frame(s)" in r.output and "skipped" in r.output and "im5.png" in r.output
    s = FrameStore.open(store)
    assert s.num_frames == 6
    assert [x["file"].endswith("im5.png") for x in s.log(limit=1)[0]["metadata"]["skipped"]] == [True]


def test_bad_store_path_and_class_mismatch(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud", n=3, h=24, w=32)
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "x.txt").write_text("hello")
    r = run("ingest", "nyud", root, tmp_path / "notastore", ok=False)
    assert "not a mtdistill store" in r.output
    imgs = tmp_path / "imgs"
    write_png(imgs / "a.png", np.zeros((24, 32, 3), np.uint8))
    run("ingest", "folder", imgs, tmp_path / "k.ice", "--classes", "kitti6")
    r = run("ingest", "nyud", root, tmp_path / "k.ice", ok=False)
    assert "store has 6 classes" in r.output
