"""The file-tree matcher shared by the file sources (folder, kitti, nyud's preprocessed tree).

Sits between the user's folders and a source's list of `Entry`s: scans image folders, pairs every file
of an annotation folder with a frame, reads split lists. No file is dropped without a word:

- an annotation file pairs with the frame of the same key (path without extension), or of the key once
  an annotation suffix is taken off its name: the source's explicit suffix (`--segm-suffix _mask`), or
  one of the usual ones (`_mask`, `_label`, `_depth`, `_gt`), so `photo1_mask.png` labels `photo1.jpg`;
- a file that pairs with a frame but has a format that cannot hold the annotation (a JPEG label: lossy
  compression invents class ids at edges) is a bad file (`SkipLog.fail`: an error, or skipped and
  recorded with --skip-bad);
- a file that pairs with no frame is reported (count, first names, reason) in `SkipLog.unmatched`;
- an annotation folder none of whose files pairs with a frame is an error.

Split lists: one frame per line, the split LAST, separated from the file name by a tab, a comma or
spaces, so names may hold spaces, commas or any letters ("kitchen view 1.png<TAB>val",
"kitchen view 1.png val", "\"a, b.png\",test"); blank lines and lines starting with `#` are skipped.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stores.sources.base import SPLITS, SkipLog
from stores.sources.images import BadInput

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_EXTS = (".png", ".npy")
ANNOTATION_SUFFIXES = ("_mask", "_label", "_depth", "_gt")
SEGM_SUFFIXES = ("_mask", "_label", "_gt")
DEPTH_SUFFIXES = ("_depth", "_gt")
LOSSY_LABEL = ("lossy JPEG label refused: compression invents class ids at region edges; "
               "save labels as PNG")
SHOWN = 3                               # names shown per group of unmatched files


@dataclass(frozen=True)
class Entry:
    """One frame's files, before decoding."""
    name: str                  # the Frame's name: image path relative to its folder (posix)
    key: str                   # what annotations and list files match: name without extension
    rgb: Path
    split: str
    segm: Path | None = None
    depth: Path | None = None


@dataclass(frozen=True)
class AnnotationFolder:
    """How to read one annotation folder: what it holds, the formats it takes, the name suffix."""
    path: str
    what: str                          # "segmentation" | "depth"
    exts: tuple[str, ...]              # accepted formats (lower-case, with the dot)
    suffix: str | None = None          # explicit name suffix; None = exact name or a usual suffix
    refused: tuple[tuple[str, str], ...] = ()   # (ext, reason) for formats refused with a reason
    usual: tuple[str, ...] = ANNOTATION_SUFFIXES  # the suffixes tried when `suffix` is None

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The name suffixes an annotation file may carry: the explicit one, else the usual ones."""
        return (self.suffix,) if self.suffix else self.usual


def segm_folder(path, suffix=None) -> AnnotationFolder | None:
    """Label PNGs (JPEG refused with a reason)."""
    return None if not path else AnnotationFolder(str(path), "segmentation", (".png",), suffix or None,
                                                  ((".jpg", LOSSY_LABEL), (".jpeg", LOSSY_LABEL)), SEGM_SUFFIXES)


def depth_folder(path, suffix=None, exts=DEPTH_EXTS) -> AnnotationFolder | None:
    """Depth maps: 16-bit PNG (and .npy float metres where `exts` has it)."""
    return None if not path else AnnotationFolder(str(path), "depth", tuple(exts), suffix or None,
                                                  ((".jpg", "lossy JPEG depth refused: 8-bit and lossy; save "
                                                    "depth as a 16-bit PNG"),), DEPTH_SUFFIXES)


# ---- scanning -----------------------------------------------------------------------------------

def walk(folder, recursive: bool, exclude=()) -> list[Path]:
    """Every visible file under `folder` (sub-folders only when recursive), sorted by relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInput(root, "not a folder" if root.exists() else "folder not found")
    skip = {Path(p).resolve() for p in exclude if p}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if recursive and not d.startswith(".")
                             and (Path(dirpath) / d).resolve() not in skip)
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def key_of(root, path: Path) -> str:
    """The matching key of a file: its path below `root` without extension, '/'-separated."""
    return path.relative_to(root).with_suffix("").as_posix()


