"""The `nyud` source: NYUDv2 labelled frames, from the common preprocessed tree or the official .mat.

Sits at the start of the flow (`mtdistill ingest nyud`): NYUDv2 files -> validated `Frame`s at the
store's size -> the store's writer. Two layouts, chosen by what `path` is:

- a folder: rgb/NNNNNN.png, masks/NNNNNN.png (uint8 ids 0..39, 255 = unlabeled), depth/NNNNNN.png
  (uint16, metres = value / depth_scale, 0 = invalid), lists train.txt / test.txt naming frames
  ("000464", "464", "rgb/000464.png", or a line whose first column is such a name);
- a file: the official nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5), read frame by frame with h5py;
  arrays are stored transposed: images (N, 3, W, H) uint8, depths (N, W, H) float32 metres, labels
  (N, W, H) uint16 over 894 classes (0 = unlabeled). Labels need a 894->40 table (.npy, indexed by the
  894-class id; 0 -> 255, k in 1..40 -> k - 1); without it only rgb and depth are ingested. Splits from
  the official splits.mat (MATLAB v5, read with scipy, or v7.3; trainNdxs / testNdxs, 1-based) or text
  lists of 1-based indices.

Frames in no list go to `unlisted` (a split, or "skip").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from stores.errors import UserError
from stores.sources.base import SPLITS, Frame, SkipLog
from stores.sources.folder import describe_dict, iter_entries, load_entry
from stores.sources.tree import (IMAGE_EXTS, Entry, depth_folder, index_folder, key_resolver, match_annotations,
                                 pick_one, read_list, segm_folder)
from stores.sources.images import (BadInput, check_depth, fit_frame, load_npy, parse_fit, parse_positive,
                                   read_depth_png, read_label)

MAT_V5_HINT = ("is an old MATLAB v5 .mat file; the labeled dataset is read frame by frame from the "
               "official v7.3 (HDF5) file: re-save it with `save -v7.3` in MATLAB/Octave")


@dataclass(frozen=True)
class NyudConfig:
    """Options of `mtdistill ingest nyud`; UserError on construction for a bad fit,
    depth_scale or unlisted, or for splits given together with train_list/test_list.
    """
    path: str                          # preprocessed root (rgb/, masks/, depth/) or nyu_depth_v2_labeled.mat
    train_list: str | None = None      # folder: names (default <root>/train.txt); .mat: 1-based indices
    test_list: str | None = None       # folder: names (default <root>/test.txt); .mat: 1-based indices
    splits: str | None = None          # .mat only: official splits.mat (trainNdxs / testNdxs, 1-based)
    mapping: str | None = None         # .mat only: .npy 894->40 table; without it labels are not ingested
    unlisted: str = "unlabeled"        # split of frames in no list, or "skip" to leave them out
    depth_scale: float = 5000.0        # folder only: metres = depth PNG value / depth_scale
    fit: str = "resize"                # resize | crop: how frames of another size reach the store size

    def __post_init__(self):
        parse_fit(self.fit)
        parse_positive(self.depth_scale, "depth_scale")
        if self.unlisted not in SPLITS + ("skip",):
            raise UserError(f"bad unlisted {self.unlisted!r}; choose one of {', '.join(SPLITS + ('skip',))}")
        if self.splits and (self.train_list or self.test_list):
            raise UserError("give either splits (official splits.mat) or train_list/test_list, not both")

    @property
    def layout(self) -> str:
        """"mat" when `path` is a file (official nyu_depth_v2_labeled.mat), else "folder" (preprocessed tree)."""
        return "mat" if Path(self.path).is_file() else "folder"

    def notes(self) -> list[str]:
        """What this configuration will leave out, for the user and the commit metadata."""
        out = []
        if self.layout == "mat" and not self.mapping:
            out.append("labels not ingested: no 894->40 mapping given (rgb and depth only)")
        if self.layout == "folder" and (self.splits or self.mapping):
            out.append("splits/mapping apply to the official .mat only; ignored for the folder layout")
        return out

    def to_dict(self) -> dict:
        """Plain dict for the ingest commit's metadata: the fields, the layout and `notes()`."""
        return {"source": "nyud", "path": self.path, "layout": self.layout, **asdict(self),
                "notes": self.notes()}

    def describe(self) -> str:
        """One line "nyud <path> key=value ..." of the options that are set."""
        d = self.to_dict()
        d.pop("notes")
        return describe_dict(d)


@dataclass(frozen=True)
class MatFrame:
    """One frame of the official .mat to read: its 0-based index, Frame name "<file>/NNNNNN" (1-based) and split."""
    index: int                         # 0-based frame index in the .mat
    name: str
    split: str


# ---- preprocessed folder layout -----------------------------------------------------------------

