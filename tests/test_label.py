"""The labeling job in-process on a shared LocalCluster: labels equal the teachers' own predictions,
done flags, provenance and tag, idempotent re-runs, refusals, failing shards, store growth, CLI."""
from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import ingest, random_frames
from test_label_teachers import reference

from pipeline.cli import cli
from pipeline.label.job import LabelConfig, run_label
from stores.dataset import FrameDataset, check_pseudo_compatible
from stores.errors import UserError
from stores.merge import MergePolicy
from stores.sources.base import Frame
from teachers.base import load_teacher

pytest_plugins = ("test_label_teachers",)          # shared fixtures: cluster, fail_file, slow_file

SEGM, DEPTH = "test_label_teachers:tiny_segm", "test_label_teachers:tiny_depth"


def cfg(store, address, **kw):
    base = dict(store=str(store.path), name="v1", teachers=(("depth", DEPTH), ("segm", SEGM)),
                scheduler=address, batch_size=4, commit_every=2, retries=0)
    return LabelConfig(**{**base, **kw})


def label_commits(store):
    return [e for e in store.reopen().log() if e["metadata"].get("kind") == "label" and "shards" in e["metadata"]]


def check_labels(store, name, frames_mode="missing", flip=False):
    """Every frame's pseudo arrays equal the teacher's direct prediction, or 'none' where not chosen."""
    store = store.reopen()
    g = store.root[f"pseudo/{name}"]
    n = store.num_frames
    for task, has in (("segm", "real/has_segm"), ("depth", "real/has_depth")):
        want = np.ones(n, bool) if frames_mode == "all" else ~store.root[has][:]
        ref = reference(store, task, SEGM if task == "segm" else DEPTH, np.flatnonzero(want), flip=flip)
        if task == "segm":
            np.testing.assert_array_equal(g["segm"][:][want], ref["segm"])
            np.testing.assert_array_equal(g["conf"][:][want], ref["conf"])
            assert (g["segm"][:][~want] == 255).all() and (g["conf"][:][~want] == 0).all()
        else:
            np.testing.assert_array_equal(g["depth"][:][want], ref["depth"].astype(np.float16))
            assert (g["depth"][:][~want] == 0).all()
    assert g["done"][:].all()


def test_missing_frames_labels_provenance_and_tag(store, cluster):
    r = run_label(cfg(store, cluster))
    assert (r.shards_total, r.shards_done, r.frames_labeled, r.missing) == (3, 3, 20, {})
    assert r.labeled == {"segm": 10, "depth": 13}                    # frames without that real target
    check_labels(store, "v1")
    s = store.reopen()
    assert r.commits == 3 and r.snapshot == s.snapshot_id            # create + ceil(3 shards / 2)
    assert s.tags()["label/v1"] == s.snapshot_id and r.tag == "label/v1"
    commits = label_commits(s)
    assert sorted(k for c in commits for a, b in c["metadata"]["shards"] for k in range(a, b + 1)) == [0, 1, 2]
    md = commits[0]["metadata"]
    assert md["input_snapshot"] == store.snapshot_id and md["code_version"] and md["command"]
    assert {t: md["teachers"][t]["version"] for t in ("segm", "depth")} == {
        "segm": load_teacher(SEGM, "segm").version, "depth": load_teacher(DEPTH, "depth").version}
    attrs = dict(s.root["pseudo/v1"].attrs)
    assert attrs["tasks"] == ["depth", "segm"] and attrs["depth_unit"] == "m" and attrs["teachers"]["segm"]["name"]
    check_pseudo_compatible(s, "v1")


def test_all_frames_with_flip_and_depth_conf(store, cluster):
    run_label(cfg(store, cluster, name="f", frames="all", flip=True))
    check_labels(store, "f", "all", flip=True)
    s = store.reopen()
    dc = s.root["pseudo/f/depth_conf"][:]
    assert dc.dtype == np.uint8 and dc.shape == (20, *s.frame_size) and dc.max() > 0
    item = FrameDataset(s.path, s.snapshot_id, [1], MergePolicy(pseudo="f", segm_threshold=0))[0]
    assert (item["segm_src"] > 0).all()                  # real or pseudo everywhere


def test_rerun_does_nothing_other_teacher_refused_overwrite(store, cluster, tmp_path):
    run_label(cfg(store, cluster))
    before = store.reopen().log()
    r = run_label(cfg(store, cluster))
    assert r.nothing_to_do and r.commits == 0 and store.reopen().log() == before
    session = store.writable_session()                                  # someone else commits after us
    zarr.open_group(session.store, mode="a").attrs["note"] = "x"
    store.commit(session, "other work", {"kind": "test"})
    r = run_label(cfg(store, cluster))
    assert r.nothing_to_do and r.tag == "label/v1" and sorted(store.reopen().tags()) == ["label/v1"]
    other = cfg(store, cluster, teachers=(("segm", SEGM),))            # same name, other teacher set
    with pytest.raises(UserError, match="Use another --name, or --overwrite"):
        run_label(other)
    with pytest.raises(UserError, match="Use another --name"):
        run_label(cfg(store, cluster, flip=True))
    r = run_label(LabelConfig(**{**other.__dict__, "overwrite": True}))
    assert r.shards_done == 3 and r.tag == "label/v1/2"
    g = store.reopen().root["pseudo/v1"]
    assert (g["depth"][:] == 0).all() and list(g.attrs["tasks"]) == ["segm"]


