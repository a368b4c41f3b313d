"""slothflow.functools: higher-order helpers over lazy values."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slothflow import PartialTask, Scheduler, Task, TaskExpression, hash_value, task
from slothflow.functools import (
    as_task,
    compose,
    const,
    delay,
    eval_,
    flat_map,
    flatten,
    force,
    identity,
    map_,
    seq,
    starmap,
    zip_,
)

RAN: Counter[str] = Counter()
_LOCK = threading.Lock()


def mark(name: str) -> None:
    with _LOCK:
        RAN[name] += 1


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


@task
def inc(x: int) -> int:
    mark("inc")
    return x + 1


@task
def double(x: int) -> int:
    mark("double")
    return 2 * x


@task
def upto(n: int) -> list[int]:
    mark("upto")
    return list(range(n))


@task
def add(a: int, b: int) -> int:
    mark("add")
    return a + b


def plain_square(x: int) -> int:
    return x * x


settings_ = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(values=st.lists(st.integers(-100, 100), max_size=8))
def test_map_over_concrete_and_lazy_lists(scheduler: Scheduler, values: list[int]) -> None:
    assert scheduler.run(map_(inc, values)) == [v + 1 for v in values]
    assert scheduler.run(map_(double, map_(inc, values))) == [2 * (v + 1) for v in values]


def test_map_over_a_lazy_list(scheduler: Scheduler) -> None:
    assert scheduler.run(map_(double, upto(4))) == [0, 2, 4, 6]
    assert scheduler.run(map_(add.partial(b=10), upto(3))) == [10, 11, 12]
    assert RAN["double"] == 4


def test_map_is_lazy_until_returned(scheduler: Scheduler) -> None:
    expr = map_(inc, [1, 2])
    assert RAN == {}
    assert scheduler.run(expr) == [2, 3]


@settings_
@given(lists=st.lists(st.lists(st.integers(0, 9), max_size=4), max_size=4))
def test_flatten_and_flat_map(scheduler: Scheduler, lists: list[list[int]]) -> None:
    assert scheduler.run(flatten(lists)) == [x for sub in lists for x in sub]
    assert scheduler.run(flat_map(upto, [len(sub) for sub in lists])) == [
        i for sub in lists for i in range(len(sub))
    ]


def test_starmap(scheduler: Scheduler) -> None:
    assert scheduler.run(starmap(add, [{"a": 1, "b": 2}, {"a": 3, "b": 4}])) == [3, 7]
    lazy_kwargs = [{"a": inc(0), "b": 5}]
    assert scheduler.run(starmap(add, lazy_kwargs)) == [6]


def test_seq_is_exported(scheduler: Scheduler) -> None:
    assert scheduler.run(seq([inc(1), double(inc(1))])) == [2, 4]


@settings_
@given(x=st.integers(-1000, 1000))
def test_compose_applies_right_to_left(scheduler: Scheduler, x: int) -> None:
    assert scheduler.run(compose(double, inc)(x)) == 2 * (x + 1)
    assert scheduler.run(compose(inc, double)(x)) == 2 * x + 1
    assert scheduler.run(compose(inc)(x)) == x + 1


def test_compose_is_a_value_that_tasks_accept(scheduler: Scheduler) -> None:
    @task
    def apply_to(fn: Any, x: int) -> Any:
        mark("apply_to")
        return fn(x)

    assert scheduler.run(apply_to(compose(double, inc), 3)) == 8
    assert scheduler.run(apply_to(compose(double, inc), 3)) == 8
    assert RAN["apply_to"] == 1
    assert hash_value(compose(double, inc)) == hash_value(compose(double, inc))
    assert hash_value(compose(double, inc)) != hash_value(compose(inc, double))
    with pytest.raises(TypeError):
        compose()


def test_delay_and_force(scheduler: Scheduler) -> None:
    thunk = delay(inc(1))
    assert isinstance(thunk, PartialTask)
    assert RAN == {}
    assert scheduler.run(force(thunk)) == 2
    assert scheduler.run(force(delay(5))) == 5

    @task
    def maybe(flag: bool, thunk: Any) -> Any:
        mark("maybe")
        return force(thunk) if flag else "skipped"

    assert scheduler.run(maybe(False, delay(double(100)))) == "skipped"
    assert "double" not in RAN  # the delayed expression was never evaluated
    assert scheduler.run(maybe(True, delay(double(100)))) == 200


def test_const_waits_for_ignored_values(scheduler: Scheduler) -> None:
    assert scheduler.run(const(7, inc(1), double(2))) == 7
    assert RAN["inc"] == 1 and RAN["double"] == 1
    assert scheduler.run(const(inc(9))) == 10


def test_identity(scheduler: Scheduler) -> None:
    assert isinstance(identity, Task)
    assert scheduler.run(identity([inc(1), 2])) == [2, 2]


def test_eval_(scheduler: Scheduler) -> None:
    assert scheduler.run(eval_("a * b + 1", a=inc(2), b=4)) == 13
    assert scheduler.run(eval_("sorted(xs)", xs=upto(3))) == [0, 1, 2]


@settings_
@given(a=st.lists(st.integers(), max_size=5), b=st.lists(st.text(max_size=3), max_size=5))
def test_zip_(scheduler: Scheduler, a: list[int], b: list[str]) -> None:
    assert scheduler.run(zip_(a, b)) == list(zip(a, b))


def test_zip_lazy(scheduler: Scheduler) -> None:
    assert scheduler.run(zip_(upto(3), map_(double, upto(3)))) == [(0, 0), (1, 2), (2, 4)]


def test_as_task(scheduler: Scheduler) -> None:
    square = as_task(plain_square)
    assert isinstance(square, Task)
    assert as_task(plain_square) is square  # idempotent
    assert as_task(square) is square
    assert square.fullname == f"{__name__}.plain_square"
    assert isinstance(square(3), TaskExpression)
    assert scheduler.run(map_(square, [1, 2, 3])) == [1, 4, 9]


def test_as_task_is_idempotent_under_a_namespace() -> None:
    from slothflow import namespace

    def local_fn(x: int) -> int:
        return x

    namespace("elsewhere")
    try:
        first = as_task(local_fn)
        assert first.fullname == "elsewhere.local_fn"
        assert as_task(local_fn) is first
    finally:
        namespace()
