"""File systems and fingerprints: how slothflow knows whether the data behind a path changed.

- A **local** file's fingerprint is the SHA-256 of its content, remembered per *stat token* (size,
  mtime_ns, ctime_ns, inode, device). An unchanged file is read once (ever, when the store remembers the
  digest); a ``touch`` or an identical rewrite changes the token but not the digest; an edit whose mtime was
  restored (``cp -p``, ``tar x``) is still seen, because ctime cannot be set back.
- A **remote** object (any fsspec URL: ``s3://``, ``gs://``, ``memory://``, ``http(s)://``, ...) is
  fingerprinted by the version token its store keeps (VersionId, generation, ETag, checksums), treated as
  opaque; without one, by its content when small, else by size and modification time.

Digests are remembered in memory and, when a store is bound (:func:`bind_digest_store`), in the database,
so a new process does not re-read a 10 GB file that did not change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from typing import IO, Any, Protocol

from slothflow._errors import FileAccessError, MissingFileError

# A digest is only remembered for a file whose last change is at least this much older than the moment
# it was read. File systems stamp times with a coarse clock, so a file rewritten twice within one tick
# keeps its size, times and inode: its stat token cannot tell the two contents apart, and only reading it
# again can ("racy" files, as git calls them).
RACY_WINDOW_NS = 2_000_000_000
# Remote objects with no version token are hashed by content up to this size.
REMOTE_CONTENT_LIMIT = 16 * 1024 * 1024

LOCAL_PROTOCOLS = ("", "file", "local")


def split_protocol(path: str) -> tuple[str, str]:
    """("s3", "bucket/key") for "s3://bucket/key"; ("", path) for a local path."""
    if "://" in path:
        protocol, rest = path.split("://", 1)
        return protocol.lower(), rest
    return "", path


def is_local(path: str) -> bool:
    return split_protocol(path)[0] in LOCAL_PROTOCOLS


def local_path(path: str) -> str:
    """The OS path of a local path or file:// URL."""
    if "://" not in path:
        return path
    protocol, rest = split_protocol(path)
    return rest if protocol == "file" else path


# ------------------------------------------------------------------------------------------ digests


class DigestStore(Protocol):
    """Where remembered local digests persist (the slothflow store)."""

    def load_file_digests(self, directory: str) -> dict[str, tuple[str, str]]: ...

    def save_file_digest(self, path: str, token: str, digest: str) -> None: ...


