"""Higher-order helpers over lazy values (redun's ``functools``): map, compose, sequencing, thunks.

Each helper returns an expression, so its inputs may themselves be lazy (a list computed by a task).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from slothflow._errors import ExpressionError
from slothflow.model._builtins import lazy_apply
from slothflow.model._builtins import seq as seq
from slothflow.model._task import PartialTask, Task, get_task_registry, task


def _map(func: Callable[..., Any], values: Iterable[Any]) -> list[Any]:
    return [func(v) for v in values]


def _starmap(func: Callable[..., Any], kwargs_list: Iterable[dict[str, Any]]) -> list[Any]:
    return [func(**kwargs) for kwargs in kwargs_list]


def _flatten(list_of_lists: Iterable[Iterable[Any]]) -> list[Any]:
    return [item for sub in list_of_lists for item in sub]


def _zip(*lists: Iterable[Any]) -> list[tuple[Any, ...]]:
    return list(zip(*lists))


def _const(value: Any, *ignored: Any) -> Any:
    return value


def _force(thunk: Callable[[], Any]) -> Any:
    return thunk()


def _eval(code: str, variables: dict[str, Any]) -> Any:
    return eval(code, {}, dict(variables))  # noqa: S307 - the user's own expression, as in redun


def map_(a_task: Callable[..., Any], values: Any) -> Any:
    """``[a_task(v) for v in values]``, lazily: ``values`` may be an expression."""
    return lazy_apply(_map, a_task, values)


def flat_map(a_task: Callable[..., Any], values: Any) -> Any:
    """Map then concatenate the resulting lists."""
    return lazy_apply(_flatten, map_(a_task, values))


def starmap(a_task: Callable[..., Any], kwargs_list: Any) -> Any:
    """``[a_task(**kw) for kw in kwargs_list]``, lazily."""
    return lazy_apply(_starmap, a_task, kwargs_list)


def flatten(list_of_lists: Any) -> Any:
    """Concatenate a (lazy) list of lists."""
    return lazy_apply(_flatten, list_of_lists)


def zip_(*lists: Any) -> Any:
    """``list(zip(*lists))``, lazily."""
    return lazy_apply(_zip, *lists)


def const(value: Any, *ignored: Any) -> Any:
    """``value``, once every ``ignored`` expression is evaluated (a way to order side effects)."""
    return lazy_apply(_const, value, *ignored)


def eval_(code: str, **variables: Any) -> Any:
    """Evaluate a Python expression string with (lazy) variables."""
    return lazy_apply(_eval, code, variables)


class Composed:
    """``compose(f, g)(x) == f(g(x))``; a value that can be passed to and returned from tasks."""

    def __init__(self, *funcs: Callable[..., Any]) -> None:
        if not funcs:
            raise ExpressionError("compose() needs at least one task")
        self.funcs = funcs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.funcs[-1](*args, **kwargs)
        for func in reversed(self.funcs[:-1]):
            result = func(result)
        return result

    def __slothflow_hash__(self) -> str:
        from slothflow.hashing._encode import hash_value

        return hash_value(("compose", self.funcs))

    def __repr__(self) -> str:
        return f"compose({', '.join(getattr(f, 'fullname', repr(f)) for f in self.funcs)})"


def compose(*funcs: Callable[..., Any]) -> Composed:
    """Compose tasks right to left."""
    return Composed(*funcs)


@task(namespace="slothflow", version="1")
def identity(x: Any) -> Any:
    """Return the argument (as a task)."""
    return x


def delay(value: Any) -> PartialTask:
    """A thunk: ``value`` is not evaluated until :func:`force` is applied."""
    return identity.partial(value)


def force(value: Any) -> Any:
    """Evaluate a thunk made by :func:`delay`."""
    return lazy_apply(_force, value)


def as_task(func: Callable[..., Any]) -> Task:
    """Turn a plain function into a task (registered under its module's namespace)."""
    if isinstance(func, Task):
        return func
    existing = _as_task_made.get(func)
    if existing is not None and get_task_registry().get(existing.fullname) is existing:
        return existing
    result: Task = task(func)
    _as_task_made[func] = result
    return result


_as_task_made: weakref.WeakKeyDictionary[Callable[..., Any], Task] = weakref.WeakKeyDictionary()


__all__ = [
    "as_task",
    "compose",
    "const",
    "delay",
    "eval_",
    "flat_map",
    "flatten",
    "force",
    "identity",
    "map_",
    "seq",
    "starmap",
    "zip_",
]
