"""The kitti source (stores/sources/kitti.py): image_2 layout, KITTI-6 colours, uint16 depth, odd sizes."""
import json
import shutil

import numpy as np
import pytest

from source_fixtures import REAL, pattern_labels, pattern_rgb, write_png
from stores.classes import KITTI6_COLORS
from stores.errors import UserError
from stores.sources.base import SkipLog, SourceError
from stores.sources.kitti import KittiConfig, count_kitti, iter_kitti

SIZE = (96, 320)


def colour(ids):
    lut = np.zeros((256, 3), np.uint8)
    lut[:6] = KITTI6_COLORS
    return lut[ids]


def frames(cfg, skips=None, size=SIZE):
    return list(iter_kitti(cfg, size, 6, skips or SkipLog()))


@pytest.fixture
def kitti(tmp_path):
    """root/image_2 with the real frame and a synthetic one of a slightly different size."""
    img, seg, dep = tmp_path / "image_2", tmp_path / "segm", tmp_path / "depth"
    img.mkdir(), seg.mkdir()
    shutil.copy(REAL / "kitti6_000099_rgb.png", img / "000099.png")
    shutil.copy(REAL / "kitti6_000099_segm_color.png", seg / "000099.png")
    ids = pattern_labels(375, 1242, 6)
    write_png(img / "000100.png", pattern_rgb(375, 1242))
    write_png(seg / "000100.png", colour(ids))
    v = np.zeros((375, 1242), np.uint16)
    v[200:, ::4] = 256 * 12 + 128                                   # sparse LiDAR rows at 12.5 m
    write_png(dep / "000100.png", v)
    return tmp_path


def test_kitti_real_and_varying_sizes(kitti):
    cfg = KittiConfig(str(kitti), segm=str(kitti / "segm"), depth=str(kitti / "depth"))
    assert count_kitti(cfg) == 2
    real, synth = frames(cfg)
    assert real.name == "000099.png" and real.split == "train" and real.depth is None
    for f in (real, synth):
        assert f.rgb.shape == SIZE + (3,) and f.segm.shape == SIZE
        assert set(np.unique(f.segm)) <= set(range(6)) | {255}
    assert (real.segm != 255).mean() > 0.85
    assert set(np.unique(synth.depth)) == {0.0, 12.5}


def test_kitti_crop_policy(kitti):
    cfg = KittiConfig(str(kitti / "image_2"), segm=str(kitti / "segm"), fit="crop")
    real, synth = frames(cfg, size=(368, 1224))
    assert real.rgb.shape == synth.rgb.shape == (368, 1224, 3)
    ids = pattern_labels(375, 1242, 6)
    assert np.array_equal(synth.segm, ids[3:371, 9:1233])
    with pytest.raises(SourceError, match="000099.png.*smaller than the store frame"):
        frames(cfg, size=(372, 1230))


def test_kitti_unknown_colour_exact_and_tolerance(kitti):
    lab = colour(pattern_labels(375, 1242, 6))
    road = np.all(lab == KITTI6_COLORS[2], -1)
    lab[road] = (130, 62, 128)                                       # road re-saved through a lossy step
    write_png(kitti / "segm" / "000100.png", lab)
    cfg = KittiConfig(str(kitti), segm=str(kitti / "segm"))
    with pytest.raises(SourceError) as e:
        frames(cfg)
    msg = str(e.value)
    assert str(kitti / "segm" / "000100.png") in msg and "[130, 62, 128]" in msg and "\n" not in msg
    skips = SkipLog(skip_bad=True)
    assert [f.name for f in frames(cfg, skips)] == ["000099.png"]
    assert skips.skipped[0]["file"] == str(kitti / "segm" / "000100.png")
    (_, synth) = frames(KittiConfig(str(kitti), segm=str(kitti / "segm"), color_tolerance=3))
    assert (synth.segm == 2).sum() > 0


def test_kitti_bad_depth_and_size_mismatch(kitti):
    write_png(kitti / "depth" / "000100.png", np.zeros((375, 1242), np.uint8))
    cfg = KittiConfig(str(kitti), depth=str(kitti / "depth"))
    with pytest.raises(SourceError, match="000100.png: L depth image; expected a 16-bit"):
        frames(cfg)
    write_png(kitti / "depth" / "000100.png", np.zeros((370, 1226), np.uint16))
    with pytest.raises(SourceError) as e:
        frames(cfg)
    assert "depth is 1226x370 but its image" in str(e.value) and "1242x375" in str(e.value)


def test_kitti_split_file_and_config(kitti, tmp_path):
    (tmp_path / "split.txt").write_text("000099 test\n000100 train\n")
    cfg = KittiConfig(str(kitti), split_file=str(tmp_path / "split.txt"))
    assert [f.split for f in frames(cfg)] == ["test", "train"]
    with pytest.raises(UserError):
        KittiConfig("x", color_tolerance=-1)
    with pytest.raises(UserError, match="store has 5"):
        iter_kitti(cfg, SIZE, 5, SkipLog())
    d = cfg.to_dict()
    json.dumps(d)
    assert d["source"] == "kitti" and d["depth_scale"] == 256.0 and d["colors"][0] == [128, 128, 128]
    assert cfg.describe().startswith(f"kitti {kitti}")
