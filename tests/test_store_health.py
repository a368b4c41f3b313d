"""Dead runs and broken databases: an execution whose scheduler died is shown as interrupted, and a database
file that is not one (or is truncated) is refused at start, with a message, before any task runs."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from slothflow import Scheduler, task
from slothflow.provenance.queries import execution_detail, execution_status, list_executions
from slothflow.store import Store
from slothflow.store.records import HEARTBEAT_EXPIRY, Status


def _execution(**over: Any) -> dict[str, Any]:
    row = {"id": uuid.uuid4().hex, "root_job": None, "args": "[]", "user": "u", "cwd": "/",
           "status": "running", "started_at": time.time(), "ended_at": None}
    row.update(over)
    return row


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_running_execution_of_a_dead_process_is_interrupted(db_uri: str, tmp_path: Path) -> None:
    store = Store(db_uri, blob_dir=tmp_path / "b")
    try:
        here = socket.gethostname()
        now = time.time()
        rows = {
            "alive": _execution(host=here, pid=os.getpid()),
            "dead": _execution(host=here, pid=_dead_pid()),
            # this process's pid, but the execution started long before this process did: a reused pid
            "reused_pid": _execution(host=here, pid=os.getpid(), started_at=now - 10 * 86400),
            "elsewhere_recent": _execution(host="other-machine", pid=1, heartbeat_at=now - 30),
            "elsewhere_stale": _execution(host="other-machine", pid=1, heartbeat_at=now - HEARTBEAT_EXPIRY - 5),
            "finished": _execution(host=here, pid=_dead_pid(), status="done", ended_at=now),
        }
        for row in rows.values():
            store.start_execution(row)
        conn = store.conn
        expected = {"alive": "running", "dead": "interrupted", "reused_pid": "interrupted",
                    "elsewhere_recent": "running", "elsewhere_stale": "interrupted", "finished": "done"}
        assert {k: execution_status(conn, r["id"]) for k, r in rows.items()} == expected
        listed = {r["id"]: r["status"] for r in list_executions(conn, 10)}
        assert {k: listed[r["id"]] for k, r in rows.items()} == expected
        assert execution_detail(conn, rows["dead"]["id"])["status"] == Status.INTERRUPTED
        conn.rollback()
    finally:
        store.close()


@task
def _slow_reader(db: str, seconds: float) -> float:
    """Sleeps, then reads the running execution's heartbeat from another connection."""
    time.sleep(seconds)
    with sqlite3.connect(db) as conn:
        return float(conn.execute("SELECT heartbeat_at - started_at FROM execution WHERE status = 'running'")
                     .fetchone()[0])


def test_heartbeat_is_written_while_a_long_job_runs(sqlite_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import slothflow.store._store as store_module

    monkeypatch.setattr(store_module, "HEARTBEAT_INTERVAL", 0.2)
    sched = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    try:
        assert sched.run(_slow_reader(sqlite_uri.split(":///", 1)[1], 1.5)) > 0.5
    finally:
        sched.close()


WORKFLOW = """
from slothflow import task

@task
def hello(n: int = 1) -> int:
    open("ran.txt", "a").write("ran\\n")
    return n + 1
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slothflow.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_database_is_refused_before_any_task_runs(tmp_path: Path, damage: str) -> None:
    (tmp_path / "wf.py").write_text(textwrap.dedent(WORKFLOW))
    db = tmp_path / "slothflow.db"
    uri = f"sqlite:///{db}"
    if damage == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    else:
        assert _cli(tmp_path, "--db", uri, "init").returncode == 0
        assert _cli(tmp_path, "--db", uri, "run", "wf.py", "hello").returncode == 0
        with sqlite3.connect(db) as conn:  # a store with many pages, all checkpointed into the file
            conn.execute("CREATE TABLE filler (x BLOB)")
            conn.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(2000),) for _ in range(200)])
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
        (tmp_path / "ran.txt").unlink()
    proc = _cli(tmp_path, "--db", uri, "run", "wf.py", "hello")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert str(db) in message and "move it away" in message
    assert ("not a SQLite database" if damage == "garbage" else "truncated") in message
    assert not (tmp_path / "ran.txt").exists()