def index_folder(folder, exts, recursive: bool, exclude=()) -> dict[str, list[Path]]:
    """key -> files with that key and one of `exts`, sorted by relative path; hidden files skipped."""
    found: dict[str, list[Path]] = {}
    for p in walk(folder, recursive, exclude):
        if p.suffix.lower() in exts:
            found.setdefault(key_of(folder, p), []).append(p)
    return {k: found[k] for k in sorted(found)}


def pick_one(paths: list[Path] | None, skips: SkipLog) -> tuple[bool, Path | None]:
    """(ok, path): a key with several candidate files is ambiguous -> recorded or raised."""
    if not paths:
        return True, None
    if len(paths) > 1:
        skips.fail(paths[0], f"ambiguous: {', '.join(p.name for p in paths)} share one name")
        return False, None
    return True, paths[0]


def _candidates(key: str, suffixes) -> list[str]:
    """Frame keys an annotation file named `key` may belong to, most specific first."""
    out = []
    for s in suffixes:
        if key.lower().endswith(s.lower()) and len(key) > len(s):
            out.append(key[: -len(s)])
    return out + [key]


def strip_annotations(frames: dict[str, list[Path]], folders) -> dict[str, list[Path]]:
    """Frames minus the annotation files lying beside them: an image `x_mask.png` in the images folder
    is the label of `x.jpg`, not a frame, when that folder is also an annotation folder."""
    names = {k for k in frames}
    drop = set()
    for f in folders:
        for k in names:
            if any(c != k and c in names for c in _candidates(k, f.suffixes)):
                drop.add(k)
    return {k: v for k, v in frames.items() if k not in drop}


def match_annotations(folder: AnnotationFolder, frames: dict[str, list[Path]], recursive: bool,
                      skips: SkipLog) -> dict[str, list[Path]]:
    """Frame key -> annotation files of `folder` for it (module docstring); unmatched files go to
    `skips.unmatched`, files in a refused format of a frame to `skips.fail`. Raises BadInput naming the
    folder when none of its files pairs with a frame."""
    images = {p.resolve() for paths in frames.values() for p in paths}
    files = [p for p in walk(folder.path, recursive) if p.resolve() not in images]
    beside = Path(folder.path).resolve() in {p.parent for p in images}     # annotations next to images
    refused = dict(folder.refused)
    out: dict[str, list[Path]] = {}
    unmatched, unreadable = [], []                          # (file, reason); (file, reason, frame)
    for p in files:
        ext, key = p.suffix.lower(), key_of(folder.path, p)
        cands = _candidates(key, folder.suffixes)
        frame = next((c for c in cands if c in frames), None)
        if frame is None and beside and any(c in frames for c in _candidates(key, ANNOTATION_SUFFIXES)):
            continue                                        # another annotation of a frame beside it
        if frame is None:
            unmatched.append((p, f"no image named {' or '.join(repr(c) for c in cands)}"))
        elif ext in folder.exts:
            out.setdefault(frame, []).append(p)
        else:
            unreadable.append((p, refused.get(ext) or f"unsupported format {ext or '(none)'}; "
                                                      f"{folder.what} must be {'/'.join(folder.exts)}", frame))
    if not out:
        raise BadInput(folder.path, nothing_matched(folder, files, unmatched + [u[:2] for u in unreadable]))
    for p, why, frame in unreadable:
        if frame in out:                                    # the frame has a readable one: just report it
            unmatched.append((p, f"{why} (its frame has {out[frame][0].name})"))
        else:                                               # the frame's only annotation: a bad file
            skips.fail(p, why)
    skips.report(folder.path, folder.what, unmatched)
    return out


