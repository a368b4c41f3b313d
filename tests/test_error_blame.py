"""Errors inside a returned expression name the task that raised, and the argument that cannot be hashed
or stored, not the parent whose body returned the expression."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from slothflow import HashingError, Scheduler, SerializationError, task


class Unpicklable:
    """Hashable (through the hook) but impossible to store."""

    def __slothflow_hash__(self) -> str:
        return "unpicklable"

    def __reduce__(self) -> Any:
        raise TypeError("no pickling for this")


@task(namespace="blame")
def child(thing: Any) -> str:
    return "child ran"


@task(namespace="blame")
def failing_child(x: int) -> int:
    raise ValueError(f"child failed on {x}")


@task(namespace="blame")
def returns_unhashable() -> Any:
    return child(threading.Lock())


@task(namespace="blame")
def returns_unstorable() -> Any:
    return child(Unpicklable())


@task(namespace="blame")
def returns_failing() -> Any:
    return failing_child(3)


def _run(tmp_path: Path, expr: Any) -> Any:
    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    try:
        return sched.run(expr)
    finally:
        sched.close()


def test_unhashable_argument_of_a_returned_call_is_named(tmp_path: Path) -> None:
    with pytest.raises(HashingError) as info:
        _run(tmp_path, returns_unhashable())
    assert info.value.task_name == "blame.child"
    assert info.value.argument == "thing"
    assert "argument 'thing' of task blame.child" in str(info.value)
    assert "returns_unhashable" in str(info.value)  # who called it, as context


def test_unstorable_argument_of_a_returned_call_is_named(tmp_path: Path) -> None:
    with pytest.raises(SerializationError) as info:
        _run(tmp_path, returns_unstorable())
    assert info.value.task_name == "blame.child"
    assert info.value.argument == "thing"


def test_error_raised_by_a_returned_call_names_that_call(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="child failed on 3") as info:
        _run(tmp_path, returns_failing())
    notes = getattr(info.value, "__notes__", [])
    assert any("blame.failing_child(x=3)" in n for n in notes), notes
    assert not any("returns_failing" in n for n in notes), notes
