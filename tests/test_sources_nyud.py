"""The nyud source (stores/sources/nyud.py): preprocessed tree with lists, and the official .mat layout."""
import shutil

import numpy as np
import scipy.io
import pytest

from source_fixtures import (REAL, make_mapping, make_nyud_mat, make_nyud_tree, make_splits_mat,
                             pattern_depth, pattern_labels, pattern_rgb, write_mat_v5_header, write_png)
from stores.errors import UserError
from stores.sources.base import SkipLog, SourceError
from stores.sources.nyud import NyudConfig, count_nyud, iter_nyud, list_nyud

SIZE = (24, 32)


def frames(cfg, skips=None, size=SIZE):
    return list(iter_nyud(cfg, size, 40, skips or SkipLog()))


# ---- preprocessed tree --------------------------------------------------------------------------

def test_tree_with_lenient_lists(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud", n=4)
    cfg = NyudConfig(str(root))
    out = frames(cfg)
    assert [(f.name, f.split) for f in out] == [("rgb/000001.png", "train"), ("rgb/000002.png", "train"),
                                                ("rgb/000003.png", "test"), ("rgb/000004.png", "unlabeled")]
    assert count_nyud(cfg) == 4
    f = out[2]
    assert np.array_equal(f.rgb, pattern_rgb(24, 32, 3)) and np.array_equal(f.segm, pattern_labels(24, 32))
    assert np.allclose(f.depth, pattern_depth(24, 32, 3), atol=1e-4) and f.depth.dtype == np.float32
    assert [f.name for f in frames(NyudConfig(str(root), unlisted="skip"))] == [
        "rgb/000001.png", "rgb/000002.png", "rgb/000003.png"]


def test_tree_missing_annotation_is_none(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud", lists=False)
    (root / "masks" / "000002.png").unlink()
    shutil.rmtree(root / "depth")
    out = frames(NyudConfig(str(root)))
    assert [f.split for f in out] == ["unlabeled"] * 3
    assert out[1].segm is None and out[0].segm is not None and all(f.depth is None for f in out)


def test_tree_list_naming_missing_frame(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud")
    (root / "test.txt").write_text("3\n000777 extra column\n")
    with pytest.raises(SourceError) as e:
        frames(NyudConfig(str(root)))
    msg = str(e.value)
    assert str(root / "test.txt") in msg and "line 2" in msg and "000777" in msg and "\n" not in msg
    skips = SkipLog(skip_bad=True)
    assert len(frames(NyudConfig(str(root)), skips)) == 3
    assert skips.skipped[0]["file"] == str(root / "test.txt")


def test_tree_frame_in_both_lists(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud")
    (root / "test.txt").write_text("1\n")
    with pytest.raises(SourceError, match="also in the train list"):
        list_nyud(NyudConfig(str(root)), SkipLog())


def test_tree_bad_mask_and_depth(tmp_path):
    root = make_nyud_tree(tmp_path / "nyud")
    bad = pattern_labels(24, 32)
    bad[2, 2] = 40
    write_png(root / "masks" / "000001.png", bad)
    write_png(root / "depth" / "000003.png", np.zeros((24, 32), np.uint8))
    with pytest.raises(SourceError) as e:
        frames(NyudConfig(str(root)))
    assert "000001.png" in str(e.value) and "[40]" in str(e.value)
    skips = SkipLog(skip_bad=True)
    assert [f.name for f in frames(NyudConfig(str(root)), skips)] == ["rgb/000002.png"]
    assert [s["file"] for s in skips.skipped] == [str(root / "masks" / "000001.png"),
                                                  str(root / "depth" / "000003.png")]


def test_tree_real_frame(tmp_path):
    for sub, kind in (("rgb", "rgb"), ("masks", "segm"), ("depth", "depth")):
        (tmp_path / sub).mkdir()
        shutil.copy(REAL / f"nyud_000464_{kind}.png", tmp_path / sub / "000464.png")
    (tmp_path / "test.txt").write_text("rgb/000464.png\n")
    (f,) = frames(NyudConfig(str(tmp_path)), size=(240, 320))
    assert f.split == "test" and f.rgb.shape == (240, 320, 3)
    assert set(np.unique(f.segm)) <= set(range(40)) | {255}
    valid = f.depth[f.depth > 0]
    assert valid.size and valid.max() <= 10.0


def test_not_a_nyud_tree(tmp_path):
    with pytest.raises(SourceError, match="no rgb/ folder"):
        list_nyud(NyudConfig(str(tmp_path)), SkipLog())


# ---- official .mat ------------------------------------------------------------------------------

def test_mat_orientation_mapping_and_names(tmp_path):
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    truth = make_nyud_mat(mat)
    m = make_mapping(tmp_path / "map.npy")
    out = frames(NyudConfig(str(mat), mapping=str(tmp_path / "map.npy")))
    assert [f.name for f in out] == [f"nyu_depth_v2_labeled.mat/00000{i}" for i in (1, 2, 3)]
    assert all(f.split == "unlabeled" for f in out)
    for i, f in enumerate(out):
        assert f.rgb.shape == (24, 32, 3) and np.array_equal(f.rgb, truth["rgb"][i])
        assert np.array_equal(f.depth, truth["depth"][i])
        lab = truth["labels"][i]
        assert np.array_equal(f.segm, np.where(m[lab] == 0, 255, m[lab] - 1))
        assert (f.segm[0] == 255).all() and f.segm[1:].max() <= 39


def test_mat_without_mapping_has_no_labels_and_a_note(tmp_path):
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat)
    cfg = NyudConfig(str(mat))
    assert all(f.segm is None and f.depth is not None for f in frames(cfg))
    assert any("labels not ingested" in n for n in cfg.to_dict()["notes"])
    assert cfg.to_dict()["layout"] == "mat"


def test_mat_resized_to_store(tmp_path):
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat, n=2, h=48, w=64)
    make_mapping(tmp_path / "map.npy")
    out = frames(NyudConfig(str(mat), mapping=str(tmp_path / "map.npy")))
    assert out[0].rgb.shape == (24, 32, 3) and out[0].segm.shape == out[0].depth.shape == (24, 32)


def test_mat_splits_from_hdf5_and_text(tmp_path):
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat)
    make_splits_mat(tmp_path / "splits.mat", [1, 3], [2])
    out = frames(NyudConfig(str(mat), splits=str(tmp_path / "splits.mat")))
    assert [f.split for f in out] == ["train", "test", "train"]
    (tmp_path / "tr.txt").write_text("2\n")
    out = frames(NyudConfig(str(mat), train_list=str(tmp_path / "tr.txt"), unlisted="skip"))
    assert [(f.name[-6:], f.split) for f in out] == [("000002", "train")]


def test_mat_split_errors(tmp_path):
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat)
    v5 = write_mat_v5_header(tmp_path / "splits.mat")              # a header and nothing else
    with pytest.raises(SourceError) as e:
        list_nyud(NyudConfig(str(mat), splits=str(v5)), SkipLog())
    assert str(v5) in str(e.value) and "not a readable MATLAB .mat file" in str(e.value)
    scipy.io.savemat(tmp_path / "other.mat", {"trainNdxs": np.array([[1.0]])})
    with pytest.raises(SourceError, match=r"other.mat: no testNdxs \(has trainNdxs\)"):
        list_nyud(NyudConfig(str(mat), splits=str(tmp_path / "other.mat")), SkipLog())
    (tmp_path / "te.txt").write_text("1\n7\n")
    with pytest.raises(SourceError) as e:
        list_nyud(NyudConfig(str(mat), test_list=str(tmp_path / "te.txt")), SkipLog())
    assert "te.txt" in str(e.value) and "line 2" in str(e.value) and "7" in str(e.value)
    (tmp_path / "te.txt").write_text("one\n")
    with pytest.raises(SourceError, match="not a 1-based frame index"):
        list_nyud(NyudConfig(str(mat), test_list=str(tmp_path / "te.txt")), SkipLog())
    with pytest.raises(UserError, match="not both"):
        NyudConfig(str(mat), splits="s.mat", train_list="t.txt")


