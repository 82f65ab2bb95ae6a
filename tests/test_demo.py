"""`mtdistill demo` end to end at toy scale: every stage runs, leaves inspectable stores and runs, writes
report.md with the table, and a re-run skips the finished stages."""
from __future__ import annotations

import json

from click.testing import CliRunner

from pipeline.cli import cli
from stores.repo import FrameStore

ARGS = ["--frames", "40", "--source-frames", "24", "--student-steps", "3", "--teacher-steps", "3",
        "--size", "64x48", "--workers", "1", "--device", "cpu"]


def test_demo_toy_scale(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--out", str(out), *ARGS])
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    for row in ("teacher (both tasks)", "(a) real targets only", "(b) real + pseudo (paper)",
                "(c) full ground truth", "Table I"):
        assert row in report
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 4 and all(r["frames"] == results["(a) real targets only"]["frames"] for r in results.values())
    assert (out / "qualitative.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    target = FrameStore.open(out / "target.ice")
    assert target.pseudo_sets() == ["teachers"] and "label/teachers" in target.tags()
    assert {"train/student-a_real", "train/student-b_pseudo"} <= set(target.tags())
    oracle = FrameStore.open(out / "oracle.ice")
    assert oracle.num_frames == target.num_frames
    # every train frame of the oracle has exact segmentation; the target's train split has few
    tr = oracle.indices("train")
    assert oracle.root["real/has_segm"][:][tr].all()
    assert target.root["real/has_segm"][:][target.indices("train")].mean() < 0.5
    before = {k: FrameStore.open(out / k).snapshot_id for k in ("target.ice", "oracle.ice", "source.ice")}
    r = CliRunner().invoke(cli, ["demo", "--out", str(out), *ARGS])
    assert r.exit_code == 0, r.output
    assert {k: FrameStore.open(out / k).snapshot_id for k in before} == before  # nothing re-ingested or relabeled
