"""Evaluation: expressions become cells, ``TaskExpression``s with known arguments become calls.

A call's arguments are bound to its task's signature (``f(1)``, ``f(a=1)`` and ``f(1, b=<default>)`` are one
call) before :mod:`~slothflow.scheduler._reuse` keys and looks it up. A body's result (or a replayed
reduction) that holds expressions is evaluated in turn: that is how a dynamic sub-DAG unfolds.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from slothflow._errors import (
    ExpressionError,
    FileAccessError,
    HashingError,
    NestingError,
    SerializationError,
    TaskLookupError,
)
from slothflow._walk import check_nesting
from slothflow.hashing._encode import hash_value
from slothflow.model._expression import (
    Expression,
    SchedulerExpression,
    SimpleExpression,
    TaskExpression,
    ValueExpression,
    apply_operator,
    contains_expression,
    iter_expressions,
    substitute,
)
from slothflow.model._task import Task, _UndefinedTask
from slothflow.scheduler import _builtins
from slothflow.scheduler._job import ERROR, PENDING, Cell, Job, resolved

if TYPE_CHECKING:
    from slothflow.scheduler._run import Run

_ATOMIC = (type(None), bool, int, float, complex, str, bytes)


class Evaluator:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.loop = run.loop
        # Per evaluating job, per expression object: one expression object may be returned by two bodies
        # (threads share memory); it is then a child of both, so that both record it in their subtree. A
        # job's table is dropped when it finishes (see release), so a long run does not keep them all.
        self.expr_cells: dict[str, dict[int, tuple[Expression, Cell]]] = {}
        self._names: dict[int, tuple[Task, tuple[str, ...] | None]] = {}

    def evaluate(self, value: Any, job: Job | None) -> Cell:
        """A cell for the value of ``value``, with every expression inside it evaluated."""
        if isinstance(value, _ATOMIC):
            return resolved(value)
        if isinstance(value, Expression):
            return self.eval_expr(value, job)
        seen: dict[int, Expression] = {}
        try:
            for e in iter_expressions(value):
                seen.setdefault(id(e), e)
        except NestingError as exc:  # a value that contains itself: fail now, never walk it forever
            out = Cell()
            self.loop.fail(out, exc)
            return out
        if not seen:
            return resolved(value)
        out = Cell()
        results: dict[int, Any] = {}
        remaining = [len(seen)]
        loop = self.loop

        def gathered(expr_id: int, cell: Cell) -> None:
            if out.state != PENDING:
                return
            if cell.state == ERROR:
                loop.fail(out, cell.value)
                return
            results[expr_id] = cell.value
            remaining[0] -= 1
            if remaining[0] == 0:
                try:
                    loop.resolve(out, substitute(value, results))
                except Exception as exc:
                    loop.fail(out, exc)

        for expr_id, e in seen.items():
            loop.then(self.eval_expr(e, job), functools.partial(gathered, expr_id))
        return out

    def eval_expr(self, expr: Expression, job: Job | None) -> Cell:
        owner = job.id if job is not None else ""
        cells = self.expr_cells.get(owner)
        if cells is None:
            cells = self.expr_cells[owner] = {}
        entry = cells.get(id(expr))
        if entry is not None:
            return entry[1]
        cell = Cell()
        cells[id(expr)] = (expr, cell)
        self.loop.post(self._start_expr, expr, job, cell)
        return cell

    def release(self, job: Job) -> None:
        """A job whose value is known evaluates nothing more: forget its expressions' cells."""
        self.expr_cells.pop(job.id, None)

    def _start_expr(self, expr: Expression, job: Job | None, cell: Cell) -> None:
        loop = self.loop
        if isinstance(expr, TaskExpression):
            self._start_task(expr, job, cell)
        elif isinstance(expr, SimpleExpression):
            args_cell = self.evaluate((expr.args, expr.kwargs), job)
            loop.then(args_cell, lambda c: self._apply_simple(expr, c, job, cell))
        elif isinstance(expr, SchedulerExpression):
            handler = _builtins.HANDLERS.get(expr.name)
            if handler is None:
                loop.fail(cell, TaskLookupError(f"unknown built-in expression {expr.name!r}", expr.name))
            else:
                handler(self, expr, job, cell)
        elif isinstance(expr, ValueExpression):
            loop.forward(self.evaluate(expr.value, job), cell)
        else:
            loop.fail(cell, ExpressionError(f"cannot evaluate {expr!r}"))

    def chain(self, result: Any, job: Job | None, cell: Cell) -> None:
        """Resolve ``cell`` with ``result``, evaluating it first if it holds expressions."""
        try:
            has_expression = contains_expression(result)
        except NestingError as exc:
            self.loop.fail(cell, exc)
            return
        if has_expression:
            self.loop.forward(self.evaluate(result, job), cell)
        else:
            self.loop.resolve(cell, result)

    def _apply_simple(self, expr: SimpleExpression, args_cell: Cell, job: Job | None, cell: Cell) -> None:
        if args_cell.state == ERROR:
            self.loop.fail(cell, args_cell.value)
            return
        args, kwargs = args_cell.value
        try:
            result = apply_operator(expr.func_name, tuple(args), dict(kwargs))
        except Exception as exc:
            self.loop.fail(cell, exc)
            return
        self.chain(result, job, cell)

    # ------------------------------------------------------------------------------------- calls
    def _start_task(self, expr: TaskExpression, parent: Job | None, cell: Cell) -> None:
        task = expr.task
        if isinstance(task, _UndefinedTask):
            self.loop.fail(cell, TaskLookupError(
                f"task {task.fullname} is not defined in this process: import the module that defines it",
                task.fullname))
            return
        names = self._positional_names(task)
        if names is not None and not expr.kwargs and len(expr.args) == len(names):
            arguments = dict(zip(names, expr.args))  # what bind() gives for a full positional call
        else:
            try:
                bound = task.signature.bind(*expr.args, **expr.kwargs)
            except TypeError as exc:
                self.loop.fail(cell, ExpressionError(f"{task.fullname}() called with bad arguments: {exc}"))
                return
            bound.apply_defaults()
            arguments = dict(bound.arguments)
        args_cell = self.evaluate(arguments, parent)
        self.loop.then(args_cell, lambda c: self._call(task, arguments, c, parent, cell))

    def _positional_names(self, task: Task) -> tuple[str, ...] | None:
        """The parameter names of a task whose parameters are all plain positional-or-keyword ones (once per
        task object), else None."""
        entry = self._names.get(id(task))
        if entry is None or entry[0] is not task:
            params = task.signature.parameters.values()
            plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
            entry = self._names[id(task)] = (task, tuple(p.name for p in params) if plain else None)
        return entry[1]

    def _call(self, task: Task, unevaluated: dict[str, Any], args_cell: Cell, parent: Job | None,
              cell: Cell) -> None:
        run = self.run
        if args_cell.state == ERROR:
            error = args_cell.value
            if isinstance(error, NestingError) and error.task_name is None:
                error = _nesting_error(task.fullname, unevaluated, error)
            self.loop.fail(cell, error)
            return
        try:
            opts = run.options(task)
        except Exception as exc:
            self.loop.fail(cell, exc)
            return
        job = Job(task, parent, args_cell.value, opts)
        if parent is None:
            run.root_job = job
        else:
            if parent.children is None:
                parent.children = []
            parent.children.append(job)
        # Which call made each argument that was itself a task call: provenance by origin, never by value.
        cells = self.expr_cells.get(parent.id if parent is not None else "")
        for name, value in unevaluated.items():
            if cells is not None and isinstance(value, TaskExpression):
                entry = cells.get(id(value))
                call = entry[1].call if entry is not None else None
                if call is not None and call.call_hash is not None:
                    if job.producers is None:
                        job.producers = {}
                    job.producers[name] = call.call_hash
        run.reuse.start(job, cell)

    def reduced(self, job: Job, result: Any, computed: bool, value_hash: str | None = None) -> None:
        """The job's body returned (or the cache replayed) ``result``: record it, then evaluate it."""
        run = self.run
        assert job.call is not None
        cell = job.call.cell
        if computed and job.prov:
            try:
                value_hash = hash_value(result)
                run.store.add_value(value_hash, result)
            except FileAccessError as exc:  # e.g. the task returned a File it never wrote
                run.recorder.failed(job, type(exc)(f"the result of task {job.task.fullname}: {exc}", path=exc.path,
                                                   task_name=job.task.fullname), "", cell)
                return
            except (HashingError, SerializationError, NestingError) as exc:
                run.recorder.failed(job, _result_error(job, result, exc), "", cell)
                return
            run.store.set_evaluation(job.eval_hash, job.task.hash, job.args_hash, value_hash)
        job.reduction_hash = value_hash
        try:
            has_expression = contains_expression(result)
        except NestingError as exc:
            run.recorder.failed(job, _result_error(job, result, exc), "", cell)
            return
        if has_expression:
            if computed:
                run.recorder.emit("waiting", job)  # the body returned; its result's expressions are evaluated now
            self.loop.then(self.evaluate(result, job), lambda c: self._evaluated(job, c))
        else:
            run.recorder.finish(job, result, value_hash)

    def _evaluated(self, job: Job, c: Cell) -> None:
        if c.state == ERROR:
            assert job.call is not None
            self.run.recorder.failed(job, c.value, "", job.call.cell, origin=False)
        else:
            self.run.recorder.finish(job, c.value, None)


