"""Stores in object storage (s3:// URLs) against a local S3 server (moto, see s3_fixtures): the store
commands, training and evaluation, bad URLs / endpoints / credentials, and processes committing at once."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, H, W, ingest, random_frames, run_cli

from stores.repo import FrameStore

pytest_plugins = ("s3_fixtures",)
WORKER = str(Path(__file__).with_name("store_worker.py"))


def show(url, *extra) -> dict:
    return json.loads(run_cli("show", url, "--json", *extra).stdout)


def test_store_commands_on_s3(bucket, s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"s3://{bucket}/stores/syn"
    out = run_cli("ingest", "synthetic", url, "--frames", "6", "--size", "64x64", "--workers", "1").stdout
    assert f"ingested 6 new frame(s) into {url}" in out
    info = show(url)
    assert info["frames"] == 6 and info["path"] == url and info["size_bytes"] > 0
    run_cli("tag", url, "first")
    run_cli("ingest", "synthetic", url, "--frames", "9", "--size", "64x64", "--workers", "1")
    d = json.loads(run_cli("diff", url, "first", "main", "--json").stdout)
    assert d["frames"] == {"from": 6, "to": 9} and "/frames/rgb" in d["updated_arrays"]
    assert show(url, "--ref", "first")["frames"] == 6 and show(url)["frames"] == 9
    run_cli("reset", url, "first", "--yes")
    assert show(url)["frames"] == 6 and "first" in show(url)["tags"]
    assert "ingest synthetic" in run_cli("log", url).stdout
    assert list(tmp_path.iterdir()) == []                   # no local folder named "s3:" (or anything else)
    keys = s3_env.list_keys(bucket)
    assert keys and all(k.startswith("stores/syn/") for k in keys)


def test_train_and_evaluate_read_an_s3_store(bucket, tmp_path):
    url = f"s3://{bucket}/train"
    s = FrameStore.create(url, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(s, list(random_frames(16, seed=1, depth_every=2)) + list(random_frames(4, seed=2, split="val")))
    out = tmp_path / "runs"
    # --workers 0: DataLoader workers come from a forkserver that an earlier test of the session may have
    # started before this test pointed AWS_ENDPOINT_URL at the local server (a user sets it before starting)
    r = run_cli("train", url, "--run", "s3", "--out", out, "--epochs", "1", "--batch-size", "4", "--workers", "0",
                "--seed", "1")
    assert "step 4/4" in r.stdout
    assert "train/s3" in FrameStore.open(url).tags()            # the run's tag is written into the store
    res = json.loads(run_cli("evaluate", url, out / "s3" / "last.pt", "--split", "val", "--json").stdout)
    assert res["frames"] == 4 and 0 <= res["segm"]["miou"] <= 1


def one_error_line(r, *words) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


INGEST = ("ingest", "synthetic", "--frames", "2", "--size", "64x64", "--workers", "1")


def test_a_bucket_that_does_not_exist(s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://no-such-bucket-here/x"
    one_error_line(run_cli(*INGEST[:2], url, *INGEST[2:], ok=False), url, "no such bucket")
    one_error_line(run_cli("show", url, ok=False), url, "no such bucket")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_endpoint(s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s3_env.free_port()}")     # nothing listens there
    url = "s3://some-bucket/x"
    one_error_line(run_cli(*INGEST[:2], url, *INGEST[2:], ok=False), url, "cannot reach the object store")
    one_error_line(run_cli("log", url, ok=False), url, "cannot reach")
    assert list(tmp_path.iterdir()) == []


def test_missing_credentials_write_nothing_and_reads_are_anonymous(bucket, s3_env, monkeypatch):
    url = f"s3://{bucket}/a"
    s = FrameStore.create(url, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(s, random_frames(4, seed=1))
    before = sorted(s3_env.list_keys(bucket))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    new = f"s3://{bucket}/b"
    one_error_line(run_cli(*INGEST[:2], new, *INGEST[2:], ok=False), new, "no credentials")
    one_error_line(run_cli("show", url, ok=False), url, "anonymous")      # this bucket allows no public reads
    s3_env.allow_public_reads(bucket)
    assert show(url)["frames"] == 4                                     # now it does
    one_error_line(run_cli("tag", url, "v1", ok=False), url, "no credentials")
    one_error_line(run_cli("reset", url, "main", "--yes", ok=False), url, "no credentials")
    assert sorted(s3_env.list_keys(bucket)) == before                  # nothing written


@pytest.mark.parametrize("url, words", [("s3://bucket-only", "give a bucket and a prefix"),
                                        ("ftp://host/x", "unsupported store URL scheme")])
def test_malformed_urls_are_usage_errors(url, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli("show", url, ok=False)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_four_processes_committing_at_once_lose_nothing(bucket, s3_env):
    url = f"s3://{bucket}/c"
    s = FrameStore.create(url, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(s, random_frames(4, seed=1))
    n = 5
    procs = [subprocess.Popen([sys.executable, WORKER, "pseudo-many", url, str(seed), str(n)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
             for seed in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    s = FrameStore.open(url)
    assert s.pseudo_sets() == sorted(f"p{seed}_{i}" for seed in range(4) for i in range(n))
    for seed in range(4):
        for i in range(n):
            assert (s.root[f"pseudo/p{seed}_{i}/segm"][:] == i % 5).all()
    assert len(s.log()) == 2 + 1 + 4 * n                          # initial, layout, ingest, every commit


def test_two_ingests_at_once_lose_nothing(bucket, s3_env):
    """No append lock in object storage: the ingest that commits second replays its frames onto the new
    head; both commit everything, no frame is stored twice or overwritten."""
    url = f"s3://{bucket}/d"
    FrameStore.create(url, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    procs = [subprocess.Popen([sys.executable, WORKER, "ingest-many", url, str(seed), "3"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
             for seed in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    s = FrameStore.open(url)
    frames = {f.name: f for seed in (1, 2) for i in range(3) for f in random_frames(2, seed=seed * 1000 + i)}
    names = s.root["frames/name"][:].tolist()
    assert sorted(names) == sorted(frames) and len(s.log()) == 2 + 6
    rgb = s.root["frames/rgb"][:]
    for i, name in enumerate(names):
        np.testing.assert_array_equal(rgb[i], frames[name].rgb)


def test_an_ingest_that_lost_the_race_replays_onto_the_new_head(bucket):
    """Frames and annotations of the second writer are added again on top of the first one's commit:
    its frames the first one also added become duplicates, its annotations of stored frames stay."""
    s = FrameStore.create(f"s3://{bucket}/r", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    base = list(random_frames(5, seed=9, segm_every=2))            # frames 1 and 3 without segm
    ingest(s, base)
    fa, fb = list(random_frames(11, seed=1)), list(random_frames(3, seed=2))
    seg = np.ones((H, W), np.uint8)
    later = [replace(base[i], segm=seg, name=f"again{i}") for i in (1, 3)]
    a, b = s.append("a", {"kind": "ingest"}).__enter__(), s.append("b", {"kind": "ingest"}).__enter__()
    for f in fa:
        a.add(f)
    for f in fb + later + fa[:2]:
        b.add(f)
    a.__exit__(None, None, None)                                   # a commits first
    b.__exit__(None, None, None)
    assert (b.added, b.duplicates, b.start, b.n) == (3, 4, 16, 19)
    assert b.annotated["segm"] == ["s9/f0001", "s9/f0003"]
    t = FrameStore.open(s.path)
    names, rgb = t.root["frames/name"][:].tolist(), t.root["frames/rgb"][:]
    assert names == [f.name for f in base + fa + fb]
    np.testing.assert_array_equal(rgb, np.stack([f.rgb for f in base + fa + fb]))
    assert t.root["real/has_segm"][:5].all() and (t.root["real/segm"][[1, 3]] == 1).all()
    assert t.log()[0]["metadata"]["range"] == [16, 19]