def test_failing_shard_is_reported_and_rerun_completes_it(empty_store, cluster, fail_file):
    frames = list(random_frames(20, seed=3))
    frames[10] = Frame(rgb=np.zeros_like(frames[10].rgb), split="train", name="black")   # shard 1
    ingest(empty_store, frames)
    fail_file.touch()
    try:
        res = CliRunner().invoke(cli, ["label", str(empty_store.path), "--teacher",
                                       "segm=test_label_teachers:fragile_segm", "--name", "fr", "--frames", "all",
                                       "--scheduler", cluster, "--retries", "1", "--commit-every", "1"])
    finally:
        fail_file.unlink()
    assert res.exit_code == 1, res.output
    assert "MISSING 1 of 3 shards" in res.output and "shard 1: RuntimeError: bad frame" in res.output
    s = empty_store.reopen()
    assert s.root["pseudo/fr/done"][:].tolist() == [True, False, True] and "label/fr" not in s.tags()
    r = run_label(cfg(empty_store, cluster, name="fr", frames="all",
                      teachers=(("segm", "test_label_teachers:fragile_segm"),)))
    assert r.shards_done == 1 and r.frames_labeled == 8 and not r.missing and r.tag == "label/fr"
    g = empty_store.reopen().root["pseudo/fr"]
    np.testing.assert_array_equal(g["segm"][:], reference(empty_store.reopen(), "segm", SEGM, range(20))["segm"])


def test_store_growth_labels_only_new_shards(store, cluster):
    run_label(cfg(store, cluster))
    ingest(store.reopen(), random_frames(6, seed=9, segm_every=2))          # 20 -> 26 frames
    r = run_label(cfg(store, cluster))
    assert r.shards_total == 4 and r.shards_done == 2 and r.frames_labeled == 8 + 2   # old last + new
    check_labels(store, "v1")
    assert r.tag == "label/v1/2"


def test_cli_usage_errors(store, cluster):
    run = CliRunner().invoke
    res = run(cli, ["label", str(store.path), "--teacher", "seg=x.pt", "--name", "a"])
    assert res.exit_code == 1 and "expected segm=PATH or depth=PATH" in res.output
    res = run(cli, ["label", str(store.path), "--teacher", f"segm={SEGM}", "--name", "a/b"])
    assert res.exit_code == 1 and "--name 'a/b'" in res.output
    res = run(cli, ["label", str(store.path), "--teacher", f"segm={SEGM}", "--name", "a", "--scheduler",
                    cluster, "--workers", "2"])
    assert res.exit_code == 1 and "not with --scheduler" in res.output
    res = run(cli, ["label", str(store.path), "--teacher", f"depth={SEGM}", "--name", "a", "--ref", "nope"])
    assert res.exit_code == 1 and "nope" in res.output
    assert "Examples:" in run(cli, ["label", "--help"]).output
    res = run(cli, ["label", str(store.path), "--teacher", f"segm={SEGM}", "--name", "ok", "--scheduler",
                    cluster, "--json"])
    assert res.exit_code == 0, res.output
    assert '"shards_done": 3' in res.output


def test_remap_applied_and_recorded(store, cluster, tmp_path):
    remap = tmp_path / "remap.json"
    remap.write_text('{"teacher_classes": ["a", "b", "c", "d", "e"], "map": {"a": "c1", "b": "c1", "c": "c2", '
                     '"d": null, "e": "c4"}}')
    r = run_label(cfg(store, cluster, name="rm", frames="all", teachers=(("segm", SEGM),), remap=str(remap)))
    assert not r.missing
    s = store.reopen()
    want = load_teacher(SEGM, "segm", remap=str(remap), store_classes=s.classes, batch_size=4).predict(
        s.root["frames/rgb"][:])
    np.testing.assert_array_equal(s.root["pseudo/rm/segm"][:], want["segm"])
    np.testing.assert_array_equal(s.root["pseudo/rm/conf"][:], want["conf"])
    assert set(np.unique(want["segm"])) <= {1, 2, 4, 255}
    md = label_commits(s)[0]["metadata"]
    assert md["remap"] == str(remap) and md["teachers"]["segm"]["remap"]["table"] == [1, 1, 2, 255, 4]


@pytest.mark.parametrize("task", ["segm", "depth"])
def test_shard_writes_only_its_teachers_arrays(store, task):
    """A one-task job's shard holds that task's arrays only: the other task's keep their fill value from
    creation, so the worker does not write a shard of fill values for them."""
    from pipeline.label.task import ShardJob, TeacherSpec, shard_labels

    spec = SEGM if task == "segm" else DEPTH
    t = TeacherSpec(task, spec, load_teacher(spec, task).version, batch_size=4)
    classes = tuple(c["name"] for c in store.classes)
    job = ShardJob(str(store.path), store.snapshot_id, "one", 0, 0, 8, "all", (t,), classes)
    timing = {"wait_s": 0.0, "infer_s": 0.0}
    out = shard_labels(job, store.root["frames/rgb"][:8], {task: np.ones(8, bool)}, timing)
    assert set(out) == ({"segm", "conf"} if task == "segm" else {"depth"}) and timing["infer_s"] > 0
    ref = reference(store, task, spec, range(8))
    np.testing.assert_array_equal(out[task], ref[task] if task == "segm" else ref[task].astype(np.float16))
