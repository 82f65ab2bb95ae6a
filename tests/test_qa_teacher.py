"""`mtdistill qa --teacher`: a teacher judged before labeling gives the figures of the set it would label,
writes nothing, and refuses bad input with one line."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import ingest, random_frames, run_cli
from test_label import DEPTH, SEGM, cfg

from pipeline.label.job import run_label

pytest_plugins = ("test_label_teachers",)          # shared fixtures: cluster


def test_teacher_report_matches_the_labeled_set_and_writes_nothing(store, cluster, tmp_path):
    before = store.reopen().snapshot_id
    tried = json.loads(run_cli("qa", store.path, "--teacher", f"segm={SEGM}", "--teacher", f"depth={DEPTH}",
                               "--json").output)
    s = store.reopen()
    assert s.snapshot_id == before and s.pseudo_sets() == []                       # nothing written
    run_label(cfg(store, cluster, name="all", frames="all"))
    labeled = json.loads(run_cli("qa", store.path, "--pseudo", "all", "--json").output)
    assert tried["pseudo"] is None and tried["teacher_specs"] == [["depth", DEPTH], ["segm", SEGM]]
    assert tried["segm"]["frames"] == labeled["segm"]["frames"] == 10               # frames with real segm
    assert tried["segm"]["miou"] == pytest.approx(labeled["segm"]["miou"], abs=1e-3)
    assert tried["segm"]["calibration"]["ece"] == pytest.approx(labeled["segm"]["calibration"]["ece"], abs=1e-3)
    assert tried["depth"]["rmse"] == pytest.approx(labeled["depth"]["rmse"], rel=1e-3)   # set: float16 depth
    held = tried["depth"]["held_out"]["teacher"]
    assert held["pixels"] == labeled["depth"]["held_out"]["teacher"]["pixels"] > 0
    assert set(tried["verdict"]) == {"segm", "depth"}
    text = run_cli("qa", store.path, "--teacher", f"segm={SEGM}", "--limit", "3").output
    assert "teacher segm=" in text and "(3 labeled frames" in text and "verdict: segm:" in text


def test_bad_input_is_one_error_line_and_the_store_stays(store, tmp_path):
    ingest(store, [replace(f, depth=None) for f in random_frames(2, seed=5, split="val")])   # val: segm only
    before = store.reopen().snapshot_id
    bad = [(("--pseudo", "x", "--teacher", f"segm={SEGM}"), "either --pseudo"),
           ((), "either --pseudo"),
           (("--pseudo", "x", "--limit", "2"), "go with --teacher"),
           (("--teacher", "segm=nope.pt"), "nope.pt"),
           (("--teacher", "bogus=thing"), "expected segm=PATH"),
           (("--teacher", f"depth={DEPTH}", "--split", "val"), "no frame of split 'val' has a real depth target"),
           (("--teacher", f"depth={DEPTH}", "--split", "test"),
            "no frames in split 'test' (frames per split: train 20, val 2); ingest sets splits")]
    for args, msg in bad:
        r = run_cli("qa", store.path, *args, ok=False)
        assert msg in r.output and "Traceback" not in r.output, r.output
    assert store.reopen().snapshot_id == before
