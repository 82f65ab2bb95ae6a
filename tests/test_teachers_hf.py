"""Hugging Face teachers (`hf:NAME_OR_DIR`): tiny models built from their configs here (no download),
saved with save_pretrained, opened as teachers and used to label a store; class matching by name,
relative-depth anchoring, provenance, and refusals that leave the store untouched."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, H, W, ingest, random_frames, run_cli

from stores.depthfit import fit_depth
from stores.errors import UserError
from stores.repo import FrameStore
from teachers.base import load_teacher
from teachers.hf import hf_spec, parse_hf_spec

tf = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest_plugins = ("test_label_teachers",)          # the shared LocalCluster fixture

STORE_NAMES = ["c0", "c1", "c2", "c3", "c4"]       # conftest's CLASSES


def tiny_segformer(folder, labels):
    torch.manual_seed(0)
    cfg = tf.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, num_labels=len(labels), initializer_range=0.3,
                             id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    tf.SegformerForSemanticSegmentation(cfg).save_pretrained(folder)   # init 0.3: varies per pixel
    tf.SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_depth_anything(folder, kind):
    torch.manual_seed(0)
    backbone = tf.Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=16, out_features=["stage1", "stage2"],
                               reshape_hidden_states=False)
    cfg = tf.DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 16],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=kind, max_depth=20)
    model = tf.DepthAnythingForDepthEstimation(cfg)
    with torch.no_grad():                  # random init alone predicts ~1e-7 everywhere: make it vary per pixel
        model.head.conv3.weight.mul_(1e6)
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(folder)
    tf.DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"segm": tiny_segformer(root / "segm", ["C0", "c1", "c2", "c3", "tree", "c4"]),
            "relative": tiny_depth_anything(root / "rel", "relative"),
            "metric": tiny_depth_anything(root / "met", "metric")}


def rgb_of(store, frames):
    return np.stack([store.root["frames/rgb"][int(i)] for i in frames])


def test_spec_round_trip_and_bad_options():
    spec = hf_spec("org/model", {"depth": "relative", "scale": 0.1, "shift": 1 / 3})
    assert parse_hf_spec(spec) == ("org/model", {"depth": "relative", "scale": 0.1, "shift": 1 / 3})
    for bad, why in (("hf:", "give a model"), ("hf:m?depth=far", "depth='far'"), ("hf:m?size=3", "unknown option"),
                     ("hf:m?scale=nan", "not a finite number")):
        with pytest.raises(UserError, match=why):
            parse_hf_spec(bad)


def test_segm_matches_names_and_its_own_forward(models, store, tmp_path):
    with pytest.raises(UserError, match=r"1 of its 6 classes match no store class by name \('tree'\)"):
        load_teacher(f"hf:{models['segm']}", "segm", store_classes=store.classes)
    remap = tmp_path / "r.json"
    remap.write_text(json.dumps({"map": {"tree": "c4"}}))
    t = load_teacher(f"hf:{models['segm']}", "segm", remap=remap, store_classes=store.classes)
    assert t.remap.table == (0, 1, 2, 3, 4, 4)              # by name (any case) + the file
    rgb = rgb_of(store, range(4))
    got = t.predict(rgb)
    # independently: processor + model, logits upsampled to the frame, softmax, tree + c4 summed
    proc = tf.AutoImageProcessor.from_pretrained(models["segm"])
    model = tf.AutoModelForSemanticSegmentation.from_pretrained(models["segm"]).eval()
    with torch.no_grad():
        logits = model(**proc(images=list(rgb), return_tensors="pt")).logits
    p = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).softmax(1)
    p = torch.cat([p[:, :4], p[:, 4:6].sum(1, keepdim=True)], 1)
    assert got["segm"].shape == (4, H, W)
    np.testing.assert_array_equal(got["segm"], p.argmax(1).numpy())
    assert len(np.unique(got["segm"])) > 1
    assert t.provenance()["origin"]["files"]["model.safetensors"] == t.origin["files"]["model.safetensors"]


def test_metric_depth_comes_back_at_frame_size(models, store):
    t = load_teacher(f"hf:{models['metric']}", "depth")
    d = t.predict(rgb_of(store, range(3)))["depth"]
    assert d.shape == (3, H, W) and d.dtype == np.float32 and (d > 0).all()
    assert t.origin["depth"] == "metric" and t.origin["fit"] is None


def test_a_home_relative_folder_is_expanded(models, store, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "depth").symlink_to(models["metric"])
    assert load_teacher("hf:~/depth", "depth").predict(rgb_of(store, [0]))["depth"].shape == (1, H, W)
    with pytest.raises(UserError, match=rf"^hf:~/absent: no such folder \('{re.escape(str(tmp_path))}/absent'"):
        load_teacher("hf:~/absent", "depth")


def test_refusals_name_the_model(models, store, tmp_path):
    for absent in (str(tmp_path / "absent"), "./absent", "models/saved/absent"):     # a path, not a Hub name
        with pytest.raises(UserError, match=rf"^hf:{re.escape(absent)}: no such folder"):
            load_teacher(f"hf:{absent}", "segm")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="weights.bin: is a file, not a model folder"):
        load_teacher(f"hf:{tmp_path / 'weights.bin'}", "segm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot read a Hugging Face model config"):
        load_teacher(f"hf:{tmp_path / 'empty'}", "segm")
    with pytest.raises(UserError, match="segformer is not a depth estimation model, so it gives no depth"):
        load_teacher(f"hf:{models['segm']}", "depth")
    with pytest.raises(UserError, match="relative-depth model gives metres only once anchored"):
        load_teacher(f"hf:{models['relative']}", "depth").predict(rgb_of(store, [0]))
    evil = tmp_path / "evil"
    tiny_segformer(evil, STORE_NAMES)
    (evil / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1), "f": os.system}, evil / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"pytorch_model.bin: refused to load.*posix.system"):
        load_teacher(f"hf:{evil}", "segm", store_classes=store.classes)


def raw_depth(spec, rgb):
    """The relative model's own inverse depth (no fit) for uint8 frames (B, H, W, 3)."""
    raw = load_teacher(spec, "depth")
    raw.model.raw = True
    return raw.predict(rgb)["depth"]


