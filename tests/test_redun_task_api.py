"""redun's task API names: the cache option enums, the error types of bad task definitions, partial tasks'
options, and ``cond`` with any number of branches."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from slothflow import Scheduler, TaskDefinitionError, cond
from slothflow.task import CacheCheckValid, CacheScope, Task, get_task_registry, task, wraps_task

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


def doubled_task() -> Any:
    @wraps_task()
    def _doubled(inner_task: Task) -> Any:
        def do_doubling(*args: Any, **kwargs: Any) -> Any:
            return 2 * inner_task.func(*args, **kwargs)

        return do_doubling

    return _doubled


def times(k: int) -> Any:
    @wraps_task(wrapper_name="times", wrapper_hash_includes=[k])
    def _times(inner_task: Task) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            return [inner_task(*args, **kwargs) for _ in range(k)]  # lazily, through the scheduler

        return run

    return _times


@doubled_task()
@task
def plus_one(x: int = 1) -> int:
    return 1 + x


@doubled_task()
def plus_two(x: int) -> int:
    return 2 + x


@doubled_task()
@doubled_task()
def plus_three(x: int) -> int:
    return 3 + x


@times(2)
@task
def tenfold(x: int) -> int:
    return 10 * x


def test_wraps_task_hides_the_inner_task_and_takes_its_name() -> None:
    registry = get_task_registry()
    ns = plus_one.namespace
    assert plus_one.fullname == f"{ns}.plus_one" and registry.get(f"{ns}.plus_one") is plus_one
    assert plus_one.wrapped_task is registry.get(f"{ns}._doubled.plus_one")
    assert plus_one.signature == plus_one.wrapped_task.signature  # the inner task's parameters, defaults
    inner = plus_three.wrapped_task
    assert inner is not None and inner.fullname == f"{ns}._doubled.plus_three"
    assert inner.wrapped_task is not None and inner.wrapped_task.fullname == f"{ns}._doubled._doubled.plus_three"
    assert tenfold.wrapped_task is not None and tenfold.wrapped_task.fullname == f"{ns}.times.tenfold"
    assert plus_one.hash != plus_one.wrapped_task.hash


def test_wraps_task_hash_includes_the_wrapper_arguments() -> None:
    def body(x: int) -> int:
        return x

    a = times(2)(task(body, name="same_a"))
    b = times(3)(task(body, name="same_b"))
    a_hash = a.hash
    registry = get_task_registry()
    registry.rename(b.fullname, b.namespace, "same_a")  # the same full name, another wrapper argument
    assert b.hash != a_hash


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_wrapped_tasks_run(sqlite_uri: str, executor: str) -> None:
    scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri}, "executors.default": {"type": executor}})
    try:
        assert scheduler.run([plus_one(), plus_two(2), plus_three(1), tenfold(2)]) == [4, 8, 16, [20, 20]]
    finally:
        scheduler.close()


@task
def thread_id(i: int) -> int:
    return threading.get_ident()


@task(executor="threads")
def pinned_thread_id(i: int) -> int:
    return threading.get_ident()


@task
def fan_out() -> Any:
    return {"inherits": thread_id(1), "own_option": thread_id.options(executor="threads")(2),
            "task_option": pinned_thread_id(3), "deeper": deeper()}


@task
def deeper() -> Any:
    return thread_id(4)


def test_export_options_reach_every_call_below(scheduler: Scheduler) -> None:
    here = threading.get_ident()  # the inline executor runs bodies in the scheduler's own thread
    plain = scheduler.run(fan_out())
    assert here not in plain.values()
    exported = fan_out.export_options(executor="inline")
    assert exported.get_task_options()["executor"] == "inline"
    assert exported.get_export_options() == {"executor": "inline"}
    got = scheduler.run(exported())
    assert got["inherits"] == here and got["deeper"] == here
    assert got["task_option"] == here  # exported options win over @task options
    assert got["own_option"] != here  # a call's own .options() win over exported ones
    assert exported.hash != fan_out.hash and exported.is_valid()
    again = pickle.loads(pickle.dumps(exported))
    assert again.get_export_options() == {"executor": "inline"} and again.hash == exported.hash
    assert fan_out.partial().export_options(executor="inline").get_task_options()["executor"] == "inline"


def test_options_of_a_wrapper_keep_its_signature_and_module() -> None:
    copy = plus_one.options(limits=["x"])
    assert copy.signature == plus_one.signature and copy.__module__ == plus_one.__module__
    assert copy.wrapped_task is plus_one.wrapped_task
