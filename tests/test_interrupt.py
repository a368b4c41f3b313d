"""Ctrl-C: the run stops submitting, cancels running jobs, records the execution as interrupted and keeps
every finished result for the next run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WORKFLOW = textwrap.dedent('''
    import os, sys, time
    from slothflow import Scheduler, task

    LOG = os.environ["RUN_LOG"]

    def note(what):
        with open(LOG, "a") as f:
            f.write(what + "\\n")

    @task(namespace="ctrlc")
    def quick(x):
        note(f"quick({x})")
        return x + 1

    @task(namespace="ctrlc")
    def slow(x):
        note(f"slow({x})")
        if os.environ.get("HANG") == "1":
            time.sleep(60)
        return x * 2

    @task(namespace="ctrlc")
    def main():
        return slow(quick(1))

    if __name__ == "__main__":
        sched = Scheduler(config={"backend": {"db_uri": os.environ["RUN_DB"]},
                                  "executors.default": {"type": os.environ.get("EXECUTOR", "threads")}})
        try:
            print("RESULT", sched.run(main()), flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
            sys.exit(130)
        finally:
            sched.close()
''')


def _start(tmp_path: Path, hang: bool, executor: str) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "wf.py"
    script.write_text(WORKFLOW)
    log = tmp_path / "ran.log"
    log.write_text("")
    env = {**os.environ, "RUN_LOG": str(log), "RUN_DB": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "HANG": "1" if hang else "0", "EXECUTOR": executor}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, log


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_ctrl_c_records_interrupted_and_keeps_finished_results(tmp_path: Path, executor: str) -> None:
    proc, log = _start(tmp_path, hang=True, executor=executor)
    try:
        deadline = time.monotonic() + 60
        while "slow(2)" not in log.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "slow() never started"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - sent < 10, "Ctrl-C did not stop the run promptly"
    assert proc.returncode == 130, (out, err)
    assert "INTERRUPTED" in out

    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        statuses = {row[0] for row in conn.execute("SELECT status FROM execution")}
        slow_jobs = [row[0] for row in conn.execute("SELECT status FROM job WHERE task_name = 'ctrlc.slow'")]
    finally:
        conn.close()
    assert statuses == {"interrupted"}
    assert slow_jobs == ["interrupted"]

    # The next run reuses quick(1), which finished before Ctrl-C, and runs slow() again.
    proc, log = _start(tmp_path, hang=False, executor=executor)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "RESULT 4" in out
    assert log.read_text().split() == ["slow(2)"]
