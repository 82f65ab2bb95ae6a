"""The folder source (stores/sources/folder.py): matching, splits, colour maps, validation, --skip-bad."""
import json

import numpy as np
import pytest

from source_fixtures import REAL, pattern_depth, pattern_labels, pattern_rgb, truncate, write_png
from stores.classes import KITTI6
from stores.errors import UserError
from stores.sources.base import SkipLog, SourceError
from stores.sources.folder import FolderConfig, count_folder, iter_folder, list_folder

SIZE = (24, 32)


def tree(tmp_path, n=3):
    """images/a0..a2.png (+ b.jpg without annotations), segm ids, depth png / npy."""
    img, seg, dep = tmp_path / "images", tmp_path / "segm", tmp_path / "depth"
    for i in range(n):
        write_png(img / f"a{i}.png", pattern_rgb(24, 32, i))
        write_png(seg / f"a{i}.png", pattern_labels(24, 32, 6))
    write_png(dep / "a0.png", np.round(pattern_depth(24, 32) * 1000).astype(np.uint16))
    dep.joinpath("a1.npy").parent.mkdir(exist_ok=True)
    np.save(dep / "a1.npy", pattern_depth(24, 32, 1))
    write_png(img / "b.jpg", pattern_rgb(24, 32, 9))
    return img, seg, dep


def frames(cfg, skips=None, num_classes=6, **kw):
    return list(iter_folder(cfg, SIZE, num_classes, skips or SkipLog(), **kw))


def test_folder_matches_annotations_by_stem(tmp_path):
    img, seg, dep = tree(tmp_path)
    cfg = FolderConfig(str(img), segm=str(seg), depth=str(dep))
    out = frames(cfg)
    assert [f.name for f in out] == ["a0.png", "a1.png", "a2.png", "b.jpg"]
    assert count_folder(cfg) == 4
    assert all(f.split == "train" and f.rgb.shape == (24, 32, 3) for f in out)
    assert np.array_equal(out[0].rgb, pattern_rgb(24, 32, 0))
    assert np.array_equal(out[0].segm, pattern_labels(24, 32, 6))
    assert np.allclose(out[0].depth, pattern_depth(24, 32), atol=1e-3)
    assert np.allclose(out[1].depth, pattern_depth(24, 32, 1))
    assert out[2].depth is None and out[3].segm is None and out[3].depth is None


def test_folder_recursive_skips_annotation_dirs_inside(tmp_path):
    img = tmp_path / "data"
    write_png(img / "x" / "p.png", pattern_rgb(24, 32))
    write_png(img / "y" / "p.png", pattern_rgb(24, 32, 1))
    write_png(img / "labels" / "x" / "p.png", pattern_labels(24, 32, 6))
    cfg = FolderConfig(str(img), segm=str(img / "labels"), recursive=True)
    out = frames(cfg)
    assert [f.name for f in out] == ["x/p.png", "y/p.png"]
    assert out[0].segm is not None and out[1].segm is None
    assert [f.name for f in frames(FolderConfig(str(img)))] == []          # flat: no top-level images


def test_split_file_and_its_errors(tmp_path):
    img, seg, dep = tree(tmp_path)
    lst = tmp_path / "splits.txt"
    lst.write_text("a0 val\n# comment\n\na1.png test\n")
    out = frames(FolderConfig(str(img), split="unlabeled", split_file=str(lst)))
    assert [f.split for f in out] == ["val", "test", "unlabeled", "unlabeled"]

    lst.write_text("a0 val\na9 test\n")
    with pytest.raises(SourceError) as e:
        frames(FolderConfig(str(img), split_file=str(lst)))
    msg = str(e.value)
    assert str(lst) in msg and "line 2" in msg and "a9" in msg
    skips = SkipLog(skip_bad=True)
    assert len(frames(FolderConfig(str(img), split_file=str(lst)), skips)) == 4
    assert skips.skipped[0]["file"] == str(lst)

    lst.write_text("a0 training\n")
    with pytest.raises(SourceError, match="line 1: bad split 'training'"):
        frames(FolderConfig(str(img), split_file=str(lst)))


