"""What differs between SQLite and PostgreSQL, in one place: engines (pragmas, read-only opening), upserts,
raw parameter style, the check of a SQLite file before use, and how driver errors become StoreErrors."""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from slothflow._errors import StoreCorruptError, StoreError, StoreLockedError, StoreReadOnlyError

_MOVE_AWAY = "move it away (a new, empty database is then created) or restore it from a backup"


def sqlite_path(db_uri: str) -> str | None:
    """The file of a SQLite URI (without any ``?query``), or None for other databases and in-memory ones."""
    if not db_uri.startswith("sqlite:"):
        return None
    try:
        path = make_url(db_uri).database or ""
    except ArgumentError:
        path = db_uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in db_uri else ""
    if path.startswith("file:"):
        path = path[5:]
    return None if path in ("", ":memory:") or path.startswith(":memory:") else path


def uri_timeout(db_uri: str) -> float | None:
    try:
        value = make_url(db_uri).query.get("timeout")
    except ArgumentError:
        return None
    if isinstance(value, tuple):
        value = value[-1]
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def make_engine(db_uri: str, busy_timeout: float, readonly: bool = False, immutable: bool = False) -> Engine:
    """An engine for the URI. SQLite: WAL, ``synchronous=NORMAL`` and a busy timeout; read-only opens the file
    with ``mode=ro`` (or ``immutable=1`` when not even the WAL's shared-memory file can be created), and
    PostgreSQL sessions are read-only transactions."""
    if not db_uri.startswith("sqlite"):
        engine = create_engine(db_uri, pool_pre_ping=True)
        if readonly:
            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn: Any, record: Any) -> None:
                cur = dbapi_conn.cursor()
                try:
                    cur.execute("SET default_transaction_read_only = on")
                finally:
                    cur.close()
                dbapi_conn.commit()

        return engine
    url = make_url(db_uri).difference_update_query(["timeout"])
    path = sqlite_path(db_uri)
    if readonly and path is not None:
        flag = "immutable=1" if immutable else "mode=ro"
        url = url.set(database=f"file:{quote(os.path.abspath(path))}?{flag}").update_query_dict({"uri": "true"})
    engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            if not readonly:
                _wal(cur, busy_timeout)
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    return engine


def _wal(cur: Any, busy_timeout: float) -> None:
    """Put the database in WAL mode (once per file: the mode is persistent). Switching is refused while another
    connection holds a lock, without waiting for the busy timeout, so concurrent first opens retry here."""
    import sqlite3
    import time

    cur.execute("PRAGMA journal_mode")
    if str(cur.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def insert_statement(table: Table, is_sqlite: bool, update: bool) -> Any:
    """INSERT that skips (``update=False``) or overwrites (``update=True``) a row whose key exists."""
    insert = sqlite.insert if is_sqlite else postgresql.insert
    ins = insert(table)
    pk = [c.name for c in table.primary_key.columns]
    if update:
        updatable = [c.name for c in table.columns if c.name not in pk]
        return ins.on_conflict_do_update(index_elements=pk, set_={c: ins.excluded[c] for c in updatable})
    return ins.on_conflict_do_nothing(index_elements=pk)


def insert_sql(table: Table, columns: tuple[str, ...], is_sqlite: bool, update: bool) -> str:
    """The raw form of :func:`insert_statement` for the driver's ``executemany``: the bulk writes of a flush
    skip SQLAlchemy's per-row parameter processing, which cost more than the database itself."""
    pk = [c.name for c in table.primary_key.columns]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    keys = ", ".join(f'"{c}"' for c in pk)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks}) ON CONFLICT ({keys}) DO '
    updatable = [c for c in columns if c not in pk]
    if update and updatable:
        sql += "UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updatable)
    else:
        sql += "NOTHING"
    return paramstyle(sql, is_sqlite)


def paramstyle(sql: str, is_sqlite: bool) -> str:
    """A raw statement written with ``?`` placeholders, in the driver's style (psycopg: ``%s``)."""
    return sql if is_sqlite else sql.replace("?", "%s")


def check_sqlite_file(path: str, db_uri: str) -> None:
    """Refuse, before any task runs, a file that is not a SQLite database or that is shorter than its header
    says (truncated): reading it later would fail mid-run, or lose records silently."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreLockedError(f"cannot read the database file {path}: {exc}", db_uri) from exc
    if size == 0:
        return  # a new database
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StoreCorruptError(f"the database file {path} is not a SQLite database: {_MOVE_AWAY}", db_uri)
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    change_counter, valid_for = struct.unpack(">I", header[24:28])[0], struct.unpack(">I", header[92:96])[0]
    wal = Path(path + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # a crash left a WAL behind: SQLite replays it on opening, and the file may be short until then
    if pages and change_counter == valid_for and size < pages * page_size:
        raise StoreCorruptError(
            f"the database file {path} is truncated ({size} bytes, its header says {pages * page_size}): "
            f"{_MOVE_AWAY}", db_uri)


def classify(exc: DBAPIError, db_uri: str) -> StoreError:
    """The StoreError subclass (with a message that says what to do) for a driver error."""
    message = str(getattr(exc, "orig", exc))
    lowered = message.lower()
    path = sqlite_path(db_uri)
    if "locked" in lowered or "busy" in lowered:
        return StoreLockedError(
            f"the database {db_uri} is locked by another process ({message}); wait for it or use another db_uri",
            db_uri,
        )
    if "not a database" in lowered or (
        isinstance(getattr(exc, "orig", None), sqlite3.DatabaseError) and "malformed" in lowered
    ):
        return StoreCorruptError(f"the database file {path or db_uri} is damaged ({message}): {_MOVE_AWAY}",
                                 db_uri)
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return read_only_error(db_uri, message)
    if "unable to open" in lowered:
        if path is not None and not _writable(Path(path)):
            return read_only_error(db_uri, message)
        return StoreLockedError(f"cannot use the database file of {db_uri}: {message}", db_uri)
    if "connection" in lowered and ("refused" in lowered or "failed" in lowered):
        return StoreError(f"cannot connect to the database {db_uri}: {message}", db_uri)
    return StoreError(f"database error on {db_uri}: {message}", db_uri)


def read_only_error(db_uri: str, detail: str) -> StoreReadOnlyError:
    """Which of the folder, the file or the connection is read-only, in words."""
    path = sqlite_path(db_uri)
    if path is None:
        what = f"the database {db_uri} is read-only for this connection"
    elif not _writable(Path(path).parent):
        what = f"the folder {Path(path).parent} of the database is read-only"
    elif os.path.exists(path) and not _writable(Path(path)):
        what = f"the database file {path} is read-only"
    else:
        what = f"the database {path} is read-only here (opened read-only, or on a read-only file system)"
    return StoreReadOnlyError(
        f"{what} ({detail}); slothflow needs to write there to run workflows (`slothflow log` and `explain` "
        "only read)", db_uri)


def is_read_only_os_error(exc: OSError) -> bool:
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def _writable(path: Path) -> bool:
    """Whether this process may create files in a folder (or write a file): tried, as root may lack the
    capability that ``os.access`` assumes."""
    if path.is_dir():
        probe = path / f".slothflow-probe-{os.getpid()}"
        try:
            probe.touch()
        except OSError:
            return False
        probe.unlink(missing_ok=True)
        return True
    try:
        with open(path, "r+b"):
            return True
    except OSError:
        return False
