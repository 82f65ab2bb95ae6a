"""qa on pseudo sets built by hand: perfect labels, a known calibration, done flags, CLI outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import H, W, ingest

from pipeline.cli import cli
from pipeline.evaluate.qa import Calibration, quality_report
from stores.errors import UserError
from stores.schema import create_pseudo
from stores.sources.base import Frame


@pytest.fixture
def qstore(empty_store):
    """16 frames (2 shards of 8): even frames with segm, frames 0, 3, 6.. with depth in float16-exact metres."""
    rng = np.random.default_rng(0)
    frames = [Frame(rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8), split="train" if i < 12 else "val",
                    name=f"q{i}", segm=rng.integers(0, 5, (H, W), dtype=np.uint8) if i % 2 == 0 else None,
                    depth=(rng.integers(2, 40, (H, W)) / 4).astype(np.float32) if i % 3 == 0 else None)
              for i in range(16)]
    ingest(empty_store, frames)
    return empty_store.reopen()


def write_pseudo(store, name, segm, conf, depth, done):
    session = store.writable_session()
    root = zarr.open_group(session.store, mode="a")
    g = create_pseudo(root, name, store.num_frames, {"tasks": ["segm", "depth"], "teachers": {}})
    g["segm"][:], g["conf"][:], g["depth"][:], g["done"][:] = segm, conf, depth.astype(np.float16), done
    store.commit(session, f"pseudo {name}", {"kind": "test"})
    return store.reopen()


def real(store):
    return store.root["real/segm"][:], store.root["real/depth"][:]


def test_pseudo_equal_to_real_is_perfect(qstore):
    segm, depth = real(qstore)
    s = write_pseudo(qstore, "p", segm, np.full(segm.shape, 255, np.uint8), depth, [True, True])
    r = quality_report(s, "p")
    assert r["segm"]["miou"] == 1.0 and r["segm"]["pixel_acc"] == 1.0 and r["segm"]["frames"] == 8
    assert r["segm"]["coverage"] == 1.0 and r["segm"]["calibration"]["ece"] == 0.0
    assert r["depth"]["rmse"] == 0.0 and r["depth"]["abs_rel"] == 0.0 and r["depth"]["delta1"] == 1.0
    assert r["depth"]["frames"] == 6 and r["labeled_frames"] == 16


def test_known_calibration_and_done_flags(qstore):
    segm, depth = real(qstore)
    wrong = (np.arange(W) % 2 == 1)[None, None, :].repeat(16, 0).repeat(H, 1)   # odd columns: half the pixels
    pseudo = np.where(wrong, (segm + 1) % 5, segm).astype(np.uint8)
    conf = np.where(wrong, 128, 255).astype(np.uint8)           # right at p = 1, wrong at p = 0.502
    s = write_pseudo(qstore, "c", pseudo, conf, depth * 1.1, [True, False])   # shard 1 not done
    r = quality_report(s, "c")
    cal = r["segm"]["calibration"]
    assert r["labeled_frames"] == 8 and r["segm"]["frames"] == 4 and r["depth"]["frames"] == 3
    assert r["segm"]["pixel_acc"] == 0.5 and cal["accuracy"] == 0.5
    assert cal["ece"] == pytest.approx(0.5 * 128 / 255)
    full = {b["lo"]: b for b in cal["bins"] if b["pixels"]}
    assert sorted(full) == [0.5, 0.9] and full[0.9]["accuracy"] == 1.0 and full[0.5]["accuracy"] == 0.0
    t = {x["threshold"]: x for x in cal["thresholds"]}
    assert t[0.5]["kept"] == 1.0 and t[0.6]["kept"] == 0.5 and t[0.6]["accuracy"] == 1.0
    assert r["depth"]["abs_rel"] == pytest.approx(0.1, abs=1e-3) and r["depth"]["delta1"] == 1.0
    # the verdicts: labels worth it from threshold 0.6 on; depth off by a scale only: anchored, exact up to float16
    assert r["verdict"]["segm"].startswith("segm: worth it: pseudo-labels at --segm-threshold 0.6 are 100.0% accurate")
    held = r["depth"]["held_out"]
    assert held["teacher"]["rmse"] < 0.01 < min(held["real_median"]["rmse"], held["real_nearest"]["rmse"])
    assert held["teacher"]["pixels"] > 0
    assert r["verdict"]["depth"].startswith("depth: worth it")
    with pytest.raises(UserError, match="no labeled frame"):
        quality_report(s, "c", split="val")                      # val frames 12..15 are in shard 1 (not done)
    with pytest.raises(UserError, match=r"no frames in split 'test' \(frames per split: train 12, val 4\); "
                                        r"ingest sets splits \(folder, kitti: --split, --split-file; nyud: --splits"):
        quality_report(s, "c", split="test")                     # an empty split: named, not "no labeled frame"


def test_a_teacher_worse_than_the_real_data_gets_a_not_worth_it_verdict(qstore):
    segm, depth = real(qstore)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 5, segm.shape).astype(np.uint8)            # confident, 20% right
    wild = np.clip(depth[:, ::-1] * np.exp(rng.normal(0, 1.5, depth.shape)), 0, 60000)   # another frame, noisy
    s = write_pseudo(qstore, "bad", noise, np.full(segm.shape, 255, np.uint8), wild, [True, True])
    r = quality_report(s, "bad")
    assert r["verdict"]["segm"].startswith("segm: NOT worth it")
    assert r["verdict"]["depth"].startswith("depth: NOT worth it")
    from pipeline.evaluate.qa import format_report
    text = format_report(r, [c["name"] for c in s.classes])
    assert text.count("verdict: ") == 2


def test_calibration_bins_by_hand():
    c = Calibration()
    c.update(np.array([255, 255, 0, 230], np.uint8), np.array([True, False, False, True]))
    assert c.bins(2)[1] == {"lo": 0.5, "hi": 1.0, "pixels": 3, "confidence": pytest.approx((2 + 230 / 255) / 3),
                            "accuracy": pytest.approx(2 / 3)}
    assert c.ece(2) == pytest.approx(0.75 * abs(2 / 3 - (2 + 230 / 255) / 3) + 0.25 * 0)


def test_cli_json_and_plot(qstore, tmp_path):
    segm, depth = real(qstore)
    write_pseudo(qstore, "p", segm, np.full(segm.shape, 200, np.uint8), depth, [True, True])
    res = CliRunner().invoke(cli, ["qa", str(qstore.path), "--pseudo", "p", "--out", str(tmp_path / "qa")])
    assert res.exit_code == 0, res.output
    assert "mIoU 100.00 %" in res.output and "underconfident" in res.output
    assert (tmp_path / "qa" / "reliability.png").stat().st_size > 1000
    data = json.loads((tmp_path / "qa" / "qa.json").read_text())
    assert data["segm"]["calibration"]["ece"] == pytest.approx(1 - 200 / 255)
    res = CliRunner().invoke(cli, ["qa", str(qstore.path), "--pseudo", "nope", "--json"])
    assert res.exit_code == 1 and "no pseudo-label set 'nope'" in res.output


def missing_style(store, segm_on_labeled: bool):
    """A pseudo set as `label --frames missing` leaves it: pseudo targets only where real ones are absent
    (optionally segm also on the real-labeled frames, with the real labels)."""
    segm, depth = real(store)
    hs, hd = store.root["real/has_segm"][:][:, None, None], store.root["real/has_depth"][:][:, None, None]
    pseudo = np.where(hs, segm if segm_on_labeled else 255, 1).astype(np.uint8)
    conf = np.where(pseudo == 255, 0, 200).astype(np.uint8)
    return write_pseudo(store, "m", pseudo, conf, np.where(hd, 0, 3.0).astype(np.float32), [True, True])


def test_cli_set_labeled_with_frames_missing_is_one_error_line(qstore):
    missing_style(qstore, segm_on_labeled=False)
    res = CliRunner().invoke(cli, ["qa", str(qstore.path), "--pseudo", "m"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "none of the 8 frame(s) with a real segm target" in lines[0]
    assert "none of the 6 frame(s) with a real depth target" in lines[0] and "--frames all" in lines[0]


def test_cli_task_without_comparison_says_so_instead_of_a_number(qstore):
    missing_style(qstore, segm_on_labeled=True)             # segm measurable, depth not
    res = CliRunner().invoke(cli, ["qa", str(qstore.path), "--pseudo", "m"])
    assert res.exit_code == 0, res.output
    assert "mIoU 100.00 %" in res.output and "RMSE" not in res.output and "nan" not in res.output
    assert "depth: none of the 6 frame(s) with a real depth target has a pseudo-label" in res.output
    data = json.loads(CliRunner().invoke(cli, ["qa", str(qstore.path), "--pseudo", "m", "--json"]).output)
    assert "depth" not in data and set(data["not_measured"]) == {"depth"}


def test_format_report_prints_dash_for_missing_figures():
    from pipeline.evaluate.qa import format_report
    from pipeline.runtime import json_safe

    cal = Calibration().summary()                            # no pixels: NaN everywhere -> None in JSON
    r = json_safe({"pseudo": "p", "labeled_frames": 2, "split": None, "snapshot": "S", "segm": {
        "miou": float("nan"), "pixel_acc": float("nan"), "iou": [float("nan")], "frames": 2, "coverage": 0.0,
        "calibration": cal}})
    text = format_report(r, ["a"])
    assert "mIoU - %" in text and "nan" not in text and "ECE -" in text