def _list_tree(cfg: NyudConfig, skips: SkipLog) -> list[Entry]:
    root = Path(cfg.path)
    if not (root / "rgb").is_dir():
        raise BadInput(root, "no rgb/ folder: expected the preprocessed layout (rgb/, masks/, depth/) "
                             "or the official nyu_depth_v2_labeled.mat" if root.exists() else "not found")
    found = index_folder(root / "rgb", IMAGE_EXTS, recursive=False)
    folders = (segm_folder(root / "masks"), depth_folder(root / "depth", exts=(".png",)))
    masks, depth = (match_annotations(f, found, False, skips) if Path(f.path).is_dir() else {} for f in folders)
    resolve, split_of = key_resolver(found), {}
    for lst, split in ((cfg.train_list, "train"), (cfg.test_list, "test")):
        if lst is None and (root / f"{split}.txt").is_file():
            lst = root / f"{split}.txt"
        for n, line in read_list(lst) if lst else ():
            name = line if resolve(line) else line.replace(",", " ").split()[0]   # a name, or its first column
            key = resolve(name)
            if key is None:
                skips.fail(lst, f"line {n} names {name!r} but there is no such image in {root / 'rgb'}")
            elif split_of.setdefault(key, split) != split:
                raise BadInput(lst, f"line {n}: {name!r} is also in the {split_of[key]} list")
    entries = []
    for key, paths in found.items():
        split = split_of.get(key, cfg.unlisted)
        ok = [pick_one(x, skips) for x in (paths, masks.get(key), depth.get(key))]
        if split != "skip" and all(o for o, _ in ok):
            (_, rgb), (_, m), (_, d) = ok
            entries.append(Entry(f"rgb/{rgb.name}", key, rgb, split, m, d))
    return entries


# ---- official .mat ------------------------------------------------------------------------------

