"""Blob storage for large values: a small interface and a local, content-addressed folder.

A blob's key is the SHA-256 hex digest of its bytes (:func:`blob_key`), so a blob can always be checked
against its key: a good blob is never rewritten, and a damaged one (edited, truncated) is replaced by the
next ``put`` of the same bytes. Writes are atomic (a temp file in the target folder, then a rename): a
reader sees the whole blob or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable


def blob_key(data: bytes) -> str:
    """The key (content digest) of a blob's bytes."""
    return hashlib.sha256(data).hexdigest()


@runtime_checkable
class BlobStore(Protocol):
    """Where large values live. Keys are :func:`blob_key` digests; ``get`` of a missing key raises KeyError."""

    def has(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status).

    ``os.umask`` can only read the mask by setting it, which races with other threads creating files: it is
    the fallback only, and callers read the mask once (when a store opens), never per write.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class LocalBlobStore:
    """Blobs as files in a folder (``ab/cdef...`` by key), readable as the umask at opening allows."""

    def __init__(self, folder: str | os.PathLike[str], umask: int | None = None) -> None:
        self.folder = Path(folder)
        self.file_mode = 0o666 & ~(current_umask() if umask is None else umask)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.folder)!r})"

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / key[2:]

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` unless a blob with exactly these bytes is there already.

        Raises OSError when the folder cannot be written.
        """
        path = self.path(key)
        if self._intact(path, key, len(data)):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, self.file_mode)  # mkstemp makes it private; a team cache is shared
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    @staticmethod
    def _intact(path: Path, key: str, size: int) -> bool:
        try:
            if path.stat().st_size != size:
                return False
            return blob_key(path.read_bytes()) == key
        except OSError:
            return False
