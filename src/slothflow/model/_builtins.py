"""Built-in lazy operations that the scheduler evaluates itself: branching, error handling, tags, context.

They are :class:`SchedulerExpression`s, not tasks: their arguments are evaluated lazily (only the chosen
branch of ``cond`` runs) and they leave no job of their own in the provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from slothflow.model._expression import SchedulerExpression


def cond(cond_expr: Any, then_expr: Any, *rest: Any) -> Any:
    """Lazy ``if/elif/else``: ``cond(p1, a, p2, b, ..., [else_])``; only the chosen branch is evaluated.

    Any number of (predicate, value) pairs; without a final else, no true predicate gives ``None``."""
    if len(rest) % 2 == 0:
        rest = (*rest, None)
    return SchedulerExpression("cond", (cond_expr, then_expr, *rest))


def catch(expr: Any, *catch_args: Any) -> Any:
    """Lazy ``try/except``: ``catch(expr, ErrorClass, recover_task, [ErrorClass2, recover2, ...])``.

    ``recover`` is called with the exception; its result replaces the failed value.
    """
    if not catch_args or len(catch_args) % 2:
        raise TypeError("catch() takes an expression then pairs of (exception class, recover task)")
    return SchedulerExpression("catch", (expr, *catch_args))


def catch_all(exprs: Any, error_class: Any = None, recover: Any = None) -> Any:
    """Wait for every expression in ``exprs``; then, if any failed, call ``recover`` with the results
    (exceptions in place of failed values) or re-raise the first error when there is no ``recover``."""
    return SchedulerExpression("catch_all", (exprs, error_class, recover))


def throw(error: Any) -> Any:
    """Raise ``error`` lazily, when this expression is evaluated."""
    return SchedulerExpression("throw", (error,))


def apply_tags(
    value: Any,
    tags: Iterable[tuple[str, Any]] | dict[str, Any] = (),
    job_tags: Iterable[tuple[str, Any]] | dict[str, Any] = (),
    execution_tags: Iterable[tuple[str, Any]] | dict[str, Any] = (),
) -> Any:
    """Return ``value`` and record tags on it, on the enclosing job and on the execution."""
    return SchedulerExpression("apply_tags", (value, _pairs(tags), _pairs(job_tags), _pairs(execution_tags)))


def get_context(var_path: str, default: Any = None) -> Any:
    """A lazy value from the execution's context (``run(context=...)``, ``--context k=v``, config)."""
    return SchedulerExpression("get_context", (var_path, default))


def seq(exprs: Iterable[Any]) -> Any:
    """Evaluate expressions one after another, in order; gives the list of their values."""
    return SchedulerExpression("seq", (list(exprs),))


def lazy_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a plain module-level function on the evaluated arguments, then evaluate what it returns."""
    return SchedulerExpression("apply", (func, *args), kwargs)


def _pairs(tags: Iterable[tuple[str, Any]] | dict[str, Any]) -> list[tuple[str, Any]]:
    items = tags.items() if isinstance(tags, dict) else tags
    return [(str(k), v) for k, v in items]