def open_mat(path) -> h5py.File:
    """An HDF5 (MATLAB v7.3) file; a v5 .mat is refused with a clear hint."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(p, "file not found")
    if not h5py.is_hdf5(p):
        with open(p, "rb") as fh:
            head = fh.read(128)
        raise BadInput(p, MAT_V5_HINT if head.startswith(b"MATLAB 5.0 MAT-file")
                       else "not an HDF5 / MATLAB v7.3 .mat file")
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise BadInput(p, f"cannot open HDF5 file ({e})") from None


def read_mat_arrays(path, names) -> dict[str, np.ndarray]:
    """Small named arrays of a .mat file of either kind: MATLAB v5 (the official NYUDv2 splits.mat) with
    scipy.io.loadmat, v7.3 (HDF5) with h5py. BadInput naming the file when unreadable or a name is missing."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(p, "file not found")
    if h5py.is_hdf5(p):
        with open_mat(p) as f:
            have = sorted(f.keys())
            arrays = {k: np.asarray(f[k]) for k in names if k in f and isinstance(f[k], h5py.Dataset)}
    else:
        import scipy.io
        try:
            data = scipy.io.loadmat(str(p), variable_names=list(names))
            have = sorted(k for k, *_ in scipy.io.whosmat(str(p)))
        except (ValueError, TypeError, OSError, NotImplementedError) as e:   # scipy's errors for non-.mat input
            raise BadInput(p, f"not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
        arrays = {k: np.asarray(data[k]) for k in names if k in data}
    missing = [k for k in names if k not in arrays]
    if missing:
        raise BadInput(p, f"no {', '.join(missing)} (has {', '.join(have) or 'nothing'})")
    return arrays


def mat_shape(path, f: h5py.File) -> tuple[int, int, int]:
    """(N, H, W) after checking images (N, 3, W, H), depths (N, W, H), labels (N, W, H) agree."""
    if "images" not in f or "depths" not in f:
        raise BadInput(path, f"no images/depths datasets (has {', '.join(sorted(f.keys()))}); "
                             "expected the official nyu_depth_v2_labeled.mat")
    im, dp = f["images"].shape, f["depths"].shape
    if len(im) != 4 or im[1] != 3 or dp != (im[0], im[2], im[3]):
        raise BadInput(path, f"images {im} / depths {dp}; expected (N, 3, W, H) / (N, W, H)")
    if "labels" in f and f["labels"].shape != dp:
        raise BadInput(path, f"labels {f['labels'].shape} do not match depths {dp}")
    return im[0], im[3], im[2]


def load_mapping(path, num_classes: int) -> np.ndarray:
    """894->num_classes table -> uint8 lookup over the 894-class ids (0 -> 255, k -> k - 1)."""
    m = np.squeeze(load_npy(path, missing="mapping file not found"))
    if m.ndim != 1 or not (np.issubdtype(m.dtype, np.integer) or
                           (np.issubdtype(m.dtype, np.floating) and np.all(np.mod(m, 1) == 0))):
        raise BadInput(path, f"mapping has shape {m.shape} dtype {m.dtype}; expected a 1-D integer array")
    m = m.astype(np.int64)
    if m[0] != 0:
        raise BadInput(path, f"mapping[0] is {m[0]}, expected 0 (unlabeled); if the table starts at "
                             "class 1, prepend a 0")
    bad = np.flatnonzero((m < 0) | (m > num_classes))
    if bad.size:
        raise BadInput(path, f"mapping[{bad[0]}] = {m[bad[0]]} outside 0..{num_classes}")
    return np.where(m == 0, 255, m - 1).astype(np.uint8)


def _mat_splits(cfg: NyudConfig, n: int, skips: SkipLog) -> dict[int, str]:
    """0-based frame index -> split, from splits.mat or text lists of 1-based indices."""
    out: dict[int, str] = {}

    def add(src, where, i, split):
        if not 1 <= i <= n:
            skips.fail(src, f"{where}: index {i} outside the .mat's frames 1..{n}")
        elif out.setdefault(i - 1, split) != split:
            raise BadInput(src, f"{where}: frame {i} is both {out[i - 1]} and {split}")

    if cfg.splits:
        arrays = read_mat_arrays(cfg.splits, ("trainNdxs", "testNdxs"))
        for ds, split in (("trainNdxs", "train"), ("testNdxs", "test")):
            idx = arrays[ds].ravel()
            if not np.issubdtype(idx.dtype, np.number) or not np.all(np.mod(idx, 1) == 0):
                raise BadInput(cfg.splits, f"{ds} holds non-integer indices")
            for i in idx.astype(np.int64):
                add(cfg.splits, ds, int(i), split)
    for lst, split in ((cfg.train_list, "train"), (cfg.test_list, "test")):
        for ln, line in read_list(lst) if lst else ():
            first = line.replace(",", " ").split()[0]
            if not first.isdigit():
                raise BadInput(lst, f"line {ln}: {first!r} is not a 1-based frame index")
            add(lst, f"line {ln}", int(first), split)
    return out


def _list_mat(cfg: NyudConfig, skips: SkipLog) -> list[MatFrame]:
    with open_mat(cfg.path) as f:
        n, _, _ = mat_shape(cfg.path, f)
    split_of, stem = _mat_splits(cfg, n, skips), Path(cfg.path).name
    return [MatFrame(i, f"{stem}/{i + 1:06d}", split_of.get(i, cfg.unlisted)) for i in range(n)
            if split_of.get(i, cfg.unlisted) != "skip"]


def _iter_mat(cfg, items, frame_size, lut, skips) -> Iterator[Frame]:
    with open_mat(cfg.path) as f:
        mat_shape(cfg.path, f)
        has_labels = lut is not None and "labels" in f
        for it in items:
            where = f"{cfg.path}[frame {it.index + 1}]"
            try:
                rgb = np.ascontiguousarray(f["images"][it.index].transpose(2, 1, 0))  # (3,W,H) -> (H,W,3)
                if rgb.dtype != np.uint8:
                    raise BadInput(where, f"images dtype {rgb.dtype}; expected uint8")
                depth = check_depth(where, f["depths"][it.index].T.astype(np.float32))  # (W, H) -> (H, W)
                segm = None
                if has_labels:
                    lab = f["labels"][it.index].T                                        # (W, H) -> (H, W)
                    if lab.max() >= len(lut):
                        raise BadInput(where, f"label {int(lab.max())} beyond the mapping's "
                                              f"{len(lut)} entries")
                    segm = lut[lab]
                rgb, segm, depth = fit_frame(where, rgb, segm, depth, frame_size, cfg.fit)
            except BadInput as bad:
                skips.fail(bad.path, bad.problem)
                continue
            except OSError as e:                # a damaged HDF5 chunk
                skips.fail(where, f"cannot read frame ({e})")
                continue
            yield Frame(rgb=rgb, split=it.split, name=it.name, segm=segm, depth=depth)


# ---- public -------------------------------------------------------------------------------------

def list_nyud(cfg: NyudConfig, skips: SkipLog) -> list:
    """Every frame the nyud source will read, in order: `Entry`s (folder) or `MatFrame`s (.mat)."""
    return _list_mat(cfg, skips) if cfg.layout == "mat" else _list_tree(cfg, skips)


def count_nyud(cfg: NyudConfig) -> int:
    """Number of frames the nyud source would yield (bad entries skipped, not raised), for a progress total."""
    return len(list_nyud(cfg, SkipLog(skip_bad=True)))


def iter_nyud(cfg: NyudConfig, frame_size, num_classes: int, skips: SkipLog,
              items: list | None = None) -> Iterator[Frame]:
    """Frames at `frame_size` (H, W). Pass `items` from list_nyud to avoid a second scan."""
    items = list_nyud(cfg, skips) if items is None else items
    if cfg.layout == "mat":
        lut = load_mapping(cfg.mapping, num_classes) if cfg.mapping else None
        return _iter_mat(cfg, items, frame_size, lut, skips)

    def load(e):
        return load_entry(e, frame_size, cfg.fit, lambda p: read_label(p, num_classes, "ids"),
                          lambda p: read_depth_png(p, cfg.depth_scale))

    return iter_entries(items, skips, load)
