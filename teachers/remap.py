"""Ontology remapping: teacher class ids -> store class ids, from a small JSON or TOML file.

Sits between a segmentation teacher and the store: `Teacher.predict` applies it before writing
pseudo/<name>/segm, so pseudo labels always use the store's class list (never a silent mix).

File format (JSON shown; TOML has the same keys, `[map]` as a table):

    {"teacher_classes": ["road", "sidewalk", ...],   optional if the caller supplies them
     "store_classes": ["sky", "building", ...],      optional if the caller supplies them
     "map": {"road": "road", "wall": "building", "13": 5, "pole": null}}

`map` keys are teacher class names or ids (ids as strings: JSON/TOML keys are strings); values are store
class names or ids; many teacher classes may map to one store class; teacher classes left out (or
mapped to null) become 255 (ignore). Applied two ways: a 256-entry uint8 lookup table on argmax ids, and
a sum of probabilities over the teacher classes that map to each store class (so the confidence after
remapping is the probability of the store class, not of one of its parts).
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stores.errors import UserError

IGNORE = 255
REMAPS_DIR = Path(__file__).parent / "remaps"
CITYSCAPES19 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)


def class_names(classes) -> list[str]:
    """A class list as names: accepts names or the store's [{"id", "name", ...}] dicts (in id order)."""
    classes = list(classes)
    if classes and isinstance(classes[0], dict):
        classes = [c["name"] for c in sorted(classes, key=lambda c: c["id"])]
    return [str(c) for c in classes]