def nothing_matched(folder: AnnotationFolder, files, unmatched) -> str:
    """Why an annotation folder gave nothing, with the first names and what to try."""
    if not files:
        return f"{folder.what} folder holds no files"
    reasons = {}
    for p, why in unmatched:
        reasons.setdefault("no image of that name" if why.startswith("no image named") else why, []).append(p)
    parts = [f"{len(ps)} x {why} ({', '.join(p.name for p in ps[:SHOWN])}{', ...' if len(ps) > SHOWN else ''})"
             for why, ps in reasons.items()]
    hint = (f"suffix {folder.suffix!r}" if folder.suffix else
            f"same names as the images, or a suffix {'/'.join(folder.usual)}; another suffix: "
            f"--{'segm' if folder.what == 'segmentation' else 'depth'}-suffix")
    return f"none of its {len(files)} file(s) is the {folder.what} of a frame ({hint}): " + "; ".join(parts)


# ---- split lists --------------------------------------------------------------------------------

_LAST_FIELD = re.compile(r"^(?P<name>.*?)\s*[\t,\s]\s*(?P<split>[^\t,\s]+)\s*$")
LINE_FORMAT = ("'<file name> <split>' with the split last, after a tab, comma or space "
               f"(split one of {', '.join(SPLITS)}), e.g. 'kitchen view 1.png<TAB>val'")


def read_list(path) -> list[tuple[int, str]]:
    """(line number, line) of a list file, stripped; blank lines and `#` comment lines skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(p, "list file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(p, f"cannot read list file ({type(e).__name__}: {e})") from None
    lines = ((n, line.strip()) for n, line in enumerate(text.splitlines(), 1))
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def parse_split_line(path, n: int, line: str) -> tuple[str, str]:
    """(file name, split) of one split-list line; BadInput saying what a line should look like."""
    m = _LAST_FIELD.match(line)
    if not m or not m["name"].strip():
        raise BadInput(path, f"line {n}: expected {LINE_FORMAT}; got {line!r}")
    name, split = m["name"].strip(), m["split"]
    if len(name) > 1 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('""', '"')               # a CSV-quoted name
    if split not in SPLITS:
        raise BadInput(path, f"line {n}: bad split {split!r} (the last field); expected {LINE_FORMAT}")
    return name, split


def key_resolver(keys) -> Callable[[str], str | None]:
    """Lenient but unambiguous match of a list token to a key: the exact key, the key once a known
    extension or folder prefix is stripped, or the same number ("464" -> "000464"); None when no key
    or several keys match."""
    keys = set(keys)
    by_stem: dict[str, list[str]] = {}
    by_number: dict[int, list[str]] = {}
    for k in sorted(keys):
        stem = k.rsplit("/", 1)[-1]
        by_stem.setdefault(stem, []).append(k)
        if stem.isdigit():
            by_number.setdefault(int(stem), []).append(k)

    def resolve(token: str) -> str | None:
        t = token.replace("\\", "/").removeprefix("./")
        if Path(t).suffix.lower() in IMAGE_EXTS + DEPTH_EXTS:
            t = t[: -len(Path(t).suffix)]
        if t in keys:
            return t
        stem = t.rsplit("/", 1)[-1]
        hits = by_stem.get(stem) or (by_number.get(int(stem)) if stem.isdigit() else None) or []
        return hits[0] if len(hits) == 1 else None

    return resolve


def read_split_file(path, keys, skips: SkipLog, where: str) -> dict[str, str]:
    """key -> split from a split list (module docstring); a name with no image is a (skippable) missing
    file, a line that is not '<name> <split>' an error saying what a line should look like."""
    out: dict[str, str] = {}
    resolve = key_resolver(keys)
    for n, line in read_list(path):
        name, split = parse_split_line(path, n, line)
        key = resolve(name)
        if key is None:
            skips.fail(path, f"line {n} names {name!r} but there is no such image in {where}")
            continue
        if out.get(key, split) != split:
            raise BadInput(path, f"line {n}: {name!r} listed as {out[key]} and as {split}")
        out[key] = split
    return out
