"""Execution contexts: nested dicts of settings that tasks read lazily with ``get_context("a.b", default)``.

A task copy made by ``Task.update_context`` carries a context override, merged over the context it runs
in, key by key at every level (as in redun). The override reaches its own call's ``get_context`` defaults
and, through :func:`apply_context`, every call its body returns, so that a whole sub-workflow sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from slothflow._errors import NestingError
from slothflow._walk import transform
from slothflow.model._builtins import lazy_apply
from slothflow.model._expression import (
    Expression,
    SchedulerExpression,
    SimpleExpression,
    TaskExpression,
    ValueExpression,
    expressions_children_first,
)

T = TypeVar("T")


def get_context_value(context: Mapping[str, Any], var_path: str, default: T) -> T | Any:
    """The value at the dotted ``var_path`` of ``context`` (``"a.b.c"``), or ``default`` when a part of the
    path is missing or leads through something that is not a dict."""
    node: Any = context
    for part in var_path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def merge_contexts(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested dicts merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merge_contexts(old, value)
        else:
            out[key] = value
    return out


def _merged_value(base: Any, override: Mapping[str, Any]) -> Any:
    """A context dict at some path: the enclosing context's value there with the override merged over it."""
    return merge_contexts(base, override) if isinstance(base, Mapping) else dict(override)


def _resolve_get_context(expr: SchedulerExpression, context: Mapping[str, Any]) -> Any:
    """What ``get_context(path, default)`` gives under ``context`` merged over the enclosing context: a value
    when the override decides it, else the expression itself (the enclosing context decides)."""
    path, default = expr.args
    node: Any = context
    for part in str(path).split("."):
        if not isinstance(node, Mapping):
            return default  # the override replaced a dict on the way with a plain value
        if part not in node:
            return expr  # the override says nothing here: the enclosing context decides
        node = node[part]
    if isinstance(node, Mapping):  # a dict: merged over what the enclosing context holds there
        return lazy_apply(_merged_value, SchedulerExpression("get_context", (path, None)), dict(node))
    return node


def apply_context(value: Any, context: Mapping[str, Any], export: Mapping[str, Any] | None = None) -> Any:
    """``value`` with every expression inside rewritten to run under ``context`` (merged over the context it
    is evaluated in) and the ``export``-ed options: ``get_context`` reads the override first and each task
    call runs as a task copy that inherits both, so its own defaults and the calls its body returns see them.

    Iterative over the expression graph (no recursion limit); an expression shared by two paths stays shared.
    """
    export = export or {}
    if not context and not export:
        return value
    try:
        return _apply(value, context, export)
    except NestingError:
        return value  # a value that contains itself: the scheduler reports it, naming the task


def _apply(value: Any, context: Mapping[str, Any], export: Mapping[str, Any]) -> Any:
    memo: dict[int, Any] = {}
    order = expressions_children_first(value)
    for expr in order:
        memo[id(expr)] = _rewrite(expr, context, export, memo)
    return transform(value, lambda e: memo[id(e)], Expression)


def _task_or_expression(obj: Any) -> bool:
    """Leaves for rewriting the arguments of a built-in: tasks (redun's recover tasks) and expressions (kept
    as they are; looked up on the type, as an expression answers any attribute lazily)."""
    return isinstance(obj, Expression) or callable(getattr(type(obj), "inherit", None))


def _rewrite(expr: Expression, context: Mapping[str, Any], export: Mapping[str, Any], memo: dict[int, Any]) -> Any:
    def sub(v: Any) -> Any:
        return transform(v, lambda e: memo[id(e)], Expression)

    if isinstance(expr, TaskExpression):
        return TaskExpression(expr.task.inherit(context, export), sub(expr.args), sub(expr.kwargs))
    if isinstance(expr, SchedulerExpression):
        if expr.name == "get_context":
            return _resolve_get_context(expr, context) if context else expr
        # The tasks a built-in calls itself (catch's recover, map_'s task) run under the context too.
        args = transform(sub(expr.args), lambda t: t if isinstance(t, Expression) else t.inherit(context, export),
                         _task_or_expression)
        return SchedulerExpression(expr.name, args, sub(expr.kwargs))
    if isinstance(expr, SimpleExpression):
        return SimpleExpression(expr.func_name, sub(expr.args), sub(expr.kwargs))
    if isinstance(expr, ValueExpression):
        return ValueExpression(sub(expr.value))
    return expr
