"""Progress bars tell the truth: the total a long job announces is the number of units it then reports."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from conftest import H, W
from PIL import Image

import pipeline.ingest as ingest_mod
from pipeline.demo.config import DemoConfig
from pipeline.demo.run import ingest_plans


def test_demo_ingest_totals_are_the_frames_each_plan_yields():
    cfg = DemoConfig(frames=24, source_frames=10, size=(48, 64), workers=1, segm_fraction=0.5)
    plans = ingest_plans(cfg)
    counts = {name: (sum(1 for _ in frames()), total) for name, (_, frames, total) in plans.items()}
    assert all(n == total for n, total in counts.values()), counts
    assert counts["source.ice"][1] > cfg.source_frames           # the target's labeled frames come on top


@contextmanager
def recording_bar(log):
    @contextmanager
    def bar(description, total, unit="frames"):
        log.append({"total": total, "done": 0})
        yield lambda n=1, info="": log[-1].__setitem__("done", log[-1]["done"] + n)
    yield bar


def test_ingest_bar_counts_skipped_files_and_ends_at_its_total(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipeline.cli import cli

    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(d / f"f{i}.png")
    (d / "f0.png").write_bytes(b"")                             # zero-byte first image: sizing skips it too
    (d / "f3.png").write_bytes(b"not a png")                    # undecodable later image
    log = []
    with recording_bar(log) as bar:
        monkeypatch.setattr(ingest_mod, "progress_bar", bar)
        r = CliRunner().invoke(cli, ["ingest", "folder", str(d), str(tmp_path / "s.ice"), "--skip-bad"])
    assert r.exit_code == 0, r.output
    assert "ingested 3 new frame(s)" in r.output and "skipped" in r.output
    assert log == [{"total": 4, "done": 4}]                     # f0 left out while sizing; f3 counted
