"""Issue 10 item 7 / issue 15 item 8: every command, driven with bad values for every option and argument
(empty, negative, zero, huge, NaN, wrong types, missing and unreadable files, a file where a folder is
expected), exits non-zero with exactly one `error:` / usage line and never a traceback. The other
arguments are real (a tiny store, a trained checkpoint, an image), so a bad value that gets past parsing
reaches the command's own code."""
from __future__ import annotations

import math
import re
import resource

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CLASSES, H, W, random_frames
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from pipeline.cli import cli
from pipeline.cli.util import NameType
from pipeline.train.config import TrainConfig
from pipeline.train.loop import train
from stores.repo import FrameStore

BAD_TEXT = ["", " ", "-1", "-0.5", "1e20", "99999999999999999999", "nan", "inf", "-inf", "abc", "100000x100000",
            "0x0", "8x", "x", "640x480x3", "cuda:99", "tpu", "a=b", "é", "--", "1,2,x", "-1,0.5", "0,0,0,0"]
ZERO_OK = {"steps", "ckpt_every", "torch_threads", "retries", "seed", "style", "workers", "depth_threshold",
           "color_tolerance", "weight_decay"}       # 0 is a sensible value of these
# options each command needs, given real values unless they are the one under test
REQUIRED = {"teacher": "segm={garbage}", "name": "n", "onnx": "{tmp}/out.onnx", "out": "{tmp}/out",
            "task": "segm", "arch": "resnet38", "pseudo": "p"}
HEAVY = {("export",), ("bench",), ("demo",)}       # their work is long: they get a garbage checkpoint
# training commands run one small step when the value under test is accepted after all
SHORT = {"steps": "1", "batch_size": "2", "workers": "0", "val_split": ""}
SHORT_FOR = {("train",), ("teacher", "train")}


