"""A stored value whose bytes changed after they were written is never used: the call reruns (once), the run
says so, and the rerun's write repairs the store. Each run is a fresh process, as a user's would be."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slothflow.store._codec import dumps  # the stored value format

SCRIPT = """
import os, sys
from slothflow import Scheduler, task

def note(line):
    with open(os.environ["SIDE_LOG"], "a") as fh:
        fh.write(line + "\\n")

@task
def small(n):
    note("small")
    return list(range(n))

@task
def big(n):
    note("big")
    return "b" * n

@task
def total(xs, s):
    note("total")
    return sum(xs) + len(s)

if __name__ == "__main__":
    s = Scheduler(config={"backend": {"db_uri": sys.argv[1]}})
    print(s.run(total(small(10), big(200_000))))
    s.close()
"""
EXPECTED = str(sum(range(10)) + 200_000)


class Project:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.script = tmp_path / "wf.py"
        self.script.write_text(textwrap.dedent(SCRIPT))
        self.db = tmp_path / "store" / "slothflow.db"
        self.blobs = tmp_path / "store" / "blobs"
        self.runs = 0

    def run(self) -> tuple[list[str], str]:
        """(what ran, stderr) of one run in a fresh process; its printed result must be right."""
        self.runs += 1
        log = self.tmp / f"run{self.runs}.log"
        proc = subprocess.run([sys.executable, str(self.script), f"sqlite:///{self.db}"],
                              env={**os.environ, "SIDE_LOG": str(log)}, cwd=self.tmp, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == EXPECTED
        return (sorted(log.read_text().splitlines()) if log.exists() else []), proc.stderr

    def result_hash(self, task: str) -> tuple[str, str, str | None]:
        """(value hash, storage, digest) of the result of a task's call."""
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                "SELECT v.value_hash, v.storage, v.digest FROM call_node c JOIN task t ON t.hash = c.task_hash "
                "JOIN value v ON v.value_hash = c.value_hash WHERE t.name = ?", (task,)).fetchone()
        assert row is not None
        return row[0], row[1], row[2]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path)
    assert p.run()[0] == ["big", "small", "total"]
    assert p.run()[0] == []
    return p


def test_changed_inline_value_is_not_used_and_is_repaired(project: Project) -> None:
    value_hash, storage, _ = project.result_hash("small")
    assert storage == "inline"
    with sqlite3.connect(project.db) as conn:  # loadable, but not what was written: [0..9] became [99]
        conn.execute("UPDATE value SET data = ? WHERE value_hash = ?", (dumps([99]), value_hash))
    ran, stderr = project.run()
    assert ran == ["small"]  # total's arguments are unchanged (same value hash): only the damaged call reruns
    assert "corrupt" in stderr and value_hash in stderr and "small" in stderr
    assert project.run()[0] == []  # repaired: fully cached again
    with sqlite3.connect(project.db) as conn:
        reason = conn.execute("SELECT reason FROM job WHERE task_name LIKE '%small' AND status = 'ran' "
                              "ORDER BY started_at DESC").fetchone()[0]
    assert reason.startswith("stored value corrupt")


@pytest.mark.parametrize("damage", ["truncate", "rewrite"])
def test_damaged_blob_reruns_once_and_is_repaired(project: Project, damage: str) -> None:
    value_hash, storage, digest = project.result_hash("big")
    assert storage == "blob" and digest is not None
    blob = project.blobs / digest[:2] / digest[2:]
    data = blob.read_bytes()
    if damage == "truncate":
        blob.write_bytes(data[: len(data) // 2])
    else:  # loadable bytes of another value, same length
        other = dumps("c" * 200_000)
        assert len(other) == len(data)
        blob.write_bytes(other)
    ran, stderr = project.run()
    assert ran == ["big"]
    assert "corrupt" in stderr and value_hash in stderr
    assert blob.read_bytes() == data
    assert project.run()[0] == []
