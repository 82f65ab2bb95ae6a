"""Teacher files: own checkpoints (weights_only), TorchScript, ONNX, entry points, version hashes, errors."""
import pickle
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from stores.errors import UserError
from teachers.base import Teacher, load_teacher, save_teacher
from teachers.depth import ResNet38Depth, ResNet38DepthConfig
from stores.files import sha256_file
from teachers.external import state_dict_hash
from teachers.resnet38 import ResNet38, ResNet38Config

CFG = ResNet38Config(num_classes=5, width=1 / 16, units=1)
CLASSES = ["a", "b", "c", "d", "e"]


def tiny_segm(seed=0):
    torch.manual_seed(seed)
    return ResNet38(CFG).eval()


def frames(b=2, h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def agree(p, q):
    """segm ids agree almost everywhere (argmax ties may flip under float noise) and conf within 1/255."""
    assert p["segm"].shape == q["segm"].shape
    assert (p["segm"] == q["segm"]).mean() > 0.99
    assert np.abs(p["conf"].astype(int) - q["conf"].astype(int)).max() <= 1


class TensorOut(nn.Module):
    """Exportable wrapper: the dict output -> its one tensor."""

    def __init__(self, model, key):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(x)[self.key]


def test_checkpoint_round_trip_and_version(tmp_path):
    model = tiny_segm()
    path = tmp_path / "teacher.pt"
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    version = save_teacher(path, model, CFG, "segm", norm=norm, classes=CLASSES, name="r38")
    t1, t2 = load_teacher(path, "segm"), load_teacher(str(path), "segm")
    assert t1.version == t2.version == version == sha256_file(path)      # stable across reloads
    assert t1.name == "r38" and t1.classes == CLASSES and t1.norm["mean"] == [0.5, 0.5, 0.5]
    ref = Teacher(model, "segm", norm=norm, classes=CLASSES).predict(frames())
    out = t1.predict(frames())
    assert np.array_equal(out["segm"], ref["segm"]) and np.array_equal(out["conf"], ref["conf"])
    with torch.no_grad():
        model.head.conv2.bias[0] += 1.0                                  # change one weight
    v2 = save_teacher(path, model, CFG, "segm", norm=norm, classes=CLASSES, name="r38")
    assert v2 != version and load_teacher(path, "segm").version == v2


def test_state_dict_hash_stable_and_sensitive():
    a, b = tiny_segm(0), tiny_segm(0)
    assert state_dict_hash(a) == state_dict_hash(b) == Teacher(a, "segm").version
    with torch.no_grad():
        b.trunk.conv1a.weight[0, 0, 0, 0] += 1e-3
    assert state_dict_hash(b) != state_dict_hash(a)


def test_save_teacher_extra_must_load_back(tmp_path):
    model = tiny_segm()
    save_teacher(tmp_path / "ok.pt", model, CFG, "segm", extra={"epoch": 3, "config": {"lr": [0.1, 1e-3]}})
    assert load_teacher(tmp_path / "ok.pt", "segm").name == "ok"
    with pytest.raises(ValueError, match=r"extra\['config'\]: ResNet38Config cannot go"):
        save_teacher(tmp_path / "bad.pt", model, CFG, "segm", extra={"config": CFG})
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path):
    path = tmp_path / "t.pt"
    save_teacher(path, tiny_segm(), CFG, "segm", classes=CLASSES)
    agree(load_teacher(path, "segm", device="cuda").predict(frames()), load_teacher(path, "segm").predict(frames()))


