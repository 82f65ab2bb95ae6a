"""Issue 10 item 7 / issue 15 item 8: every command, driven with bad values for every option and argument
(empty, negative, zero, huge, NaN, wrong types, missing and unreadable files, a file where a folder is
expected), exits non-zero with exactly one `error:` / usage line and never a traceback."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.cli import cli

BAD_TEXT = ["", " ", "-1", "0", "-0.5", "1e20", "99999999999999999999", "nan", "inf", "-inf", "abc", "1.5",
            "100000x100000", "0x0", "8x", "x", "640x480x3", "cuda:99", "tpu", "a=b", "../..", "é", "--", "1,2,x"]
# options every run needs, given sane values unless they are the one under test
REQUIRED = {"teacher": "segm={garbage}", "name": "n", "onnx": "{tmp}/out.onnx", "out": "{tmp}/out",
            "task": "segm", "arch": "resnet38", "pseudo": "p"}


def commands(group=cli, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


CASES = [(path, p.name) for path, cmd in commands() for p in cmd.params
         if not (isinstance(p, click.Option) and (p.is_flag or p.name == "help"))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "folder").mkdir()
    (tmp / "folder" / "not-a-store.txt").write_text("x")        # a non-empty folder that is no store
    (tmp / "garbage.pt").write_bytes(b"\x80\x02garbage")
    (tmp / "unreadable").mkdir()
    (tmp / "unreadable" / "x.png").write_bytes(b"")
    return {"tmp": str(tmp), "folder": str(tmp / "folder"), "garbage": str(tmp / "garbage.pt"),
            "missing": str(tmp / "missing" / "x"), "empty_png": str(tmp / "unreadable" / "x.png")}


def base_value(param: click.Parameter, f: dict) -> str | None:
    """A value that gets past parsing but fails early in the command (a non-store folder, a garbage file)."""
    if param.name in REQUIRED:
        return REQUIRED[param.name].format(**f)
    if isinstance(param, click.Argument):
        return f["folder"] if param.name in ("store", "path") else f["garbage"]   # checkpoint, images, refs
    return None                          # options keep their defaults


def bad_values(param: click.Parameter, f: dict, path=()):
    paths = [f["missing"], f["garbage"], f["folder"], f["empty_png"], ""]
    if path[:1] == ("ingest",) and param.name == "store":
        paths.remove(f["missing"])       # a new store is what ingest makes there: not a bad value
    if isinstance(param.type, click.Path) or param.name in ("store", "checkpoint", "images", "path", "calibrate"):
        return st.sampled_from(paths)
    return st.one_of(st.sampled_from(BAD_TEXT), st.text(min_size=0, max_size=12))


def invoke(path, cmd, under_test, value, f):
    args = list(path)
    for p in cmd.params:
        if isinstance(p, click.Option) and (p.is_flag or p.name == "help"):
            continue
        nargs = max(1, p.nargs)
        v = value if p.name == under_test else base_value(p, f)
        if v is None:
            continue
        vals = list(v) if isinstance(v, tuple) else [v] * nargs
        if isinstance(p, click.Argument):
            args += vals
        else:
            args += [p.opts[-1], *vals]
    if cmd.name == "demo" and under_test != "out":
        args += ["--out", f["garbage"]]        # a file where a folder is expected: the demo never starts
    return CliRunner().invoke(cli, args)


def check(r, label):
    assert r.exit_code in (1, 2), f"{label}: exit {r.exit_code}\n{r.output}"
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{label}: {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output, f"{label}\n{r.output}"
    errors = [ln for ln in r.output.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1, f"{label}: {len(errors)} error lines\n{r.output}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_command_refuses_bad_values_in_one_line(files, data):
    path, name = data.draw(st.sampled_from(CASES), label="case")
    cmd = dict(commands())[path]
    param = next(p for p in cmd.params if p.name == name)
    value = data.draw(bad_values(param, files, path), label="value")
    if param.nargs == 2:
        value = (value, data.draw(bad_values(param, files, path), label="second"))
    check(invoke(path, cmd, name, value, files), f"{' '.join(path)} {name}={value!r}")


@pytest.mark.parametrize("args", [
    ["ingest", "synthetic", "{folder}/s.ice", "--frames", "1e20"],
    ["ingest", "synthetic", "{tmp}/s.ice", "--frames", "100000000000"],
    ["ingest", "synthetic", "{tmp}/s.ice", "--size", "100000x100000"],
    ["ingest", "synthetic", "", "--frames", "2"],
    ["train", "{folder}", "--device", "tpu"], ["evaluate", "{folder}", "{garbage}", "--device", "tpu"],
    ["predict", "{garbage}", "{garbage}", "--out", "{tmp}/p", "--device", "tpu"],
    ["train", "{folder}", "--crop", "100000x100000"], ["train", "{folder}", "--scale", "nan", "1"],
    ["train", "{folder}", "--lr-decoder", "-1"], ["train", "{folder}", "--weight-decay", "-1"],
    ["train", "{folder}", "--lr-encoder", "nan"], ["train", "{folder}", "--segm-weight", "-1"],
    ["evaluate", "{folder}", "{garbage}", "--depth-cap", "-1"], ["bench", "--size", "100000x100000"],
    ["bench", "--batch", "100000"], ["bench", "--batch", "1024", "--size", "4096x4096"],
    ["export", "{garbage}", "--onnx", "{tmp}/x.onnx", "--opset", "1000"],
    ["train", "{folder}", "--batch-size", "1000000"], ["train", "{folder}", "--seed", "-1"],
    ["train", "{folder}", "--run", "../escape"], ["predict", "{garbage}", "{garbage}", "--out", "{tmp}/p",
                                                  "--depth-range", "5", "1"],
])
def test_named_cases_are_usage_errors(files, args):
    r = CliRunner().invoke(cli, [a.format(**files) for a in args])
    check(r, " ".join(args))
    assert r.exit_code == 2 and "Invalid value" in r.output, r.output
