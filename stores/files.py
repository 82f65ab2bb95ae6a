"""Files written whole or not at all, file digests, and the one safe reader of torch files.

Sits at the bottom of the flow (stores/ imports no model and no process), so every layer uses it: store
sidecar files, training checkpoints (pipeline/train), teacher files (teachers/base), demo artefacts;
`read_weights` is the only torch.load of the project (checkpoints, teacher files, encoder weights).
"""
from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
# the same conditions as Rust (icechunk) words them inside its own error types
_REASON_TEXTS = {"No space left on device": "disk full", "os error 28": "disk full",
                 "Disk quota exceeded": "disk full", "Read-only file system": "read-only",
                 "os error 30": "read-only", "Permission denied": "read-only", "os error 13": "read-only",
                 # object storage (stores/location.py), as icechunk's S3 / GCS / Azure clients word it
                 "NoSuchBucket": "no such bucket", "ContainerNotFound": "no such container",
                 "AccessDenied": "access denied", "InvalidAccessKeyId": "access denied",
                 "SignatureDoesNotMatch": "access denied", "dispatch failure": "cannot reach the object store",
                 "error sending request": "cannot reach the object store"}


def storage_reason(error: BaseException) -> str | None:
    """'disk full (...)' / 'read-only (...)' when `error` (or its cause) is the filesystem refusing a
    write (ENOSPC, EDQUOT, EACCES, EPERM, EROFS, also as icechunk words them), or the object store's reason
    (no such bucket, access denied, cannot reach it); None for anything else."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS + READ_ONLY_ERRNOS:
            kind = "disk full" if seen.errno in FULL_ERRNOS else "read-only"
            return f"{kind} ({seen.strerror})"
        for text, kind in _REASON_TEXTS.items():
            if text in str(seen):
                return f"{kind} ({text})"
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def storage_errors(where, outcome: str = "nothing was committed; the store stays at its last version"):
    """Turn the filesystem refusing a write inside the block into one UserError line
    '{where}: disk full (...): {outcome}' (or read-only); other exceptions pass unchanged. Also catches
    the Rust panics icechunk raises for such failures (they derive from BaseException)."""
    from stores.errors import UserError

    try:
        yield
    except (UserError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # noqa: BLE001 - pyo3 PanicException is a BaseException
        reason = storage_reason(e)
        if reason is None:
            raise
        raise UserError(f"{where}: {reason}: {outcome}") from None


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it over `path` (os.replace is atomic
    on POSIX): readers see the old file or the new one, never half of one. The temporary file is removed
    if `write` raises; a full or read-only disk is one UserError naming `path`. Returns `path` as a Path;
    creates missing parent folders."""
    path = Path(path)
    with storage_errors(path.parent, f"{path.name} not written"):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with storage_errors(path, "not written (an earlier file there is kept)"):
            write(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    """`text` (UTF-8) into `path` atomically (see atomic_write)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (hashlib.file_digest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_weights(path, what: str = "checkpoint"):
    """The one reader of torch files (training checkpoints, teacher files, encoder weights): torch.load with
    weights_only=True and map_location="cpu", so a file can never run code while it loads.

    Returns whatever the file holds (tensors, dicts, lists, numbers, strings). Raises UserError naming the
    file: missing, unreadable, or refused because its pickle names Python objects other than tensors and
    plain containers (the refused globals are named; torch's advice to retry unsafely is never repeated)."""
    import pickle
    import re
    import zipfile

    import torch

    from stores.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what} file" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise UserError(f"{path}: unreadable {what} ({e.strerror})") from None
    if not head or (head[:1] != b"\x80" and not zipfile.is_zipfile(path)):   # torch.save: a zip, or pickle 2+
        why = "empty file" if not head else "not a file written by torch.save"
        raise UserError(f"{path}: unreadable {what} ({why})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_globals(path, e)
        if refused:
            raise UserError(f"{path}: refused to load: the {what} references the Python object(s) "
                            f"{', '.join(refused)}; it may hold only tensors and plain containers") from None
        reason = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(\n|$)", str(e), re.S)
        if "Weights only load failed" in str(e):
            raise UserError(f"{path}: refused to load: this {what} is not only tensors and plain containers"
                            + (f" ({reason.group(1).strip()})" if reason else "")) from None
        raise UserError(f"{path}: unreadable {what} (not a file written by torch.save)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: unreadable {what} ({type(e).__name__}: {first[:200]})") from None


def _refused_globals(path: Path, error: Exception) -> list[str]:
    """The globals a weights_only load refuses: torch's own scan of the file, else the one in the error."""
    import re

    import torch

    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be scanned; use the error text
        found = []
    if not found:
        found = re.findall(r"GLOBAL ([\w.]+)", str(error))[:1]
    return sorted(set(found))