@dataclass(frozen=True)
class Remap:
    """teacher id -> store id (or 255). `table[t]` for t < num_teacher; the rest of the LUT is 255."""

    table: tuple[int, ...]            # one entry per teacher class
    num_store: int
    store_classes: tuple[str, ...] | None = None
    source: str = "<memory>"

    @property
    def lut(self) -> np.ndarray:
        """(256,) uint8: teacher id -> store id; unmapped teacher ids and ids >= num_teacher -> 255."""
        lut = np.full(256, IGNORE, np.uint8)
        lut[: len(self.table)] = self.table
        return lut

    def apply_ids(self, ids: np.ndarray) -> np.ndarray:
        """uint8 teacher argmax ids (any shape) -> uint8 store ids, 255 where unmapped."""
        return self.lut[np.asarray(ids, dtype=np.uint8)]

    def matrix(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(num_store, num_teacher) 0/1 matrix: row s sums the teacher classes that map to s."""
        m = torch.zeros(self.num_store, len(self.table), dtype=dtype)   # filled on the CPU, copied to `device` once
        for t, s in enumerate(self.table):
            if s != IGNORE:
                m[s, t] = 1.0
        return m.to(device)

    def apply_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, num_teacher, H, W) probabilities -> (B, num_store, H, W): each store class gets the sum of the
        teacher classes mapped to it (`matrix` applied per pixel, einsum: deterministic on CUDA too); unmapped
        mass is dropped. An identity table (the same classes in the same order, e.g. matched by name) returns
        `probs` itself.
        ValueError when the class count is not the table's."""
        if probs.shape[1] != len(self.table):
            raise ValueError(f"remap {self.source} expects {len(self.table)} teacher classes, "
                             f"got {probs.shape[1]}")
        if self.num_store == len(self.table) and self.table == tuple(range(len(self.table))):
            return probs
        return torch.einsum("st,bthw->bshw", self.matrix(probs.device, probs.dtype), probs)

    def check_store_classes(self, store_classes) -> None:
        """Refuse a store whose class list differs from the one this remap was written for."""
        names = tuple(class_names(store_classes))
        if self.store_classes is not None and names != self.store_classes:
            raise UserError(f"{self.source}: remap targets classes {list(self.store_classes)}, "
                            f"but the store has {list(names)}")
        if self.store_classes is None and len(names) != self.num_store:
            raise UserError(f"{self.source}: remap targets {self.num_store} classes, store has {len(names)}")


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read remap file ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        if path.suffix.lower() == ".json":
            return json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{path}: syntax error in remap file: {e}") from None
    raise UserError(f"{path}: remap file must end in .json or .toml")


def _resolve(key, names: list[str] | None, count: int | None, side: str, where: str) -> int:
    """A class given by name or id (int, or digits in a string) -> id; names the bad value."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise UserError(f"{where}: {side} class {key!r} must be a name or an id")
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, int):
        limit = count if count is not None else IGNORE  # ids are uint8 and 255 is the ignore label
        if not 0 <= key < limit:
            raise UserError(f"{where}: {side} class id {key} out of range 0..{limit - 1}")
        return key
    if names is None:
        raise UserError(f"{where}: {side} class {key!r} given by name but no {side}_classes are known")
    if key not in names:
        raise UserError(f"{where}: unknown {side} class {key!r}; known: {names}")
    return names.index(key)


def parse_remap(data: dict, teacher_classes=None, store_classes=None, source: str = "<memory>") -> Remap:
    """Validate a remap mapping (see module docstring) against the class lists; UserError names the problem."""
    if not isinstance(data, dict) or not isinstance(data.get("map"), dict):
        raise UserError(f"{source}: remap needs a 'map' table of teacher class -> store class")
    unknown = set(data) - {"teacher_classes", "store_classes", "map", "description", "teacher", "store"}
    if unknown:
        raise UserError(f"{source}: unknown keys {sorted(unknown)} in remap file")
    lists = {}
    for side, given in (("teacher", teacher_classes), ("store", store_classes)):
        in_file = data.get(f"{side}_classes")
        if in_file is not None and (not isinstance(in_file, list) or not all(isinstance(n, str) for n in in_file)):
            raise UserError(f"{source}: {side}_classes must be a list of names")
        if in_file is not None and given is not None and class_names(given) != in_file:
            raise UserError(f"{source}: {side}_classes in the file {in_file} differ from the "
                            f"{side}'s classes {class_names(given)}")
        lists[side] = in_file if in_file is not None else (class_names(given) if given is not None else None)
    t_names, s_names = lists["teacher"], lists["store"]
    if s_names is not None and len(s_names) > IGNORE:
        raise UserError(f"{source}: at most 255 store classes (255 is the ignore label)")
    t_count = len(t_names) if t_names is not None else None
    s_count = len(s_names) if s_names is not None else None
    pairs = {}
    for key, value in data["map"].items():
        t = _resolve(key, t_names, t_count, "teacher", source)
        if t in pairs:
            raise UserError(f"{source}: teacher class {key!r} is mapped twice")
        pairs[t] = IGNORE if value is None else _resolve(value, s_names, s_count, "store", source)
    num_teacher = t_count if t_count is not None else max(pairs, default=-1) + 1
    mapped = [s for s in pairs.values() if s != IGNORE]
    num_store = s_count if s_count is not None else max(mapped, default=-1) + 1
    table = tuple(pairs.get(t, IGNORE) for t in range(num_teacher))
    return Remap(table, num_store, tuple(s_names) if s_names is not None else None, source)


def load_remap(path, teacher_classes=None, store_classes=None) -> Remap:
    """Read a .json or .toml remap file; class lists given here must agree with any in the file."""
    path = Path(path)
    return parse_remap(_read(path), teacher_classes, store_classes, source=str(path))


def bundled_remap(name: str) -> Path:
    """Path of a remap shipped with mtdistill (teachers/remaps/<name>.json)."""
    options = sorted(p.stem for p in REMAPS_DIR.glob("*.json"))
    if name not in options:
        raise KeyError(f"unknown bundled remap {name!r}; choose one of {options}")
    return REMAPS_DIR / f"{name}.json"


def same_name(name: str) -> str:
    """A class name for matching: lower case, '_' and '-' as spaces, runs of spaces as one ("Traffic_Light"
    and "traffic light" agree)."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def remap_by_name(teacher_classes, store_classes, path=None, source: str = "teacher") -> Remap:
    """Teacher classes -> store classes by name where the names agree (see `same_name`); a remap file
    (`path`, the format above) maps the rest and overrides a match. Without a file every teacher class
    must match a store class by name. UserError naming `source` (or the file) and the first unmatched
    classes; UserError too when no teacher class maps to any store class."""
    t_names, s_names = class_names(teacher_classes), class_names(store_classes)
    by_name = {same_name(n): n for n in s_names}
    matched = {str(t): by_name[same_name(n)] for t, n in enumerate(t_names) if same_name(n) in by_name}
    if path is None:
        unmatched = [n for t, n in enumerate(t_names) if str(t) not in matched]
        if unmatched:
            raise UserError(f"{source}: {len(unmatched)} of its {len(t_names)} classes match no store class by "
                            f"name ({', '.join(map(repr, unmatched[:8]))}{', ...' if len(unmatched) > 8 else ''});"
                            f" give --remap FILE mapping them to store classes (or to null to ignore them)")
        data, source = {"map": matched}, f"{source} (classes matched by name)"
    else:
        data, source = _read(Path(path)), str(path)
        if not isinstance(data, dict) or not isinstance(data.get("map"), dict):
            raise UserError(f"{source}: remap needs a 'map' table of teacher class -> store class")
        listed = {_resolve(k, t_names, len(t_names), "teacher", source) for k in data["map"]}
        data = {**data, "map": {**{k: v for k, v in matched.items() if int(k) not in listed}, **data["map"]}}
    remap = parse_remap(data, t_names, s_names, source)
    if all(s == IGNORE for s in remap.table):
        raise UserError(f"{source}: none of the teacher's {len(t_names)} classes maps to a store class "
                        f"(store classes: {', '.join(s_names[:8])}{', ...' if len(s_names) > 8 else ''})")
    return remap
