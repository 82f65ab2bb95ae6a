"""Issue 15 item 5: a damaged chunk is named wherever it is read (`error: STORE: frames/rgb frame 15 is
corrupt (checksum mismatch)`), `mtdistill verify` finds it, older stores without checksums still open
and say they cannot be verified (their frames are still checked against the stored content keys)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from numcodecs import Zstd

import stores.schema as schema
from stores.repo import FrameStore
from conftest import CLASSES, H, W, ingest, random_frames, run_cli


def _make(tmp_path, name="s.ice") -> FrameStore:
    store = FrameStore.create(tmp_path / name, name="t", classes=CLASSES, frame_size=(H, W), shard_frames=8)
    ingest(store, random_frames(20, seed=4))
    return store.reopen()


def chunk_of(store: FrameStore, frame: int, checksums: bool = True) -> tuple[Path, int, int]:
    """(shard file, offset, length) of frames/rgb chunk `frame`: parses each shard's index (at its end:
    S x (offset, length) uint64, then a crc32c) and matches the decompressed chunk with the frame."""
    want = store.root["frames/rgb"][frame].tobytes()
    s = store.shard_frames
    for f in sorted((store.path / "chunks").iterdir()):
        data = f.read_bytes()
        if len(data) < 16 * s + 4:
            continue
        index = data[-(16 * s + 4):-4]
        for k in range(s):
            off, n = struct.unpack_from("<QQ", index, 16 * k)
            if off + n > len(data) - 16 * s - 4:
                break
            body = data[off:off + n - (4 if checksums else 0)]
            try:
                if Zstd().decode(body) == want:
                    return f, off, n
            except Exception:  # noqa: BLE001 - not this chunk
                pass
    raise AssertionError(f"no chunk file holds frame {frame}")


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def _error_lines(r):
    return [ln for ln in r.output.splitlines() if ln.startswith("error:")]


def test_intact_store_verifies(tmp_path):
    store = _make(tmp_path)
    r = run_cli("verify", store.path)
    assert "every chunk is intact" in r.output and not _error_lines(r)


def test_flipped_byte_is_named_by_verify_and_by_training(tmp_path):
    store = _make(tmp_path)
    f, off, n = chunk_of(store, 15)
    _flip(f, off + n // 2)
    expected = f"error: {store.path}: frames/rgb frame 15 is corrupt (checksum mismatch)"
    r = run_cli("verify", store.path, ok=False)
    assert r.exit_code == 1 and _error_lines(r) == [expected], r.output
    assert run_cli("verify", store.path, "--json", ok=False).output.count('"reason": "checksum mismatch"') == 1
    for workers in (0, 1):      # read in this process, and in a DataLoader worker process
        r = run_cli("train", store.path, "--run", f"w{workers}", "--out", tmp_path / "runs", "--steps", 1,
                    "--batch-size", 20, "--workers", workers, "--val-split", "", "--device", "cpu", ok=False)
        assert r.exit_code == 1 and "Traceback" not in r.output and _error_lines(r) == [expected], r.output
        assert not (tmp_path / "runs" / f"w{workers}").exists()
    assert not any(t.startswith("train/") for t in store.reopen().tags())


def test_truncated_chunk_file_is_named(tmp_path):
    store = _make(tmp_path)
    f, off, n = chunk_of(store, 3)
    f.write_bytes(f.read_bytes()[:off + n // 2])
    r = run_cli("verify", store.path, ok=False)
    assert f"error: {store.path}: frames/rgb frame 3 is corrupt (chunk file truncated)" in _error_lines(r)
    r = run_cli("train", store.path, "--run", "t", "--out", tmp_path / "runs", "--steps", 1, "--batch-size", 20,
                "--workers", 0, "--val-split", "", "--device", "cpu", ok=False)
    assert len(_error_lines(r)) == 1 and "frames/rgb frame" in r.output and "corrupt" in r.output, r.output


def test_store_without_checksums_opens_and_cannot_be_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "CHECKSUMS", False)        # the codecs of schema 1
    store = _make(tmp_path, "old.ice")
    monkeypatch.undo()
    assert "frames: 20" in run_cli("show", store.path).output
    r = run_cli("verify", store.path, ok=False)
    assert r.exit_code == 2 and "cannot be verified" in r.output and not _error_lines(r), r.output
    f, off, n = chunk_of(store, 15, checksums=False)
    before = store.root["frames/rgb"][15]
    _flip(f, off + n // 2)                 # random pixels: zstd stores them raw, the flip decodes silently
    assert not np.array_equal(FrameStore.open(store.path).root["frames/rgb"][15], before)
    r = run_cli("verify", store.path, ok=False)
    assert _error_lines(r) == [f"error: {store.path}: frames/rgb frame 15 is corrupt (content key mismatch)"]


def test_new_arrays_carry_checksums(tmp_path):
    from stores.verify import array_paths, has_checksums
    store = _make(tmp_path)
    assert all(has_checksums(store.root[p]) for p in array_paths(store.root))
    assert store.attrs["schema_version"] == schema.SCHEMA_VERSION == 2