class DigestCache:
    """Content digests of local files by stat token: in memory, backed by the store when bound.

    The store is only used from the thread that bound it (the scheduler's); a digest computed in another
    thread (a task body hashing a file it wrote) is remembered in memory and saved to the store the next
    time the binding thread meets it, or when a store is bound.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[str, str]] = {}
        self._unsaved: set[str] = set()  # remembered in memory, not yet in the bound store
        self._store: DigestStore | None = None
        self._owner: int | None = None
        self._dirs: set[str] = set()  # folders whose rows the bound store has given (into _memory)
        self.reads = 0  # how many files were actually read (for tests and benchmarks)

    def bind(self, store: DigestStore | None) -> None:
        """Persist digests through ``store``; it is only used from the calling (scheduler) thread."""
        with self._lock:
            self._store = store
            self._owner = threading.get_ident() if store is not None else None
            self._dirs = set()
            self._unsaved = set(self._memory) if store is not None else set()
        self._save_unsaved()

    def _save_unsaved(self) -> None:
        store = self._store
        if store is None or self._owner != threading.get_ident():
            return
        with self._lock:
            pending = [(p, self._memory[p]) for p in self._unsaved if p in self._memory]
            self._unsaved.clear()
        for path, (token, digest) in pending:
            store.save_file_digest(path, token, digest)

    def _lookup(self, path: str, token: str) -> str | None:
        """The remembered digest of ``path`` at ``token`` (memory first, then the store's rows for its folder)."""
        known = self._memory.get(path)  # a dict read is atomic: no lock on the hot path
        store = self._store
        owned = store is not None and self._owner == threading.get_ident()
        if known is not None and known[0] == token:
            if owned and path in self._unsaved:
                self._save_unsaved()
            return known[1]
        if not owned:
            return None
        assert store is not None
        directory = path.rpartition("/")[0] or "/"  # os.path.dirname of an absolute, normal path
        if directory in self._dirs:
            return None  # the folder's rows are loaded already: nothing is remembered for this token
        # One query per folder, the first time a file in it is met; its rows go to memory, so the other files
        # of the folder take digest()'s fast path (a stat and a dict lookup).
        rows = store.load_file_digests(directory)
        self._dirs.add(directory)
        with self._lock:
            memory = self._memory
            newer = {p: memory[p] for p in rows.keys() & memory.keys()}  # computed here: they take precedence
            memory.update(rows)
            memory.update(newer)
        entry = rows.get(path)
        if entry is None or entry[0] != token:
            return None
        memory[path] = entry  # already in the store: nothing for _unsaved to track
        return entry[1]

    def _remember(self, path: str, token: str, digest: str) -> None:
        store = self._store
        owned = store is not None and self._owner == threading.get_ident()
        with self._lock:
            self._memory[path] = (token, digest)
            if owned:
                self._unsaved.discard(path)
            elif store is not None:
                self._unsaved.add(path)
        if owned:
            assert store is not None
            store.save_file_digest(path, token, digest)

    def digest(self, path: str) -> str | None:
        """``sha256:<hex>`` of a local file, or None when it does not exist."""
        if path[:1] != "/" or "//" in path or "/." in path or path.endswith("/"):
            path = os.path.abspath(path)  # already absolute and normal (the usual case): as it is
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise FileAccessError(f"cannot read {path}: {exc}", path=path) from exc
        if not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise FileAccessError(f"{path} is {what}, not a file", path=path)
        token = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
        known = self._memory.get(path)
        if known is not None and known[0] == token and path not in self._unsaved:
            return known[1]  # the hot path of a recheck: one stat and a dict lookup
        digest: str | None = self._lookup(path, token)
        if digest is not None:
            return digest
        read_at = time.time_ns()
        try:
            with open(path, "rb") as fh:
                digest = "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileAccessError(f"cannot read {path}: {exc}", path=path) from exc
        with self._lock:
            self.reads += 1
        if read_at - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_WINDOW_NS:
            self._remember(path, token, digest)
        return digest


digests = DigestCache()


def bind_digest_store(store: DigestStore | None) -> None:
    digests.bind(store)


# ---------------------------------------------------------------------------------------- file systems


class FileSystem:
    """The operations slothflow needs on one kind of storage. Paths are full (with protocol if remote)."""

    protocol = ""

    def fingerprint(self, path: str) -> str | None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def isfile(self, path: str) -> bool:
        raise NotImplementedError

    def isdir(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def mkdir(self, path: str) -> None:
        raise NotImplementedError

    def rmdir(self, path: str, recursive: bool = False) -> None:
        raise NotImplementedError

    def touch(self, path: str) -> None:
        raise NotImplementedError

    def glob(self, pattern: str) -> list[str]:
        raise NotImplementedError

    def walk_files(self, path: str) -> list[str]:
        """Every file below a directory (recursively), as full paths, sorted."""
        raise NotImplementedError


class LocalFileSystem(FileSystem):
    protocol = "local"

    def fingerprint(self, path: str) -> str | None:
        return digests.digest(local_path(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(local_path(path))

    def isfile(self, path: str) -> bool:
        return os.path.isfile(local_path(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(local_path(path))

    def open(self, path: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        p = local_path(path)
        if any(c in mode for c in "wax+"):
            parent = os.path.dirname(p)
            if parent:
                os.makedirs(parent, exist_ok=True)
        return open(p, mode, **kwargs)  # noqa: SIM115 - the caller closes it

    def size(self, path: str) -> int:
        return os.path.getsize(local_path(path))

    def remove(self, path: str) -> None:
        os.remove(local_path(path))

    def mkdir(self, path: str) -> None:
        os.makedirs(local_path(path), exist_ok=True)

    def rmdir(self, path: str, recursive: bool = False) -> None:
        if recursive:
            shutil.rmtree(local_path(path))
        else:
            os.rmdir(local_path(path))

    def touch(self, path: str) -> None:
        p = local_path(path)
        parent = os.path.dirname(p)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(p, "a"):
            os.utime(p)

    def glob(self, pattern: str) -> list[str]:
        import glob as globmod

        return sorted(p for p in globmod.glob(local_path(pattern), recursive=True) if os.path.isfile(p))

    def walk_files(self, path: str) -> list[str]:
        # Symlinked folders are followed (their files are the Dir's data), each real folder once: no loops.
        root = local_path(path)
        out: list[str] = []
        seen: set[tuple[int, int]] = set()
        for folder, dirs, files in os.walk(root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()  # a fixed order decides which path a folder reached twice is listed under
            out.extend(os.path.join(folder, f) for f in files)
        return sorted(out)


_VERSION_KEYS = ("VersionId", "version_id", "generation", "ChecksumSHA256", "checksumSHA256", "md5Hash",
                 "crc32c", "ETag", "etag", "e_tag", "Content-MD5", "Digest")


class FsspecFileSystem(FileSystem):
    """Any fsspec protocol; the fingerprint is the store's opaque version token.

    Paths handed back (listings, globs) keep the spelling of the folder or pattern they were asked for:
    fsspec normalizes paths (``memory://a/b`` is ``/a/b`` to it), and a file's path is part of its hash.
    """

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._fs: Any = None

    def _filesystem(self, path: str) -> Any:
        if self._fs is None:
            try:
                import fsspec
            except ImportError as exc:  # pragma: no cover - fsspec is a dependency
                raise FileAccessError(f"cannot use {path}: fsspec is needed for {self.protocol}:// paths",
                                      path=path) from exc
            try:
                self._fs = fsspec.filesystem(self.protocol)
            except ValueError as exc:
                raise FileAccessError(
                    f"cannot use {path}: unknown file protocol {self.protocol!r} ({exc})", path=path
                ) from exc
            except ImportError as exc:
                raise FileAccessError(
                    f"cannot use {path}: {self.protocol}:// paths need an extra package: {exc}", path=path
                ) from exc
            except Exception as exc:  # a file system whose set-up fails (bad configuration, say)
                raise FileAccessError(
                    f"cannot use {path}: {self.protocol}:// cannot be set up: {type(exc).__name__}: {exc}",
                    path=path,
                ) from exc
        return self._fs

    @property
    def fs(self) -> Any:
        return self._filesystem(f"{self.protocol}://")

    def _call(self, what: str, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self._filesystem(path), method)
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # botocore and friends raise their own types for refused credentials
            raise FileAccessError(f"cannot {what} {path}: {type(exc).__name__}: {exc}", path=path) from exc

    def _forget(self, path: str | None = None) -> None:
        """Drop fsspec's cached listings, so that a change made by someone else is seen (s3fs keeps them)."""
        fs = self._fs
        if fs is not None:
            try:
                fs.invalidate_cache(path)
            except Exception:  # a file system without listings cache: nothing to forget
                pass

    def fingerprint(self, path: str) -> str | None:
        self._filesystem(path)
        self._forget(path)
        try:
            info = self._call("read", path, "info", path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            raise FileAccessError(f"{path} is a directory, not a file (use Dir)", path=path)
        for key in _VERSION_KEYS:
            value = info.get(key)
            if value:
                return f"{key}:{str(value).strip(chr(34))}"
        size = info.get("size")
        if size is not None and size <= REMOTE_CONTENT_LIMIT:
            try:
                data = self._call("read", path, "cat_file", path)
            except FileNotFoundError:
                return None
            return "sha256:" + hashlib.sha256(data).hexdigest()
        stamp = next((info[k] for k in _STAMP_KEYS if info.get(k)), None)
        return f"stat:{size}:{stamp}"

    def exists(self, path: str) -> bool:
        self._filesystem(path)
        self._forget(path)
        return bool(self._call("check", path, "exists", path))

    def isfile(self, path: str) -> bool:
        self._filesystem(path)
        self._forget(path)
        return bool(self._call("check", path, "isfile", path))

    def isdir(self, path: str) -> bool:
        self._filesystem(path)
        self._forget(path)
        return bool(self._call("check", path, "isdir", path))

    def open(self, path: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        if "r" in mode and "+" not in mode:
            self._filesystem(path)
            self._forget(path)
        try:
            return self._call("open", path, "open", path, mode, **kwargs)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no such file: {path}") from exc

    def size(self, path: str) -> int:
        self._filesystem(path)
        self._forget(path)
        return int(self._call("read", path, "size", path))

    def remove(self, path: str) -> None:
        self._call("remove", path, "rm", path)

    def mkdir(self, path: str) -> None:
        self._call("create", path, "makedirs", path, exist_ok=True)

    def rmdir(self, path: str, recursive: bool = False) -> None:
        self._call("remove", path, "rm", path, recursive=recursive)

    def touch(self, path: str) -> None:
        self._call("touch", path, "touch", path)

    def _full(self, p: str) -> str:
        return p if "://" in p else f"{self.protocol}://{p.lstrip('/') if self.protocol != 'memory' else p}"

    def _respell(self, root: str, found: list[str]) -> list[str]:
        """Full paths, spelled like ``root``, for what fsspec found below it (in its normalized form)."""
        norm = str(self._filesystem(root)._strip_protocol(root)).rstrip("/")
        base = root.rstrip("/")
        out = []
        for p in found:
            if norm and p.startswith(norm + "/"):
                out.append(base + p[len(norm):])
            else:
                out.append(self._full(p))
        return sorted(out)

    def glob(self, pattern: str) -> list[str]:
        self._filesystem(pattern)
        self._forget()
        protocol, rest = split_protocol(pattern)
        static = []
        for part in rest.split("/"):
            if any(c in part for c in "*?["):
                break
            static.append(part)
        root = f"{protocol}://" + "/".join(static)
        found = self._call("list", pattern, "glob", pattern)
        files = [p for p in found if self._call("check", p, "isfile", p)]
        return self._respell(root, files)

    def walk_files(self, path: str) -> list[str]:
        self._filesystem(path)
        self._forget()
        found = self._call("list", path, "find", path)
        return self._respell(path, list(found))


_STAMP_KEYS = ("mtime", "LastModified", "last_modified", "Last-Modified", "updated", "created")

_local = LocalFileSystem()
_remote: dict[str, FsspecFileSystem] = {}


def get_filesystem(path: str) -> FileSystem:
    if "://" not in path:
        return _local
    protocol = split_protocol(path)[0]
    if protocol in LOCAL_PROTOCOLS:
        return _local
    fs = _remote.get(protocol)
    if fs is None:
        fs = _remote[protocol] = FsspecFileSystem(protocol)
    return fs


def fingerprint(path: str) -> str | None:
    """The fingerprint of the data at ``path`` (None when nothing is there)."""
    return get_filesystem(path).fingerprint(path)


def require_fingerprint(path: str) -> str:
    fp = fingerprint(path)
    if fp is None:
        raise MissingFileError(f"file {path} does not exist", path=path)
    return fp


def copy(src: str, dest: str) -> None:
    """Copy one file between any two file systems."""
    src_fs, dest_fs = get_filesystem(src), get_filesystem(dest)
    if src_fs is _local and dest_fs is _local:
        parent = os.path.dirname(local_path(dest))
        if parent:
            os.makedirs(parent, exist_ok=True)
        shutil.copyfile(local_path(src), local_path(dest))
        return
    with src_fs.open(src, "rb") as reader, dest_fs.open(dest, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)


def iter_chunks(path: str, size: int = 1024 * 1024) -> Iterator[bytes]:
    with get_filesystem(path).open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
