"""The store's layout: which arrays exist, their dtypes, chunking, sharding and codecs.

Sits at the bottom of stores/: repo.py creates the layout through these functions, sources fill it,
the labeling job adds pseudo-label groups. One chunk = one frame, one shard = S frames.
"""
from __future__ import annotations

import hashlib

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec, ZstdCodec

SCHEMA_VERSION = 2          # 2: every chunk carries a crc32c checksum (1: none; still read)
DEFAULT_SHARD_FRAMES = 32
SPLITS = ("train", "val", "test", "unlabeled")     # the one split list; stored as its index (uint8)
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
SPLIT_NAMES = {v: k for k, v in SPLIT_CODES.items()}
KEY_BYTES = 16
TABLE_CHUNK = 4096          # 1-D per-frame tables (split, key, name, flags)

# every chunk ends in a crc32c of its compressed bytes: a damaged chunk fails to read (stores/verify.py)
CHECKSUMS = True            # False only to build schema-1 stores in tests


def _codecs(*compressors):
    """The bytes-to-bytes codecs of a chunk: `compressors`, then a crc32c of the result (None: raw)."""
    out = (*compressors, Crc32cCodec()) if CHECKSUMS else compressors
    return out or None


_ZSTD = ZstdCodec(level=3)
_FLOAT = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)

# Per-frame arrays, appended together by ingest: path -> (dtype, fill, trailing shape kind).
FRAME_ARRAYS = {
    "frames/rgb": ("uint8", 0, "hw3"),
    "frames/key": ("uint8", 0, "key"),
    "frames/split": ("uint8", SPLIT_CODES["unlabeled"], "table"),
    "frames/name": (str, "", "table"),
    "real/segm": ("uint8", 255, "hw"),
    "real/depth": ("float32", 0.0, "hw"),
    "real/has_segm": ("bool", False, "table"),
    "real/has_depth": ("bool", False, "table"),
}

# task -> the per-frame flag of a real target for it
HAS_TARGET = {"segm": "real/has_segm", "depth": "real/has_depth"}

# Pseudo-label arrays of one labeling run, under pseudo/<name>/.
PSEUDO_ARRAYS = {
    "segm": ("uint8", 255),
    "conf": ("uint8", 0),
    "depth": ("float16", 0.0),
}
# With `mtdistill label --topk K`: each pixel's K most probable classes, (N, K, H, W), most probable first.
TOPK_ARRAYS = {
    "topk_class": ("uint8", 255),
    "topk_prob": ("uint8", 0),           # round(prob * 255)
}


def content_key(rgb: np.ndarray) -> bytes:
    """16-byte blake2b of a decoded frame's shape and pixels (uint8 (H, W, 3)): same pixels -> same key,
    whatever file they came from."""
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    h.update(np.asarray(rgb.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.digest()


def create_array(group: zarr.Group, path: str, dtype, fill, trailing: tuple, shard_frames: int, n: int = 0):
    """Create array `path` in `group` with `n` rows along the frame axis.

    trailing (H, W) or (H, W, 3): one frame per chunk, `shard_frames` per shard, Blosc-zstd for floats, zstd
    otherwise; trailing () is a 1-D per-frame table in TABLE_CHUNK chunks (str tables uncompressed).
    """
    if trailing:  # image-like: one frame per chunk, S frames per shard
        codec = _FLOAT if np.dtype(dtype).kind == "f" else _ZSTD
        return group.create_array(
            path, shape=(n, *trailing), chunks=(1, *trailing), shards=(shard_frames, *trailing),
            dtype=dtype, fill_value=fill, compressors=_codecs(codec))
    return group.create_array(path, shape=(n,), chunks=(TABLE_CHUNK,), dtype=dtype, fill_value=fill,
                              compressors=_codecs() if dtype is str else _codecs(_ZSTD))


def create_layout(root: zarr.Group, *, name: str, classes: list[dict], frame_size, shard_frames: int):
    """Root attributes and empty (N = 0) frame arrays of a new store."""
    h, w = frame_size
    root.attrs.update({
        "schema_version": SCHEMA_VERSION, "name": name, "classes": classes, "ignore_index": 255,
        "frame_size": [h, w], "depth_unit": "m", "shard_frames": shard_frames,
    })
    shapes = {"hw3": (h, w, 3), "hw": (h, w), "key": (KEY_BYTES,), "table": ()}
    for path, (dtype, fill, kind) in FRAME_ARRAYS.items():
        if kind == "key":
            root.create_array(path, shape=(0, KEY_BYTES), chunks=(TABLE_CHUNK, KEY_BYTES), dtype=dtype,
                              fill_value=fill, compressors=_codecs())
        else:
            create_array(root, path, dtype, fill, shapes[kind], shard_frames)
    root.require_group("pseudo")


def create_pseudo(root: zarr.Group, name: str, n: int, attrs: dict) -> zarr.Group:
    """Empty pseudo-label arrays for frames [0, n) plus one done flag per shard."""
    h, w = root.attrs["frame_size"]
    s = root.attrs["shard_frames"]
    g = root.require_group(f"pseudo/{name}")
    g.attrs.update(attrs)
    for key, (dtype, fill) in PSEUDO_ARRAYS.items():
        create_array(g, key, dtype, fill, (h, w), s, n)
    g.create_array("done", shape=(-(-n // s),), chunks=(TABLE_CHUNK,), dtype="bool", fill_value=False,
                   compressors=_codecs(_ZSTD))
    return g
