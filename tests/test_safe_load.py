"""Issue 15 item 10 / issue 9: every torch-file loader goes through stores.files.read_weights; a refused
pickle is one line naming the file and the refused global, never torch's advice to load unsafely."""
from __future__ import annotations

import os

import pytest
import torch

from pipeline.checkpoint import build_model, load_checkpoint
from pipeline.checkpoint import read_student
from stores.errors import UserError
from stores.files import read_weights
from teachers.base import load_teacher
from conftest import run_cli


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture
def evil(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"arch": {"name": "student", "num_classes": 5}, "model": {"x": Evil(tmp_path / "pwned")}}, path)
    return path


def _loaders(path):
    yield lambda: read_weights(path)
    yield lambda: load_checkpoint(path)
    yield lambda: read_student(path)
    yield lambda: load_teacher(path, "segm")
    yield lambda: build_model({"name": "student", "num_classes": 5}, encoder_weights=path)
    yield lambda: load_teacher("teachers.resnet38:ResNet38", "segm", weights=path)


def test_every_loader_names_the_refused_global(evil, tmp_path):
    for load in _loaders(evil):
        with pytest.raises(UserError) as e:
            load()
        msg = str(e.value)
        assert msg.startswith(f"{evil}: refused to load") and "os.makedirs" in msg, msg
        assert "weights_only" not in msg and "\n" not in msg, msg
    assert not (tmp_path / "pwned").exists()


def test_cli_refuses_the_pickle_in_one_line(evil, store, tmp_path):
    from PIL import Image
    Image.new("RGB", (64, 48)).save(tmp_path / "x.png")
    cases = [
        ["train", store.path, "--run", "r", "--out", tmp_path / "runs", "--encoder-weights", evil, "--steps", 1],
        ["evaluate", store.path, evil],
        ["predict", evil, tmp_path / "x.png", "--out", tmp_path / "pred"],
        ["export", evil, "--onnx", tmp_path / "x.onnx"],
        ["bench", evil, "--size", "64x64", "--iters", 1],
    ]
    for args in cases:
        r = run_cli(*args, ok=False)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 1 and len(lines) == 1, (args, r.output)
        assert lines[0].startswith(f"error: {evil}: refused to load") and "os.makedirs" in lines[0]
        assert "weights_only=False" not in r.output
    assert not (tmp_path / "runs" / "r").exists() and "train/r" not in store.reopen().tags()
    assert not (tmp_path / "pwned").exists()
