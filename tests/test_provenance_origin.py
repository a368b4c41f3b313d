"""Provenance by origin: an argument's producer is the call whose result was passed, never a call that
happened to return an equal value."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from slothflow import Scheduler, task


@task(namespace="origin")
def add(a: int, b: int) -> int:
    return a + b


@task(namespace="origin")
def show(x: int) -> str:
    return f"<{x}>"


@task(namespace="origin")
def pair(made: int, literal: int) -> str:
    return f"{made}/{literal}"


@task(namespace="origin")
def main() -> list[object]:
    return [add(1, 2), show(3), show(add(1, 2)), pair(add(1, 2), 3)]


def test_a_literal_equal_to_a_result_has_no_producer(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{db}"}})
    try:
        assert sched.run(main()) == [3, "<3>", "<3>", "3/3"]
    finally:
        sched.close()
    conn = sqlite3.connect(db)
    try:
        add_call = conn.execute(
            "SELECT DISTINCT call_hash FROM job WHERE task_name = 'origin.add'").fetchall()
        upstream = conn.execute(
            "SELECT a.upstream_call FROM argument a JOIN call_node c ON c.call_hash = a.call_hash "
            "JOIN task t ON t.hash = c.task_hash WHERE t.name = 'show'").fetchall()
        pair_args = dict(conn.execute(
            "SELECT a.name, a.upstream_call FROM argument a JOIN call_node c ON c.call_hash = a.call_hash "
            "JOIN task t ON t.hash = c.task_hash WHERE t.name = 'pair'").fetchall())
    finally:
        conn.close()
    assert len(add_call) == 1
    # show(3) and show(add(1, 2)) are one call (same eval hash): its argument came from the user first.
    assert upstream == [(None,)]
    # pair's first argument was made by add(1, 2); its second, equal to it, was typed by the user.
    assert pair_args == {"made": add_call[0][0], "literal": None}


@task(namespace="origin2")
def produced() -> int:
    return 3


@task(namespace="origin2")
def consume(x: int) -> int:
    return x + 1


@task(namespace="origin2")
def main2() -> int:
    return consume(produced())


def test_an_argument_made_by_a_call_records_that_call(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{db}"}})
    try:
        assert sched.run(main2()) == 4
    finally:
        sched.close()
    conn = sqlite3.connect(db)
    try:
        (producer,) = conn.execute("SELECT call_hash FROM job WHERE task_name = 'origin2.produced'").fetchone()
        upstream = conn.execute(
            "SELECT a.upstream_call FROM argument a JOIN call_node c ON c.call_hash = a.call_hash "
            "JOIN task t ON t.hash = c.task_hash WHERE t.name = 'consume'").fetchall()
    finally:
        conn.close()
    assert upstream == [(producer,)]
