"""The store: what slothflow remembers (cache entries, provenance, values), on SQLite or PostgreSQL.

Only the scheduler process writes. Writes are buffered and committed in one transaction per
:meth:`Store.flush`, which the scheduler calls once per round and before it starts any job whose inputs
are still in the buffer; reads are single indexed queries. Values are content-addressed: small ones live
inline in the ``value`` table, large ones in a blob folder (written atomically, before the row that names
them is committed).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from slothflow._errors import SerializationError, StoreError, StoreLockedError, StoreVersionError
from slothflow.files._file import iter_files, normalize_path
from slothflow.model._serialize import dumps, loads
from slothflow.model._value import preview
from slothflow.store import schema as s

HEAD_REVISION = "0001"
KNOWN_REVISIONS = ("0001",)
INLINE_LIMIT = 64 * 1024
_ALEMBIC_LOCK = threading.Lock()
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another one before StoreLockedError
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def sqlite_path(db_uri: str) -> str | None:
    """The file of a SQLite URI (without any ``?query``), or None for other databases and in-memory ones."""
    if not db_uri.startswith("sqlite:"):
        return None
    try:
        path = make_url(db_uri).database or ""
    except ArgumentError:
        path = db_uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in db_uri else ""
    return None if path in ("", ":memory:") or path.startswith("file::memory:") else path


def _uri_timeout(db_uri: str) -> float | None:
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


class Store:
    """A connection to one slothflow database (and its blob folder)."""

    def __init__(
        self,
        db_uri: str,
        blob_dir: str | os.PathLike[str] | None = None,
        automigrate: bool = True,
        busy_timeout: float | None = None,
    ):
        """Open (and for a new database, create) a store.

        ``busy_timeout`` is how long, in seconds, a SQLite write waits for another process's write lock
        before :class:`StoreLockedError`; it may also be given as ``?timeout=`` in the URI.
        """
        self.db_uri = db_uri
        self.is_sqlite = db_uri.startswith("sqlite")
        if busy_timeout is None:
            busy_timeout = _uri_timeout(db_uri)
        self.busy_timeout = DEFAULT_BUSY_TIMEOUT if busy_timeout is None else float(busy_timeout)
        path = sqlite_path(db_uri)
        if path is not None:
            folder = Path(path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of the database {db_uri}: {exc}", db_uri) from exc
            if Path(path).is_dir():
                raise StoreLockedError(f"cannot use the database {db_uri}: {path} is a directory", db_uri)
            if Path(path).exists() and not os.access(path, os.R_OK):
                raise StoreLockedError(f"cannot read the database file {path}: check its permissions", db_uri)
        if blob_dir is None:
            blob_dir = Path(path).parent / "blobs" if path else Path(tempfile.gettempdir()) / "slothflow-blobs"
        self.blob_dir = Path(blob_dir)
        self.engine = self._create_engine()
        self._conn: Connection | None = None
        self._known_values: set[str] = set()
        self._known_tasks: set[str] = set()
        self._buffer: dict[str, list[dict[str, Any]]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._stmts: dict[str, Any] = {}
        self.last_flush = time.monotonic()
        try:
            self._check_schema(automigrate)
        except BaseException:
            self._release()
            raise

    # ----------------------------------------------------------------------------------- set-up
    def _create_engine(self) -> Engine:
        try:
            if self.is_sqlite:
                timeout = self.busy_timeout
                url = make_url(self.db_uri)
                url = url.difference_update_query(["timeout"])
                engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})

                @event.listens_for(engine, "connect")
                def _pragmas(dbapi_conn: Any, record: Any) -> None:
                    cur = dbapi_conn.cursor()
                    try:
                        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
                        cur.execute("PRAGMA journal_mode=WAL")
                        cur.execute("PRAGMA synchronous=NORMAL")
                    finally:
                        cur.close()

                return engine
            return create_engine(self.db_uri, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open database {self.db_uri}: {exc}", self.db_uri) from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            with self._errors():
                self._conn = self.engine.connect()
        return self._conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into :class:`StoreError` subclasses; leave the connection usable."""
        try:
            yield
        except DBAPIError as exc:
            conn = self._conn
            if conn is not None:
                try:
                    conn.rollback()
                except SQLAlchemyError:
                    self._conn = None
                    with contextlib.suppress(SQLAlchemyError):
                        conn.close()
            raise _classify(exc, self.db_uri) from exc

    def schema_version(self) -> str | None:
        with self._errors():
            if not inspect(self.conn).has_table("alembic_version"):
                self.conn.rollback()
                return None
            row = self.conn.execute(text("SELECT version_num FROM alembic_version")).first()
            self.conn.rollback()
            return None if row is None else str(row[0])

    def _check_schema(self, automigrate: bool) -> None:
        version = self.schema_version()
        if version == HEAD_REVISION:
            return
        if version is not None and version not in KNOWN_REVISIONS:
            raise StoreVersionError(
                f"the database {self.db_uri} has schema version {version}, written by a newer slothflow; "
                "upgrade slothflow (pip install -U slothflow) to use it",
                self.db_uri,
            )
        fresh = version is None
        if automigrate and (fresh or self.is_sqlite):
            try:
                self.upgrade()
            except StoreError:
                # Another process may have created the schema at the same moment: fine if it is ours.
                if self.schema_version() != HEAD_REVISION:
                    raise
            return
        raise StoreVersionError(
            f"the database {self.db_uri} has schema version {version}, older than {HEAD_REVISION}: "
            "run `slothflow db upgrade`",
            self.db_uri,
        )

    def _alembic(self, command: str, revision: str) -> None:
        from alembic import command as alembic_command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        # Alembic keeps its running context in a module global: one migration at a time per process.
        with _ALEMBIC_LOCK, self.engine.begin() as conn:
            # One migration at a time per database, too: a second process waits for the first to
            # commit, then finds the schema current. (pysqlite would otherwise run each DDL statement
            # in its own implicit transaction, letting another process see a half-built schema.)
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7510928311)"))
            cfg.attributes["connection"] = conn
            getattr(alembic_command, command)(cfg, revision)

    def upgrade(self, revision: str = "head") -> None:
        with self._errors():
            self._alembic("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        with self._errors():
            self._alembic("downgrade", revision)

    def close(self) -> None:
        try:
            if self._conn is not None:
                self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None
        self.engine.dispose()

    # ------------------------------------------------------------------------------------ values
    def _blob_path(self, value_hash: str) -> Path:
        return self.blob_dir / value_hash[:2] / value_hash[2:]

    def add_value(self, value_hash: str, value: Any) -> None:
        """Remember a value (once: a value already stored is never serialized again)."""
        if value_hash in self._known_values:
            return
        try:
            data = dumps(value)
        except SerializationError:
            raise
        row: dict[str, Any] = {
            "value_hash": value_hash,
            "type_name": _type_name(value)[:512],
            "size": len(data),
            "preview": preview(value),
        }
        if len(data) > INLINE_LIMIT:
            self._write_blob(self._blob_path(value_hash), data)
            row.update(storage="blob", data=None)
        else:
            row.update(storage="inline", data=data)
        self._buffer.setdefault("value", []).append(row)
        self._known_values.add(value_hash)
        if not isinstance(value, _PLAIN):
            files: dict[str, str] = {}
            for f in iter_files(value):
                try:
                    key = f.content_key()
                except Exception:  # an unreachable remote file: no lineage row rather than a failed job
                    key = None
                if key is not None:
                    files[normalize_path(f.path)] = key
            if files:
                self._buffer.setdefault("value_file", []).extend(
                    {"value_hash": value_hash, "path": p, "file_hash": h} for p, h in files.items()
                )

    def _write_blob(self, path: Path, data: bytes) -> None:
        """Write a blob atomically: a reader sees the whole file or none (temp file, then rename)."""
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise StoreError(f"cannot write to the blob folder {self.blob_dir}: {exc}", self.db_uri) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a team cache is shared
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write a blob to {self.blob_dir}: {exc}", self.db_uri) from exc
            raise

    def _decode(self, value_hash: str, storage: str, data: bytes | None) -> tuple[bool, Any]:
        if storage == "blob":
            try:
                data = self._blob_path(value_hash).read_bytes()
            except OSError:
                return False, None
        try:
            value = loads(data or b"")
        except Exception:  # a class that no longer exists, a corrupt row: treat as a cache miss
            return False, None
        self._known_values.add(value_hash)
        return True, value

    def load_value(self, value_hash: str) -> tuple[bool, Any]:
        """(found, value) for a stored value; a missing blob or unloadable value counts as not found."""
        with self._errors():
            row = self.conn.execute(
                select(s.value.c.storage, s.value.c.data).where(s.value.c.value_hash == value_hash)
            ).first()
        if row is None:
            return False, None
        return self._decode(value_hash, row.storage, row.data)

    # ------------------------------------------------------------------------------------- cache
    def get_reductions(self, eval_hashes: list[str]) -> dict[str, tuple[str, Any, str | None]]:
        """For each eval hash with a recorded, loadable reduction: (value hash, value, newest call hash).

        One query per 500 hashes: the cache lookups of a whole scheduler round are batched.
        """
        out: dict[str, tuple[str, Any, str | None]] = {}
        for i in range(0, len(eval_hashes), 500):
            chunk = eval_hashes[i : i + 500]
            with self._errors():
                rows = self.conn.execute(self._query("reduction"), {"hashes": chunk}).all()
                calls = (
                    self.conn.execute(self._query("calls"), {"hashes": [r.eval_hash for r in rows]}).all()
                    if rows
                    else []
                )
            if not rows:
                continue
            latest: dict[str, tuple[float, str]] = {}
            for r in calls:
                known = latest.get(r.eval_hash)
                if known is None or r.created_at > known[0]:
                    latest[r.eval_hash] = (r.created_at, r.call_hash)
            for row in rows:
                found, value = self._decode(row.value_hash, row.storage, row.data)
                if found:
                    best = latest.get(row.eval_hash)
                    out[row.eval_hash] = (row.value_hash, value, best[1] if best else None)
        return out

    def get_finals(self, eval_hashes: list[str]) -> dict[str, list[tuple[str, str, frozenset[str]]]]:
        """Recorded final results per call, newest first: (call_hash, value_hash, subtree task hashes)."""
        found: dict[str, list[Any]] = {}
        for i in range(0, len(eval_hashes), 500):
            with self._errors():
                rows = self.conn.execute(self._query("calls"), {"hashes": eval_hashes[i : i + 500]}).all()
            for r in rows:
                found.setdefault(r.eval_hash, []).append(r)
        return {
            k: [
                (r.call_hash, r.value_hash, frozenset(r.subtree_tasks.split()))
                for r in sorted(rows, key=lambda r: r.created_at, reverse=True)
            ]
            for k, rows in found.items()
        }

    def _query(self, name: str) -> Any:
        stmt = self._stmts.get(name)
        if stmt is not None:
            return stmt
        hashes: Any = bindparam("hashes", expanding=True)
        if name == "reduction":
            e, v = s.evaluation, s.value
            stmt = (
                select(e.c.eval_hash, e.c.value_hash, v.c.storage, v.c.data)
                .join(v, v.c.value_hash == e.c.value_hash)
                .where(e.c.eval_hash.in_(hashes))
            )
        else:
            c = s.call_node
            stmt = select(c.c.eval_hash, c.c.call_hash, c.c.value_hash, c.c.subtree_tasks, c.c.created_at).where(
                c.c.eval_hash.in_(hashes)
            )
        self._stmts[name] = stmt
        return stmt

    # ------------------------------------------------------------------------------------ writes
    def add_task(self, task: Any) -> None:
        if task.hash in self._known_tasks:
            return
        self._known_tasks.add(task.hash)
        self._buffer.setdefault("task", []).append(
            {
                "hash": task.hash,
                "fullname": task.fullname,
                "namespace": task.namespace,
                "name": task.name,
                "source": task.source,
                "created_at": time.time(),
                "code_manifest": getattr(task, "code_manifest_json", None),
            }
        )

    def set_evaluation(self, eval_hash: str, task_hash: str, args_hash: str, value_hash: str) -> None:
        self._buffer.setdefault("evaluation", []).append(
            {
                "eval_hash": eval_hash,
                "task_hash": task_hash,
                "args_hash": args_hash,
                "value_hash": value_hash,
                "updated_at": time.time(),
            }
        )

    def add_call(
        self,
        call_hash: str,
        eval_hash: str,
        task_hash: str,
        args_hash: str,
        value_hash: str,
        subtree_tasks: Iterable[str],
        arguments: list[tuple[str, int, str, str | None]],
        children: list[str],
    ) -> None:
        buf = self._buffer
        buf.setdefault("call_node", []).append(
            {
                "call_hash": call_hash,
                "eval_hash": eval_hash,
                "task_hash": task_hash,
                "args_hash": args_hash,
                "value_hash": value_hash,
                "subtree_tasks": " ".join(sorted(subtree_tasks)),
                "created_at": time.time(),
            }
        )
        if arguments:
            buf.setdefault("argument", []).extend(
                {"call_hash": call_hash, "name": n, "position": p, "value_hash": v, "upstream_call": u}
                for n, p, v, u in arguments
            )
        if children:
            buf.setdefault("call_edge", []).extend(
                {"parent_call": call_hash, "position": i, "child_call": c} for i, c in enumerate(children)
            )

    def put_job(self, row: dict[str, Any]) -> None:
        """Insert or update a job row (keyed by ``id``); only the latest state of each is written."""
        current = self._jobs.get(row["id"])
        if current is None:
            self._jobs[row["id"]] = dict(row)
        else:
            current.update(row)

    def add_tags(self, entity_type: str, entity_id: str, tags: Iterable[tuple[str, Any]]) -> None:
        now = time.time()
        self._buffer.setdefault("tag", []).extend(
            {"entity_type": entity_type, "entity_id": entity_id, "key": k, "value": json.dumps(v, default=str),
             "created_at": now}
            for k, v in tags
        )

    # ------------------------------------------------------------------------------- file digests
    def load_file_digests(self, directory: str) -> dict[str, tuple[str, str]]:
        """Remembered (stat token, digest) of the local files in one directory."""
        sql = _DIGESTS_SQL_QMARK if self.is_sqlite else _DIGESTS_SQL_FORMAT
        with self._errors():
            # Straight through the driver's cursor: thousands of rows per folder, and a rerun's file recheck
            # is dominated by how fast they arrive (SQLAlchemy's row objects would double it).
            cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, (directory,))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        if not rows:
            return {}
        paths, tokens, digests = zip(*rows, strict=True)
        return dict(zip(paths, zip(tokens, digests, strict=True), strict=True))

    def save_file_digest(self, path: str, token: str, digest: str) -> None:
        self._buffer.setdefault("file_digest", []).append(
            {"path": path, "directory": os.path.dirname(path), "stat_token": token, "digest": digest,
             "checked_at": time.time()}
        )

    def start_execution(self, row: dict[str, Any]) -> None:
        with self._errors():
            self.conn.execute(s.execution.insert(), [row])
            self.conn.commit()

    def end_execution(self, execution_id: str, status: str, root_job: str | None) -> None:
        with self._errors():
            self.conn.execute(
                s.execution.update()
                .where(s.execution.c.id == execution_id)
                .values(status=status, ended_at=time.time(), root_job=root_job)
            )

    @property
    def pending(self) -> bool:
        return bool(self._buffer) or bool(self._jobs)

    def flush(self) -> None:
        """Commit everything buffered, in one transaction."""
        self.last_flush = time.monotonic()
        if not self._buffer and not self._jobs:
            if self._conn is not None and self._conn.in_transaction():
                self._conn.commit()
            return
        buffer, self._buffer = self._buffer, {}
        jobs, self._jobs = self._jobs, {}
        try:
            with self._errors():
                conn = self.conn
                for table_name in _TABLE_ORDER:
                    rows = buffer.get(table_name)
                    if rows:
                        if table_name in _UPSERT:
                            rows = _last_per_key(table_name, rows)
                        conn.execute(self._statement(table_name), rows)
                if jobs:
                    conn.execute(self._statement("job"), list(jobs.values()))
                conn.commit()
        except BaseException:
            # Nothing was committed: keep the rows so that a later flush (after the lock is released,
            # for example) still writes them.
            for table_name, rows in buffer.items():
                self._buffer[table_name] = rows + self._buffer.get(table_name, [])
            for job_id, row in jobs.items():
                newer = self._jobs.get(job_id)
                self._jobs[job_id] = {**row, **newer} if newer else row
            raise

    def _statement(self, table_name: str) -> Any:
        stmt = self._stmts.get(table_name)
        if stmt is not None:
            return stmt
        table = s.metadata.tables[table_name]
        insert = sqlite.insert if self.is_sqlite else postgresql.insert
        ins = insert(table)
        pk = [c.name for c in table.primary_key.columns]
        if table_name in _UPSERT or table_name == "job":
            updatable = [c.name for c in table.columns if c.name not in pk]
            stmt = ins.on_conflict_do_update(index_elements=pk, set_={c: ins.excluded[c] for c in updatable})
        else:
            stmt = ins.on_conflict_do_nothing(index_elements=pk)
        self._stmts[table_name] = stmt
        return stmt


