"""Killing a run with SIGKILL loses at most about a second of finished work, and never corrupts the store.

A script runs a workflow in its own process; task bodies append to a side log, which tells the test what
ran. The test kills the process with a real SIGKILL while a long task sleeps, then reruns the workflow in
a fresh process and checks from the side log that no finished work ran again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
from slothflow import Scheduler, task

def note(line):
    # The log's path is read here, not into a module constant: constants that tasks use are part of
    # their code hash, and the two runs write to different logs.
    with open(os.environ["SIDE_LOG"], "a") as fh:
        fh.write(line + "\\n")


@task
def quick(i):
    note(f"quick {i}")
    return i * i


@task
def chain(i, prev):
    note(f"chain {i}")
    return prev + i


@task
def total(squares, acc):
    note("total")
    return sum(squares) + acc


@task
def late(i):
    # finishes while the sleeper runs and nothing else is submitted: only a periodic flush saves it
    time.sleep(0.05 + i * 0.01)
    note(f"late {i}")
    return -i


@task
def sleeper(seconds, value):
    note("sleep-start")
    time.sleep(seconds)
    note("sleep-end")
    return value


@task
def main(n, seconds):
    note("main")
    acc = 0
    for i in range(5):
        acc = chain(i, acc)
    done = sleeper(seconds, total([quick(i) for i in range(n)], acc))
    return [done, [late(i) for i in range(6)]]


if __name__ == "__main__":
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    s = Scheduler(config={"backend": {"db_uri": sys.argv[1]},
                          "executors.default": {"type": "threads", "max_workers": 8}})
    print(s.run(main(n, seconds)))
    s.close()
"""

N = 40


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the workflow")


@pytest.mark.timeout(90)
def test_sigkill_mid_run_loses_no_finished_work(tmp_path: Path) -> None:
    script = tmp_path / "wf.py"
    script.write_text(textwrap.dedent(SCRIPT))
    db = tmp_path / "store" / "slothflow.db"
    uri = f"sqlite:///{db}"
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"

    proc = subprocess.Popen(
        [sys.executable, str(script), uri, str(N), "600"],
        env={**os.environ, "SIDE_LOG": str(log1)}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        early = {f"quick {i}" for i in range(N)} | {f"chain {i}" for i in range(5)} | {"total", "sleep-start"}
        early |= {f"late {i}" for i in range(6)}
        _wait_for(lambda: early <= set(_lines(log1)) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(1.5)  # everything above finished more than a second ago
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert "sleep-end" not in _lines(log1)

    with sqlite3.connect(db) as conn:  # recovers the WAL left behind by the killed process
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT status FROM execution").fetchall() == [("running",)]
    # ... but every later command shows it as interrupted: its scheduler's process is gone
    shown = subprocess.run([sys.executable, "-m", "slothflow.cli", "--db", uri, "log", "--format", "json"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert [e["status"] for e in json.loads(shown.stdout)] == ["interrupted"]

    rerun = subprocess.run(
        [sys.executable, str(script), uri, str(N), "0.1"],
        env={**os.environ, "SIDE_LOG": str(log2)}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    expected_total = sum(i * i for i in range(N)) + sum(range(5))
    assert rerun.stdout.strip().splitlines()[-1] == str([expected_total, [-i for i in range(6)]])
    # Only what had not finished (or whose arguments changed) ran again.
    assert sorted(_lines(log2)) == ["main", "sleep-end", "sleep-start"]

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        statuses = dict(conn.execute("SELECT status, count(*) FROM execution GROUP BY status").fetchall())
        assert statuses == {"running": 1, "done": 1}
        second = conn.execute("SELECT id FROM execution WHERE status = 'done'").fetchone()[0]
        cached = conn.execute(
            "SELECT count(*) FROM job WHERE execution_id = ? AND status = 'cached' AND task_name LIKE '%quick'",
            (second,),
        ).fetchone()[0]
        assert cached == N
