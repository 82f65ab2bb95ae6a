"""`mtdistill predict` end to end (odd sizes, grey and RGBA inputs, raw outputs equal to the model's own
prediction, one-line errors) and the picture helpers in pipeline/deploy/visual.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.deploy import visual
from student.model import MEAN_RGB, normalize
from pipeline.deploy.predict import classes_of, depth_to_mm, output_names
from stores.classes import KITTI6, NYUD40, make_classes, palette
from student.model import build_student
from conftest import run_cli as run

CLASSES = make_classes([f"c{i}" for i in range(5)])
GAP = 6  # visual.panel's default gap


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    model = build_student(len(CLASSES)).eval()
    with torch.no_grad():  # a positive depth bias: depths of a few metres, not ReLU zeros
        model.heads["depth"][2].bias.fill_(2.0)
    return model


@pytest.fixture(scope="module")
def ckpt(student, tmp_path_factory):
    """The student saved in the training loop's checkpoint format."""
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    torch.save({"model": student.state_dict(), "arch": {"name": "student", "num_classes": len(CLASSES)},
                "classes": CLASSES, "tasks": ["segm", "depth"], "config": {}, "step": 1}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three sizes and modes: RGB 64x64, grey 97x45 (WxH), RGBA 70x130."""
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (45, 97), dtype=np.uint8)).save(d / "grey.png")
    Image.fromarray(rng.integers(0, 256, (130, 70, 4), dtype=np.uint8)).save(d / "rgba.png")
    return [d / "rgb.png", d / "grey.png", d / "rgba.png"]


def reference(model, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prediction computed by hand: pad to a multiple of 32 (>= 64) with the mean colour, run,
    upsample the 1/4 outputs to the padded size, crop back."""
    h, w = rgb.shape[:2]
    ph, pw = max(64, -(-h // 32) * 32), max(64, -(-w // 32) * 32)
    canvas = np.empty((ph, pw, 3), np.uint8)
    canvas[:] = MEAN_RGB
    canvas[:h, :w] = rgb
    with torch.no_grad():
        out = model(normalize(torch.from_numpy(canvas.transpose(2, 0, 1).copy())[None]))
    segm = F.interpolate(out["segm"], size=(ph, pw), mode="bilinear", align_corners=False).argmax(1)[0]
    depth = F.relu(F.interpolate(out["depth"], size=(ph, pw), mode="bilinear", align_corners=False))[0, 0]
    return segm[:h, :w].numpy(), depth[:h, :w].numpy()


def test_predict_any_size_writes_pictures_and_raw_outputs(student, ckpt, images, tmp_path):
    out = tmp_path / "pred"
    records = json.loads(run("predict", ckpt, *images, "--out", out, "--threads", "1", "--json").stdout)
    assert [r["size"] for r in records] == [[64, 64], [45, 97], [130, 70]]
    for path, rec in zip(images, records):
        name = path.stem
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        for key in ("segm", "segm_color", "depth", "depth_color", "panel"):
            assert (out / f"{name}_{key}.png").is_file()
        segm = np.asarray(Image.open(out / f"{name}_segm.png"))
        mm = Image.open(out / f"{name}_depth.png")
        assert segm.dtype == np.uint8 and segm.shape == (h, w) and segm.max() < len(CLASSES)
        assert mm.mode.startswith("I;16") and mm.size == (w, h)
        ref_segm, ref_depth = reference(student, rgb)
        assert (segm == ref_segm).mean() > 0.999  # argmax near-ties may flip a pixel
        np.testing.assert_allclose(np.asarray(mm, dtype=np.float64), np.round(ref_depth * 1000), atol=1)
        assert 500 < np.asarray(mm).mean() < 10_000  # metres -> millimetres, not metres
        # pictures: exact class colours; panel = three cells of the input size, legend underneath
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_segm_color.png")), palette(CLASSES)[segm])
        panel = np.asarray(Image.open(out / f"{name}_panel.png"))
        assert panel.shape[1] == 3 * w + 4 * GAP and panel.shape[0] > h + 2 * GAP
        title_h = 12 + GAP  # font size 12 at these heights
        np.testing.assert_array_equal(panel[GAP + title_h:GAP + title_h + h, GAP:GAP + w], rgb)
        assert rec["classes_present"] == [CLASSES[i]["name"] for i in np.unique(segm)]
        assert rec["depth_range"][0] < rec["depth_range"][1]


def test_predict_npy_depth_and_fixed_range(student, ckpt, images, tmp_path):
    r = run("predict", ckpt, images[1], "--out", tmp_path, "--depth-format", "npy", "--depth-range", "1", "4")
    assert "grey.png (97x45) -> " in r.stdout and "depth 1.00-4.00 m" in r.stdout
    depth = np.load(tmp_path / "grey_depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (45, 97)
    np.testing.assert_allclose(depth, reference(student, np.asarray(Image.open(images[1]).convert("RGB")))[1],
                               atol=1e-4)
    assert not (tmp_path / "grey_depth.png").exists()


@pytest.mark.parametrize("case", ["missing", "undecodable", "garbage_ckpt", "teacher_ckpt", "bad_range"])
def test_predict_bad_inputs_give_one_error_line(case, ckpt, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    model, image, extra, expect = ckpt, images[0], [], ""
    if case == "missing":
        image, expect = tmp_path / "nope.jpg", "nope.jpg: file not found"
    elif case == "undecodable":
        image, expect = bad, "bad.png: cannot decode image"
    elif case == "garbage_ckpt":
        model, expect = bad, "bad.png: unreadable checkpoint (not a file written by torch.save)"
    elif case == "teacher_ckpt":
        model = tmp_path / "t.pt"
        torch.save({"arch": {"name": "resnet38"}, "model": {}}, model)
        expect = "t.pt: checkpoint holds a 'resnet38' network"
    else:
        extra, expect = ["--depth-range", "5", "2"], "Invalid value for '--depth-range': 5.0 2.0: need MIN < MAX"
    r = run("predict", model, image, "--out", tmp_path / "o", *extra, ok=False)
    assert r.exit_code == (2 if case == "bad_range" else 1)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.lower().startswith("error: ")]
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in r.stderr, r.stderr
    if case != "bad_range":              # a usage error also prints the usage; a user error only its line
        assert r.stderr.strip() == lines[0]


def test_classes_and_names():
    assert classes_of({}, 40) is NYUD40 and classes_of({}, 6) is KITTI6
    assert [c["name"] for c in classes_of({"classes": "junk"}, 3)] == ["class 0", "class 1", "class 2"]
    assert classes_of({"classes": CLASSES}, 5) is CLASSES
    assert output_names(["a/x.png", "b/x.jpg", "y.png"]) == ["a/x", "b/x", "y"]
    assert output_names(["d/x.png", "d/x.jpg", "d/y.png"]) == ["x-png", "x-jpg", "y"]
    assert output_names(["d/e/x.png"]) == ["x"]
    mm, clipped = depth_to_mm(np.array([[0.0, 1.2344, 70.0]], np.float32))
    assert mm.tolist() == [[0, 1234, 65535]] and clipped == 1


# ---- visual helpers -----------------------------------------------------------------------------

def test_colorize_segm_uses_the_palette_exactly():
    ids = np.array([[0, 1, 2], [3, 4, 5], [255, 6, 200]], np.uint8)
    rgb = visual.colorize_segm(ids, KITTI6)
    assert rgb[0].tolist() == [[128, 128, 128], [128, 0, 0], [128, 64, 128]]
    assert rgb[1].tolist() == [[0, 0, 192], [128, 128, 0], [64, 0, 128]]
    assert rgb[2].tolist() == [[0, 0, 0]] * 3  # ignore and ids outside the class list: black
    ids40 = np.arange(40).reshape(5, 8)
    np.testing.assert_array_equal(visual.colorize_segm(ids40, NYUD40), np.array([c["color"] for c in NYUD40])[ids40])


def test_depth_colormap_is_monotone_in_luminance_and_marks_no_depth():
    ramp = np.linspace(1.0, 5.0, 200, dtype=np.float32)[None]
    srgb = visual.colorize_depth(ramp, 1.0, 5.0)[0] / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    lum = linear @ [0.2126, 0.7152, 0.0722]  # relative luminance Y
    assert np.all(np.diff(lum) <= 0) and lum[0] > 0.9 and lum[-1] < 0.03  # near bright -> far dark
    far = visual.colorize_depth(np.array([[0.0, 99.0, np.nan]]), 1.0, 5.0)[0]
    assert far[0].tolist() == [0, 0, 0] and far[2].tolist() == [0, 0, 0]  # no depth: black
    assert far[1].sum() > 60  # clipped far end stays visible against black
    assert visual.colorize_depth(np.zeros((1, 1)), 1.0, 5.0, invalid_color=None)[0, 0].tolist() == \
        visual.colorize_depth(np.ones((1, 1)), 1.0, 5.0)[0, 0].tolist()  # predictions: 0 m drawn as near
    d = np.r_[np.zeros(50), np.linspace(2, 3, 101)].astype(np.float32)
    lo, hi = visual.depth_range(d, (0, 100))
    assert (lo, hi) == (2.0, 3.0) and visual.depth_range(np.zeros(4)) == (0.0, 1.0)


def test_legend_colorbar_and_panel_layout():
    one = visual.legend(NYUD40, [3], width=300)
    many = visual.legend(NYUD40, range(40), width=300)
    assert one.shape[1] == many.shape[1] == 300 and many.shape[0] > 4 * one.shape[0]  # wraps
    assert (one == NYUD40[3]["color"]).all(-1).sum() > 50  # the swatch
    assert not (one == NYUD40[4]["color"]).all(-1).any()
    bar = visual.with_colorbar(np.zeros((20, 90, 3), np.uint8), 1.0, 5.0)
    assert bar.shape[1] == 90 and bar.shape[0] > 30
    a, b = np.full((40, 50, 3), 10, np.uint8), np.full((30, 20), 200, np.uint8)
    p = visual.panel([[("a", a), ("b", b)], [("wide", np.zeros((10, 130, 3), np.uint8))]], gap=4, size=12,
                     footer=np.zeros((5, 60, 3), np.uint8))
    assert p.shape == (4 + (16 + 40 + 4) + (16 + 10 + 4) + (5 + 4), max(4 + 50 + 4 + 20 + 4, 4 + 130 + 4), 3)
    np.testing.assert_array_equal(p[20:60, 4:54], a)
    assert (p[20:50, 58:78] == 200).all()  # grey -> RGB, pasted top-aligned
    scaled = visual.panel([[("a", a), ("b", b)]], height=20, gap=4, size=12)
    assert scaled.shape == (4 + 16 + 20 + 4, 4 + 25 + 4 + 13 + 4, 3)


def test_evaluate_and_predict_give_the_same_prediction_at_an_odd_size(student, tmp_path):
    """625x468 (WxH) is no multiple of 32: `evaluate` and `predict` share one padded inference, so the
    metrics of `evaluate` are exactly those of the pixels `predict` writes."""
    from pipeline.deploy.predict import predict_image
    from pipeline.evaluate.evaluate import evaluate_model
    from pipeline.evaluate.metrics import DepthMetrics, SegmMetrics
    from stores.repo import FrameStore
    from stores.sources.base import Frame

    rng = np.random.default_rng(3)
    h, w = 468, 625
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    segm = rng.integers(0, len(CLASSES), (h, w), dtype=np.uint8)
    depth = rng.uniform(0.5, 20, (h, w)).astype(np.float32)
    store = FrameStore.create(tmp_path / "odd.ice", name="odd", classes=CLASSES, frame_size=(h, w))
    with store.append("odd frame", {"kind": "ingest"}) as wr:
        wr.add(Frame(rgb=rgb, split="test", name="odd", segm=segm, depth=depth))
    store = store.reopen()
    pred = predict_image(student, rgb, torch.device("cpu"))
    ref_segm, ref_depth = reference(student, rgb)
    np.testing.assert_array_equal(pred["segm"], ref_segm)
    np.testing.assert_allclose(pred["depth"], ref_depth, rtol=1e-5, atol=1e-5)
    res = evaluate_model(student, store, np.array([0]), device="cpu")
    s, d = SegmMetrics(len(CLASSES)), DepthMetrics()
    s.update(pred["segm"][None].astype(np.int64), segm[None])
    d.update(pred["depth"][None], depth[None])
    assert res["segm"]["miou"] == pytest.approx(s.compute()["miou"])
    assert res["depth"]["rmse"] == pytest.approx(d.compute()["rmse"], rel=1e-6)


def test_predict_keeps_input_folders_and_never_overwrites_silently(ckpt, images, tmp_path):
    """cam_left/frame.png, cam_left/frame-2.png, cam_right/frame.png: 15 distinct files, none lost."""
    src = tmp_path / "in"
    for rel, im in (("cam_left/frame.png", images[0]), ("cam_left/frame-2.png", images[1]),
                    ("cam_right/frame.png", images[2])):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(im.read_bytes())
    inputs = [src / "cam_left/frame.png", src / "cam_left/frame-2.png", src / "cam_right/frame.png"]
    out = tmp_path / "o"
    r = run("predict", ckpt, *inputs, "--out", out)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(written) == 15 and "cam_right/frame_panel.png" in written and "cam_left/frame-2_segm.png" in written
    assert Image.open(out / "cam_right/frame_segm.png").size == (70, 130)      # the RGBA image, not another
    assert Image.open(out / "cam_left/frame-2_segm.png").size == (97, 45)
    assert f"wrote 15 files for 3 image(s) under {out}" in r.stdout
    before = (out / "cam_left/frame_segm.png").read_bytes()
    r = run("predict", ckpt, inputs[0], inputs[2], "--out", out, ok=False)     # same names again: refused
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "10 output file(s) already exist" in lines[0] and "--overwrite" in lines[0]
    assert (out / "cam_left/frame_segm.png").read_bytes() == before
    r = run("predict", ckpt, inputs[1], inputs[2], inputs[2], "--out", out, "--overwrite", "--json")
    recs = json.loads(r.stdout)                                                 # the repeated path: once
    assert [rec["replaced"] for rec in recs] == [True, True]
    assert recs[1]["files"]["panel"] == str(out / "cam_right/frame_panel.png")


def test_fp32_unless_amp_and_the_flag_reaches_both_commands(ckpt, images, store, tmp_path, monkeypatch):
    import pipeline.deploy.predict as pred_mod
    import pipeline.evaluate.evaluate as ev
    from pipeline.evaluate.evaluate import autocast_enabled

    assert not autocast_enabled("cuda", False) and not autocast_enabled("cuda:1", False)
    assert autocast_enabled("cuda:0", True) and not autocast_enabled("cpu", True)
    seen = []
    monkeypatch.setattr(pred_mod, "predict_files", lambda *a, **kw: seen.append(kw["amp"]) or [])
    monkeypatch.setattr(ev, "evaluate_model", lambda *a, **kw: seen.append(kw["amp"]) or {"frames": 0})
    run("predict", ckpt, images[0], "--out", tmp_path / "o")
    run("predict", ckpt, images[0], "--out", tmp_path / "o", "--amp")
    run("evaluate", store.path, ckpt, "--split", "train", "--device", "cpu")
    run("evaluate", store.path, ckpt, "--split", "train", "--device", "cpu", "--amp")
    assert seen == [False, True, False, True]


def test_evaluate_names_an_empty_split_and_the_store_splits(ckpt, store):
    r = run("evaluate", store.path, ckpt, "--split", "test", ok=False)
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        f"error: {store.path}: no frames in split 'test' (frames per split: train 20); ingest sets splits (folder, "
        "kitti: --split, --split-file; nyud: --splits, --train-list, --test-list; synthetic: --splits)"]
