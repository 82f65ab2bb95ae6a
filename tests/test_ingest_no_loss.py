"""Issue 10: every input a user brings either lands correctly or is refused by name (ingest side).

EXIF orientation, annotation files matched by name or suffix (or reported), annotations that arrive
after their frames, bad first images with --skip-bad, split lists naming any file, bad --device values.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli as run
from PIL import Image, ImageOps
from source_fixtures import pattern_labels, pattern_rgb, write_png

from stores.repo import FrameStore

SH, SW = 48, 64                     # as stored in the files (landscape); shown as 48 wide, 64 high


def exif_jpeg(path, rgb: np.ndarray, orientation: int = 6):
    im, exif = Image.fromarray(rgb), Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, exif=exif, quality=95)
    return path


def error_lines(r):
    return [line for line in r.output.splitlines() if line.startswith("error:")]


def photos(tmp_path, n=3, labels="segm", suffix="_mask", ext=".png"):
    """Portrait phone photos (EXIF 6) photoN.jpg, labels `photoN<suffix><ext>` drawn as shown (48x64)."""
    img = tmp_path / "photos"
    for i in range(n):
        exif_jpeg(img / f"photo{i}.jpg", pattern_rgb(SH, SW, i))
        if labels:
            lab = tmp_path / labels / f"photo{i}{suffix}{ext}"
            lab.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pattern_labels(SW, SH, 6)).save(lab)
    return img


# ---- 1. EXIF orientation ------------------------------------------------------------------------

def test_portrait_photos_are_sized_and_read_as_shown_with_their_labels(tmp_path):
    img = photos(tmp_path)
    lab = tmp_path / "segm"
    r = run("ingest", "folder", img, tmp_path / "p.ice", "--segm", lab, "--classes", "kitti6")
    s = FrameStore.open(tmp_path / "p.ice")
    assert s.frame_size == (SW, SH)                                   # (H, W) = 64 x 48: portrait
    shown = np.asarray(ImageOps.exif_transpose(Image.open(img / "photo1.jpg")).convert("RGB"))
    assert shown.shape == (SW, SH, 3)
    np.testing.assert_array_equal(s.read(1, 2)["frames/rgb"][0], shown)          # not squashed
    np.testing.assert_array_equal(s.read(1, 2)["real/segm"][0], pattern_labels(SW, SH, 6))
    assert s.root["real/has_segm"][:].all() and "ingested 3 new frame(s)" in r.output


def test_label_and_depth_maps_with_exif_orientation_are_turned_too(tmp_path):
    from stores.sources.images import read_depth_png, read_label

    ids = pattern_labels(SH, SW, 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(ids).save(tmp_path / "l.png", exif=exif)
    depth = (np.arange(SH * SW).reshape(SH, SW) + 1).astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "d.png", exif=exif)
    got = read_label(tmp_path / "l.png", 6)
    assert got.shape == (SW, SH) and np.array_equal(got, np.rot90(ids, -1))    # orientation 6 = 90 deg CW
    assert np.array_equal(read_depth_png(tmp_path / "d.png", 1.0), np.rot90(depth, -1).astype(np.float32))


# ---- 2. annotation files matched by name, or reported ---------------------------------------------

@pytest.mark.parametrize("suffix", ["_mask", "_label", "_gt", ""])
def test_usual_label_suffixes_match(tmp_path, suffix):
    img = photos(tmp_path, suffix=suffix)
    run("ingest", "folder", img, tmp_path / "s.ice", "--segm", tmp_path / "segm", "--classes", "kitti6")
    assert FrameStore.open(tmp_path / "s.ice").root["real/has_segm"][:].tolist() == [True] * 3


def test_explicit_suffix_and_labels_beside_their_images(tmp_path):
    img = photos(tmp_path, labels="photos", suffix="_seg")           # photoN_seg.png next to photoN.jpg
    r = run("ingest", "folder", img, tmp_path / "s.ice", "--segm", img, "--segm-suffix", "_seg",
            "--classes", "kitti6")
    s = FrameStore.open(tmp_path / "s.ice")
    assert s.num_frames == 3 and s.root["real/has_segm"][:].all()      # labels are not frames
    assert "not ingested" not in r.output
    for bad in ("", "a/b"):
        (line,) = error_lines(run("ingest", "folder", img, tmp_path / "t.ice", "--segm", img, "--segm-suffix", bad,
                                  ok=False))
        assert f"bad segm_suffix {bad!r}" in line


def test_jpeg_labels_are_refused_with_the_reason_and_no_store_is_made(tmp_path):
    img = photos(tmp_path, ext=".jpg")
    r = run("ingest", "folder", img, tmp_path / "s.ice", "--segm", tmp_path / "segm", ok=False)
    (line,) = error_lines(r)
    assert str(tmp_path / "segm") in line and "none of its 3 file(s)" in line
    assert "lossy JPEG label refused" in line and "photo0_mask.jpg" in line
    assert not (tmp_path / "s.ice").exists()


def test_unmatched_annotation_files_are_counted_named_and_recorded(tmp_path):
    img = photos(tmp_path)
    lab = tmp_path / "segm"
    write_png(lab / "holiday.png", pattern_labels(SW, SH, 6))
    (lab / "notes.txt").write_text("labelled by A.")
    Image.fromarray(pattern_labels(SW, SH, 6)).convert("RGB").save(lab / "photo1.jpg")   # a preview beside
    r = run("ingest", "folder", img, tmp_path / "s.ice", "--segm", lab, "--classes", "kitti6")
    assert f"{lab}: 2 segmentation file(s) not ingested (no image of that name): holiday.png, notes.txt" \
        in r.stderr
    assert "photo1.jpg" in r.stderr and "lossy JPEG label refused" in r.stderr
    md = FrameStore.open(tmp_path / "s.ice").log(limit=1)[0]["metadata"]
    assert sorted(u["file"].rsplit("/", 1)[1] for u in md["unmatched"]) == ["holiday.png", "notes.txt",
                                                                          "photo1.jpg"]


def test_a_folder_that_matches_nothing_is_an_error(tmp_path):
    img = photos(tmp_path, labels=None)
    write_png(tmp_path / "lab" / "IMG_0001.png", pattern_labels(SW, SH, 6))
    r = run("ingest", "folder", img, tmp_path / "s.ice", "--depth", tmp_path / "lab", ok=False)
    (line,) = error_lines(r)
    assert "lab: none of its 1 file(s) is the depth of a frame" in line and "IMG_0001.png" in line
    assert "--depth-suffix" in line
    (tmp_path / "empty").mkdir()
    (line,) = error_lines(run("ingest", "folder", img, tmp_path / "s.ice", "--segm", tmp_path / "empty", ok=False))
    assert "empty: segmentation folder holds no files" in line


def test_kitti_and_nyud_tree_use_the_same_matcher(tmp_path):
    from stores.sources.base import SkipLog
    from stores.sources.kitti import KittiConfig, list_kitti

    for i in range(2):
        write_png(tmp_path / "img" / f"00000{i}_10.png", pattern_rgb(8, 16, i))
        write_png(tmp_path / "seg" / f"00000{i}_10_gt.png", pattern_rgb(8, 16, i))
    write_png(tmp_path / "seg" / "000009_10_gt.png", pattern_rgb(8, 16))
    skips = SkipLog()
    entries = list_kitti(KittiConfig(str(tmp_path / "img"), segm=str(tmp_path / "seg")), skips)
    assert [e.segm.name for e in entries] == ["000000_10_gt.png", "000001_10_gt.png"]
    assert [u["file"].rsplit("/", 1)[1] for u in skips.unmatched] == ["000009_10_gt.png"]


# ---- 3. annotations that arrive after their frames ------------------------------------------------

def test_annotations_added_later_become_a_new_version(tmp_path):
    img, store = photos(tmp_path), tmp_path / "s.ice"
    run("ingest", "folder", img, store, "--classes", "kitti6")
    first = FrameStore.open(store)
    assert not first.root["real/has_segm"][:].any()
    r = run("ingest", "folder", img, store, "--segm", tmp_path / "segm")
    assert "ingested 0 new frame(s)" in r.output and "segm added to 3 frame(s) already in the store" in r.output
    s = FrameStore.open(store)
    assert s.snapshot_id != first.snapshot_id and s.num_frames == 3 and s.root["real/has_segm"][:].all()
    np.testing.assert_array_equal(s.read(0, 3)["real/segm"], np.stack([pattern_labels(SW, SH, 6)] * 3))
    md = s.log(limit=1)[0]["metadata"]
    assert md["annotations_added"] == {"segm": ["photo0.jpg", "photo1.jpg", "photo2.jpg"]}
    assert md["frames_added"] == 0 and md["annotations_replaced"] == {}
    again = run("ingest", "folder", img, store, "--segm", tmp_path / "segm")      # same labels: no-op
    assert "nothing new" in again.output and FrameStore.open(store).snapshot_id == s.snapshot_id
    corrected = pattern_labels(SW, SH, 6)
    corrected[10:20] = 5
    Image.fromarray(corrected).save(tmp_path / "segm" / "photo2_mask.png")
    r = run("ingest", "folder", img, store, "--segm", tmp_path / "segm", ok=False)
    (line,) = error_lines(r)
    assert "photo2.jpg" in line and "already has a different segm annotation" in line and "--replace" in line
    assert FrameStore.open(store).snapshot_id == s.snapshot_id
    r = run("ingest", "folder", img, store, "--segm", tmp_path / "segm", "--replace", "--json")
    out = json.loads(r.stdout)
    assert out["replaced"] == {"segm": ["photo2.jpg"]} and out["annotated"] == {}
    np.testing.assert_array_equal(FrameStore.open(store).read(2, 3)["real/segm"][0], corrected)


# ---- 4 / 7. a bad first image with --skip-bad ------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_bad_first_image_sizing(tmp_path, content):
    img = tmp_path / "img"
    (img).mkdir()
    (img / "a.png").write_bytes(content)                                 # zero bytes, or undecodable
    write_png(img / "b.png", pattern_rgb(20, 30))
    (line,) = error_lines(run("ingest", "folder", img, tmp_path / "s.ice", ok=False))
    assert "a.png: cannot decode image" in line and not (tmp_path / "s.ice").exists()
    r = run("ingest", "folder", img, tmp_path / "s.ice", "--skip-bad")
    s = FrameStore.open(tmp_path / "s.ice")
    assert s.frame_size == (20, 30) and s.num_frames == 1 and "skipped" in r.output and "a.png" in r.output
    assert len(s.log(limit=1)[0]["metadata"]["skipped"]) == 1


def test_no_readable_image_at_all_is_one_error(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    (line,) = error_lines(run("ingest", "folder", tmp_path / "img", tmp_path / "s.ice", "--skip-bad", ok=False))
    assert "none of the 1 image(s) could be read" in line and not (tmp_path / "s.ice").exists()


# ---- 6. split lists that name any file ----------------------------------------------------------

def test_split_lists_take_names_with_spaces_and_any_letters(tmp_path):
    img = tmp_path / "img"
    names = ["kitchen view 1.png", "café 2.png", "a, b.png", "plain.png"]
    for i, n in enumerate(names):
        write_png(img / n, pattern_rgb(8, 16, i))
    lst = tmp_path / "splits.txt"
    lst.write_text("kitchen view 1.png\tval\ncafé 2.png test\n\"a, b.png\",unlabeled\n# plain stays train\n",
                   encoding="utf-8")
    run("ingest", "folder", img, tmp_path / "s.ice", "--split-file", lst)
    s = FrameStore.open(tmp_path / "s.ice")
    got = dict(zip(s.root["frames/name"][:].tolist(), s.splits().tolist()))
    assert got == {"a, b.png": 3, "café 2.png": 2, "kitchen view 1.png": 1, "plain.png": 0}
    lst.write_text("kitchen view 1.png\n")
    (line,) = error_lines(run("ingest", "folder", img, tmp_path / "t.ice", "--split-file", lst, ok=False))
    assert "splits.txt: line 1" in line and "'<file name> <split>'" in line and "the split last" in line
    lst.write_text("kitchen view 1.png validation\n")
    (line,) = error_lines(run("ingest", "folder", img, tmp_path / "t.ice", "--split-file", lst, ok=False))
    assert "bad split 'validation' (the last field)" in line


# ---- 7. --device gpu is one line, for every command that takes --device ---------------------------

@pytest.fixture
def checkpoint(tmp_path):
    import torch

    from conftest import CLASSES
    from student.model import build_student

    path = tmp_path / "last.pt"
    torch.save({"model": build_student(len(CLASSES)).state_dict(), "classes": CLASSES, "tasks": ["segm", "depth"],
                "arch": {"name": "student", "num_classes": len(CLASSES)}, "config": {}, "step": 1}, path)
    return path


def test_device_gpu_is_one_error_line(store, checkpoint, tmp_path):
    write_png(tmp_path / "x.png", pattern_rgb(16, 16))
    for args in (["train", store.path, "--run", "r", "--steps", "1"],
                 ["evaluate", store.path, checkpoint],
                 ["predict", checkpoint, tmp_path / "x.png", "--out", tmp_path / "o"]):
        r = run(*args, "--device", "gpu", ok=False)
        assert r.exit_code == 2, args                   # a usage error, refused while parsing the options
        (line,) = [x for x in r.output.splitlines() if x.startswith("Error:")]
        assert "'--device': 'gpu': choose auto, cpu, cuda or cuda:N" in line and "Traceback" not in r.output