def store_wide_fit(store, spec):
    """The store-wide fit, independently: raw relative depth of every frame with real depth, one inverse fit."""
    have = np.flatnonzero(store.root["real/has_depth"][:])
    pred = raw_depth(spec, rgb_of(store, have))
    return fit_depth(pred.reshape(-1, W), store.root["real/depth"][:][have].reshape(-1, W), "inverse"), len(have)


def test_label_anchors_relative_depth_and_records_it(models, store, cluster):
    from pipeline.label.job import LabelConfig, run_label

    spec = f"hf:{models['relative']}"
    r = run_label(LabelConfig(store=str(store.path), name="hf", teachers=(("depth", spec),),
                              scheduler=cluster, batch_size=4, retries=0))
    s = store.reopen()
    missing = np.flatnonzero(~s.root["real/has_depth"][:])
    assert r.missing == {} and r.labeled == {"depth": len(missing)}
    fit, frames = store_wide_fit(s, spec)
    want = fit.apply(raw_depth(spec, rgb_of(s, missing)))
    np.testing.assert_allclose(s.root["pseudo/hf/depth"][:][missing].astype(np.float32), want.astype(np.float16),
                               rtol=3e-3)             # near the fit's pole (1000s of m) batching moves a float16 ulp
    origin = s.root["pseudo/hf"].attrs["teachers"]["depth"]["origin"]
    assert origin["depth"] == "relative" and origin["fit"]["frames"] == frames
    assert origin["fit"]["scale"] == pytest.approx(fit.scale) and "model.safetensors" in origin["files"]
    label_md = [e["metadata"] for e in s.log() if e["metadata"].get("kind") == "label"]
    assert label_md[0]["teachers"]["depth"]["origin"]["fit"]["points"] == fit.points
    assert np.isnan(s.root["pseudo/hf/depth_fit"][:]).all()       # --frames missing: no frame had its own fit


