"""The versioning commands through the CLI: show, log, tag, diff, reset (people and --json)."""
from __future__ import annotations

import json

from conftest import ingest, random_frames

from conftest import run_cli as run


def test_show_human_and_json(store):
    out = run("show", store.path).output
    assert "frames: 20 of 64x48, 5 classes" in out and "train" in out and "pseudo-label sets: none" in out
    info = json.loads(run("show", store.path, "--json").output)
    assert info["splits"]["train"] == {"frames": 20, "segm_pct": 50.0, "depth_pct": 35.0}
    assert info["size_bytes"] > 0


def test_log_tag_diff_reset(store):
    run("tag", store.path, "v1")
    ingest(store, random_frames(4, seed=8), message="four more")
    log = run("log", store.path).output
    assert "four more" in log and "[v1]" in log
    entries = json.loads(run("log", store.path, "--json", "-n", "1").output)
    assert len(entries) == 1 and entries[0]["metadata"]["frames_added"] == 4
    d = json.loads(run("diff", store.path, "v1", "main", "--json").output)
    assert d["frames"] == {"from": 20, "to": 24}
    assert "frames: 20 -> 24 (+4)" in run("diff", store.path, "v1").output
    assert "main:" in run("reset", store.path, "v1", "--yes").output
    assert json.loads(run("show", store.path, "--json").output)["frames"] == 20


def test_errors_are_one_line(tmp_path, store):
    for args in (["show", tmp_path / "none"], ["log", store.path, "--ref", "nope"],
                 ["diff", store.path, "nope"], ["reset", store.path, "nope", "--yes"]):
        r = run(*args, ok=False)
        assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    run("tag", store.path, "v1")
    assert "already exists" in run("tag", store.path, "v1", ok=False).output
