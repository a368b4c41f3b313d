"""Blob storage for large values: a small interface, a local folder and any fsspec URL.

A blob's key is the SHA-256 hex digest of its bytes (:func:`blob_key`), so a blob can always be checked
against its key: a good blob is never rewritten, and a damaged one (edited, truncated) is replaced by the
next ``put`` of the same bytes. Writes are atomic (a temp file in the target folder then a rename, or one
object-store put): a reader sees the whole blob or none.

Where blobs go (:func:`open_blob_store`): the configured folder or URL; else, for SQLite, a folder next to
the database; else (PostgreSQL) nowhere: large values stay in the database, so the database alone is a
complete shared cache, and no per-machine folder can hold a value planted by another local user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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


# Protocols whose single put is atomic (an object appears whole or not at all): no temp key and move.
_ATOMIC_PUT = frozenset(("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"))
_LOCAL = ("", "file", "local")


class FsspecBlobStore:
    """Blobs under any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``), ``ab/cdef...`` by key.

    Errors of the file system other than a missing blob are raised as OSError naming the URL.
    """

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        self.protocol = url.split("://", 1)[0].lower()
        try:
            self.fs, root = url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise OSError(f"cannot use the blob location {url}: {exc}") from exc
        self.root = str(root).rstrip("/")
        self.atomic_put = self.protocol in _ATOMIC_PUT

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    def path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key[2:]}"

    def _io(self, what: str, key: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self.fs, method)(*args)
        except FileNotFoundError:
            raise
        except Exception as exc:  # botocore and friends have their own error types
            raise OSError(f"cannot {what} the blob {key} at {self.url}: {type(exc).__name__}: {exc}") from exc

    def has(self, key: str) -> bool:
        self.fs.invalidate_cache(self.path(key))  # listings cached by s3fs miss what others wrote since
        return bool(self._io("look up", key, "exists", self.path(key)))

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._io("read", key, "cat_file", self.path(key)))
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` unless a blob with exactly these bytes is there already."""
        path = self.path(key)
        if self._intact(path, key, len(data)):
            return
        if self.atomic_put:
            self._io("write", key, "pipe_file", path, data)
            return
        tmp = f"{self.root}/{key[:2]}/.tmp-{uuid.uuid4().hex}"
        self._io("write", key, "makedirs", f"{self.root}/{key[:2]}", True)  # file systems with real folders
        try:
            self._io("write", key, "pipe_file", tmp, data)
            self._io("write", key, "mv", tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._io("delete", key, "rm_file", self.path(key))

    def _intact(self, path: str, key: str, size: int) -> bool:
        self.fs.invalidate_cache(path)
        try:
            if self._io("look up", key, "size", path) != size:
                return False
            return blob_key(bytes(self._io("read", key, "cat_file", path))) == key
        except FileNotFoundError:
            return False


def open_blob_store(location: str | os.PathLike[str] | None, database_path: str | None) -> BlobStore | None:
    """The blob store for a configured folder or URL (``location``); without one, a folder next to a SQLite
    database (``database_path``), or None: large values stay in the database."""
    if location is None:
        return None if database_path is None else LocalBlobStore(Path(database_path).parent / "blobs")
    text = os.fspath(location)
    protocol, _, rest = text.partition("://") if "://" in text else ("", "", text)
    if protocol.lower() in _LOCAL:
        return LocalBlobStore(rest)
    return FsspecBlobStore(text)
