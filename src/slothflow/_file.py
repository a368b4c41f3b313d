"""Files as values: a ``File``'s hash reflects the data it points to, so changed data reruns its consumers.

A local file's identity is its content digest. The digest is remembered per stat token (size, mtime_ns,
ctime_ns, inode, device), so an unchanged file is read once per process, a ``touch`` or an identical
rewrite changes nothing, and an edit whose mtime was restored is still seen because its ctime moved.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from typing import IO, Any

from ._hashing import hash_struct
from ._value import Value

_digests: dict[str, tuple[tuple[int, ...], str]] = {}


def _stat_token(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


# A digest is only remembered for a file whose last change is at least this much older than the moment
# it was read. File systems stamp times with a coarse clock (a few milliseconds on Linux, up to seconds
# elsewhere), so a file rewritten twice within one tick keeps its size, times and inode: its stat token
# cannot tell the two contents apart, and only reading it again can ("racy" files, as git calls them).
RACY_WINDOW_NS = 2_000_000_000


def content_digest(path: str) -> str | None:
    """``sha256:<hex>`` of a local file's bytes, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    token = _stat_token(st)
    known = _digests.get(path)
    if known is not None and known[0] == token:
        return known[1]
    read_at = time.time_ns()
    with open(path, "rb") as fh:
        digest = "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    if read_at - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_WINDOW_NS:
        _digests[path] = (token, digest)
    else:
        _digests.pop(path, None)
    return digest


class File(Value):
    """A file on local disk, referred to by path; its hash follows its content."""

    type_name = "slothflow.File"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._hash: str | None = None

    def get_hash(self, data: bytes | None = None) -> str:
        self._hash = hash_struct("File", self.path, content_digest(self.path) or "missing")
        return self._hash

    @property
    def hash(self) -> str:
        return self._hash or self.get_hash()

    def update_hash(self) -> None:
        self.get_hash()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._hash = state["hash"]

    def is_valid(self) -> bool:
        """True when the file still has the content it had when this value was recorded."""
        recorded = self._hash
        return recorded is not None and recorded == hash_struct(
            "File", self.path, content_digest(self.path) or "missing"
        )

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def isfile(self) -> bool:
        return os.path.isfile(self.path)

    def isdir(self) -> bool:
        return os.path.isdir(self.path)

    def size(self) -> int:
        return os.path.getsize(self.path)

    def basename(self) -> str:
        return os.path.basename(self.path)

    def dirname(self) -> str:
        return os.path.dirname(self.path)

    def open(self, mode: str = "r", encoding: str | None = None, **kwargs: Any) -> IO[Any]:
        if any(c in mode for c in "wax+"):
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
        return _Tracked(self, open(self.path, mode, encoding=encoding, **kwargs))  # type: ignore[return-value]

    def read(self, mode: str = "r", encoding: str | None = None) -> Any:
        with open(self.path, mode, encoding=encoding) as fh:
            return fh.read()

    def readlines(self, mode: str = "r") -> list[Any]:
        with open(self.path, mode) as fh:
            return fh.readlines()

    def write(self, data: str | bytes, mode: str = "w", encoding: str | None = None) -> None:
        if isinstance(data, bytes) and "b" not in mode:
            mode += "b"
        with self.open(mode, encoding=encoding) as fh:
            fh.write(data)

    def touch(self) -> None:
        with open(self.path, "a"):
            os.utime(self.path)
        self.update_hash()

    def remove(self) -> None:
        os.remove(self.path)
        self.update_hash()

    def copy_to(self, dest: File | str, skip_if_exists: bool = False) -> File:
        target = dest if isinstance(dest, File) else File(dest)
        if not (skip_if_exists and target.exists()):
            parent = os.path.dirname(target.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            shutil.copyfile(self.path, target.path)
        target.update_hash()
        return target

    def __repr__(self) -> str:
        return f"File({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.path)


class _Tracked:
    """A file object that refreshes its File's hash when closed after writing."""

    def __init__(self, file: File, fh: IO[Any]) -> None:
        self._file = file
        self._fh = fh

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fh)

    def __enter__(self) -> _Tracked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()
        self._file.update_hash()
