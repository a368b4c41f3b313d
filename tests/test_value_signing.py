"""Signed values: with a signing key, a stored value whose HMAC is missing or wrong is never unpickled; the call
reruns, the run says so, and the new signed result repairs the store. Every run is a fresh process."""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slothflow import Scheduler
from slothflow._errors import ConfigError

KEY = "k3y-for-tests-0123456789abcdef"
SCRIPT = """
import dataclasses, os, sys
from slothflow import Scheduler, task

@dataclasses.dataclass
class Point:
    x: int

def note(line):
    with open(os.environ["SIDE_LOG"], "a") as fh:
        fh.write(line + "\\n")

@task
def point(n):
    note("point")
    return Point(n)

@task
def numbers(n):
    note("numbers")
    return {"n": list(range(n)), "t": (n, -0.0)}

@task
def show(p, d):
    note("show")
    return f"{p.x}:{len(d['n'])}"

if __name__ == "__main__":
    backend = {"db_uri": sys.argv[1]}
    if sys.argv[2] == "sign":
        backend["signing_key_env"] = "SF_KEY"
    s = Scheduler(config={"backend": backend})
    print(s.run(show(point(3), numbers(5))))
    s.close()
"""


class Payload:
    """A pickle that creates a file when it is loaded: what an attacker with write access would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))


class Project:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.script = tmp_path / "wf.py"
        self.script.write_text(textwrap.dedent(SCRIPT))
        self.db = tmp_path / "slothflow.db"
        self.runs = 0

    def run(self, sign: bool = True, key: str = KEY) -> tuple[list[str], str]:
        """(the tasks that ran, stderr) of one run in a fresh process; its result must be right."""
        self.runs += 1
        log = self.tmp / f"run{self.runs}.log"
        env = {**os.environ, "SIDE_LOG": str(log), "SF_KEY": key}
        proc = subprocess.run([sys.executable, str(self.script), f"sqlite:///{self.db}", "sign" if sign else "-"],
                              env=env, cwd=self.tmp, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "3:5"
        return (sorted(log.read_text().splitlines()) if log.exists() else []), proc.stderr

    def result(self, task: str) -> tuple[str, bytes]:
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                "SELECT v.value_hash, v.data FROM call_node c JOIN task t ON t.hash = c.task_hash "
                "JOIN value v ON v.value_hash = c.value_hash WHERE t.name = ?", (task,)).fetchone()
        return row[0], row[1]

    def plant(self, task: str, data: bytes) -> str:
        """Replace a task's stored result by ``data``, with a digest that matches (as a writer of the store can)."""
        value_hash, _ = self.result(task)
        with sqlite3.connect(self.db) as conn:
            conn.execute("UPDATE value SET data = ?, digest = ? WHERE value_hash = ?",
                         (data, hashlib.sha256(data).hexdigest(), value_hash))
        return value_hash

    def reason(self, task: str) -> str:
        with sqlite3.connect(self.db) as conn:
            return str(conn.execute("SELECT reason FROM job WHERE task_name LIKE ? AND status = 'ran' "
                                    "ORDER BY started_at DESC", (f"%{task}",)).fetchone()[0])


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path)
    assert p.run()[0] == ["numbers", "point", "show"]
    assert p.run()[0] == []
    return p


def _forged(marker: Path, signature: bytes | None = None) -> bytes:
    body = b"P" + pickle.dumps(Payload(marker), protocol=5)
    return body if signature is None else b"S" + signature + body


@pytest.mark.parametrize("forgery", ["unsigned", "bad signature"])
def test_a_forged_pickle_is_never_unpickled_when_signing_is_on(project: Project, forgery: str) -> None:
    marker = project.tmp / "pwned"
    value_hash = project.plant("point", _forged(marker, None if forgery == "unsigned" else os.urandom(32)))
    ran, stderr = project.run()
    assert not marker.exists()
    assert ran == ["point"]  # show's arguments are unchanged (same value hash): only the forged call reruns
    expected = "not signed" if forgery == "unsigned" else "signature mismatch"
    assert expected in stderr and "point" in stderr and value_hash in stderr
    assert expected in project.reason("point") and project.reason("point").startswith("stored value corrupt")
    assert project.run()[0] == []  # the rerun's signed result replaced the forgery
    assert not marker.exists()


def test_without_a_key_the_same_forgery_would_run_code(project: Project) -> None:
    """The forged payload is effective: only the signature check keeps it from running."""
    marker = project.tmp / "pwned"
    project.plant("point", _forged(marker))
    env = {**os.environ, "SIDE_LOG": str(project.tmp / "control.log")}
    subprocess.run([sys.executable, str(project.script), f"sqlite:///{project.db}", "-"], env=env,
                   cwd=project.tmp, capture_output=True, timeout=120)  # its result is the attacker's: it fails
    assert marker.exists()


def test_plain_results_are_not_pickled(project: Project) -> None:
    _, data = project.result("numbers")
    assert data[:1] == b"S" and data[33:34] == b"D"  # signed, plain format
    _, data = project.result("point")
    assert data[:1] == b"S" and data[33:34] == b"P"


def test_turning_signing_on_reruns_each_call_once(tmp_path: Path) -> None:
    p = Project(tmp_path)
    assert p.run(sign=False)[0] == ["numbers", "point", "show"]
    ran, stderr = p.run()
    assert ran == ["numbers", "point", "show"] and "not signed" in stderr
    assert p.run()[0] == []
    assert p.run(sign=False)[0] == []  # signed values are read without a key too


def test_another_key_is_a_signature_mismatch(project: Project) -> None:
    ran, stderr = project.run(key="another-key-0123456789abcdef")
    assert ran == ["numbers", "point", "show"] and "signature mismatch" in stderr


def test_a_missing_or_short_key_variable_is_a_config_error(sqlite_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from slothflow import task

    @task
    def one() -> int:
        return 1

    monkeypatch.delenv("SF_NO_SUCH_KEY", raising=False)
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri, "signing_key_env": "SF_NO_SUCH_KEY"}})
    with pytest.raises(ConfigError, match="SF_NO_SUCH_KEY"):
        s.run(one())
    monkeypatch.setenv("SF_NO_SUCH_KEY", "short")
    with pytest.raises(ConfigError, match="SF_NO_SUCH_KEY"):
        s.run(one())


def test_store_level_signing_on_sqlite_and_postgresql(db_uri: str, tmp_path: Path) -> None:
    from slothflow import hash_value
    from slothflow.store import Store

    plain = {"a": (1, 2.5)}
    values = {hash_value(plain): plain, "v-pickled": Payload(tmp_path / "never")}  # the second would make a file
    key, wrong = KEY.encode(), b"another-key-0123456789"

    def load(signing_key: bytes | None, value_hash: str) -> tuple[bool, str | None]:
        store = Store(db_uri, blob_dir=tmp_path / "b", signing_key=signing_key)
        try:
            return store.load_value(value_hash)[0], store.corruption(value_hash)
        finally:
            store.close()

    writer = Store(db_uri, blob_dir=tmp_path / "b", signing_key=key)
    for value_hash, value in values.items():
        writer.add_value(value_hash, value)
    writer.flush()
    writer.close()
    for value_hash in values:
        assert load(wrong, value_hash) == (False, f"stored value {value_hash[:12]} signature mismatch")
    assert load(key, hash_value(plain)) == (True, None)
    assert load(None, hash_value(plain)) == (True, None)  # signed values read without a key too
    assert not (tmp_path / "never").exists()  # the pickled one was only ever checked, never loaded