def test_colour_labels_store_colours_and_colormap_file(tmp_path):
    colors = [tuple(c["color"]) for c in KITTI6]
    ids = pattern_labels(24, 32, 6)
    lut = np.zeros((256, 3), np.uint8)
    lut[:6] = colors
    img = tmp_path / "images"
    write_png(img / "k.png", pattern_rgb(24, 32))
    write_png(tmp_path / "segm" / "k.png", lut[ids])                        # 255 -> black = void
    cfg = FolderConfig(str(img), segm=str(tmp_path / "segm"))
    assert np.array_equal(frames(cfg, class_colors=colors)[0].segm, ids)
    with pytest.raises(SourceError, match="no colour map"):
        frames(cfg)

    cmap = tmp_path / "cmap.json"
    cmap.write_text(json.dumps([list(c) for c in colors[:5]]))             # class 5's colour unmapped
    cfg = FolderConfig(str(img), segm=str(tmp_path / "segm"), colormap=str(cmap))
    with pytest.raises(SourceError) as e:
        frames(cfg)
    assert "k.png" in str(e.value) and str(list(colors[5])) in str(e.value)
    void = [list(colors[5]), [0, 0, 0]]
    cmap.write_text(json.dumps({"classes": [list(c) for c in colors[:5]], "void": void}))
    expected = np.where(ids == 5, 255, ids)
    assert np.array_equal(frames(cfg)[0].segm, expected)

    cmap.write_text(json.dumps([[1, 2]]))
    with pytest.raises(SourceError) as e:
        frames(cfg)
    assert str(cmap) in str(e.value) and "class 0" in str(e.value)


def test_bad_frames_raise_or_are_skipped(tmp_path):
    img, seg, dep = tree(tmp_path)
    truncate(img / "a1.png")                                                # corrupt image
    write_png(seg / "a2.png", pattern_labels(20, 32, 6))                    # label of the wrong size
    write_png(dep / "a0.png", np.full((24, 32), 3, np.uint8))              # 8-bit depth
    bad_ids = pattern_labels(24, 32, 6)
    bad_ids[5, 5] = 17
    write_png(img / "c.png", pattern_rgb(24, 32))
    write_png(seg / "c.png", bad_ids)                                       # id >= num_classes
    write_png(img / "d.png", pattern_rgb(24, 32))
    np.save(dep / "d.npy", np.full((24, 32), np.nan, np.float32))          # NaN depth
    cfg = FolderConfig(str(img), segm=str(seg), depth=str(dep))
    with pytest.raises(SourceError) as e:
        frames(cfg)
    assert str(dep / "a0.png") in str(e.value)
    skips = SkipLog(skip_bad=True)
    out = frames(cfg, skips)
    assert [f.name for f in out] == ["b.jpg"]
    recorded = {s["file"]: s["problem"] for s in skips.skipped}
    assert set(recorded) == {str(dep / "a0.png"), str(img / "a1.png"), str(seg / "a2.png"),
                             str(seg / "c.png"), str(dep / "d.npy")}
    assert "20" in recorded[str(seg / "a2.png")] and "17" in recorded[str(seg / "c.png")]


def test_ambiguous_names_and_missing_folder(tmp_path):
    img = tmp_path / "images"
    write_png(img / "a.png", pattern_rgb(24, 32))
    write_png(img / "a.jpg", pattern_rgb(24, 32))
    with pytest.raises(SourceError, match="ambiguous"):
        list_folder(FolderConfig(str(img)), SkipLog())
    with pytest.raises(SourceError) as e:
        list_folder(FolderConfig(str(tmp_path / "nope")), SkipLog())
    assert "nope" in str(e.value) and "not found" in str(e.value)


def test_real_nyud_frame_resized_and_cropped(tmp_path):
    import shutil
    for sub, src in (("rgb", "rgb"), ("depth", "depth"), ("segm", "segm")):
        (tmp_path / sub).mkdir()
        shutil.copy(REAL / f"nyud_000464_{src}.png", tmp_path / sub / "000464.png")
    for fit, size in (("resize", (240, 320)), ("crop", (448, 608))):
        cfg = FolderConfig(str(tmp_path / "rgb"), segm=str(tmp_path / "segm"), depth=str(tmp_path / "depth"),
                           depth_scale=5000.0, label_format="ids", fit=fit)
        (f,) = iter_folder(cfg, size, 40, SkipLog())
        assert f.rgb.shape == size + (3,) and f.segm.shape == size and f.depth.shape == size
        assert set(np.unique(f.segm)) <= set(range(40)) | {255}
        assert f.depth.max() <= 10 and f.depth.min() >= 0
    with pytest.raises(SourceError, match="smaller than the store frame"):
        list(iter_folder(cfg, (500, 600), 40, SkipLog()))


def test_config_validates_and_describes(tmp_path):
    with pytest.raises(UserError, match="resize, crop"):
        FolderConfig("x", fit="squash")
    with pytest.raises(UserError, match="bad split 'training'"):
        FolderConfig("x", split="training")
    with pytest.raises(UserError, match="depth_scale"):
        FolderConfig("x", depth_scale=0)
    with pytest.raises(UserError, match="label_format"):
        FolderConfig("x", label_format="rgb")
    cfg = FolderConfig("imgs", depth="d", fit="crop")
    d = cfg.to_dict()
    assert d["source"] == "folder" and d["path"] == "imgs" and d["fit"] == "crop" and d["depth"] == "d"
    json.dumps(d)
    assert cfg.describe().startswith("folder imgs") and "fit=crop" in cfg.describe()
