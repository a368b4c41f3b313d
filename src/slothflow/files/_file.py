"""Files as values: ``File``, ``Dir``, ``FileSet``, ``Staging*`` and ``Content*``, local or remote (fsspec).

A file value's hash covers its path and a fingerprint of the data there (see ``_fs``): when the data
changes, so does the hash of every call that takes the file, and those calls rerun. A file recorded in a
cached result is checked again before the result is reused (:meth:`File.is_valid`): an output that was
deleted or changed since makes its producer rerun (make-like).

Hashing a file that does not exist, as an argument or in a result, is an error naming the path; a recorded
file that vanished is merely invalid.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterator
from typing import IO, Any, cast

from slothflow.files import _fs
from slothflow.hashing._encode import hash_struct
from slothflow.model._value import Value, iter_values


def normalize_path(path: str | os.PathLike[str]) -> str:
    """The form a path is recorded under: absolute for local files, the URL as given for remote ones."""
    text = os.fspath(path)
    if _fs.is_local(text):
        return os.path.abspath(_fs.local_path(text))
    return text


class _PathValue(Value):
    """Equality, hashing and repr shared by the path-based values: equal when same type, path and data."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return False
        mine, theirs = cast(Any, self), cast(Any, other)  # subclasses define path and hash
        return bool(theirs.path == mine.path and theirs.hash == mine.hash)

    def __hash__(self) -> int:
        return hash((type(self).__name__, cast(Any, self).path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({cast(Any, self).path!r})"


class File(_PathValue):
    """A file on local disk or in remote storage, referred to by path or URL."""

    type_name = "slothflow.File"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._hash: str | None = None
        self._fp: str | None = None  # the fingerprint behind _hash, when computed in this process

    # ------------------------------------------------------------------------------------- identity
    @property
    def filesystem(self) -> _fs.FileSystem:
        return _fs.get_filesystem(self.path)

    def _fingerprint(self) -> str | None:
        path = self.path
        if "://" not in path:  # local: the remembered content digest (the hot path of a recheck)
            return _fs.digests.digest(path)
        return self.filesystem.fingerprint(path)

    def _hash_of(self, fingerprint: str | None) -> str:
        self._fp = fingerprint
        # hash_struct(type_name, path, fingerprint), in one update: the same digest, less overhead per file.
        t, p, f = self.type_name.encode(), self.path.encode(), (fingerprint or "missing").encode()
        return hashlib.sha256(b"s%d:%ss%d:%ss%d:%s" % (len(t), t, len(p), p, len(f), f)).hexdigest()

    def content_key(self) -> str | None:
        """A key of the data alone (not the path's spelling), for lineage; None when the file is missing."""
        fp = self._fp if self._fp is not None else self._fingerprint()
        return None if fp is None else hash_struct("fingerprint", fp)

    def get_hash(self, data: bytes | None = None) -> str:
        """The hash of the file as it is now (a missing file has a hash too: it can be created later)."""
        self._hash = self._hash_of(self._fingerprint())
        return self._hash

    def __slothflow_hash__(self) -> str:
        # As an argument or in a result the file must exist: a missing input is an error, not a value.
        fingerprint = self._fingerprint()
        if fingerprint is None:
            broken = _fs.is_local(self.path) and os.path.islink(_fs.local_path(self.path))
            what = "is a broken symbolic link" if broken else "does not exist"
            raise _fs.MissingFileError(f"file {self.path} {what}", path=self.path)
        # The canonical encoder hashes what this returns (with the class name): no inner digest is needed on
        # this hot path (a rerun rechecks thousands of files); ``.hash`` is derived from it when asked for.
        self._fp, self._hash = fingerprint, None
        return f"{self.path}\0{fingerprint}"

    @property
    def hash(self) -> str:
        if self._hash is None:
            self._hash = self._hash_of(self._fp) if self._fp is not None else self._hash_of(self._fingerprint())
        return self._hash

    def update_hash(self) -> None:
        self.get_hash()

    def is_valid(self) -> bool:
        """True when the file still holds the data it held when this value was recorded."""
        if self._hash is None:
            if self._fp is None:
                return True
            self._hash = self._hash_of(self._fp)
        try:
            fingerprint = self._fingerprint()
        except _fs.FileAccessError:
            return False
        # A file recorded as missing that is still missing holds what it held; one that existed must still
        # exist with the same fingerprint.
        return self._hash == self._hash_of(fingerprint)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._hash = state["hash"]
        self._fp = None

    @classmethod
    def parse_arg(cls, raw_type: type, arg: str) -> Any:
        return cls(arg)

    # ---------------------------------------------------------------------------------- operations
    def exists(self) -> bool:
        return self.filesystem.exists(self.path)

    def isfile(self) -> bool:
        return self.filesystem.isfile(self.path)

    def isdir(self) -> bool:
        return self.filesystem.isdir(self.path)

    def size(self) -> int:
        return self.filesystem.size(self.path)

    def basename(self) -> str:
        return posixpath.basename(self.path.rstrip("/")) if "://" in self.path else os.path.basename(self.path)

    def dirname(self) -> str:
        return posixpath.dirname(self.path) if "://" in self.path else os.path.dirname(self.path)

    def open(self, mode: str = "r", encoding: str | None = None, **kwargs: Any) -> IO[Any]:
        """Open the file; closing a file opened for writing updates this value's hash."""
        if encoding is not None:
            kwargs["encoding"] = encoding
        fh = self.filesystem.open(self.path, mode, **kwargs)
        if any(c in mode for c in "wax+"):
            return _Rehash(self, fh)  # type: ignore[return-value]
        return fh

    def read(self, mode: str = "r", encoding: str | None = None) -> Any:
        with self.open(mode, encoding=encoding) as fh:
            return fh.read()

    def readlines(self, mode: str = "r") -> list[Any]:
        with self.open(mode) as fh:
            return list(fh.readlines())

    def write(self, data: str | bytes, mode: str = "w", encoding: str | None = None) -> None:
        if isinstance(data, bytes) and "b" not in mode:
            mode += "b"
        with self.open(mode, encoding=encoding) as fh:
            fh.write(data)

    def touch(self) -> None:
        self.filesystem.touch(self.path)
        self.update_hash()

    def remove(self) -> None:
        self.filesystem.remove(self.path)
        self.update_hash()

    def copy_to(self, dest: File | str, skip_if_exists: bool = False) -> File:
        """Copy to another path or URL (any file system to any other); returns the destination File."""
        target = dest if isinstance(dest, File) else File(dest)
        if not (skip_if_exists and target.exists()):
            _fs.copy(self.path, target.path)
        target.update_hash()
        return target

    def stage(self, local: str | None = None) -> StagingFile:
        """Pair this (remote) file with a local path, for script tasks."""
        return StagingFile(File(local or self.basename()), self)


class ContentFile(File):
    """A file hashed by its full content every time (no remembered digests, no version tokens)."""

    type_name = "slothflow.ContentFile"

    def _fingerprint(self) -> str | None:
        import hashlib

        if not self.filesystem.exists(self.path):
            return None
        if self.filesystem.isdir(self.path):
            raise _fs.FileAccessError(f"{self.path} is a directory, not a file (use ContentDir)", path=self.path)
        h = hashlib.sha256()
        try:
            for chunk in _fs.iter_chunks(self.path):
                h.update(chunk)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _fs.FileAccessError(f"cannot read {self.path}: {exc}", path=self.path) from exc
        return "sha256:" + h.hexdigest()


class _Rehash:
    """A file object that refreshes its File's hash when closed after writing."""

    def __init__(self, file: File, fh: IO[Any]) -> None:
        self._file = file
        self._fh = fh

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fh)

    def __enter__(self) -> _Rehash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()
        self._file.update_hash()


class FileSet(_PathValue):
    """The files matching a glob pattern (``**`` recurses); hashed by their paths and fingerprints."""

    type_name = "slothflow.FileSet"
    file_class: type[File] = File

    def __init__(self, pattern: str | os.PathLike[str]) -> None:
        self.pattern = os.fspath(pattern)
        self._hash: str | None = None

    @property
    def path(self) -> str:
        return self.pattern

    @property
    def filesystem(self) -> _fs.FileSystem:
        return _fs.get_filesystem(self.pattern)

    def _paths(self) -> list[str]:
        return self.filesystem.glob(self.pattern)

    def files(self) -> list[File]:
        return [self.file_class(p) for p in self._paths()]

    def __iter__(self) -> Iterator[File]:
        return iter(self.files())

    def iter_subvalues(self) -> Iterator[Value]:
        return iter(self.files())

    def _listing(self) -> list[tuple[str, str]]:
        return [(p, f._fingerprint() or "missing") for p, f in ((f.path, f) for f in self.files())]

    def _hash_of(self, listing: list[tuple[str, str]]) -> str:
        return hash_struct(type(self).type_name, self.pattern, *[f"{p}\0{fp}" for p, fp in listing])

    def get_hash(self, data: bytes | None = None) -> str:
        self._hash = self._hash_of(self._listing())
        return self._hash

    def __slothflow_hash__(self) -> str:
        return self.get_hash()

    @property
    def hash(self) -> str:
        return self._hash or self.get_hash()

    def update_hash(self) -> None:
        self.get_hash()

    def is_valid(self) -> bool:
        if self._hash is None:
            return True
        try:
            return self._hash == self._hash_of(self._listing())
        except _fs.FileAccessError:
            return False

    def __getstate__(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "hash": self.hash}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.pattern = state["pattern"]
        self._hash = state["hash"]



class Dir(FileSet):
    """A directory: hashed by the sorted (relative path, fingerprint) pairs of every file below it."""

    type_name = "slothflow.Dir"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(path).rstrip("/") or "/")

    def _paths(self) -> list[str]:
        if not self.filesystem.isdir(self.pattern):
            return []
        return self.filesystem.walk_files(self.pattern)

    def _listing(self) -> list[tuple[str, str]]:
        return [(self.rel_path(f.path), f._fingerprint() or "missing") for f in self.files()]

    def __slothflow_hash__(self) -> str:
        if not self.filesystem.isdir(self.pattern):
            raise _fs.MissingFileError(f"directory {self.pattern} does not exist", path=self.pattern)
        return self.get_hash()

    def is_valid(self) -> bool:
        try:
            return self.filesystem.isdir(self.pattern) and super().is_valid()
        except _fs.FileAccessError:
            return False

    def rel_path(self, path: str) -> str:
        base = self.pattern
        if "://" not in path and _fs.is_local(base):
            return os.path.relpath(path, base)
        stripped = _fs.split_protocol(path)[1]
        prefix = _fs.split_protocol(base)[1].rstrip("/") + "/"
        return stripped[len(prefix):] if stripped.startswith(prefix) else stripped

    def file(self, rel: str) -> File:
        sep = "/" if "://" in self.pattern else os.sep
        return self.file_class(self.pattern + sep + rel)

    def exists(self) -> bool:
        return self.filesystem.isdir(self.pattern)

    def mkdir(self) -> None:
        self.filesystem.mkdir(self.pattern)

    def rmdir(self, recursive: bool = False) -> None:
        self.filesystem.rmdir(self.pattern, recursive=recursive)
        self.update_hash()

    def copy_to(self, dest: Dir | str, skip_if_exists: bool = False) -> Dir:
        target = dest if isinstance(dest, Dir) else Dir(dest)
        for f in self.files():
            f.copy_to(target.file(self.rel_path(f.path)), skip_if_exists=skip_if_exists)
        target.update_hash()
        return target

    def stage(self, local: str | None = None) -> StagingDir:
        return StagingDir(Dir(local or posixpath.basename(self.pattern.rstrip("/"))), self)


