"""Issue 15 items 4 and 9: augmentation does not depend on the torch thread count (a resume with another
--workers reaches the same weights), and a refused or failing train leaves no run folder and no tag."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ingest, random_frames, run_cli

import pipeline.train.loop as loop
from pipeline.checkpoint import load_checkpoint
from pipeline.train.augment import AugmentConfig, augment
from pipeline.train.config import TrainConfig
from stores.repo import FrameStore


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _samples():
    for i in range(30):
        g = np.random.default_rng(i)
        yield ({"rgb": torch.from_numpy(g.integers(0, 256, (3, 96, 128), dtype=np.uint8)),
                "segm": torch.zeros(96, 128, dtype=torch.long), "depth": torch.rand(96, 128)},
               np.random.default_rng([0, i]))


def test_augmentation_is_the_same_at_one_and_two_threads(threads):
    out = {}
    for n in (1, 2):
        threads(n)
        out[n] = [augment(item, AugmentConfig(crop=(64, 64)), rng)["rgb"] for item, rng in _samples()]
        assert torch.get_num_threads() == n          # the one-thread section restores the count
    assert all(torch.equal(a, b) for a, b in zip(out[1], out[2]))


def test_resume_with_other_workers_gives_identical_weights(empty_store, tmp_path, threads):
    threads(2)
    ingest(empty_store, random_frames(16, seed=1, depth_every=2))
    base = dict(store=str(empty_store.path), out=str(tmp_path / "runs"), epochs=2, batch_size=4, seed=3,
                augment=AugmentConfig(scale_min=0.8, scale_max=1.5), val_split=None)
    full = load_checkpoint(loop.train(TrainConfig(**base, run="full", workers=0))["checkpoint"])
    loop.train(TrainConfig(**base, run="cut", workers=2, ckpt_every=3, stop_after=5))
    done = load_checkpoint(loop.train(TrainConfig(**base, run="cut", workers=0, ckpt_every=3),
                                      resume=True)["checkpoint"])
    assert done["step"] == full["step"] == 8
    for k, v in full["model"].items():
        assert torch.equal(done["model"][k], v), k


def test_refused_train_leaves_no_run_folder_and_no_tag(empty_store, tmp_path, monkeypatch):
    ingest(empty_store, random_frames(8, seed=1))
    runs = tmp_path / "runs"
    r = run_cli("train", empty_store.path, "--run", "r", "--out", runs, "--device", "tpu", ok=False)
    assert r.exit_code == 2 and "Invalid value for '--device'" in r.output

    def fails(run, batch):
        raise RuntimeError("CUDA out of memory (simulated)")
    monkeypatch.setattr(loop, "train_step", fails)       # the first step fails: nothing was started
    with pytest.raises(RuntimeError, match="simulated"):
        loop.train(TrainConfig(store=str(empty_store.path), out=str(runs), run="r", workers=0, steps=2,
                               batch_size=2))
    assert not (runs / "r").exists() and "train/r" not in FrameStore.open(empty_store.path).tags()
    monkeypatch.undo()
    run_cli("train", empty_store.path, "--run", "r", "--out", runs, "--steps", 1, "--batch-size", 2,
            "--workers", 0, "--val-split", "")                    # the run name is free again
    assert (runs / "r" / "last.pt").exists() and "train/r" in FrameStore.open(empty_store.path).tags()
