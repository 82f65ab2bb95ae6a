"""Decoders and size policy of stores/sources/images.py, on the real frames and on generated bad files."""
import numpy as np
import pytest
from PIL import Image

from source_fixtures import REAL, pattern_labels, pattern_rgb, truncate, write_png
from stores.errors import UserError
from stores.sources.base import SourceError
from stores.sources.images import (BadInput, decode_colors, fit_frame, parse_fit, read_depth,
                                   read_depth_npy, read_depth_png, read_label, read_rgb)


def one_line_naming(err, path):
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


# ---- real frames --------------------------------------------------------------------------------

def test_real_nyud_frame_decodes_in_range():
    rgb = read_rgb(REAL / "nyud_000464_rgb.png")
    depth = read_depth_png(REAL / "nyud_000464_depth.png", 5000.0)
    segm = read_label(REAL / "nyud_000464_segm.png", 40, "ids")
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    valid = depth[depth != 0]
    assert valid.size > 0.5 * depth.size and valid.min() > 0 and valid.max() <= 10.0
    assert segm.dtype == np.uint8 and set(np.unique(segm)) <= set(range(40)) | {255}
    assert (segm != 255).mean() > 0.5


def test_real_kitti_colours_decode_to_kitti6_ids():
    from stores.classes import KITTI6_COLORS
    rgb = read_rgb(REAL / "kitti6_000099_rgb.png")
    segm = read_label(REAL / "kitti6_000099_segm_color.png", 6, "color", KITTI6_COLORS)
    assert rgb.shape == (370, 1226, 3) and segm.shape == (370, 1226)
    assert set(np.unique(segm)) <= set(range(6)) | {255}
    assert (segm != 255).mean() > 0.85
    assert len(set(np.unique(segm)) - {255}) >= 4


def test_real_nyud_segm_is_not_a_depth_map(tmp_path):
    with pytest.raises(SourceError) as e:
        read_depth_png(REAL / "nyud_000464_segm.png", 5000.0)
    assert "16-bit" in one_line_naming(e, REAL / "nyud_000464_segm.png")


# ---- conversions and bad files ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_other_modes_become_rgb(tmp_path, mode):
    src = pattern_rgb(12, 16)
    p = write_png(tmp_path / f"x_{mode}.png", src, mode)
    rgb = read_rgb(p)
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    expected = np.asarray(Image.fromarray(src).convert(mode).convert("RGB"))
    assert np.array_equal(rgb, expected)


def test_truncated_png_names_the_file(tmp_path):
    p = truncate(write_png(tmp_path / "cut.png", pattern_rgb(64, 64)))
    with pytest.raises(SourceError) as e:
        read_rgb(p)
    assert "cannot decode" in one_line_naming(e, p)


def test_not_an_image_and_missing_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello")
    with pytest.raises(BadInput) as e:
        read_rgb(p)
    one_line_naming(e, p)
    with pytest.raises(BadInput) as e:
        read_rgb(tmp_path / "gone.png")
    assert "not found" in one_line_naming(e, tmp_path / "gone.png")


def test_sixteen_bit_image_is_not_rgb(tmp_path):
    p = write_png(tmp_path / "d.png", np.zeros((4, 4), np.uint16))
    with pytest.raises(SourceError) as e:
        read_rgb(p)
    assert "16-bit" in one_line_naming(e, p)


def test_label_ids_out_of_range_named(tmp_path):
    ids = pattern_labels(8, 8, 6)
    ids[3, 3], ids[4, 4] = 6, 200
    p = write_png(tmp_path / "m.png", ids)
    with pytest.raises(SourceError) as e:
        read_label(p, 6, "ids")
    msg = one_line_naming(e, p)
    assert "6, 200" in msg and "255" in msg
    ids[3, 3], ids[4, 4] = 5, 255
    assert np.array_equal(read_label(write_png(p, ids), 6, "ids"), ids)


def test_colour_label_where_ids_expected(tmp_path):
    p = write_png(tmp_path / "c.png", pattern_rgb(8, 8))
    with pytest.raises(SourceError) as e:
        read_label(p, 40, "ids")
    assert "RGB" in one_line_naming(e, p)
    with pytest.raises(SourceError) as e:           # auto: colour, but no colour map given
        read_label(p, 40, "auto")
    assert "colour map" in one_line_naming(e, p)