class ContentDir(Dir):
    """A directory whose files are hashed by full content every time."""

    type_name = "slothflow.ContentDir"
    file_class = ContentFile


class _Staging(Value):
    """A local path paired with a remote one: ``stage()`` copies remote to local, ``unstage()`` back.

    Its identity is the local path and the remote data: the local copy is a working copy.
    """

    kind: type[File] | type[Dir] = File
    local: Any
    remote: Any

    def __init__(self, local: Any, remote: Any) -> None:
        self.local = local if isinstance(local, self.kind) else self.kind(local)
        self.remote = remote if isinstance(remote, self.kind) else self.kind(remote)

    def stage(self) -> Any:
        return self.remote.copy_to(self.local)

    def unstage(self) -> Any:
        return self.local.copy_to(self.remote)

    def get_hash(self, data: bytes | None = None) -> str:
        return hash_struct(type(self).type_name, self.local.path, self.remote.hash)

    def __slothflow_hash__(self) -> str:
        return hash_struct(type(self).type_name, self.local.path, self.remote.__slothflow_hash__())

    def is_valid(self) -> bool:
        return self.remote.is_valid()

    def iter_subvalues(self) -> Iterator[Value]:
        return iter((self.remote,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.local.path!r}, {self.remote.path!r})"


class StagingFile(_Staging):
    """A local file paired with a remote one (for script inputs and outputs)."""

    type_name = "slothflow.StagingFile"
    kind = File

    def __init__(self, local: File | str, remote: File | str) -> None:
        super().__init__(local, remote)


class StagingDir(_Staging):
    """A local directory paired with a remote one."""

    type_name = "slothflow.StagingDir"
    kind = Dir

    def __init__(self, local: Dir | str, remote: Dir | str) -> None:
        super().__init__(local, remote)


def iter_files(value: Any) -> Iterator[File]:
    """Every File inside a value, as validity sees them: containers, dict keys, dataclasses, attrs, plain
    objects, Dirs, staging pairs and expressions (see :func:`~slothflow.model._value.iter_values`)."""
    for v in iter_values(value):
        if isinstance(v, File):
            yield v
