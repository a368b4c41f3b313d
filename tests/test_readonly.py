"""A project that can only be read: ``slothflow log``, ``explain`` and ``db info`` work; writing says the folder
is read-only.

Tests run as root, whom file permissions do not stop: the commands run in a child process without the
capabilities that bypass them (``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so the
permission bits apply exactly as they would to any user.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from slothflow import Scheduler, StoreReadOnlyError, StoreVersionError, task
from slothflow.store import Store
from slothflow.store import schema as s

WORKFLOW = """
from slothflow import task

@task
def inc(x: int) -> int:
    return x + 1

@task
def main(n: int = 3) -> int:
    return sum(inc(i) for i in range(n)) if False else inc(n)
"""


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root's permission override")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_unprivileged(), sys.executable, "-m", "slothflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def read_only_project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "wf.py").write_text(textwrap.dedent(WORKFLOW))
    assert _cli(tmp_path, "init").returncode == 0
    first = _cli(tmp_path, "run", "wf.py", "main", "--n", "2")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / ".slothflow"
    assert not (folder / "slothflow.db-wal").exists()  # closed cleanly: no WAL files to open it with
    paths = [p for p in folder.rglob("*")] + [folder]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    yield tmp_path
    for p in paths:
        p.chmod(0o755 if p.is_dir() else 0o644)


def test_read_only_project_can_be_read(read_only_project: Path) -> None:
    listing = _cli(read_only_project, "log", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    executions = json.loads(listing.stdout)
    assert [e["status"] for e in executions] == ["done"]
    detail = _cli(read_only_project, "log", executions[0]["id"][:8])
    assert detail.returncode == 0 and "main" in detail.stdout, detail.stderr
    explained = _cli(read_only_project, "explain", executions[0]["id"][:8])
    assert explained.returncode == 0 and "new task" in explained.stdout, explained.stderr
    info = _cli(read_only_project, "db", "info")
    assert info.returncode == 0 and "execution" in info.stdout, info.stderr


def test_writing_to_a_read_only_project_says_so(read_only_project: Path) -> None:
    result = _cli(read_only_project, "run", "wf.py", "main", "--n", "5")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "read-only" in message and str(read_only_project / ".slothflow") in message, message
    assert "Traceback" not in result.stderr


def test_open_readonly_never_writes(db_uri: str, tmp_path: Path) -> None:
    writer = Store(db_uri, blob_dir=tmp_path / "b")
    writer.start_execution({"id": uuid.uuid4().hex, "root_job": None, "args": "[]", "user": "u", "cwd": "/",
                            "status": "done", "started_at": time.time(), "ended_at": time.time()})
    writer.close()
    reader = Store.open_readonly(db_uri, blob_dir=tmp_path / "b")
    try:
        assert reader.conn.execute(text("SELECT count(*) FROM execution")).scalar_one() == 1
        reader.conn.rollback()
        with pytest.raises(StoreReadOnlyError, match="read-only"):
            reader.start_execution({"id": uuid.uuid4().hex, "root_job": None, "args": "[]", "user": "u",
                                    "cwd": "/", "status": "running", "started_at": time.time()})
        with pytest.raises(StoreReadOnlyError, match="read-only"):  # even past the store's own guard
            with reader._errors():
                reader.conn.execute(s.execution.delete())
        reader.add_task(inc)
        with pytest.raises(StoreReadOnlyError):
            reader.flush()
    finally:
        reader._buffer.clear()
        reader.close()


@task
def inc(x: int) -> int:
    return x + 1


def test_open_readonly_never_migrates(sqlite_uri: str, tmp_path: Path) -> None:
    Store(sqlite_uri, blob_dir=tmp_path / "b").downgrade("0001")
    with pytest.raises(StoreVersionError, match="slothflow db upgrade"):
        Store.open_readonly(sqlite_uri)
    relaxed = Store.open_readonly(sqlite_uri, require_current=False)
    assert relaxed.schema_version() == "0001"
    relaxed.close()
    path = sqlite_uri.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    # a writer migrates it, as before
    sched = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    assert sched.run(inc(1)) == 2
    sched.close()
