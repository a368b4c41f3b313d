"""The store, against real databases: every test that takes ``db_uri`` runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, inspect, select, text

from slothflow import (
    Scheduler,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    hash_value,
    task,
)
from slothflow.hashing._encode import hash_struct
from slothflow.model._serialize import dumps
from slothflow.store import HEAD_REVISION, Store
from slothflow.store import schema as s
from slothflow.store._store import INLINE_LIMIT, MIGRATIONS_DIR


@pytest.fixture
def store(db_uri: str, tmp_path: Path) -> Iterator[Store]:
    st_ = Store(db_uri, blob_dir=tmp_path / "blobs")
    yield st_
    st_.close()


def _execution(**over: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4().hex, "root_job": None, "args": "[]", "user": "u", "host": "h", "cwd": "/",
        "status": "running", "started_at": time.time(), "ended_at": None,
    }
    row.update(over)
    return row


def _h(*parts: Any) -> str:
    return hash_struct(*[str(p) for p in parts])


# ------------------------------------------------------------------------------------ schema


def test_schema_is_created_by_alembic_on_first_open(store: Store) -> None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
    assert store.schema_version() == HEAD_REVISION
    tables = set(inspect(store.conn).get_table_names())
    store.conn.rollback()
    assert set(s.metadata.tables) | {"alembic_version"} <= tables


def test_migrated_schema_matches_the_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), s.metadata)
    assert diffs == []


def test_reopening_keeps_data_and_does_not_migrate_again(db_uri: str, tmp_path: Path) -> None:
    first = Store(db_uri, blob_dir=tmp_path / "b")
    first.add_value(hash_value("kept"), "kept")
    first.flush()
    first.close()
    second = Store(db_uri, blob_dir=tmp_path / "b")
    try:
        assert second.schema_version() == HEAD_REVISION
        assert second.load_value(hash_value("kept")) == (True, "kept")
    finally:
        second.close()


def test_concurrent_first_opens_both_succeed(db_uri: str, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    barrier = threading.Barrier(3)

    def open_it() -> None:
        barrier.wait()
        try:
            stores.append(Store(db_uri, blob_dir=tmp_path / "b"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert [x.schema_version() for x in stores] == [HEAD_REVISION] * 3
    finally:
        for x in stores:
            x.close()


_OPENER = """
import os, sys, time
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
from slothflow.store import Store
Store(sys.argv[1], blob_dir=sys.argv[3]).close()
print("opened")
"""


def test_concurrent_first_opens_from_several_processes(db_uri: str, tmp_path: Path) -> None:
    import subprocess

    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPENER, db_uri, str(go), str(tmp_path / "b")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(1.0)  # let every process import slothflow and wait at the start line
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]
    st_ = Store(db_uri, blob_dir=tmp_path / "b")
    assert st_.schema_version() == HEAD_REVISION
    st_.close()


def test_newer_schema_version_is_refused_clearly(db_uri: str, tmp_path: Path) -> None:
    Store(db_uri, blob_dir=tmp_path / "b").close()
    engine = create_engine(db_uri)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d_future'"))
    engine.dispose()
    with pytest.raises(StoreVersionError) as info:
        Store(db_uri, blob_dir=tmp_path / "b")
    message = str(info.value)
    assert "f00d_future" in message and "newer" in message and "upgrade slothflow" in message
    assert info.value.db_uri == db_uri
    # the same through the scheduler: a clear error before anything runs
    sched = Scheduler(config={"backend": {"db_uri": db_uri}})
    with pytest.raises(StoreVersionError):
        sched.run(_double(1))
    sched.close()


# ------------------------------------------------------------------------------------ values

small_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4)
    | st.frozensets(st.integers(), max_size=4).map(lambda x: x) | st.lists(c, max_size=3).map(tuple),
    max_leaves=15,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(small_values, min_size=1, max_size=5))
def test_inline_values_round_trip(store: Store, values: list[Any]) -> None:
    hashes = [hash_value(v) for v in values]
    for h, v in zip(hashes, values):
        store.add_value(h, v)
    store.flush()
    for h, v in zip(hashes, values):
        store._known_values.discard(h)
        found, loaded = store.load_value(h)
        assert found and hash_value(loaded) == h and loaded == v


def test_large_values_go_to_the_blob_folder_atomically(db_uri: str, tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    big = {"rows": list(range(40_000)), "text": "x" * INLINE_LIMIT}
    small = list(range(10))
    writer = Store(db_uri, blob_dir=blobs)
    hb, hs = hash_value(big), hash_value(small)
    writer.add_value(hb, big)
    writer.add_value(hs, small)
    writer.flush()
    rows = {
        r.value_hash: r
        for r in writer.conn.execute(select(s.value.c.value_hash, s.value.c.storage, s.value.c.data,
                                            s.value.c.size))
    }
    writer.conn.rollback()
    writer.close()
    assert rows[hb].storage == "blob" and rows[hb].data is None and rows[hb].size > INLINE_LIMIT
    assert rows[hs].storage == "inline" and rows[hs].data
    files = [p for p in blobs.rglob("*") if p.is_file()]
    # content-addressed: named by the digest of the bytes, which the value row records
    assert [p.name for p in files] == [hashlib.sha256(files[0].read_bytes()).hexdigest()[2:]]
    assert not any(p.name.startswith(".tmp") for p in blobs.rglob("*"))
    mask = os.umask(0)
    os.umask(mask)
    # not private to this user (mkstemp's 0600): readable as the umask allows, like any other file
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o666 & ~mask

    reader = Store(db_uri, blob_dir=blobs)
    try:
        assert reader.load_value(hb) == (True, big)
        assert reader.load_value(hs) == (True, small)
        assert reader.load_value(hash_value("never stored")) == (False, None)
        files[0].unlink()  # a lost blob is a cache miss, never an error
        reader._known_values.clear()
        assert reader.load_value(hb) == (False, None)
    finally:
        reader.close()


def test_a_value_is_serialized_once(store: Store) -> None:
    calls = []

    class Counting:
        def __reduce__(self) -> Any:
            calls.append(1)
            return (dict, ())

    v = Counting()
    store.add_value("a" * 64, v)
    store.add_value("a" * 64, v)
    store.flush()
    assert len(calls) == 1


# ---------------------------------------------------------------------------- cache lookups


def _count_queries(store: Store) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    return seen


def test_reductions_lookup_is_batched_and_complete(store: Store) -> None:
    n = 1234
    evals = [_h("eval", i) for i in range(n)]
    for i, e in enumerate(evals):
        if i % 3 == 0:
            continue  # a third of them were never computed
        value = {"i": i}
        vh = hash_value(value)
        store.add_value(vh, value)
        store.set_evaluation(e, _h("task"), _h("args", i), vh)
        if i % 2 == 0:
            store.add_call(_h("call", i), e, _h("task"), _h("args", i), vh, [_h("task")], [], [])
    store.flush()
    store._known_values.clear()
    queries = _count_queries(store)
    unknown = [_h("unknown", i) for i in range(300)]
    found = store.get_reductions(evals + unknown)
    assert set(found) == {e for i, e in enumerate(evals) if i % 3}
    for i, e in enumerate(evals):
        if i % 3:
            value_hash, value, newest_call = found[e]
            assert value == {"i": i} and value_hash == hash_value(value)
            assert newest_call == (_h("call", i) if i % 2 == 0 else None)
    selects = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    assert 0 < len(selects) <= 2 * ((n + 300 + 499) // 500)


def test_finals_lookup_is_batched_and_newest_first(store: Store) -> None:
    n = 700
    evals = [_h("e", i) for i in range(n)]
    for i, e in enumerate(evals):
        store.add_call(_h("c-old", i), e, _h("t"), _h("a", i), _h("v-old", i), [_h("t")], [], [])
    store.flush()
    time.sleep(0.02)
    for i, e in enumerate(evals[:10]):
        store.add_call(_h("c-new", i), e, _h("t2"), _h("a", i), _h("v-new", i), [_h("t"), _h("t2")], [], [])
    store.flush()
    queries = _count_queries(store)
    finals = store.get_finals(evals + [_h("nothing")])
    assert set(finals) == set(evals)
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) == 2
    for i, e in enumerate(evals):
        calls = finals[e]
        if i < 10:
            assert [c[0] for c in calls] == [_h("c-new", i), _h("c-old", i)]
            assert calls[0][2] == frozenset({_h("t"), _h("t2")})
            assert calls[0][1] == _h("v-new", i)
        else:
            assert calls == [(_h("c-old", i), _h("v-old", i), frozenset({_h("t")}))]


def test_call_graph_rows_are_recorded_once(store: Store) -> None:
    args = [("x", 0, _h("vx"), None), ("y", 1, _h("vy"), _h("up"))]
    for _ in range(2):  # the same call recorded twice, in one batch and across batches
        store.add_call(_h("call"), _h("eval"), _h("t"), _h("a"), _h("v"), {_h("t")}, args, [_h("c1"), _h("c2")])
    store.flush()
    store.add_call(_h("call"), _h("eval"), _h("t"), _h("a"), _h("v"), {_h("t")}, args, [_h("c1"), _h("c2")])
    store.flush()
    conn = store.conn
    assert conn.execute(select(s.call_node.c.call_hash)).all() == [(_h("call"),)]
    assert sorted(conn.execute(select(s.argument.c.name, s.argument.c.upstream_call)).all()) == [
        ("x", None), ("y", _h("up"))]
    assert conn.execute(select(s.call_edge.c.child_call).order_by(s.call_edge.c.position)).all() == [
        (_h("c1"),), (_h("c2"),)]
    conn.rollback()


# ------------------------------------------------------------------------------------ upserts


def test_evaluation_upsert_keeps_the_latest(store: Store) -> None:
    for v in ("v1", "v2"):
        store.add_value(hash_value(v), v)
    store.set_evaluation(_h("e"), _h("t"), _h("a"), hash_value("v1"))
    store.set_evaluation(_h("e"), _h("t"), _h("a"), hash_value("v2"))  # twice in one batch
    store.flush()
    assert store.get_reductions([_h("e")])[_h("e")][1] == "v2"
    store.set_evaluation(_h("e"), _h("t"), _h("a"), hash_value("v1"))
    store.flush()
    assert store.get_reductions([_h("e")])[_h("e")][1] == "v1"


def test_job_upserts(store: Store) -> None:
    ex = _execution()
    store.start_execution(ex)
    base = {
        "id": "j1", "execution_id": ex["id"], "parent_id": None, "task_hash": _h("t"), "task_name": "ns.t",
        "eval_hash": _h("e"), "call_hash": None, "status": "running", "executor": "default",
        "started_at": 1.0, "ended_at": None, "error_type": None, "error_message": None, "error_traceback": None,
    }
    store.put_job(base)
    store.flush()
    store.put_job({**base, "status": "ran", "ended_at": 2.0, "call_hash": _h("c")})
    store.put_job({**base, "id": "j2", "status": "failed", "error_type": "builtins.ValueError",
                   "error_message": "bad", "error_traceback": "Traceback ..."})
    store.put_job({"id": "j2", "ended_at": 3.0})  # a partial update merges into the pending row
    store.flush()
    store.end_execution(ex["id"], "done", "j1")
    store.flush()
    conn = store.conn
    jobs = {r.id: r for r in conn.execute(select(s.job))}
    assert set(jobs) == {"j1", "j2"}
    assert (jobs["j1"].status, jobs["j1"].ended_at, jobs["j1"].call_hash) == ("ran", 2.0, _h("c"))
    assert (jobs["j2"].status, jobs["j2"].error_message, jobs["j2"].ended_at) == ("failed", "bad", 3.0)
    row = conn.execute(select(s.execution).where(s.execution.c.id == ex["id"])).one()
    assert (row.status, row.root_job) == ("done", "j1") and row.ended_at is not None
    conn.rollback()


def test_tag_upserts_in_one_batch(store: Store) -> None:
    store.add_tags("execution", "x", [("k", 1), ("k", 2), ("other", {"a": [1]})])
    store.flush()
    store.add_tags("execution", "x", [("k", 3)])
    store.flush()
    rows = dict(store.conn.execute(select(s.tag.c.key, s.tag.c.value)).all())
    store.conn.rollback()
    assert rows == {"k": "3", "other": '{"a": [1]}'}


# ------------------------------------------------------------------------ unusable databases


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"definitely not sqlite\n" * 200)
    with pytest.raises(StoreCorruptError, match="not a SQLite database.*move it away"):
        Store(f"sqlite:///{path}")


def test_corrupt_database_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    Store(f"sqlite:///{path}").close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\x5a" * (len(data) - 100)  # keep the header, destroy the pages
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        Store(f"sqlite:///{path}")
    assert str(path) in str(info.value)


def test_directory_at_the_database_path(tmp_path: Path) -> None:
    path = tmp_path / "dir.db"
    path.mkdir()
    with pytest.raises(StoreLockedError, match="directory"):
        Store(f"sqlite:///{path}")


def test_unusable_database_through_the_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"\x00garbage" * 500)
    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{path}"}})
    with pytest.raises(StoreError):
        sched.run(_double(2))
    sched.close()


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    path = tmp_path / "locked.db"
    Store(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's write lock
    yield f"sqlite:///{path}", holder
    holder.close()


def test_locked_database_gives_store_locked_error(locked_sqlite: tuple[str, sqlite3.Connection]) -> None:
    uri, holder = locked_sqlite
    st_ = Store(uri, busy_timeout=0.2)
    st_.add_value(hash_value("pending"), "pending")
    started = time.monotonic()
    with pytest.raises(StoreLockedError, match="locked"):
        st_.flush()
    assert time.monotonic() - started < 20  # the short busy timeout applies, not the 30 s default
    with pytest.raises(StoreLockedError):
        st_.start_execution(_execution())
    # once the other writer is done, nothing buffered was lost
    holder.execute("ROLLBACK")
    st_.flush()
    st_._known_values.clear()
    assert st_.load_value(hash_value("pending")) == (True, "pending")
    st_.close()


def test_busy_timeout_from_the_uri(locked_sqlite: tuple[str, sqlite3.Connection]) -> None:
    uri, _ = locked_sqlite
    st_ = Store(uri + "?timeout=0.1")
    assert st_.busy_timeout == 0.1
    with pytest.raises(StoreLockedError):
        st_.start_execution(_execution())
    st_.engine.dispose()


def test_unreachable_postgresql_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        Store("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")


# ------------------------------------------------------------------------------ default location


@task
def _double(x: int) -> int:
    return 2 * x


def test_default_database_is_in_the_project_found_upwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    (project / ".slothflow").mkdir(parents=True)
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    sched = Scheduler()
    try:
        assert sched.run(_double(21)) == 42
    finally:
        sched.close()
    db = project / ".slothflow" / "slothflow.db"
    assert db.is_file()
    assert not (deep / ".slothflow").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM job").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_database_without_a_project_is_created_here(tmp_path: Path) -> None:
    sched = Scheduler()
    try:
        assert sched.run(_double(1)) == 2
    finally:
        sched.close()
    assert (tmp_path / ".slothflow" / "slothflow.db").is_file()


def test_damaged_values_are_not_used_and_a_new_write_repairs_them(db_uri: str, tmp_path: Path) -> None:
    small, big = list(range(10)), "z" * (INLINE_LIMIT + 10)
    hs, hb = hash_value(small), hash_value(big)
    writer = Store(db_uri, blob_dir=tmp_path / "blobs")
    writer.add_value(hs, small)
    writer.add_value(hb, big)
    writer.flush()
    with writer._errors():  # another value's bytes, loadable, in the small value's row
        writer.conn.execute(s.value.update().where(s.value.c.value_hash == hs).values(data=dumps([1])))
        writer.conn.commit()
    writer.close()
    blob = next(p for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes()[:100])

    store = Store(db_uri, blob_dir=tmp_path / "blobs")
    try:
        assert store.load_value(hs) == (False, None)
        assert store.load_value(hb) == (False, None)
        assert "inline value" in (store.corruption(hs) or "") and "blob" in (store.corruption(hb) or "")
        assert store.corruption(hash_value("never damaged")) is None
        store.add_value(hs, small)
        store.add_value(hb, big)
        store.flush()
        store._known_values.clear()
        assert store.load_value(hs) == (True, small)
        assert store.load_value(hb) == (True, big)
        assert store.corruption(hs) is None
    finally:
        store.close()


@pytest.mark.parametrize("setting", [False, True, None])
def test_backend_automigrate_is_honoured(db_uri: str, tmp_path: Path, setting: bool | None) -> None:
    """redun's ``[backend] automigrate``: false never migrates, true migrates an older PostgreSQL database
    too, unset migrates an older SQLite one only."""
    from slothflow import Scheduler, StoreVersionError

    Store(db_uri, blob_dir=tmp_path / "b").close()
    old = Store(db_uri, blob_dir=tmp_path / "b")
    old.downgrade("0001")
    old.close()
    backend: dict[str, Any] = {"db_uri": db_uri}
    if setting is not None:
        backend["automigrate"] = setting
    sched = Scheduler(config={"backend": backend})
    try:
        migrates = setting is True or (setting is None and db_uri.startswith("sqlite"))
        if migrates:
            assert sched.load().schema_version() == HEAD_REVISION
        else:
            with pytest.raises(StoreVersionError, match="slothflow db upgrade"):
                sched.load()
    finally:
        sched.close()