def commands(group=cli, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = dict(commands())
CASES = [(path, p.name) for path, cmd in COMMANDS.items() for p in cmd.params
         if not (isinstance(p, click.Option) and (p.is_flag or p.name == "help"))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    store = FrameStore.create(tmp / "s.ice", name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    with store.append("test", {"kind": "ingest"}) as w:
        for f in [*random_frames(4, seed=1), *random_frames(2, seed=2, split="val"),
                  *random_frames(2, seed=3, split="test")]:
            w.add(f)
    ckpt = train(TrainConfig(store=str(store.path), out=str(tmp / "runs"), run="r", steps=1, batch_size=2,
                             workers=0, val_split=None))["checkpoint"]
    (tmp / "folder").mkdir()
    (tmp / "folder" / "not-a-store.txt").write_text("x")        # a non-empty folder that is no store
    (tmp / "garbage.pt").write_bytes(b"\x80\x02garbage")
    (tmp / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp / "image.png")
    return {"tmp": str(tmp), "store": str(store.path), "ckpt": ckpt, "image": str(tmp / "image.png"),
            "folder": str(tmp / "folder"), "garbage": str(tmp / "garbage.pt"),
            "missing": str(tmp / "missing" / "x"), "empty_png": str(tmp / "empty.png")}


def base_value(path, param: click.Parameter, f: dict) -> str | None:
    """A real value for `param` (None: leave it out, the option keeps its default)."""
    if param.name in REQUIRED:
        return REQUIRED[param.name].format(**f)
    if path in SHORT_FOR and param.name in SHORT:
        return SHORT[param.name]
    if not isinstance(param, click.Argument):
        return None
    if param.name == "store":
        return f["store"]
    if param.name == "path":
        return f["folder"]                   # an image folder without images
    if param.name == "checkpoint":
        return f["garbage"] if path in HEAVY else f["ckpt"]
    if param.name == "images":
        return f["image"]
    return "main" if param.name in ("from_ref", "to_ref", "ref") else "bad name!"


def _valid_somewhere(text: str) -> bool:
    """Texts some option takes as a good value: numbers, names, devices (filtered from random text)."""
    t = text.strip().lower()
    try:
        return math.isfinite(float(t))
    except ValueError:
        pass
    return t in ("auto", "cpu", "cuda") or re.fullmatch(r"[\w.@/,=:-]*", text) is not None


def bad_values(path, param: click.Parameter, f: dict):
    t = param.type
    if isinstance(param, click.Argument) and param.name == "store":
        return st.sampled_from(["", f["garbage"], f["folder"]] + ([] if path[0] == "ingest" else [f["missing"]]))
    if isinstance(t, click.Path) and not t.exists:            # outputs
        return st.sampled_from(["", f["garbage"] if not t.file_okay else f["folder"]])
    if isinstance(t, click.Path) or param.name in ("checkpoint", "images", "path", "calibrate"):
        return st.sampled_from([f["missing"], f["garbage"], f["folder"], f["empty_png"], ""])
    texts = [v for v in BAD_TEXT if not (v in ("0", "-0.5") and param.name in ZERO_OK)
             and not (v in ("", " ") and param.name == "val_split")]      # '' = no validation split
    values = st.one_of(st.sampled_from(texts), st.text(max_size=10).filter(
        lambda s: not _valid_somewhere(s) and not (param.name == "val_split" and not s.strip())))
    if isinstance(param, click.Argument):       # '--' ends the options: it is syntax, not a value
        values = values.filter(lambda s: s != "--")
    if isinstance(t, NameType):                 # any well-formed name is a good run / set name
        values = values.filter(lambda s: not _accepted(t, s))
    return values


def _accepted(t: click.ParamType, text: str) -> bool:
    try:
        t.convert(text, None, None)
        return True
    except click.BadParameter:
        return False


def invoke(path, cmd, under_test, value, f):
    args = list(path)
    for p in cmd.params:
        if isinstance(p, click.Option) and (p.is_flag or p.name == "help"):
            continue
        v = value if p.name == under_test else base_value(path, p, f)
        if v is None:
            continue
        vals = list(v) if isinstance(v, tuple) else [v] * max(1, p.nargs)
        args += vals if isinstance(p, click.Argument) else [p.opts[-1], *vals]
    return CliRunner().invoke(cli, args)


def check(r, label):
    assert r.exit_code in (1, 2), f"{label}: exit {r.exit_code}\n{r.output}"
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{label}: {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output, f"{label}\n{r.output}"
    errors = [ln for ln in r.output.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1, f"{label}: {len(errors)} error lines\n{r.output}"


@pytest.fixture
def memory_cap():
    """A bad value must fail, not allocate without bound: cap this process's address space at 12 GB."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = 12 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_command_refuses_bad_values_in_one_line(files, memory_cap, data):
    path, name = data.draw(st.sampled_from(CASES), label="case")
    cmd = COMMANDS[path]
    param = next(p for p in cmd.params if p.name == name)
    value = data.draw(bad_values(path, param, files), label="value")
    if param.nargs == 2:
        value = (value, data.draw(bad_values(path, param, files), label="second"))
    check(invoke(path, cmd, name, value, files), f"{' '.join(path)} {name}={value!r}")


@pytest.mark.parametrize("args", [
    ["ingest", "synthetic", "{folder}", "--frames", "1e20"],
    ["ingest", "synthetic", "{tmp}/s2.ice", "--frames", "100000000000"],
    ["ingest", "synthetic", "{tmp}/s2.ice", "--size", "100000x100000"],
    ["ingest", "synthetic", "", "--frames", "2"],
    ["train", "{store}", "--device", "tpu"], ["evaluate", "{store}", "{ckpt}", "--device", "tpu"],
    ["predict", "{ckpt}", "{image}", "--out", "{tmp}/p", "--device", "tpu"],
    ["train", "{store}", "--crop", "100000x100000"], ["train", "{store}", "--scale", "nan", "1"],
    ["train", "{store}", "--lr-decoder", "-1"], ["train", "{store}", "--weight-decay", "-1"],
    ["train", "{store}", "--lr-encoder", "nan"], ["train", "{store}", "--segm-weight", "-1"],
    ["evaluate", "{store}", "{ckpt}", "--depth-cap", "-1"], ["bench", "--size", "100000x100000"],
    ["bench", "--batch", "100000"], ["bench", "--batch", "1024", "--size", "4096x4096"],
    ["export", "{ckpt}", "--onnx", "{tmp}/x.onnx", "--opset", "1000"],
    ["train", "{store}", "--batch-size", "1000000"], ["train", "{store}", "--seed", "-1"],
    ["train", "{store}", "--run", "../escape"], ["train", "{store}", "--out", ""],
    ["predict", "{ckpt}", "{image}", "--out", "{tmp}/p", "--depth-range", "5", "1"],
])
def test_named_cases_are_usage_errors(files, args):
    r = CliRunner().invoke(cli, [a.format(**files) for a in args])
    check(r, " ".join(args))
    assert r.exit_code == 2 and "Invalid value" in r.output, r.output
