"""The store: what slothflow remembers (cache entries, provenance, values), on SQLite or PostgreSQL.

Only the scheduler process writes. Writes are buffered and committed in one transaction per
:meth:`Store.flush`, which the scheduler calls once per round and before it starts any job whose inputs
are still in the buffer; reads are single indexed queries. Values are content-addressed: small ones live
inline in the ``value`` table, large ones in a :class:`~slothflow.store.blobs.BlobStore` (written before the
row that names them is committed; on PostgreSQL without a blob location, in the table too). Every value row
records the digest of its bytes, and a value whose bytes no longer match it, or (with a signing key) whose
signature is missing or wrong, is never used (a cache miss, reported, and repaired by the rerun's write).
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, inspect, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from slothflow._errors import StoreError, StoreLockedError, StoreVersionError
from slothflow.files._file import iter_files, normalize_path
from slothflow.model._value import preview
from slothflow.store import schema as s
from slothflow.store._codec import dumps, loads
from slothflow.store._dialect import (
    check_sqlite_file,
    classify,
    insert_sql,
    is_read_only_os_error,
    make_engine,
    paramstyle,
    read_only_error,
    sqlite_path,
    uri_timeout,
)
from slothflow.store._signing import sign, unwrap
from slothflow.store.blobs import BlobStore, blob_key, open_blob_store
from slothflow.store.records import (
    HEARTBEAT_INTERVAL,
    ArgumentRecord,
    CallRecord,
    ExecutionRecord,
    JobRecord,
    Status,
)

HEAD_REVISION = "0002"
KNOWN_REVISIONS = ("0001", "0002")
INLINE_LIMIT = 64 * 1024
_ALEMBIC_LOCK = threading.Lock()
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another one before StoreLockedError
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger("slothflow")

__all__ = ["HEAD_REVISION", "INLINE_LIMIT", "KNOWN_REVISIONS", "MIGRATIONS_DIR", "Store", "sqlite_path"]


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


class Store:
    """A connection to one slothflow database (and its blob folder)."""

    def __init__(
        self,
        db_uri: str,
        blob_dir: str | os.PathLike[str] | None = None,
        automigrate: bool | None = True,
        busy_timeout: float | None = None,
        readonly: bool = False,
        blobs: BlobStore | None = None,
        require_current: bool = True,
        signing_key: bytes | None = None,
    ):
        """Open (and, unless ``readonly``, create or migrate) a store.

        ``busy_timeout`` is how long, in seconds, a SQLite write waits for another process's write lock
        before :class:`StoreLockedError`; it may also be given as ``?timeout=`` in the URI. A file that is not a
        SQLite database, or a truncated one, raises :class:`StoreCorruptError` here, before any task runs.
        ``blob_dir`` is a folder or an fsspec URL for large values (default: next to a SQLite database; in
        the database itself on PostgreSQL). With ``signing_key``, values are signed when written and only
        values with a good signature are used. ``automigrate``: True creates a new database and migrates an
        older SQLite one; None (an explicit ``automigrate = true`` in the config) migrates an older PostgreSQL one
        too; False never migrates (``slothflow db upgrade`` does).
        """
        self.db_uri = db_uri
        self.is_sqlite = db_uri.startswith("sqlite")
        self.readonly = readonly
        self._require_current = require_current
        if busy_timeout is None:
            busy_timeout = uri_timeout(db_uri)
        self.busy_timeout = DEFAULT_BUSY_TIMEOUT if busy_timeout is None else float(busy_timeout)
        path = sqlite_path(db_uri)
        if path is not None:
            self._check_file(Path(path))
        try:
            self.blobs: BlobStore | None = blobs if blobs is not None else open_blob_store(blob_dir, path)
        except OSError as exc:
            raise StoreError(str(exc), db_uri) from exc
        self.signing_key = signing_key
        try:
            self.engine = self._readonly_engine() if readonly else make_engine(db_uri, self.busy_timeout)
        except (SQLAlchemyError, ImportError, ValueError) as exc:  # a malformed URI, a driver not installed
            raise StoreError(f"cannot open database {db_uri}: {exc}", db_uri) from exc
        self._conn: Connection | None = None
        self._known_values: set[str] = set()
        self._known_tasks: set[str] = set()
        self._corrupt: dict[str, str] = {}  # value hash -> what was wrong, for values found damaged
        self._buffer: dict[str, list[dict[str, Any]]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._stmts: dict[Any, Any] = {}  # query name, or (table, columns) -> its statement
        self._execution: str | None = None  # the running execution whose heartbeat flush() writes
        self._heartbeat = 0.0
        self.last_flush = time.monotonic()
        try:
            self._check_schema(False if readonly else automigrate)
        except BaseException:
            self._release()
            raise

    @classmethod
    def open_readonly(cls, db_uri: str, blob_dir: str | os.PathLike[str] | None = None,
                      busy_timeout: float | None = None, require_current: bool = True) -> Store:
        """Open a store only to read it (``slothflow log``, ``explain``, ``db info``): works in a read-only
        folder, never migrates (an outdated schema is a :class:`StoreVersionError` that says to run
        ``slothflow db upgrade``, unless ``require_current`` is False), and any write raises
        :class:`StoreReadOnlyError`. A schema newer than this slothflow's is always refused."""
        return cls(db_uri, blob_dir=blob_dir, automigrate=False, busy_timeout=busy_timeout, readonly=True,
                   require_current=require_current)

    # ----------------------------------------------------------------------------------- set-up
    def _check_file(self, path: Path) -> None:
        if path.is_dir():
            raise StoreLockedError(f"cannot use the database {self.db_uri}: {path} is a directory", self.db_uri)
        if self.readonly:
            if not path.exists():
                raise StoreError(f"there is no database at {path} (nothing has run here yet)", self.db_uri)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if is_read_only_os_error(exc):
                    raise read_only_error(self.db_uri, str(exc)) from exc
                raise StoreError(f"cannot create the folder of the database {self.db_uri}: {exc}",
                                 self.db_uri) from exc
        check_sqlite_file(str(path), self.db_uri)

    def _readonly_engine(self) -> Any:
        """SQLite ``mode=ro``; when even that cannot open the file (a WAL database in a read-only folder, whose
        shared-memory file cannot be created), ``immutable=1``."""
        engine = make_engine(self.db_uri, self.busy_timeout, readonly=True)
        if not self.is_sqlite:
            return engine
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
            return engine
        except DBAPIError as exc:
            engine.dispose()
            if "not a database" in str(exc).lower() or "malformed" in str(exc).lower():
                raise classify(exc, self.db_uri) from exc
            return make_engine(self.db_uri, self.busy_timeout, readonly=True, immutable=True)

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
            raise classify(exc, self.db_uri) from exc

    def _writable(self) -> None:
        if self.readonly:
            raise read_only_error(self.db_uri, "the store was opened read-only")

    def schema_version(self) -> str | None:
        with self._errors():
            if not inspect(self.conn).has_table("alembic_version"):
                self.conn.rollback()
                return None
            row = self.conn.execute(text("SELECT version_num FROM alembic_version")).first()
            self.conn.rollback()
            return None if row is None else str(row[0])

    def _check_schema(self, automigrate: bool | None) -> None:
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
        if self.readonly and not self._require_current:
            return
        if self.readonly:
            raise StoreVersionError(
                f"the database {self.db_uri} has no slothflow schema yet" if fresh else
                f"the database {self.db_uri} has schema version {version}, older than {HEAD_REVISION}: "
                "run `slothflow db upgrade` (reading it never migrates it)",
                self.db_uri,
            )
        if automigrate is None or (automigrate and (fresh or self.is_sqlite)):
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

        self._writable()
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
            if self._conn is not None and not self.readonly:
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
    def add_value(self, value_hash: str, value: Any) -> None:
        """Remember a value (once: a value already stored is never serialized again).

        A value found damaged in this process is written again, over the damaged row and blob.
        """
        if value_hash in self._known_values:
            return
        data = dumps(value)
        if self.signing_key is not None:
            data = sign(self.signing_key, value_hash, data)
        digest = blob_key(data)
        row: dict[str, Any] = {
            "value_hash": value_hash,
            "type_name": _type_name(value)[:512],
            "size": len(data),
            "preview": preview(value),
            "digest": digest,
        }
        if len(data) > INLINE_LIMIT and self.blobs is not None:
            self._put_blob(self.blobs, digest, data)
            row.update(storage="blob", data=None)
        else:
            row.update(storage="inline", data=data)
        self._buffer.setdefault("value_repair" if value_hash in self._corrupt else "value", []).append(row)
        self._corrupt.pop(value_hash, None)
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

    def _put_blob(self, blobs: BlobStore, key: str, data: bytes) -> None:
        self._writable()
        try:
            blobs.put(key, data)
        except OSError as exc:
            if is_read_only_os_error(exc):
                raise read_only_error(self.db_uri, f"the blob store {blobs!r} is read-only: {exc}") from exc
            raise StoreError(f"cannot write a blob to {blobs!r}: {exc}", self.db_uri) from exc

    def _decode(self, value_hash: str, storage: str, data: bytes | None, digest: str | None) -> tuple[bool, Any]:
        """(found, value). Bytes that do not match the recorded digest are never used: the value is reported
        (:meth:`corruption`) and counts as not found. With a signing key, so are values whose signature is
        missing or wrong: their bytes are never unpickled."""
        if storage == "blob":
            try:
                if self.blobs is None:
                    raise KeyError(value_hash)
                data = self.blobs.get(digest or value_hash)  # values from schema 0001: keyed by value hash
            except KeyError:  # lost: the rerun's write puts it back
                return self._reject(value_hash, f"stored blob {value_hash[:12]} is missing")
            except OSError:
                return False, None
        data = data or b""
        if digest is not None and blob_key(data) != digest:
            what = "blob" if storage == "blob" else "inline value"
            return self._reject(value_hash, f"stored {what} {value_hash[:12]} is corrupt (its bytes changed "
                                            "after it was written)")
        payload, wrong = unwrap(self.signing_key, value_hash, data)
        if payload is None:
            return self._reject(value_hash, f"stored value {value_hash[:12]} {wrong}")
        try:
            value = loads(payload)
        except Exception:  # a class that no longer exists, a corrupt row from before digests: a cache miss
            return False, None
        self._known_values.add(value_hash)
        return True, value

    def _reject(self, value_hash: str, what: str) -> tuple[bool, Any]:
        self._corrupt[value_hash] = what
        self._known_values.discard(value_hash)
        return False, None

    def corruption(self, value_hash: str) -> str | None:
        """What was wrong with a stored value this store found damaged (None: not found damaged)."""
        return self._corrupt.get(value_hash)

    def load_value(self, value_hash: str) -> tuple[bool, Any]:
        """(found, value) for a stored value; a missing blob, damaged bytes or an unloadable value count as not
        found."""
        with self._errors():
            row = self.conn.execute(
                select(s.value.c.storage, s.value.c.data, s.value.c.digest).where(s.value.c.value_hash == value_hash)
            ).first()
        if row is None:
            return False, None
        return self._decode(value_hash, row.storage, row.data, row.digest)

    # ------------------------------------------------------------------------------------- cache
    def get_reductions(self, eval_hashes: list[str],
                       corrupt: dict[str, str] | None = None) -> dict[str, tuple[str, Any, str | None]]:
        """For each eval hash with a recorded, loadable reduction: (value hash, value, newest call hash).

        One query per 500 hashes: the cache lookups of a whole scheduler round are batched. An eval hash whose
        recorded value is damaged is left out, and put in ``corrupt`` (eval hash -> value hash) when given.
        """
        out: dict[str, tuple[str, Any, str | None]] = {}
        for i in range(0, len(eval_hashes), 500):
            chunk = eval_hashes[i : i + 500]
            with self._errors():
                rows = self._select(_REDUCTIONS_SQL, chunk)
                calls = self._select(_CALLS_SQL, [r[0] for r in rows]) if rows else []
            if not rows:
                continue
            latest: dict[str, tuple[float, str]] = {}
            for eval_hash, call_hash, created_at in calls:
                known = latest.get(eval_hash)
                if known is None or created_at > known[0]:
                    latest[eval_hash] = (created_at, call_hash)
            for eval_hash, value_hash, storage, data, digest in rows:
                found, value = self._decode(value_hash, storage, data, digest)
                if found:
                    best = latest.get(eval_hash)
                    out[eval_hash] = (value_hash, value, best[1] if best else None)
                elif corrupt is not None and value_hash in self._corrupt:
                    corrupt[eval_hash] = value_hash
        return out

    def _select(self, sql: str, keys: list[str]) -> list[Any]:
        """Rows of a raw ``... IN ({keys})`` query (inside :meth:`_errors`): a cached rerun looks up every
        call, and compiling an expanding SQLAlchemy statement per batch cost more than the query."""
        text_ = paramstyle(sql.replace("{keys}", ", ".join("?" * len(keys))), self.is_sqlite)
        return list(self.conn.exec_driver_sql(text_, tuple(keys)).all())

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
        """:meth:`record_call` with the record's fields given one by one."""
        self.record_call(CallRecord(call_hash, eval_hash, task_hash, args_hash, value_hash, frozenset(subtree_tasks),
                                    tuple(ArgumentRecord(*a) for a in arguments), tuple(children)))

    def record_call(self, call: CallRecord) -> None:
        """Remember a call node with its arguments and child calls (written by the next flush)."""
        buf = self._buffer
        call_hash = call.call_hash
        buf.setdefault("call_node", []).append(
            {
                "call_hash": call_hash,
                "eval_hash": call.eval_hash,
                "task_hash": call.task_hash,
                "args_hash": call.args_hash,
                "value_hash": call.value_hash,
                "subtree_tasks": " ".join(sorted(call.subtree_tasks)),
                "created_at": time.time(),
            }
        )
        if call.arguments:
            buf.setdefault("argument", []).extend(
                {"call_hash": call_hash, "name": a.name, "position": a.position, "value_hash": a.value_hash,
                 "upstream_call": a.upstream_call}
                for a in call.arguments
            )
        if call.children:
            buf.setdefault("call_edge", []).extend(
                {"parent_call": call_hash, "position": i, "child_call": c} for i, c in enumerate(call.children)
            )

    def record_job(self, job: JobRecord) -> None:
        """Remember a job's latest state (only the last state of each job is written)."""
        state = getattr(job, "__dict__", None)
        if state is None:
            self._jobs[job.id] = job.row()
            return
        row = dict(state)  # JobRecord.row() without a dataclasses.fields() walk per job
        row["status"] = str(job.status)
        row["arguments"] = json.dumps(job.arguments) if job.arguments else None
        self._jobs[job.id] = row

    def put_job(self, row: dict[str, Any]) -> None:
        """Insert or update a job row (keyed by ``id``); a partial row updates the pending one."""
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
        sql = paramstyle(_DIGESTS_SQL, self.is_sqlite)
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

    def start_execution(self, execution: ExecutionRecord | dict[str, Any]) -> None:
        """Record a running execution (with its host and pid, so that a later reader can tell it died);
        :meth:`flush` then keeps its heartbeat."""
        self._writable()
        now = time.time()
        given = execution.row() if isinstance(execution, ExecutionRecord) else execution
        row = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat_at": now, **given}
        with self._errors():
            self.conn.execute(s.execution.insert(), [row])
            self.conn.commit()
        self._execution = row["id"] if row.get("status", Status.RUNNING) == Status.RUNNING else None
        self._heartbeat = time.monotonic()

    def end_execution(self, execution_id: str, status: str, root_job: str | None) -> None:
        self._writable()
        now = time.time()
        with self._errors():
            self.conn.execute(
                s.execution.update()
                .where(s.execution.c.id == execution_id)
                .values(status=str(status), ended_at=now, heartbeat_at=now, root_job=root_job)
            )
        if self._execution == execution_id:
            self._execution = None

    def _heartbeat_due(self) -> bool:
        return self._execution is not None and time.monotonic() - self._heartbeat > HEARTBEAT_INTERVAL

    @property
    def pending(self) -> bool:
        """Whether :meth:`flush` has something to write (buffered records, or a heartbeat that is due)."""
        return bool(self._buffer) or bool(self._jobs) or self._heartbeat_due()

    def flush(self) -> None:
        """Commit everything buffered, in one transaction (with the running execution's heartbeat, when due)."""
        self.last_flush = time.monotonic()
        heartbeat = self._heartbeat_due()
        if not self._buffer and not self._jobs and not heartbeat:
            if self._conn is not None and self._conn.in_transaction():
                with self._errors():
                    self._conn.commit()
            return
        self._writable()
        if not self._buffer and not self._jobs:
            self._beat()
            return
        buffer, self._buffer = self._buffer, {}
        jobs, self._jobs = self._jobs, {}
        try:
            with self._errors():
                conn = self.conn
                if not conn.in_transaction():
                    conn.begin()  # so that conn.commit() below commits what the raw cursor wrote
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    for table_name in _TABLE_ORDER:
                        rows = buffer.get(table_name)
                        if rows:
                            if table_name in _UPSERT:
                                rows = _last_per_key(table_name, rows)
                            self._write(cursor, table_name, rows)
                    if jobs:
                        self._write(cursor, "job", list(jobs.values()))
                finally:
                    cursor.close()
                if heartbeat:
                    conn.execute(s.execution.update().where(s.execution.c.id == self._execution)
                                 .values(heartbeat_at=time.time()))
                conn.commit()
            if heartbeat:
                self._heartbeat = time.monotonic()
        except BaseException:
            # Nothing was committed: keep the rows so that a later flush (after the lock is released,
            # for example) still writes them.
            for table_name, rows in buffer.items():
                self._buffer[table_name] = rows + self._buffer.get(table_name, [])
            for job_id, row in jobs.items():
                newer = self._jobs.get(job_id)
                self._jobs[job_id] = {**row, **newer} if newer else row
            raise

    def _beat(self) -> None:
        """A heartbeat alone: a busy database delays it, never fails the run (the next one will do)."""
        self._heartbeat = time.monotonic()
        try:
            with self._errors():
                self.conn.execute(s.execution.update().where(s.execution.c.id == self._execution)
                                  .values(heartbeat_at=time.time()))
                self.conn.commit()
        except StoreLockedError as exc:
            log.debug("heartbeat skipped: %s", exc)

    def _write(self, cursor: Any, table_name: str, rows: list[dict[str, Any]]) -> None:
        """Insert (or upsert) buffered rows with one ``executemany`` of a statement built once per table and
        set of columns; a driver error becomes SQLAlchemy's, so that :meth:`_errors` classifies it."""
        columns = tuple(rows[0])
        key = (table_name, columns)
        sql = self._stmts.get(key)
        if sql is None:
            upsert = table_name in _UPSERT or table_name == "job"
            table = s.metadata.tables["value" if table_name == "value_repair" else table_name]
            columns = tuple(c.name for c in table.columns if c.name in rows[0])
            sql = self._stmts[key] = (insert_sql(table, columns, self.is_sqlite, update=upsert), columns)
        sql, columns = sql
        try:
            get = operator.itemgetter(*columns)
            params = [get(r) for r in rows] if len(columns) > 1 else [(get(r),) for r in rows]
        except KeyError:  # rows of different shapes (a partial job row): a missing column is NULL
            params = [tuple(r.get(c) for c in columns) for r in rows]
        dbapi = self.engine.dialect.dbapi
        try:
            cursor.executemany(sql, params)
        except dbapi.Error as exc:  # type: ignore[union-attr]
            raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc  # type: ignore[union-attr]


_DIGESTS_SQL = "SELECT path, stat_token, digest FROM file_digest WHERE directory = ?"
_REDUCTIONS_SQL = ('SELECT e.eval_hash, e.value_hash, v.storage, v.data, v.digest FROM evaluation e '
                   'JOIN "value" v ON v.value_hash = e.value_hash WHERE e.eval_hash IN ({keys})')
_CALLS_SQL = "SELECT eval_hash, call_hash, created_at FROM call_node WHERE eval_hash IN ({keys})"
# value_repair: rows that replace a damaged value (an upsert); value: new values (kept if already there)
_TABLE_ORDER = ("task", "value", "value_repair", "value_file", "evaluation", "call_node", "argument", "call_edge",
                "tag", "file_digest")
_UPSERT = ("value_repair", "evaluation", "tag", "file_digest")
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _last_per_key(table_name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per primary key (the last), as PostgreSQL refuses to upsert a row twice in a statement."""
    table = s.metadata.tables["value" if table_name == "value_repair" else table_name]
    pk = [c.name for c in table.primary_key.columns]
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in pk)] = row
    return list(latest.values())
