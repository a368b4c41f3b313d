"""redun's task API names: the cache option enums, the error types of bad task definitions, partial tasks'
options, and ``cond`` with any number of branches."""

from __future__ import annotations

from typing import Any

import pytest

from slothflow import Scheduler, TaskDefinitionError, cond
from slothflow.task import CacheCheckValid, CacheScope, task

calls: list[int] = []


@task(cache_scope=CacheScope.CSE, check_valid=CacheCheckValid.SHALLOW)
def per_run(x: int) -> int:
    calls.append(x)
    return x


@task
def value(x: Any) -> Any:
    return x


def test_cache_enums_are_accepted_as_options(scheduler: Scheduler) -> None:
    calls.clear()
    assert scheduler.run([per_run(1), per_run(1)]) == [1, 1]
    assert scheduler.run(per_run(1)) == 1
    assert calls == [1, 1]  # CSE: one call per run, none reused from the earlier run
    assert scheduler.run(value.options(cache_scope=CacheScope.NONE)(3)) == 3
    assert CacheScope.BACKEND == "BACKEND" and CacheCheckValid.FULL == "full"
    with pytest.raises(TaskDefinitionError, match="cache_scope"):
        task(cache_scope="sometimes")(_plain)


def _plain() -> int:
    return 1


def test_bad_names_are_value_errors_and_bad_nout_type_errors() -> None:
    with pytest.raises(ValueError, match="invalid task name '1bad'"):
        task(name="1bad")(_plain)
    with pytest.raises(ValueError, match="invalid namespace"):
        task(namespace="a-b")(_plain)
    with pytest.raises(TypeError, match="nout"):
        task(nout="3")(_plain)
    with pytest.raises(TypeError, match="nout"):
        task(nout=True)(_plain)
    with pytest.raises(TaskDefinitionError):
        task(nout=-1)(_plain)


def test_partial_task_options() -> None:
    partial = per_run.partial(1).options(limits=["db"])
    assert partial.get_task_options() == {"cache_scope": CacheScope.CSE, "check_valid": CacheCheckValid.SHALLOW,
                                          "limits": ["db"]}
    assert partial.get_task_option("limits") == ["db"]
    assert partial.get_task_option("missing", 5) == 5


def test_cond_with_any_number_of_pairs(scheduler: Scheduler) -> None:
    assert scheduler.run(cond(value(False), value(1))) is None
    assert scheduler.run(cond(value(True), value(1))) == 1
    assert scheduler.run(cond(value(False), 1, value(False), 2)) is None
    assert scheduler.run(cond(value(False), 1, value(True), 2)) == 2
    assert scheduler.run(cond(value(False), 1, value(False), 2, value(0), 3, "else")) == "else"
    assert scheduler.run(cond(value(False), 1, value(False), 2, value(1), 3, "else")) == 3
