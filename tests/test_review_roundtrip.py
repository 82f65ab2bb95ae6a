"""export-for-review -> edit masks -> ingest review: the store gains exactly the edited labels as real
segmentation, in one new version naming the review round; changed frames are refused by name."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image
from review_fixtures import make_review_store

from pipeline.review.stats import frame_stats, order
from stores.repo import FrameStore
from stores.sources.base import Frame


@pytest.fixture
def pstore(tmp_path):
    return make_review_store(tmp_path / "r.ice")


def versions(store) -> list:
    return list(FrameStore.open(store.path).repo.ancestry(branch="main"))


def export(store, out, fmt, select="lowest-confidence:4"):
    run_cli("export-for-review", store.path, "--pseudo", "p", "--select", select, "--format", fmt,
            "--out", out, "--round", "round-1")
    return json.loads((out / "manifest.json").read_text())


def edit(mask_path, value):
    """Set a 3x5 block of a mask PNG to `value` (a class id, or an RGB colour); returns the block."""
    a = np.array(Image.open(mask_path))
    a[10:13, 20:25] = value
    Image.fromarray(a).save(mask_path)


@pytest.mark.parametrize("fmt", ["folder", "cvat"])
def test_round_trip_adds_exactly_the_corrected_labels(pstore, tmp_path, fmt):
    out = tmp_path / "fix"
    m = export(pstore, out, fmt)
    st = frame_stats(pstore, "p")
    rows = [r for r in order(st, "confidence") if not st.has_segm[r]][:4]
    chosen = sorted(int(st.index[r]) for r in rows)
    assert [f["index"] for f in m["frames"]] == chosen and all(i % 2 == 1 for i in chosen)
    pseudo, rgb = pstore.pseudo("p")["segm"][:], pstore.root["frames/rgb"][:]
    masks = out / m["masks"]
    for f in m["frames"]:                                    # lossless images, masks = pseudo labels
        assert np.array_equal(np.array(Image.open(out / "images" / f["file"])), rgb[f["index"]])
    if fmt == "cvat":
        lines = (out / "labelmap.txt").read_text().splitlines()
        assert lines[1] == "background:0,0,0::" and lines[2].startswith("c0:")
        names = zipfile.ZipFile(out / "annotations.zip").namelist()
        assert "labelmap.txt" in names and f"SegmentationClass/{m['frames'][0]['file']}" in names
        color = tuple(pstore.classes[3]["color"])
        edit(masks / m["frames"][0]["file"], color)
        edit(masks / m["frames"][2]["file"], (0, 0, 0))                # void in CVAT
        download = tmp_path / "cvat_download"                          # as CVAT hands it back
        shutil.copytree(masks, download / "SegmentationClass")
        extra = ["--masks", download]
    else:
        assert np.array_equal(np.array(Image.open(masks / m["frames"][1]["file"])), pseudo[m["frames"][1]["index"]])
        edit(masks / m["frames"][0]["file"], 3)
        edit(masks / m["frames"][2]["file"], 255)
        extra = []
    before, has_before = len(versions(pstore)), pstore.root["real/has_segm"][:]
    segm_before = pstore.root["real/segm"][:]
    r = run_cli("ingest", "review", out, pstore.path, *extra)
    assert "segm added to 4 frame(s)" in r.output
    s = FrameStore.open(pstore.path)
    assert len(versions(s)) == before + 1
    want = pseudo[chosen].copy()
    want[0, 10:13, 20:25], want[2, 10:13, 20:25] = 3, 255
    assert np.array_equal(s.root["real/segm"][chosen], want)
    others = np.setdiff1d(np.arange(20), chosen)
    assert np.array_equal(s.root["real/segm"][others], segm_before[others])
    assert np.array_equal(s.root["real/has_segm"][:], has_before | np.isin(np.arange(20), chosen))
    md = versions(s)[0].metadata
    assert md["source_kind"] == "review" and md["source"]["round"] == "round-1"
    assert md["source"]["export_snapshot"] == m["snapshot"] and len(md["annotations_added"]["segm"]) == 4
    r = run_cli("ingest", "review", out, pstore.path, *extra)         # the same masks again: no change
    assert "nothing new" in r.output and len(versions(s)) == before + 1


def test_changed_frame_is_refused_by_name(pstore, tmp_path):
    out = tmp_path / "fix"
    m = export(pstore, out, "folder")
    f = m["frames"][1]
    rgb = pstore.root["frames/rgb"][f["index"]]
    with pstore.append("someone labels it", {"kind": "ingest"}) as w:        # labeled after the export
        w.add(Frame(rgb=rgb, split="train", name="x", segm=np.zeros(rgb.shape[:2], np.uint8)))
    n = len(versions(pstore))
    r = run_cli("ingest", "review", out, pstore.path, ok=False)
    line = r.output.split("error: ", 1)[1]
    assert f["file"] in line and f"frame {f['index']}" in line
    assert "after the export" in r.output and len(versions(pstore)) == n            # nothing committed
    (out / "masks" / "stray.png").write_bytes((out / "masks" / f["file"]).read_bytes())
    r = run_cli("ingest", "review", out, pstore.path, "--skip-bad")          # the other three go in
    assert "segm added to 3 frame(s)" in r.output and "stray.png" in r.output
    s = FrameStore.open(pstore.path)
    assert (s.root["real/segm"][f["index"]] == 0).all()


def test_bad_input_is_one_line(pstore, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [(["export-for-review", pstore.path, "--pseudo", "p", "--out", tmp_path / "full"], "not an empty folder"),
             (["export-for-review", pstore.path, "--pseudo", "p", "--out", tmp_path / "o", "--select", "best:3"],
              "--select 'best:3'"),
             (["export-for-review", pstore.path, "--pseudo", "p", "--out", tmp_path / "o", "--select", "class:zz:3"],
              "no class 'zz'"),
             (["ingest", "review", tmp_path / "full", pstore.path], "manifest.json: not found")]
    for args, msg in cases:
        r = run_cli(*args, ok=False)
        assert "error: " in r.output and msg in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_bad_masks_are_named(pstore, tmp_path):
    out = tmp_path / "fix"
    m = export(pstore, out, "cvat", select="class:c2:2")
    first, second = (out / "SegmentationClass" / f["file"] for f in m["frames"])
    edit(first, (1, 2, 3))                                            # a colour of no class
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(second)     # wrong size
    r = run_cli("ingest", "review", out, pstore.path, ok=False)
    assert first.name in r.output and "[1, 2, 3]" in r.output
    r = run_cli("ingest", "review", out, pstore.path, "--skip-bad")     # both skipped: no version
    assert "no version made" in r.output and second.name in r.output and "10x10" in r.output