def test_mat_bad_mapping(tmp_path):
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat)
    np.save(tmp_path / "m.npy", np.arange(1, 896))                  # indexed from class 1
    with pytest.raises(SourceError, match=r"mapping\[0\] is 1"):
        frames(NyudConfig(str(mat), mapping=str(tmp_path / "m.npy")))
    np.save(tmp_path / "m.npy", np.r_[0, np.full(894, 41)])         # beyond 40 classes
    with pytest.raises(SourceError, match="outside 0..40"):
        frames(NyudConfig(str(mat), mapping=str(tmp_path / "m.npy")))
    np.save(tmp_path / "m.npy", np.arange(100) % 41)                # too short for the labels
    with pytest.raises(SourceError) as e:
        frames(NyudConfig(str(mat), mapping=str(tmp_path / "m.npy")))
    assert "[frame 1]" in str(e.value) and "mapping" in str(e.value)


def test_mat_bad_depth_raises_or_skips(tmp_path):
    mat = tmp_path / "nyu.mat"
    depths = np.stack([pattern_depth(24, 32, i) for i in range(3)])
    depths[1, 3, 4] = np.nan
    make_nyud_mat(mat, depths=depths)
    with pytest.raises(SourceError) as e:
        frames(NyudConfig(str(mat)))
    assert f"{mat}[frame 2]" in str(e.value) and "NaN" in str(e.value)
    skips = SkipLog(skip_bad=True)
    assert [f.name[-1] for f in frames(NyudConfig(str(mat)), skips)] == ["1", "3"]
    assert skips.skipped[0]["file"] == f"{mat}[frame 2]"


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.mat"
    p.write_bytes(b"\x00" * 200)
    with pytest.raises(SourceError, match="not an HDF5"):
        list_nyud(NyudConfig(str(p)), SkipLog())
    with pytest.raises(SourceError, match="MATLAB v5"):
        list_nyud(NyudConfig(str(write_mat_v5_header(tmp_path / "old.mat"))), SkipLog())


def test_official_splits_mat_v5_and_v73(tmp_path):
    """The official splits.mat is MATLAB v5 (scipy.io); a re-saved one is v7.3 (HDF5): same splits."""
    mat = tmp_path / "nyu.mat"
    make_nyud_mat(mat)
    v5 = tmp_path / "splits_v5.mat"
    scipy.io.savemat(v5, {"trainNdxs": np.array([[1.0], [3.0]]), "testNdxs": np.array([[2.0]])})  # (k, 1) double
    assert v5.read_bytes().startswith(b"MATLAB 5.0 MAT-file")
    v73 = make_splits_mat(tmp_path / "splits_v73.mat", [1, 3], [2])
    for path in (v5, v73):
        out = frames(NyudConfig(str(mat), splits=str(path)))
        assert [(f.name[-6:], f.split) for f in out] == [("000001", "train"), ("000002", "test"),
                                                         ("000003", "train")]
    scipy.io.savemat(v5, {"trainNdxs": np.array([[1.0], [9.0]]), "testNdxs": np.array([[2.0]])})
    with pytest.raises(SourceError, match=r"splits_v5.mat: trainNdxs: index 9 outside the .mat's frames 1..3"):
        list_nyud(NyudConfig(str(mat), splits=str(v5)), SkipLog())