def test_checkpoint_task_mismatch_and_wrong_arch(tmp_path):
    path = tmp_path / "t.pth"
    save_teacher(path, tiny_segm(), CFG, "segm", classes=CLASSES)
    with pytest.raises(UserError, match="is a segm teacher, asked for depth"):
        load_teacher(path, "depth")
    with pytest.raises(UserError, match="differ from the store's"):
        load_teacher(path, "segm", store_classes=["sky", "road"])
    assert load_teacher(path, "segm", store_classes=CLASSES).store_classes == CLASSES
    with pytest.raises(UserError, match="only goes with a module:function"):
        load_teacher(path, "segm", weights=path)
    with pytest.raises(ValueError, match="not depth"):
        save_teacher(tmp_path / "x.pt", tiny_segm(), CFG, "depth")
    bad = tmp_path / "bad.pt"
    torch.save({"arch": {"name": "resnet38", "num_classes": 6, "width": 1 / 16, "units": [1] * 4},
                "model": tiny_segm().state_dict()}, bad)
    with pytest.raises(UserError, match="do not fit"):
        load_teacher(bad, "segm")


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):                      # unpickling would create the marker file
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_refused_without_running(tmp_path):
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Evil(live)))     # the payload is real: plain pickle runs it
    assert live.exists()
    marker = tmp_path / "pwned"
    payload = {"arch": {"name": "resnet38"}, "model": Evil(marker)}
    zip_ckpt = tmp_path / "evil.pt"
    torch.save(payload, zip_ckpt)                                   # torch's zip format
    paths = [zip_ckpt]
    for protocol in (2, pickle.HIGHEST_PROTOCOL):                   # legacy plain pickles
        paths.append(tmp_path / f"evil{protocol}.pth")
        paths[-1].write_bytes(pickle.dumps(payload, protocol=protocol))
    for path in paths:
        with pytest.raises(UserError, match="refused to load") as e:
            load_teacher(path, "segm")
        assert str(path) in str(e.value)
    assert "io.open" in str(pytest.raises(UserError, load_teacher, zip_ckpt, "segm").value)
    with pytest.raises(UserError, match="refused to load"):
        load_teacher("teachers.resnet38:ResNet38", "segm", weights=zip_ckpt)
    assert not marker.exists()


def test_torchscript_round_trip(tmp_path):
    model = tiny_segm()
    eager = Teacher(model, "segm").predict(frames(h=70, w=50))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    for name in ("teacher.ts", "teacher_ts.pt"):               # .pt holding a TorchScript archive too
        path = tmp_path / name
        scripted.save(str(path))
        t = load_teacher(path, "segm", pad_to=8)              # a TorchScript file does not say its stride
        assert isinstance(t.model, torch.jit.ScriptModule) and t.version == sha256_file(path)
        agree(t.predict(frames(h=70, w=50)), eager)


def export_onnx(model, key, path):
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TensorOut(model, key).eval(), (x,), str(path), dynamo=False, input_names=["image"],
                          output_names=[key], dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}})