def test_sixteen_bit_ids_accepted_when_in_range(tmp_path):
    ids = pattern_labels(8, 8, 40).astype(np.uint16)
    assert np.array_equal(read_label(write_png(tmp_path / "m16.png", ids), 40, "ids"), ids)


def test_decode_colours_exact_tolerance_and_unknown():
    colors = [(10, 20, 30), (200, 0, 0)]
    rgb = np.array([[[10, 20, 30], [200, 0, 0]], [[0, 0, 0], [12, 19, 30]]], np.uint8)
    with pytest.raises(SourceError) as e:
        decode_colors("lab.png", rgb, colors)
    assert "lab.png" in str(e.value) and "[12, 19, 30] (1 px)" in str(e.value)
    ids = decode_colors("lab.png", rgb, colors, tolerance=2)
    assert ids.tolist() == [[0, 1], [255, 0]]


def test_depth_png_eight_bit_refused(tmp_path):
    p = write_png(tmp_path / "d8.png", np.full((4, 4), 7, np.uint8))
    with pytest.raises(SourceError) as e:
        read_depth(p, 1000.0)
    assert "16-bit" in one_line_naming(e, p)


def test_depth_png_scale(tmp_path):
    v = np.array([[0, 5000], [2500, 65535]], np.uint16)
    d = read_depth(write_png(tmp_path / "d16.png", v), 5000.0)
    assert d.dtype == np.float32 and np.allclose(d, v / 5000.0)


@pytest.mark.parametrize("bad, word", [
    (np.array([[1.0, np.nan]], np.float32), "NaN"),
    (np.array([[1.0, np.inf]], np.float64), "NaN/inf"),
    (np.array([[1.0, -0.5]], np.float32), "negative"),
    (np.array([[1, 2]], np.int32), "dtype"),
    (np.zeros((2, 2, 3), np.float32), "shape"),
])
def test_depth_npy_bad_values(tmp_path, bad, word):
    p = tmp_path / "d.npy"
    np.save(p, bad)
    with pytest.raises(SourceError) as e:
        read_depth_npy(p)
    assert word in one_line_naming(e, p)


def test_depth_npy_good(tmp_path):
    p = tmp_path / "d.npy"
    np.save(p, np.array([[0.0, 1.5]], np.float64)[..., None])
    d = read_depth(p, 1.0)
    assert d.dtype == np.float32 and d.tolist() == [[0.0, 1.5]]


# ---- size policy --------------------------------------------------------------------------------

def test_fit_resize_nearest_for_labels_and_depth():
    rgb, segm = pattern_rgb(30, 40), pattern_labels(30, 40)
    depth = np.random.default_rng(0).uniform(0.5, 9, (30, 40)).astype(np.float32)
    r, s, d = fit_frame("f.png", rgb, segm, depth, (24, 32), "resize")
    assert r.shape == (24, 32, 3) and r.dtype == np.uint8
    assert s.shape == (24, 32) and s.dtype == np.uint8 and set(np.unique(s)) <= set(np.unique(segm))
    assert d.shape == (24, 32) and d.dtype == np.float32 and np.isin(d, depth).all()
    assert r[..., 0][5, 0] < r[..., 0][20, 0]                       # rows stay rows (R encodes y)


def test_fit_same_size_is_untouched_and_none_passes():
    rgb = pattern_rgb(8, 8)
    r, s, d = fit_frame("f.png", rgb, None, None, (8, 8), "resize")
    assert r is rgb and s is None and d is None


def test_fit_crop_is_centred_and_refuses_small():
    rgb, segm = pattern_rgb(10, 12), pattern_labels(10, 12)
    r, s, _ = fit_frame("f.png", rgb, segm, None, (6, 6), "crop")
    assert np.array_equal(r, rgb[2:8, 3:9]) and np.array_equal(s, segm[2:8, 3:9])
    with pytest.raises(SourceError) as e:
        fit_frame("small.png", rgb, segm, None, (12, 12), "crop")
    assert "small.png" in str(e.value) and "12x10" in str(e.value)


def test_parse_fit_lists_choices():
    assert parse_fit("crop") == "crop"
    with pytest.raises(UserError, match="resize, crop"):
        parse_fit("stretch")


def test_jpeg_exif_orientation_applied_to_images_only(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    a[:3, :3] = 255                                                 # bright top-left corner
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                                                # "rotate 90 CW to display"
    p = tmp_path / "o.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    rgb = read_rgb(p)
    assert rgb.shape == (20, 10, 3) and rgb[0, -1].min() > 200 and rgb[-1, 0].max() < 50