def test_each_frame_with_real_depth_gets_its_own_fit(models, empty_store, cluster):
    """Frames whose true inverse depth is the model's up to a scale that differs per frame: a frame with
    sparse real depth recovers its own scale (the store-wide fit cannot); one without gets the store-wide fit."""
    from pipeline.label.job import LabelConfig, run_label

    spec = f"hf:{models['relative']}"
    frames = list(random_frames(12, seed=2))
    pred = raw_depth(spec, np.stack([f.rgb for f in frames]))                  # (12, H, W) relative
    scales = np.geomspace(0.005, 0.1, 12)
    true = 1 / (scales[:, None, None] * pred + 0.05)                           # metres, per-frame scale
    sparse = np.random.default_rng(3).random(true.shape) < 0.2
    with_depth = np.arange(12) % 3 != 2
    ingest(empty_store, (dataclasses.replace(f, depth=np.where(sparse[i], true[i], 0).astype(np.float32)
                                             if with_depth[i] else None) for i, f in enumerate(frames)))
    r = run_label(LabelConfig(store=str(empty_store.path), name="anchored", teachers=(("depth", spec),),
                              scheduler=cluster, batch_size=4, frames="all", retries=0))
    assert r.missing == {} and r.labeled == {"depth": 12}
    s = empty_store.reopen()
    got = s.root["pseudo/anchored/depth"][:].astype(np.float32)
    fit, _ = store_wide_fit(s, spec)
    err_own = np.median(np.abs(got - true) / true, axis=(1, 2))
    err_store = np.median(np.abs(fit.apply(pred) - true) / true, axis=(1, 2))
    assert (err_own[with_depth] < 2e-3).all() and (err_store[with_depth] > 0.05).sum() >= 6
    assert (err_own[with_depth] <= err_store[with_depth]).all()
    want = fit.apply(pred[~with_depth]).astype(np.float16).astype(np.float32)
    assert ((got[~with_depth] > 0) == (want > 0)).all()
    inverse = [np.divide(1, d, out=np.zeros_like(d), where=d > 0) for d in (got[~with_depth], want)]
    np.testing.assert_allclose(*inverse, rtol=1e-3, atol=1e-5)       # linear in the prediction: no pole
    rows = s.root["pseudo/anchored/depth_fit"][:]                             # (12, 4) scale, shift, residual, points
    assert np.isnan(rows[~with_depth]).all()
    np.testing.assert_allclose(rows[with_depth, 0], scales[with_depth], rtol=1e-3)
    assert (rows[with_depth, 2] < 1e-4).all() and (rows[with_depth, 3] == sparse[with_depth].sum((1, 2))).all()
    md = next(e["metadata"] for e in s.log() if e["metadata"].get("kind") == "label")
    assert md["teachers"]["depth"]["origin"]["fit"]["scale"] == pytest.approx(fit.scale)
    assert s.root["pseudo/anchored"].attrs["depth_fit"] is True


def test_cli_label_segm_and_bad_model_leave_store_untouched(models, store, tmp_path):
    head = store.snapshot_id
    r = run_cli("label", store.path, "--teacher", f"segm=hf:{models['segm']}", "--name", "x", ok=False)
    assert "error:" in r.output and "'tree'" in r.output and "--remap" in r.output
    r = run_cli("label", store.path, "--teacher", f"depth=hf:{models['segm']}", "--name", "x", ok=False)
    assert "gives no depth" in r.output
    assert store.reopen().snapshot_id == head and store.reopen().pseudo_sets() == []
    bare = FrameStore.create(tmp_path / "bare.ice", name="b", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(bare, (dataclasses.replace(f, depth=None) for f in random_frames(3)))
    r = run_cli("label", bare.path, "--teacher", f"depth=hf:{models['relative']}", "--name", "x", ok=False)
    assert "predicts relative depth" in r.output and "no frame of" in r.output
    assert bare.reopen().pseudo_sets() == []


def test_universal_segmentation_through_semantic_post_processing(tmp_path):
    torch.manual_seed(0)
    swin = tf.SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1] * 4, num_heads=[1] * 4, window_size=4,
                         out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = tf.Mask2FormerConfig(backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=32, dim_feedforward=32, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, num_queries=5, num_labels=3, common_stride=4,
                               id2label={0: "c0", 1: "c1", 2: "c2"}, label2id={"c0": 0, "c1": 1, "c2": 2})
    model = tf.Mask2FormerForUniversalSegmentation(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():          # random queries that disagree about classes
            if "class_predictor" in name or "mask_embedder" in name:
                p.normal_(0, 2)
    model.save_pretrained(tmp_path)
    proc = tf.Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32)
    proc.save_pretrained(tmp_path)
    t = load_teacher(f"hf:{tmp_path}", "segm", store_classes=["c0", "c1", "c2"])
    rgb = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    got = t.predict(rgb)["segm"]
    with torch.no_grad():
        out = model(**proc(images=list(rgb), return_tensors="pt"))
    want = np.stack([s.numpy() for s in proc.post_process_semantic_segmentation(out, target_sizes=[(64, 64)] * 2)])
    assert len(np.unique(want)) > 1
    assert (got == want).mean() > 0.98          # HF resamples masks through 384x384 first; we go straight
