"""Ontology remapping: LUT on ids, probability sums, bundled Cityscapes-19 -> KITTI-6, bad files."""
import json

import numpy as np
import pytest
import torch

from stores.classes import KITTI6, KITTI6_NAMES
from stores.errors import UserError
from teachers.remap import CITYSCAPES19, bundled_remap, load_remap, parse_remap

TEACHER = ["a", "b", "c", "d"]
STORE = ["X", "Y"]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_lut_many_to_one_and_unmapped(tmp_path):
    p = write(tmp_path, "r.json", json.dumps({"map": {"a": "X", "b": "Y", "2": 1}}))  # c by id
    r = load_remap(p, teacher_classes=TEACHER, store_classes=STORE)
    assert r.table == (0, 1, 1, 255)
    lut = r.lut
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert list(lut[:4]) == [0, 1, 1, 255] and (lut[4:] == 255).all()
    ids = np.array([[0, 1, 2], [3, 255, 7]], np.uint8)
    assert r.apply_ids(ids).tolist() == [[0, 1, 1], [255, 255, 255]]


def test_probabilities_are_summed_per_store_class():
    r = parse_remap({"map": {"a": "X", "b": "Y", "c": "Y"}}, TEACHER, STORE)
    probs = torch.tensor([0.4, 0.35, 0.25, 0.0]).view(1, 4, 1, 1).expand(2, 4, 3, 5)
    out = r.apply_probs(probs)
    assert out.shape == (2, 2, 3, 5)
    assert torch.allclose(out[:, 0], torch.tensor(0.4)) and torch.allclose(out[:, 1], torch.tensor(0.6))
    # argmax after summing (Y) differs from the LUT on the teacher argmax (a -> X): that is the point
    assert r.apply_ids(np.array([probs[0, :, 0, 0].argmax().item()], np.uint8))[0] == 0
    assert out[0, :, 0, 0].argmax() == 1
    with pytest.raises(ValueError, match="4 teacher classes"):
        r.apply_probs(torch.rand(1, 5, 2, 2))


def test_probabilities_match_the_class_matrix_and_identity_is_free():
    r = parse_remap({"map": {"a": "X", "b": "Y", "c": "Y"}}, TEACHER, STORE)
    probs = torch.rand(3, 4, 5, 7).softmax(1)
    want = torch.einsum("st,bthw->bshw", r.matrix(), probs)          # the definition: matrix per pixel
    torch.testing.assert_close(r.apply_probs(probs), want)
    same = parse_remap({"map": {"X": "X", "Y": "Y"}}, STORE, STORE)     # same classes, same order
    p2 = torch.rand(2, 2, 3, 3)
    assert same.table == (0, 1) and same.apply_probs(p2) is p2


def test_bundled_cityscapes_to_kitti6():
    path = bundled_remap("cityscapes19_to_kitti6")
    r = load_remap(path, teacher_classes=CITYSCAPES19, store_classes=KITTI6)
    cs = {n: i for i, n in enumerate(CITYSCAPES19)}
    k6 = {n: i for i, n in enumerate(KITTI6_NAMES)}
    assert len(CITYSCAPES19) == 19 and len(r.table) == 19
    assert r.table[cs["road"]] == k6["road"] and r.table[cs["sky"]] == k6["sky"]
    assert r.table[cs["wall"]] == r.table[cs["building"]] == k6["building"]
    assert r.table[cs["truck"]] == r.table[cs["bus"]] == r.table[cs["car"]] == k6["car"]
    assert r.table[cs["person"]] == r.table[cs["pole"]] == 255
    r.check_store_classes(KITTI6)
    with pytest.raises(UserError, match="store has"):
        r.check_store_classes(list(reversed(KITTI6_NAMES)))
    with pytest.raises(KeyError, match="choose one of"):
        bundled_remap("nope")


def test_toml_by_id(tmp_path):
    p = write(tmp_path, "r.toml", 'store_classes = ["X", "Y"]\n[map]\n"0" = 1\n"3" = "X"\n')
    r = load_remap(p)
    assert r.table == (1, 255, 255, 0) and r.num_store == 2


@pytest.mark.parametrize("name, text, problem", [
    ("bad.json", '{"map": {"a": "X",}}', "syntax error"),
    ("bad.toml", "[map\n", "syntax error"),
    ("r.json", '{"map": {"zebra": "X"}}', "unknown teacher class 'zebra'"),
    ("r.json", '{"map": {"a": "Z"}}', "unknown store class 'Z'"),
    ("r.json", '{"map": {"7": 0}}', "teacher class id 7 out of range 0..3"),
    ("r.json", '{"map": {"a": 2}}', "store class id 2 out of range 0..1"),
    ("r.json", '{"map": {"a": "X", "0": "Y"}}', "mapped twice"),
    ("r.json", '{"mapping": {}}', "'map'"),
    ("r.json", '{"map": {"a": true}}', "must be a name or an id"),
    ("r.json", '{"teacher_classes": ["q"], "map": {}}', "differ from"),
    ("r.yaml", "map: {}", ".json or .toml"),
])
def test_bad_files_name_file_and_problem(tmp_path, name, text, problem):
    p = write(tmp_path, name, text)
    with pytest.raises(UserError) as e:
        load_remap(p, teacher_classes=TEACHER, store_classes=STORE)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_remap(tmp_path / "none.json")


def test_names_need_class_lists():
    with pytest.raises(UserError, match="no teacher_classes are known"):
        parse_remap({"map": {"road": 0}})