_DIGESTS_SQL_QMARK = "SELECT path, stat_token, digest FROM file_digest WHERE directory = ?"
_DIGESTS_SQL_FORMAT = "SELECT path, stat_token, digest FROM file_digest WHERE directory = %s"
_TABLE_ORDER = ("task", "value", "value_file", "evaluation", "call_node", "argument", "call_edge", "tag",
                "file_digest")
_UPSERT = ("evaluation", "tag", "file_digest")
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _last_per_key(table_name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per primary key (the last), as PostgreSQL refuses to upsert a row twice in a statement."""
    pk = [c.name for c in s.metadata.tables[table_name].primary_key.columns]
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in pk)] = row
    return list(latest.values())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _classify(exc: DBAPIError, db_uri: str) -> StoreError:
    message = str(getattr(exc, "orig", exc))
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreLockedError(
            f"the database {db_uri} is locked by another process ({message}); wait for it or use another db_uri",
            db_uri,
        )
    if "not a database" in lowered or "unable to open" in lowered or "readonly" in lowered or (
        isinstance(getattr(exc, "orig", None), sqlite3.DatabaseError) and "malformed" in lowered
    ):
        return StoreLockedError(f"cannot use the database file of {db_uri}: {message}", db_uri)
    if "connection" in lowered and ("refused" in lowered or "failed" in lowered):
        return StoreError(f"cannot connect to the database {db_uri}: {message}", db_uri)
    return StoreError(f"database error on {db_uri}: {message}", db_uri)
