"""Large values on any fsspec URL (S3 served by moto_server, memory://), and inside PostgreSQL without one.

Runs are fresh processes, as a user's on another machine would be: what one wrote, the next one reads.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import s3_server as s3mod
from slothflow import hash_value
from slothflow._errors import ConfigError
from slothflow.store import LocalBlobStore, Store
from slothflow.store._options import store_options
from slothflow.store._store import INLINE_LIMIT
from slothflow.store.blobs import FsspecBlobStore, blob_key, open_blob_store

SIZE = 300_000
SCRIPT = """
import os, sys
from slothflow import Scheduler, task

def note(line):
    with open(os.environ["SIDE_LOG"], "a") as fh:
        fh.write(line + "\\n")

@task
def big(n):
    note("big")
    return {"rows": [("row", i, float(i)) for i in range(n // 20)], "blob": b"x" * n}

@task
def size(d):
    note("size")
    return len(d["blob"]) + len(d["rows"])

if __name__ == "__main__":
    backend = {"db_uri": sys.argv[1]}
    if sys.argv[2] != "-":
        backend["blob_uri"] = sys.argv[2]
    s = Scheduler(config={"backend": backend})
    print(s.run(size(big(SIZE))))
    s.close()
""".replace("SIZE", str(SIZE))
EXPECTED = str(SIZE + SIZE // 20)


class Project:
    def __init__(self, tmp_path: Path, db_uri: str, blob_uri: str | None) -> None:
        self.tmp = tmp_path
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.script = self.work / "wf.py"
        self.script.write_text(textwrap.dedent(SCRIPT))
        self.db_uri, self.blob_uri = db_uri, blob_uri
        self.runs = 0

    def run(self) -> tuple[list[str], str]:
        self.runs += 1
        log = self.tmp / f"run{self.runs}.log"
        proc = subprocess.run([sys.executable, str(self.script), self.db_uri, self.blob_uri or "-"],
                              env={**os.environ, "SIDE_LOG": str(log)}, cwd=self.work, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == EXPECTED
        return (sorted(log.read_text().splitlines()) if log.exists() else []), proc.stderr


def _big_value_row(db_uri: str) -> tuple[str, str, str, Any]:
    """(value hash, storage, digest, data) of the one large value."""
    store = Store(db_uri)
    try:
        row = store.conn.exec_driver_sql(
            f"SELECT value_hash, storage, digest, data FROM value WHERE size > {INLINE_LIMIT}").all()
    finally:
        store.close()
    assert len(row) == 1
    return row[0][0], row[0][1], row[0][2], row[0][3]


@pytest.fixture
def s3(s3_server: s3mod.S3) -> s3mod.S3:
    return s3_server


def test_large_values_live_on_s3_and_a_fresh_process_reuses_them(tmp_path: Path, s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    db = tmp_path / "store" / "slothflow.db"
    p = Project(tmp_path, f"sqlite:///{db}", f"s3://{bucket}/team/cache")
    assert p.run()[0] == ["big", "size"]
    value_hash, storage, digest, _ = _big_value_row(p.db_uri)
    assert storage == "blob"
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [f"team/cache/{digest[:2]}/{digest[2:]}"]
    assert hashlib.sha256(s3.get(bucket, keys[0])).hexdigest() == digest
    assert not (db.parent / "blobs").exists()  # nothing on this machine
    assert p.run()[0] == []  # another process reads the value back from S3

    # A damaged object: a cache miss, reported; the rerun puts the right bytes back.
    good = s3.get(bucket, keys[0])
    s3.put(bucket, keys[0], good[: len(good) // 2])
    ran, stderr = p.run()
    assert ran == ["big"] and "corrupt" in stderr and value_hash in stderr
    assert s3.get(bucket, keys[0]) == good
    assert p.run()[0] == []

    s3.delete(bucket, keys[0])  # a lost object: the same
    ran, stderr = p.run()
    assert ran == ["big"] and "missing" in stderr
    assert s3.get(bucket, keys[0]) == good


def test_postgresql_without_blob_uri_keeps_large_values_in_the_database(tmp_path: Path, pg_uri: str) -> None:
    shared_tmp = Path(tempfile.gettempdir()) / "slothflow-blobs"
    before = sorted(shared_tmp.rglob("*")) if shared_tmp.exists() else []
    p = Project(tmp_path, pg_uri, None)
    assert p.run()[0] == ["big", "size"]
    assert p.run()[0] == []
    _, storage, digest, data = _big_value_row(pg_uri)
    assert storage == "inline" and hashlib.sha256(bytes(data)).hexdigest() == digest
    created = sorted(x.name for x in tmp_path.rglob("*"))
    assert created == sorted(["work", "wf.py", "run1.log"])  # no blob folder anywhere near
    assert (sorted(shared_tmp.rglob("*")) if shared_tmp.exists() else []) == before


def test_a_value_left_in_a_blob_folder_that_is_gone_is_a_repaired_miss(tmp_path: Path, pg_uri: str) -> None:
    """A PostgreSQL store from before: its large values named a per-machine folder, no longer read."""
    folder = tmp_path / "old-blobs"
    big = b"y" * (INLINE_LIMIT + 10)
    old = Store(pg_uri, blob_dir=folder)
    old.add_value(hash_value(big), big)
    old.flush()
    old.close()
    store = Store(pg_uri)
    try:
        assert store.load_value(hash_value(big)) == (False, None)
        assert "missing" in (store.corruption(hash_value(big)) or "")
        store.add_value(hash_value(big), big)
        store.flush()
        assert store.load_value(hash_value(big)) == (True, big)
    finally:
        store.close()


# ------------------------------------------------------------------------------------ the blob stores
def test_fsspec_blob_store_is_content_addressed_and_never_rewrites_good_blobs() -> None:
    url = f"memory://blobs-{uuid.uuid4().hex}/a/b"
    blobs = FsspecBlobStore(url)
    data = b"z" * 1000
    key = blob_key(data)
    assert not blobs.has(key)
    with pytest.raises(KeyError):
        blobs.get(key)
    blobs.put(key, data)
    assert blobs.has(key) and blobs.get(key) == data
    created = blobs.fs.info(blobs.path(key))["created"]
    blobs.put(key, data)  # identical bytes already there: not written again
    assert blobs.fs.info(blobs.path(key))["created"] == created
    blobs.fs.pipe_file(blobs.path(key), b"w" * 1000)  # damaged, same size
    blobs.put(key, data)
    assert blobs.get(key) == data
    blobs.delete(key)
    blobs.delete(key)
    assert not blobs.has(key)


def test_fsspec_blob_store_writes_a_temp_key_then_moves_it_where_a_put_is_not_atomic(tmp_path: Path) -> None:
    blobs = FsspecBlobStore(f"file://{tmp_path}/b")
    assert not blobs.atomic_put
    data = os.urandom(5000)
    blobs.put(blob_key(data), data)
    assert blobs.get(blob_key(data)) == data
    assert [p.name for p in (tmp_path / "b").rglob("*") if p.is_file()] == [blob_key(data)[2:]]


def test_where_blobs_go(tmp_path: Path) -> None:
    assert open_blob_store(None, None) is None  # PostgreSQL: inside the database
    default = open_blob_store(None, str(tmp_path / "x.db"))
    assert isinstance(default, LocalBlobStore) and default.folder == tmp_path / "blobs"
    local = open_blob_store(f"file://{tmp_path}/f", None)
    assert isinstance(local, LocalBlobStore) and local.folder == tmp_path / "f"
    assert isinstance(open_blob_store("memory://bucket/p", None), FsspecBlobStore)


def test_blob_uri_and_blob_dir_are_one_setting() -> None:
    assert store_options({"blob_dir": "/x"})["blob_dir"] == "/x"
    assert store_options({"blob_uri": "s3://b/p"})["blob_dir"] == "s3://b/p"
    with pytest.raises(ConfigError, match="blob_uri"):
        store_options({"blob_uri": "s3://b/p", "blob_dir": "/x"})


def test_memory_blob_uri_in_a_store(sqlite_uri: str) -> None:
    url = f"memory://store-{uuid.uuid4().hex}"
    big = list(range(INLINE_LIMIT))
    store = Store(sqlite_uri, blob_dir=url)
    try:
        store.add_value(hash_value(big), big)
        store.flush()
        path = sqlite_uri.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            (digest,) = conn.execute("SELECT digest FROM value WHERE storage = 'blob'").fetchone()
        assert FsspecBlobStore(url).has(digest)
    finally:
        store.close()
    again = Store(sqlite_uri, blob_dir=url)
    try:
        assert again.load_value(hash_value(big)) == (True, big)
    finally:
        again.close()
