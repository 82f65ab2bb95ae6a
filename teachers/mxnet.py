"""MXNet `.params` files (NDArray lists, `mx.nd.save`) read with numpy: no MXNet install, no code run.

Sits under teachers/import_resnet38.py (the ResNet-38 A1 weights were published in this format).
Layout, all little-endian: uint64 0x112 (list magic), uint64 0, uint64 count, `count` arrays, uint64
count, `count` names (uint64 length + bytes). One array: uint32 magic (V1 0xF993FAC8; V2 0xF993FAC9 and
V3 0xF993FACA add an int32 storage type, 0 = dense; older files have no magic: the word is the number of
dims, each dim a uint32), then uint32 ndim and ndim int64 dims (none: an empty array), int32 device
type and id, int32 dtype flag, then the raw data. Names carry `arg:` / `aux:` prefixes.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from stores.errors import UserError

LIST_MAGIC = 0x112
V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise UserError(f"{self.source}: not an MXNet .params file (truncated at byte {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _array(r: _Reader) -> np.ndarray:
    (magic,) = r.unpack("I")
    if magic in (V2, V3):
        (stype,) = r.unpack("i")
        if stype != 0:
            raise UserError(f"{r.source}: sparse arrays (storage type {stype}) are not supported")
    if magic in (V1, V2, V3):
        (ndim,) = r.unpack("i" if magic == V3 else "I")
        shape = r.unpack(f"{max(ndim, 0)}q")
    else:                                                   # legacy: the word was the number of dims
        ndim = magic
        if ndim > 32:
            raise UserError(f"{r.source}: not an MXNet .params file (bad array header {magic:#x})")
        shape = r.unpack(f"{ndim}I")
    if ndim <= 0:
        return np.zeros((0,), np.float32)
    _device_type, _device_id, flag = r.unpack("iii")
    if flag not in DTYPES or min(shape) < 0:
        raise UserError(f"{r.source}: unsupported array (dtype flag {flag}, shape {shape})")
    dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
    count = int(np.prod(shape))
    return np.frombuffer(r.take(count * dtype.itemsize), dtype).reshape(shape).astype(DTYPES[flag])


def read_params(path) -> dict[str, np.ndarray]:
    """{name without arg:/aux: prefix: array} of an MXNet .params file. UserError naming the file when it is
    missing, not in this format, truncated, holds sparse arrays, or its name and array counts differ."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    r = _Reader(data, str(path))
    if len(data) < 16 or r.unpack("QQ") != (LIST_MAGIC, 0):
        raise UserError(f"{path}: not an MXNet .params file (no NDArray list header)")
    (count,) = r.unpack("Q")
    if count > len(data):
        raise UserError(f"{path}: not an MXNet .params file (bad array count)")
    arrays = [_array(r) for _ in range(count)]
    (names,) = r.unpack("Q")
    if names != count:
        raise UserError(f"{path}: {count} arrays but {names} names")
    keys = [r.take(r.unpack("Q")[0]).decode("utf-8", "replace") for _ in range(names)]
    return {k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k: a for k, a in zip(keys, arrays)}


def write_params(path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` ({"arg:NAME" or "aux:NAME": array}) as a V2 NDArray list, the layout mx.nd.save writes
    (for tests and for handing weights back to MXNet)."""
    flags = {np.dtype(v): k for k, v in DTYPES.items()}
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for a in arrays.values():
        a = np.ascontiguousarray(a)
        out.append(struct.pack(f"<IiI{a.ndim}q", V2, 0, a.ndim, *a.shape))
        out.append(struct.pack("<iii", 1, 0, flags[a.dtype]) + a.astype(a.dtype.newbyteorder("<")).tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for k in arrays:
        out.append(struct.pack("<Q", len(k.encode())) + k.encode())
    Path(path).write_bytes(b"".join(out))
