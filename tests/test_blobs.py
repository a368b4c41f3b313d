"""Blob storage: content-addressed, atomic, never touching the process umask (other threads create files)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from slothflow import hash_value
from slothflow.store import Store
from slothflow.store._store import INLINE_LIMIT
from slothflow.store.blobs import BlobStore, LocalBlobStore, blob_key, current_umask


def _proc_umask() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise AssertionError("no Umask line")


def test_writing_large_values_never_changes_the_umask(sqlite_uri: str, tmp_path: Path) -> None:
    """A thread that creates files while large values are written always runs under the process's umask."""
    mask = os.umask(0o027)  # set before the store opens, restored at the end: the only umask calls here
    seen: set[int] = set()

    def profile(frame: object, event: str, arg: object) -> None:
        # What a thread creating a file at this instant would get: the umask right after any umask call.
        if event == "c_return" and arg is os.umask:
            seen.add(_proc_umask())

    store = Store(sqlite_uri, blob_dir=tmp_path / "blobs")
    sys.setprofile(profile)
    try:
        for i in range(40):
            big = bytes([i]) * (INLINE_LIMIT + 100)
            store.add_value(hash_value(big), big)
    finally:
        sys.setprofile(None)
        store.close()
        os.umask(mask)
    assert seen <= {0o027}  # no umask call at all, or none that changed it
    blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 40
    assert {stat.S_IMODE(p.stat().st_mode) for p in blobs} == {0o640}  # 0o666 & ~0o027, not mkstemp's 0o600


def test_umask_is_read_without_changing_it() -> None:
    mask = os.umask(0o023)
    try:
        assert current_umask() == 0o023 == _proc_umask()
    finally:
        os.umask(mask)


def test_local_blob_store_is_content_addressed_and_repairs_damage(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "b")
    assert isinstance(blobs, BlobStore)
    data = b"payload" * 1000
    key = blob_key(data)
    assert not blobs.has(key)
    blobs.put(key, data)
    assert blobs.has(key) and blobs.get(key) == data
    path = blobs.path(key)
    before = path.stat().st_ino
    blobs.put(key, data)  # a good blob is never rewritten
    assert path.stat().st_ino == before
    path.write_bytes(data[:100])  # truncated
    blobs.put(key, data)
    assert blobs.get(key) == data
    path.write_bytes(data.replace(b"p", b"q"))  # same size, other bytes
    blobs.put(key, data)
    assert blobs.get(key) == data
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    blobs.delete(key)
    assert not blobs.has(key)
    blobs.delete(key)  # deleting a missing blob is fine
