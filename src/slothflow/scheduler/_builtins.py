"""The scheduler side of the built-in expressions (``cond``, ``catch``, ``seq``, ...): each handler gets the
evaluator, the expression, the job whose reduction holds it, and the cell to settle."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slothflow._errors import ExpressionError, HashingError, NestingError, SerializationError
from slothflow.hashing._encode import hash_value
from slothflow.model._expression import Expression, SchedulerExpression, iter_expressions, substitute
from slothflow.scheduler._job import ERROR, OK, Cell, Job

if TYPE_CHECKING:
    from slothflow.scheduler._evaluate import Evaluator

Handler = Callable[["Evaluator", SchedulerExpression, "Job | None", Cell], None]


def _cond(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    args = list(expr.args)
    loop = ev.loop

    def step(i: int) -> None:
        if i == len(args) - 1:  # the else branch
            loop.forward(ev.evaluate(args[i], job), cell)
            return

        def decide(c: Cell) -> None:
            if c.state == ERROR:
                loop.fail(cell, c.value)
            elif c.value:
                loop.forward(ev.evaluate(args[i + 1], job), cell)
            else:
                step(i + 2)

        loop.then(ev.evaluate(args[i], job), decide)

    step(0)


def _catch(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    target, *pairs = expr.args
    loop = ev.loop

    def handle(c: Cell) -> None:
        if c.state == OK:
            loop.resolve(cell, c.value)
            return
        error = c.value
        for i in range(0, len(pairs), 2):
            if isinstance(error, pairs[i]):
                try:
                    recovered = pairs[i + 1](error)
                except Exception as exc:
                    loop.fail(cell, exc)
                    return
                ev.chain(recovered, job, cell)
                return
        loop.fail(cell, error)

    loop.then(ev.evaluate(target, job), handle)


def _catch_all(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    exprs, error_class, recover = expr.args
    loop = ev.loop
    members: dict[int, Expression] = {}
    try:
        for e in iter_expressions(exprs):
            members.setdefault(id(e), e)
    except NestingError as exc:
        loop.fail(cell, exc)
        return
    if not members:
        loop.resolve(cell, exprs)
        return
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    remaining = [len(members)]

    def collected(expr_id: int, c: Cell) -> None:
        results[expr_id] = c.value
        if c.state == ERROR:
            errors.append(c.value)
        remaining[0] -= 1
        if remaining[0]:
            return
        if not errors:
            loop.resolve(cell, substitute(exprs, results))
            return
        unmatched = [e for e in errors if error_class is not None and not isinstance(e, error_class)]
        if unmatched or recover is None:
            loop.fail(cell, (unmatched or errors)[0])
            return
        try:
            recovered = recover(substitute(exprs, results))
        except Exception as exc:
            loop.fail(cell, exc)
            return
        ev.chain(recovered, job, cell)

    for expr_id, e in members.items():
        loop.then(ev.eval_expr(e, job), functools.partial(collected, expr_id))


def _throw(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    loop = ev.loop

    def raise_(c: Cell) -> None:
        if c.state == ERROR or isinstance(c.value, BaseException):
            loop.fail(cell, c.value)
        else:
            loop.fail(cell, ExpressionError(f"throw() needs an exception, not {c.value!r}"))

    loop.then(ev.evaluate(expr.args[0], job), raise_)


def _apply_tags(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    value, tags, job_tags, execution_tags = expr.args
    run = ev.run

    def record(c: Cell) -> None:
        if c.state == OK and not run.dryrun and (job is None or job.prov):
            if tags:
                try:
                    vh = hash_value(c.value)
                    run.store.add_value(vh, c.value)
                    run.store.add_tags("value", vh, tags)
                except (HashingError, SerializationError) as exc:
                    ev.loop.fail(cell, exc)
                    return
            if job_tags and job is not None:
                run.store.add_tags("job", job.id, job_tags)
            if execution_tags:
                run.store.add_tags("execution", run.execution_id, execution_tags)
        ev.loop.settle(cell, c.state, c.value)

    ev.loop.then(ev.evaluate(value, job), record)


def _get_context(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    path, default = expr.args
    if job is not None:
        job.uses_context = True
    node: Any = ev.run.context
    for part in str(path).split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = default
            break
    ev.loop.resolve(cell, node)


def _seq(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    items = list(expr.args[0])
    out: list[Any] = []
    loop = ev.loop

    def step(i: int) -> None:
        if i == len(items):
            loop.resolve(cell, out)
            return

        def got(c: Cell) -> None:
            if c.state == ERROR:
                loop.fail(cell, c.value)
                return
            out.append(c.value)
            step(i + 1)

        loop.then(ev.evaluate(items[i], job), got)

    step(0)


def _apply(ev: Evaluator, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
    func, *args = expr.args
    loop = ev.loop

    def call(c: Cell) -> None:
        if c.state == ERROR:
            loop.fail(cell, c.value)
            return
        a, k = c.value
        try:
            result = func(*a, **k)
        except Exception as exc:
            loop.fail(cell, exc)
            return
        ev.chain(result, job, cell)

    loop.then(ev.evaluate((tuple(args), expr.kwargs), job), call)


HANDLERS: dict[str, Handler] = {
    "cond": _cond,
    "catch": _catch,
    "catch_all": _catch_all,
    "throw": _throw,
    "apply_tags": _apply_tags,
    "get_context": _get_context,
    "seq": _seq,
    "apply": _apply,
}