def _nesting_error(task_name: str, arguments: dict[str, Any], error: NestingError) -> NestingError:
    """``error`` (found walking a call's arguments) as an error naming the task and the culprit argument."""
    for name, value in arguments.items():
        try:
            check_nesting(value, root=name)
        except NestingError as exc:
            return NestingError(f"argument {name!r} of task {task_name}: {exc}", path=exc.path, kind=exc.kind,
                                task_name=task_name, argument=name)
    return NestingError(f"the arguments of task {task_name}: {error}", path=error.path, kind=error.kind,
                        task_name=task_name)


def _result_error(job: Job, result: Any, exc: HashingError | SerializationError | NestingError) -> BaseException:
    """The error for a result that cannot be hashed or stored. When the result holds task calls, the culprit
    is usually an argument of one of them: name that task and argument, not the parent."""
    what = "stored" if isinstance(exc, SerializationError) else "hashed"
    try:
        exprs = list(iter_expressions(result, root="result"))
    except NestingError as inner:
        return NestingError(f"the result of task {job.task.fullname}: {inner}", path=inner.path, kind=inner.kind,
                            task_name=job.task.fullname)
    for expr in exprs:
        if not isinstance(expr, TaskExpression):
            continue
        try:
            bound = expr.task.signature.bind(*expr.args, **expr.kwargs)
        except TypeError:
            continue
        for name, value in bound.arguments.items():
            try:
                check_nesting(value, root=name)
            except NestingError as inner:
                return NestingError(
                    f"argument {name!r} of task {expr.task.fullname} (called by {job.task.fullname}): {inner}",
                    path=inner.path, kind=inner.kind, task_name=expr.task.fullname, argument=name,
                )
            if contains_expression(value):
                continue
            try:
                hash_value(value)
                if what == "stored":
                    from slothflow.model._serialize import dumps

                    dumps(value)
            except (HashingError, SerializationError) as inner:
                cls = type(inner) if isinstance(exc, NestingError) else type(exc)
                return cls(
                    f"argument {name!r} of task {expr.task.fullname} (called by {job.task.fullname}) cannot be "
                    f"{what}: {inner}", task_name=expr.task.fullname, argument=name,
                )
    if isinstance(exc, NestingError):
        return NestingError(f"the result of task {job.task.fullname}: {exc}", path=exc.path, kind=exc.kind,
                            task_name=job.task.fullname)
    return type(exc)(
        f"the result of task {job.task.fullname} ({type(result).__qualname__}) cannot be {what}: "
        f"{exc}. Return plain data, or give the type a hash/serialize hook.", task_name=job.task.fullname,
    )