def test_onnx_round_trip_segm_and_depth(tmp_path):
    model = tiny_segm()
    export_onnx(model, "segm", tmp_path / "s.onnx")
    t = load_teacher(tmp_path / "s.onnx", "segm", pad_to=8)
    assert t.version == sha256_file(tmp_path / "s.onnx")
    agree(t.predict(frames(h=70, w=50)), Teacher(model, "segm").predict(frames(h=70, w=50)))
    torch.manual_seed(1)
    depth = ResNet38Depth(ResNet38DepthConfig(width=1 / 16, units=1)).eval()
    export_onnx(depth, "depth", tmp_path / "d.onnx")
    got = load_teacher(tmp_path / "d.onnx", "depth", pad_to=8).predict(frames())["depth"]
    ref = Teacher(depth, "depth").predict(frames())["depth"]
    assert got.dtype == np.float32 and np.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_entry_point_with_and_without_weights(tmp_path, monkeypatch):
    (tmp_path / "my_teacher_mod.py").write_text(textwrap.dedent("""
        import torch
        from teachers.resnet38 import ResNet38, ResNet38Config

        def build():
            torch.manual_seed(123)
            return ResNet38(ResNet38Config(num_classes=5, width=1 / 16, units=1))

        def not_a_model():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    t = load_teacher("my_teacher_mod:build", "segm")
    assert t.version == state_dict_hash(t.model) and not t.model.training
    trained = tiny_segm(seed=7)
    weights = tmp_path / "w.pth"
    torch.save(trained.state_dict(), weights)
    t2 = load_teacher("my_teacher_mod:build", "segm", weights=weights)
    assert t2.version == sha256_file(weights) != t.version
    assert state_dict_hash(t2.model) == state_dict_hash(trained)
    agree(t2.predict(frames()), Teacher(trained, "segm").predict(frames()))
    with pytest.raises(UserError, match="must return a torch.nn.Module"):
        load_teacher("my_teacher_mod:not_a_model", "segm")
    with pytest.raises(UserError, match="has no attribute 'nope'"):
        load_teacher("my_teacher_mod:nope", "segm")
    with pytest.raises(UserError, match="cannot import module"):
        load_teacher("no_such_module_xyz:build", "segm")


def test_entry_point_exception_is_one_line():
    """The user's function raising (os.system needs an argument) becomes one UserError naming the spec."""
    with pytest.raises(UserError, match=r"^os:system: the teacher function raised TypeError: .*argument") as e:
        load_teacher("os:system", "segm")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^os:sep: 'sep' is not a function$"):
        load_teacher("os:sep", "segm")


@pytest.mark.parametrize("name, content, problem", [
    ("t.xyz", b"hello", "unknown teacher file type"),
    ("t.pt", b"not a zip or pickle", "unreadable teacher file (not a file written by torch.save)"),
    ("t.pth", b"", "unreadable teacher file (empty file)"),
    ("t.onnx", b"garbage", "unreadable ONNX"),
    ("t.ts", b"garbage", "unreadable TorchScript"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        load_teacher(path, "segm")
    assert str(path) in str(e.value) and problem in str(e.value)


def test_missing_and_bad_specs(tmp_path):
    with pytest.raises(UserError, match="no such teacher file"):
        load_teacher(tmp_path / "missing.pt", "segm")
    with pytest.raises(UserError, match="is a directory"):
        load_teacher(tmp_path, "segm")
    with pytest.raises(UserError, match="unknown teacher task 'normals'"):
        load_teacher(tmp_path / "missing.pt", "normals")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a teacher checkpoint"):
        load_teacher(tmp_path / "plain.pt", "segm")


def test_load_with_bundled_remap(tmp_path):
    from stores.classes import KITTI6, KITTI6_NAMES
    from teachers.remap import CITYSCAPES19, bundled_remap

    torch.manual_seed(0)
    cfg = ResNet38Config(num_classes=19, width=1 / 16, units=1)
    save_teacher(tmp_path / "cs.pt", ResNet38(cfg), cfg, "segm", classes=CITYSCAPES19)
    t = load_teacher(tmp_path / "cs.pt", "segm", remap=bundled_remap("cityscapes19_to_kitti6"), store_classes=KITTI6)
    assert t.store_classes == list(KITTI6_NAMES) and t.provenance()["remap"]["table"][0] == 2   # road
    out = t.predict(frames(h=37, w=45))
    assert out["segm"].shape == (2, 37, 45) and set(np.unique(out["segm"])) <= {0, 1, 2, 3, 4, 5, 255}
    with pytest.raises(UserError, match="differ from"):
        load_teacher(tmp_path / "cs.pt", "segm", remap=bundled_remap("cityscapes19_to_kitti6"),
                     store_classes=["sky", "road"])


def test_a_student_training_checkpoint_labels_as_a_teacher_of_both_tasks(tmp_path):
    """A second round: `mtdistill label --teacher segm=runs/b/last.pt --teacher depth=runs/b/last.pt`."""
    from student.model import build_student, normalize

    torch.manual_seed(0)
    student = build_student(3).eval()
    path = tmp_path / "b" / "last.pt"
    path.parent.mkdir()
    classes = [{"id": i, "name": n, "color": [0, 0, 0]} for i, n in enumerate(["a", "b", "c"])]
    torch.save({"arch": {"name": "student", "num_classes": 3}, "model": student.state_dict(), "classes": classes,
                "tasks": ["segm", "depth"], "config": {}, "step": 5}, path)
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    segm = load_teacher(str(path), "segm").predict(x)
    depth = load_teacher(str(path), "depth").predict(x)
    with torch.no_grad():
        out = student(normalize(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())))
    ref = torch.nn.functional.interpolate(out["segm"], size=(64, 64), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(segm["segm"], ref.argmax(1).numpy())
    assert depth["depth"].shape == (2, 64, 64) and load_teacher(str(path), "segm").name == "b"
