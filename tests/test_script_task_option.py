"""``@task(script=True)``: the function returns a shell command; the task's value is its stdout."""

from __future__ import annotations

import pytest

from slothflow import Scheduler, ScriptError, task


@task(script=True)
def greet(name: str) -> str:
    return f"printf 'hello %s' {name}"


@task(script=True)
def broken() -> str:
    return "echo 'it went wrong' >&2; exit 7"


@task(script=True)
def not_a_command() -> str:
    return 42  # type: ignore[return-value]


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_script_task_returns_stdout_and_fails_clearly(sqlite_uri: str, executor: str) -> None:
    scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri}, "executors.default": {"type": executor}})
    try:
        assert scheduler.run(greet("ana")) == "hello ana"
        with pytest.raises(ScriptError) as info:
            scheduler.run(broken())
        assert info.value.returncode == 7
        assert "it went wrong" in str(info.value) and "status 7" in str(info.value)
        with pytest.raises(TypeError, match="shell command as a string"):
            scheduler.run(not_a_command())
    finally:
        scheduler.close()


def test_script_task_is_cached_by_its_arguments(sqlite_uri: str) -> None:
    scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    assert scheduler.run(greet("bo")) == "hello bo"
    scheduler.run(greet("bo"))
    jobs = scheduler.store.conn.exec_driver_sql(
        "SELECT status FROM job WHERE task_name LIKE '%greet' ORDER BY started_at"
    ).fetchall()
    assert [j[0] for j in jobs] == ["ran", "cached"]
    scheduler.close()
