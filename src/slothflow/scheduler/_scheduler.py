"""The scheduler: evaluates lazy expressions, decides reuse, runs jobs and records provenance.

One loop per run, in the caller's thread (as in dask's ``local.py``). Work items go through a FIFO
(``ready``) instead of the call stack, so expressions of any depth are evaluated without recursion.
Values are promised by :class:`Cell`s; a cell's waiters are queued, never called in place.

For each ``TaskExpression`` whose arguments are known, the loop

1. binds the arguments to the task's signature (``f(1)``, ``f(a=1)`` and ``f(1, b=<default>)`` are one
   call), hashes them and forms the **eval hash** = H(task hash, args hash). The execution's context is
   not part of it: a task reads the context through ``get_context()`` arguments, whose values are;
2. joins an identical call already seen in this run (common-subexpression elimination, in memory);
3. otherwise asks the store: with ``check_valid="full"`` it replays the recorded *reduction* (what the
   body returned) and evaluates it, so each child is looked up on its own; with ``"shallow"`` it reuses
   the final value when every task of the recorded subtree is unchanged. A reused value must still be
   valid (``Value.is_valid``, e.g. files unchanged);
4. otherwise submits the job to its executor. Finished jobs come back through a thread-safe queue.

Writes to the store are buffered and committed once per loop round, and always *before* submitting a
job, so no job starts before the results it consumes are durable.
"""

from __future__ import annotations

import collections
import functools
import getpass
import inspect
import json
import logging
import os
import queue
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slothflow._config import DB_FILENAME, Config, load_project_config
from slothflow._errors import (
    ExecutorError,
    FileAccessError,
    HashingError,
    SerializationError,
    SlothflowError,
    TaskLookupError,
)
from slothflow.executors import Executor, JobSpec, Outcome, make_executor
from slothflow.files._fs import bind_digest_store
from slothflow.hashing._environment import DEFAULT_POLICY, check_policy, task_environment, task_environment_json
from slothflow.hashing._hashing import forget_code_hashes, hash_struct, hash_value
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
from slothflow.model._task import Task, _UndefinedTask, get_task_registry
from slothflow.model._value import Value, first_invalid, preview
from slothflow.provenance.explain import CallFacts, Reason, diff_call
from slothflow.store import Store, sqlite_path

log = logging.getLogger("slothflow")

_PENDING, _OK, _ERROR = 0, 1, 2
_ATOMIC = (type(None), bool, int, float, complex, str, bytes)
FLUSH_INTERVAL = 0.5  # seconds: the most finished work a kill -9 can lose
CONTEXT_MARK = "context"  # in a call's subtree task hashes: the subtree read the execution's context
UNRECORDED_MARK = "unrecorded"  # in a call's subtree task hashes: a call below it was not recorded
EXTERNAL_MARK = "external"  # in a call's subtree task hashes: a call below it took files (or other Values)


class Cell:
    """A value that will be known later (or an error)."""

    __slots__ = ("state", "value", "waiters")

    def __init__(self) -> None:
        self.state = _PENDING
        self.value: Any = None
        self.waiters: list[Callable[[Cell], None]] | None = []


def _resolved(value: Any) -> Cell:
    cell = Cell()
    cell.state, cell.value, cell.waiters = _OK, value, None
    return cell


class Job:
    """One attempt, in this execution, to reduce one call."""

    __slots__ = (
        "id", "task", "parent", "arguments", "arg_hashes", "args_hash", "eval_hash", "status", "started",
        "ended", "call", "children", "prov", "cache_scope", "check_valid", "executor", "limits", "error",
        "reduction_hash", "recorded_call", "uses_context", "environment", "reason",
    )

    def __init__(self, task: Task, parent: Job | None, arguments: dict[str, Any]) -> None:
        self.id = os.urandom(16).hex()
        self.task = task
        self.parent = parent
        self.arguments = arguments
        self.arg_hashes: list[tuple[str, str]] = []
        self.args_hash = ""
        self.eval_hash = ""
        self.status = "pending"
        self.started = time.time()
        self.ended: float | None = None
        self.call: Call | None = None
        self.children: list[Job] = []
        self.prov = True
        self.cache_scope = "BACKEND"
        self.check_valid = "full"
        self.executor = "default"
        self.limits: dict[str, int] = {}
        self.error: BaseException | None = None
        self.reduction_hash: str | None = None
        self.recorded_call: str | None = None
        self.uses_context = False  # something in this job's reduction read the execution's context
        self.environment: str | None = None  # JSON fingerprint of the task's environment
        self.reason: str | None = None  # why it runs instead of being reused, when the scheduler knows

    @property
    def duration(self) -> float:
        return (self.ended or time.time()) - self.started

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.arguments.items())
        return f"{self.task.fullname}({args})"


def _describe_invalid(value: Any) -> str:
    path = getattr(value, "path", None)
    exists = getattr(value, "exists", None)
    if isinstance(path, str) and callable(exists):
        kind = "directory" if type(value).__name__.endswith("Dir") else "file"
        try:
            missing = not exists()
        except Exception:
            missing = True
        return f"{kind} {path} {'missing' if missing else 'changed'}"
    return f"{preview(value)} is no longer valid"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


class Call:
    """A distinct call (eval hash) within one run; every job for it shares its outcome."""

    __slots__ = ("eval_hash", "cell", "job", "call_hash", "subtree", "value_hash")

    def __init__(self, eval_hash: str, cell: Cell, job: Job) -> None:
        self.eval_hash = eval_hash
        self.cell = cell
        self.job = job
        self.call_hash: str | None = None
        self.subtree: frozenset[str] = frozenset()
        self.value_hash: str | None = None


@dataclass
class PlannedCall:
    """A call in a dry-run plan: ``reason`` says why it would run (or "cached"), ``reasons`` the same as data
    (:class:`~slothflow.Reason` items, as ``slothflow explain`` gives for a job that ran)."""

    task: str
    call: str
    reason: str
    eval_hash: str
    reasons: list[Reason] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [r.kind for r in self.reasons]


@dataclass
class Plan:
    """What ``Scheduler.run(expr, dryrun=True)`` found: the calls that would run and those reused.

    ``complete`` is False when the plan stops at calls whose result is needed to know what comes next (a
    task that would run and returns further expressions): what lies beyond them cannot be known without
    running them.
    """

    complete: bool
    result: Any = None
    would_run: list[PlannedCall] = field(default_factory=list)
    reused: list[PlannedCall] = field(default_factory=list)

    def would_run_counts(self) -> dict[str, int]:
        """``{task full name: number of calls that would run}``."""
        return dict(collections.Counter(c.task for c in self.would_run))

    def reused_counts(self) -> dict[str, int]:
        """``{task full name: number of calls that would be reused}``."""
        return dict(collections.Counter(c.task for c in self.reused))

    def reasons_for(self, task: str) -> list[Reason]:
        """Every reason given for the would-run calls of one task (full name or bare name)."""
        return [r for c in self.would_run if task in (c.task, c.task.rpartition(".")[2]) for r in c.reasons]

    def __str__(self) -> str:
        lines = [f"would run {len(self.would_run)} call(s), reuse {len(self.reused)}"
                 + ("" if self.complete else " (more calls may follow those that run)")]
        lines += [f"  run   {c.call}: {c.reason}" for c in self.would_run]
        lines += [f"  reuse {c.call}" for c in self.reused]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Plan(complete={self.complete}, would_run={len(self.would_run)}, reused={len(self.reused)})"


@dataclass
class RunStats:
    ran: int = 0
    cached: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0


Listener = Callable[[str, "Job", "RunStats"], None]


class Scheduler:
    """Evaluates workflows. ``Scheduler()`` uses the project's database (``.slothflow/slothflow.db``).

    ``config`` is a :class:`Config` or a dict of sections, e.g.
    ``{"backend": {"db_uri": "sqlite:///cache.db"}, "executors.default": {"type": "processes"}}``.
    """

    def __init__(self, config: Config | dict[str, Any] | None = None, backend: Store | None = None,
                 executor: Executor | None = None) -> None:
        if config is None:
            config = load_project_config()
        elif not isinstance(config, Config):
            config = Config(config)
        self.config = config
        self._store = backend
        self.executors: dict[str, Executor] = {}
        self._build_executors(executor)
        self.limits = {str(k): int(v) for k, v in config.section("limits").items()}
        sched = config.section("scheduler")
        self.fail_fast = bool(sched.get("fail_fast", False))
        self.env_policy = check_policy(sched.get("env_policy", DEFAULT_POLICY), "[scheduler]")
        context = sched.get("context") or {}
        if isinstance(context, str):
            context = json.loads(context)
        self.default_context: dict[str, Any] = {**config.section("context"), **dict(context)}
        self._listeners: list[Listener] = []
        self.last_execution_id: str | None = None

    # ------------------------------------------------------------------------------------ set-up
    def _build_executors(self, executor: Executor | None) -> None:
        defaults = {
            "default": {"type": "threads"},
            "threads": {"type": "threads"},
            "inline": {"type": "inline"},
            "processes": {"type": "processes"},
            "process": {"type": "processes"},
        }
        for section in self.config.sections():
            if section.startswith("executors."):
                defaults[section.split(".", 1)[1]] = self.config.section(section)
        for name, conf in defaults.items():
            self.executors[name] = make_executor(name, conf)
        if executor is not None:
            self.executors["default"] = executor

    @property
    def db_uri(self) -> str:
        backend = self.config.section("backend")
        uri = backend.get("db_uri")
        base = self.config.config_dir
        if uri is None:
            folder = base if base is not None else load_project_config().config_dir
            assert folder is not None
            return f"sqlite:///{Path(folder) / DB_FILENAME}"
        uri = str(uri)
        path = sqlite_path(uri)
        if path is not None and not os.path.isabs(path) and base is not None:
            return f"sqlite:///{base / path}"
        return uri

    def load(self, migrate: bool | None = None) -> Store:
        """Open (and, for a new database, create) the store."""
        if self._store is None:
            backend = self.config.section("backend")
            blob_dir = backend.get("blob_dir")
            timeout = backend.get("busy_timeout")
            self._store = Store(self.db_uri, blob_dir=blob_dir, automigrate=migrate is not False,
                                busy_timeout=None if timeout is None else float(timeout))
            log.info("slothflow database: %s", self.db_uri)
        return self._store

    @property
    def store(self) -> Store:
        return self.load()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, job, stats)`` on job events, in the scheduler's thread.

        Events: ``started`` (submitted to its executor), ``waiting`` (its body returned expressions, now being
        evaluated), ``done``, ``cached``, ``failed``.
        """
        self._listeners.append(listener)

    def explain(self, ident: str) -> list[Any]:
        """Why a job (id or prefix), or every job of an execution that ran, was not reused from the cache.

        Returns :class:`~slothflow.Explanation` objects; ``str()`` of one reads like ``slothflow explain``.
        """
        from slothflow.provenance.explain import explain

        store = self.load()
        try:
            return explain(store.conn, ident)
        finally:
            store.conn.rollback()

    def lineage(self, path: str) -> dict[str, Any]:
        """Where a file (local path or URL) came from: the call that produced it, with its code and inputs,
        recursively up to the raw inputs, as plain data (what ``slothflow log --file`` shows)."""
        from slothflow.provenance.lineage import file_lineage

        store = self.load()
        try:
            return file_lineage(store.conn, path)
        finally:
            store.conn.rollback()

    def close(self) -> None:
        for executor in self.executors.values():
            executor.stop()
        if self._store is not None:
            self._store.close()
            self._store = None

    # --------------------------------------------------------------------------------------- run
    def run(
        self,
        expr: Any,
        dryrun: bool = False,
        cache: bool = True,
        tags: Iterable[tuple[str, Any]] | dict[str, Any] = (),
        context: dict[str, Any] | None = None,
        exec_argv: list[str] | None = None,
        execution_id: str | None = None,
    ) -> Any:
        """Evaluate ``expr`` and return its value; a task's error is raised as itself.

        With ``dryrun=True`` nothing runs: a :class:`Plan` of reused and would-run calls is returned.
        """
        store = self.load()
        ctx = _merge_context(self.default_context, context or {})
        run = _Run(self, store, cache=cache, dryrun=dryrun, context=ctx)
        tag_pairs = list(tags.items()) if isinstance(tags, dict) else list(tags)
        run.start_execution(exec_argv or sys.argv, tag_pairs, execution_id)
        self.last_execution_id = run.execution_id
        return run.run(expr)


def _holds_value(arguments: dict[str, Any]) -> bool:
    """Whether any argument is or contains a ``Value`` (a File, Dir, ...): data that lives outside."""
    stack = [v for v in arguments.values() if not isinstance(v, _ATOMIC)]
    while stack:
        v = stack.pop()
        if isinstance(v, Value):
            return True
        if isinstance(v, list | tuple | set | frozenset):
            stack.extend(x for x in v if not isinstance(x, _ATOMIC))
        elif isinstance(v, dict):
            stack.extend(x for x in v.values() if not isinstance(x, _ATOMIC))
        elif hasattr(v, "__dataclass_fields__") and not isinstance(v, type):
            stack.extend(getattr(v, f) for f in v.__dataclass_fields__)
    return False


def _hash_registered_tasks() -> None:
    """Hash every defined task, afresh, before any body runs. A task's hash covers the user code and module
    values it uses: recomputing it per run sees helpers or constants redefined in the same process (a
    notebook), and computing it before bodies run keeps their side effects out of it."""
    forget_code_hashes()  # a notebook may have redefined a helper or a constant since the last run
    for task in get_task_registry():
        try:
            task.hash  # noqa: B018 - computed and cached for this run
        except Exception:  # a task that cannot be hashed fails when (and if) it is called
            continue


def _names_undefined_task(value: Any) -> bool:
    """True when an expression in ``value`` (at any depth) calls a task not defined in this process."""
    if isinstance(value, _ATOMIC):
        return False
    stack = list(iter_expressions(value))
    seen: set[int] = set()
    while stack:
        expr = stack.pop()
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        if isinstance(expr, TaskExpression) and isinstance(expr.task, _UndefinedTask):
            return True
        stack.extend(iter_expressions(expr._children()))
    return False


def _merge_context(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, merging nested mappings key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_context(out[key], value)
        else:
            out[key] = value
    return out


def run(expr: Any, config_dir: str | None = None, **run_args: Any) -> Any:
    """Run an expression with the project's scheduler, as ``slothflow run`` does."""
    config = load_project_config(Path(config_dir) if config_dir else None)
    scheduler = Scheduler(config=config)
    try:
        return scheduler.run(expr, **run_args)
    finally:
        scheduler.close()


class _Run:
    """The state of one execution."""

    def __init__(self, scheduler: Scheduler, store: Store, cache: bool, dryrun: bool,
                 context: dict[str, Any]) -> None:
        self.scheduler = scheduler
        self.store = store
        self.cache = cache
        self.dryrun = dryrun
        self.context = context
        self.ready: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = collections.deque()
        self.completions: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.to_submit: list[tuple[Job, JobSpec]] = []
        self.waiting_limits: collections.deque[tuple[Job, JobSpec]] = collections.deque()
        self.limits_used: dict[str, int] = collections.defaultdict(int)
        self.in_flight: dict[str, Job] = {}
        self.exec_busy: dict[str, int] = collections.defaultdict(int)
        self.exec_queue: dict[str, collections.deque[tuple[Job, JobSpec]]] = collections.defaultdict(
            collections.deque
        )
        self.calls: dict[str, Call] = {}
        self.lookups: list[Job] = []
        # Per (expression object, evaluating job): one expression object may be returned by two bodies
        # (threads share memory); it is then a child of both, so that both record it in their subtree.
        self.expr_cells: dict[tuple[int, str], tuple[Expression, Cell]] = {}
        self.producer: dict[str, str] = {}
        self.stats = RunStats()
        self.plan = Plan(complete=False)
        self.root_failed = False
        self.execution_id = ""
        self.root_job: Job | None = None
        self._task_opts: dict[int, tuple[Task, dict[str, Any]]] = {}
        self._current_tasks: set[str] | None = None
        self._env_keys: dict[tuple[str, str], str | None] = {}
        self.listeners = scheduler._listeners
        self.error_origins: dict[int, tuple[BaseException, str, str]] = {}

    # -------------------------------------------------------------------------------- execution
    def start_execution(self, argv: list[str], tags: list[tuple[str, Any]], execution_id: str | None) -> None:
        self.execution_id = execution_id or os.urandom(16).hex()
        if self.dryrun:
            return
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
        self.store.start_execution(
            {
                "id": self.execution_id,
                "root_job": None,
                "args": json.dumps(list(argv)),
                "user": user,
                "host": socket.gethostname(),
                "cwd": os.getcwd(),
                "status": "running",
                "started_at": time.time(),
                "ended_at": None,
            }
        )
        if tags:
            self.store.add_tags("execution", self.execution_id, tags)

    def run(self, expr: Any) -> Any:
        for executor in self.scheduler.executors.values():
            if executor.name == "default":
                executor.start()
        # Local file digests are remembered in the store, so an unchanged file is never read twice.
        bind_digest_store(self.store)
        _hash_registered_tasks()
        root = self.evaluate(expr, None)
        status = "failed"
        try:
            self._loop(root)
            status = "done" if root.state == _OK else "failed"
        except BaseException:
            status = "failed"
            raise
        finally:
            bind_digest_store(None)
            if not self.dryrun:
                root_id = self.root_job.id if self.root_job else None
                self.store.end_execution(self.execution_id, status, root_id)
                self.store.flush()
        if self.dryrun:
            self.plan.complete = root.state == _OK
            self.plan.result = root.value if root.state == _OK else None
            return self.plan
        if root.state == _ERROR:
            self._raise(root.value)
        return root.value

    def _raise(self, error: BaseException) -> None:
        """Raise a task's own exception to the caller, with where it happened attached."""
        origin = self.error_origins.get(id(error))
        if origin is not None and origin[0] is error:
            _, where, tb = origin
            note = f"in slothflow task {where}"
            try:
                if note not in getattr(error, "__notes__", ()):
                    error.add_note(note)
                if tb:
                    vars(error)["slothflow_traceback"] = tb
            except Exception:  # an exception type that refuses attributes: raise it as it is
                pass
        raise error

    def _loop(self, root: Cell) -> None:
        ready = self.ready
        store = self.store
        while True:
            while ready:
                fn, args = ready.popleft()
                fn(*args)
            if self.lookups:
                self._lookup_batch()
                continue
            if self.to_submit:
                if store.pending:
                    store.flush()
                self._submit_all()
            elif store.pending and time.monotonic() - store.last_flush > FLUSH_INTERVAL:
                store.flush()
            if not self.in_flight:
                if ready or self.to_submit:
                    continue
                if self.waiting_limits and not self.dryrun:
                    job, _ = self.waiting_limits[0]
                    raise ExecutorError(
                        f"task {job.task.fullname} needs limits {job.limits}, more than configured "
                        f"({ {k: self.scheduler.limits.get(k, 1) for k in job.limits} }); raise them in [limits]",
                        job.task.fullname,
                    )
                break
            try:
                outcome = self.completions.get(timeout=FLUSH_INTERVAL)
            except queue.Empty:
                continue
            self._on_outcome(outcome)
            while True:
                try:
                    outcome = self.completions.get_nowait()
                except queue.Empty:
                    break
                self._on_outcome(outcome)
        if root.state == _PENDING and not self.dryrun:
            waiting = [c.job for c in self.calls.values() if c.cell.state == _PENDING]
            if waiting:
                shown = ", ".join(j.describe() for j in waiting[:5]) + (", ..." if len(waiting) > 5 else "")
                raise SlothflowError(
                    f"the workflow cannot finish: {len(waiting)} call(s) wait for their own result "
                    f"({shown}). A task returned an expression that calls itself with the same arguments; "
                    "make the recursion reach a base case."
                )
            raise SlothflowError("the scheduler stopped before the workflow's value was known (internal error)")

    # ------------------------------------------------------------------------------------- cells
    def _then(self, cell: Cell, fn: Callable[[Cell], None]) -> None:
        if cell.waiters is None:
            self.ready.append((fn, (cell,)))
        else:
            cell.waiters.append(fn)

    def _settle(self, cell: Cell, state: int, value: Any) -> None:
        if cell.state != _PENDING:
            return
        cell.state, cell.value = state, value
        waiters, cell.waiters = cell.waiters, None
        if waiters:
            ready = self.ready
            for fn in waiters:
                ready.append((fn, (cell,)))

    def _resolve(self, cell: Cell, value: Any) -> None:
        self._settle(cell, _OK, value)

    def _fail(self, cell: Cell, error: BaseException) -> None:
        self._settle(cell, _ERROR, error)

    def _forward(self, src: Cell, dst: Cell) -> None:
        self._then(src, lambda c: self._settle(dst, c.state, c.value))

    # -------------------------------------------------------------------------------- evaluation
    def evaluate(self, value: Any, job: Job | None) -> Cell:
        """A cell for the value of ``value``, with every expression inside it evaluated."""
        if isinstance(value, _ATOMIC):
            return _resolved(value)
        if isinstance(value, Expression):
            return self._eval_expr(value, job)
        seen: dict[int, Expression] = {}
        for e in iter_expressions(value):
            seen.setdefault(id(e), e)
        if not seen:
            return _resolved(value)
        out = Cell()
        results: dict[int, Any] = {}
        remaining = [len(seen)]

        def gathered(expr_id: int, cell: Cell) -> None:
            if out.state != _PENDING:
                return
            if cell.state == _ERROR:
                self._fail(out, cell.value)
                return
            results[expr_id] = cell.value
            remaining[0] -= 1
            if remaining[0] == 0:
                try:
                    self._resolve(out, substitute(value, results))
                except Exception as exc:
                    self._fail(out, exc)

        for expr_id, e in seen.items():
            self._then(self._eval_expr(e, job), functools.partial(gathered, expr_id))
        return out

    def _eval_expr(self, expr: Expression, job: Job | None) -> Cell:
        key = (id(expr), job.id if job is not None else "")
        entry = self.expr_cells.get(key)
        if entry is not None:
            return entry[1]
        cell = Cell()
        self.expr_cells[key] = (expr, cell)
        self.ready.append((self._start_expr, (expr, job, cell)))
        return cell

    def _start_expr(self, expr: Expression, job: Job | None, cell: Cell) -> None:
        if isinstance(expr, TaskExpression):
            self._start_task(expr, job, cell)
        elif isinstance(expr, SimpleExpression):
            args_cell = self.evaluate((expr.args, expr.kwargs), job)
            self._then(args_cell, lambda c: self._apply_simple(expr, c, job, cell))
        elif isinstance(expr, SchedulerExpression):
            handler = getattr(self, f"_sx_{expr.name}", None)
            if handler is None:
                self._fail(cell, TaskLookupError(f"unknown built-in expression {expr.name!r}", expr.name))
            else:
                handler(expr, job, cell)
        elif isinstance(expr, ValueExpression):
            self._forward(self.evaluate(expr.value, job), cell)
        else:
            self._fail(cell, TypeError(f"cannot evaluate {expr!r}"))

    def _chain(self, result: Any, job: Job | None, cell: Cell) -> None:
        """Resolve ``cell`` with ``result``, evaluating it first if it holds expressions."""
        if contains_expression(result):
            self._forward(self.evaluate(result, job), cell)
        else:
            self._resolve(cell, result)

    def _apply_simple(self, expr: SimpleExpression, args_cell: Cell, job: Job | None, cell: Cell) -> None:
        if args_cell.state == _ERROR:
            self._fail(cell, args_cell.value)
            return
        args, kwargs = args_cell.value
        try:
            result = apply_operator(expr.func_name, tuple(args), dict(kwargs))
        except Exception as exc:
            self._fail(cell, exc)
            return
        self._chain(result, job, cell)

    # ---------------------------------------------------------------------------- built-ins
    def _sx_cond(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        args = list(expr.args)

        def step(i: int) -> None:
            if i == len(args) - 1:  # the else branch
                self._forward(self.evaluate(args[i], job), cell)
                return

            def decide(c: Cell) -> None:
                if c.state == _ERROR:
                    self._fail(cell, c.value)
                elif c.value:
                    self._forward(self.evaluate(args[i + 1], job), cell)
                else:
                    step(i + 2)

            self._then(self.evaluate(args[i], job), decide)

        step(0)

    def _sx_catch(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        target, *pairs = expr.args

        def handle(c: Cell) -> None:
            if c.state == _OK:
                self._resolve(cell, c.value)
                return
            error = c.value
            for i in range(0, len(pairs), 2):
                if isinstance(error, pairs[i]):
                    recover = pairs[i + 1]
                    try:
                        recovered = recover(error)
                    except Exception as exc:
                        self._fail(cell, exc)
                        return
                    self._chain(recovered, job, cell)
                    return
            self._fail(cell, error)

        self._then(self.evaluate(target, job), handle)

    def _sx_catch_all(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        exprs, error_class, recover = expr.args
        members: dict[int, Expression] = {}
        for e in iter_expressions(exprs):
            members.setdefault(id(e), e)
        if not members:
            self._resolve(cell, exprs)
            return
        results: dict[int, Any] = {}
        errors: list[BaseException] = []
        remaining = [len(members)]

        def collected(expr_id: int, c: Cell) -> None:
            results[expr_id] = c.value
            if c.state == _ERROR:
                errors.append(c.value)
            remaining[0] -= 1
            if remaining[0]:
                return
            if not errors:
                self._resolve(cell, substitute(exprs, results))
                return
            unmatched = [e for e in errors if error_class is not None and not isinstance(e, error_class)]
            if unmatched or recover is None:
                self._fail(cell, (unmatched or errors)[0])
                return
            try:
                recovered = recover(substitute(exprs, results))
            except Exception as exc:
                self._fail(cell, exc)
                return
            self._chain(recovered, job, cell)

        for expr_id, e in members.items():
            self._then(self._eval_expr(e, job), functools.partial(collected, expr_id))

    def _sx_throw(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        def raise_(c: Cell) -> None:
            if c.state == _ERROR:
                self._fail(cell, c.value)
            elif isinstance(c.value, BaseException):
                self._fail(cell, c.value)
            else:
                self._fail(cell, TypeError(f"throw() needs an exception, not {c.value!r}"))

        self._then(self.evaluate(expr.args[0], job), raise_)

    def _sx_apply_tags(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        value, tags, job_tags, execution_tags = expr.args

        def record(c: Cell) -> None:
            if c.state == _OK and not self.dryrun and (job is None or job.prov):
                if tags:
                    try:
                        vh = hash_value(c.value)
                        self.store.add_value(vh, c.value)
                        self.store.add_tags("value", vh, tags)
                    except (HashingError, SerializationError) as exc:
                        self._fail(cell, exc)
                        return
                if job_tags and job is not None:
                    self.store.add_tags("job", job.id, job_tags)
                if execution_tags:
                    self.store.add_tags("execution", self.execution_id, execution_tags)
            self._settle(cell, c.state, c.value)

        self._then(self.evaluate(value, job), record)

    def _sx_get_context(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        path, default = expr.args
        if job is not None:
            job.uses_context = True
        node: Any = self.context
        for part in str(path).split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                node = default
                break
        self._resolve(cell, node)

    def _sx_seq(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        items = list(expr.args[0])
        out: list[Any] = []

        def step(i: int) -> None:
            if i == len(items):
                self._resolve(cell, out)
                return

            def got(c: Cell) -> None:
                if c.state == _ERROR:
                    self._fail(cell, c.value)
                    return
                out.append(c.value)
                step(i + 1)

            self._then(self.evaluate(items[i], job), got)

        step(0)

    def _sx_apply(self, expr: SchedulerExpression, job: Job | None, cell: Cell) -> None:
        func, *args = expr.args

        def call(c: Cell) -> None:
            if c.state == _ERROR:
                self._fail(cell, c.value)
                return
            a, k = c.value
            try:
                result = func(*a, **k)
            except Exception as exc:
                self._fail(cell, exc)
                return
            self._chain(result, job, cell)

        self._then(self.evaluate((tuple(args), expr.kwargs), job), call)

    # ------------------------------------------------------------------------------------- calls
    def _options(self, task: Task) -> dict[str, Any]:
        entry = self._task_opts.get(id(task))
        if entry is not None and entry[0] is task:
            return entry[1]
        o = task.get_task_options()
        scope = o.get("cache_scope")
        scope = str(getattr(scope, "name", scope)).upper() if scope is not None else None
        if scope is None:
            scope = "BACKEND" if o.get("cache", True) else "CSE"
        if not self.cache and scope == "BACKEND":
            scope = "CSE"
        check = o.get("check_valid", "full")
        limits = o.get("limits") or {}
        if not isinstance(limits, dict):
            limits = {str(name): 1 for name in limits}
        opts = {
            "cache_scope": scope,
            "check_valid": str(getattr(check, "value", check)).lower(),
            "config_args": frozenset(o.get("config_args") or ()),
            "executor": str(o.get("executor", "default")),
            "limits": {str(k): int(v) for k, v in limits.items()},
            "prov": bool(o.get("prov", True)),
            "env_policy": check_policy(o.get("env_policy") or self.scheduler.env_policy, f"task {task.fullname}"),
            "executor_options": {k: v for k, v in o.items() if k not in _SCHEDULER_OPTIONS},
        }
        self._task_opts[id(task)] = (task, opts)
        return opts

    def _start_task(self, expr: TaskExpression, parent: Job | None, cell: Cell) -> None:
        task = expr.task
        if isinstance(task, _UndefinedTask):
            self._fail(cell, TaskLookupError(
                f"task {task.fullname} is not defined in this process: import the module that defines it",
                task.fullname))
            return
        try:
            bound = task.signature.bind(*expr.args, **expr.kwargs)
        except TypeError as exc:
            self._fail(cell, TypeError(f"{task.fullname}() called with bad arguments: {exc}"))
            return
        bound.apply_defaults()
        args_cell = self.evaluate(dict(bound.arguments), parent)
        self._then(args_cell, lambda c: self._call(task, c, parent, cell))

    def _call(self, task: Task, args_cell: Cell, parent: Job | None, cell: Cell) -> None:
        if args_cell.state == _ERROR:
            self._fail(cell, args_cell.value)
            return
        arguments: dict[str, Any] = args_cell.value
        opts = self._options(task)
        job = Job(task, parent, arguments)
        job.prov = opts["prov"] and (parent is None or parent.prov)
        job.cache_scope = opts["cache_scope"]
        job.check_valid = opts["check_valid"]
        job.executor = opts["executor"]
        job.limits = opts["limits"]
        if parent is None:
            self.root_job = job
        else:
            parent.children.append(job)
        config_args = opts["config_args"]
        name = ""
        try:
            for name, value in arguments.items():
                job.arg_hashes.append((name, hash_value(value)))
        except FileAccessError as exc:
            # A missing input file, an unreadable path, refused credentials: same type, with the context.
            file_error = type(exc)(f"argument {name!r} of task {task.fullname}: {exc}", path=exc.path,
                                   task_name=task.fullname, argument=name)
            self._job_failed(job, file_error, "", cell)
            return
        except HashingError as exc:
            error = HashingError(
                f"argument {name!r} of task {task.fullname} cannot be hashed: {exc}",
                task_name=task.fullname, argument=name, value_type=exc.value_type,
            )
            self._job_failed(job, error, "", cell)
            return
        job.args_hash = hash_struct("Args", *[f"{n}={h}" for n, h in job.arg_hashes if n not in config_args])
        # The context is not part of the key: a task reads it through get_context() arguments, whose
        # values are then part of its args hash, so changing an unrelated context value reruns nothing.
        env_key = None
        if job.prov:
            job.environment = task_environment_json(task)
        if opts["env_policy"] != "ignore":
            env_key = self._env_key(task, opts["env_policy"])
        if env_key is None:
            job.eval_hash = hash_struct("Eval", task.hash, job.args_hash)
        else:  # the policy makes the versions of Python and the packages the code imports part of the key
            job.eval_hash = hash_struct("Eval", task.hash, job.args_hash, "env", env_key)

        # Common subexpression elimination within this run.
        if job.cache_scope != "NONE":
            call = self.calls.get(job.eval_hash)
            if call is not None:
                job.call = call
                job.status = "cached"
                self._then(call.cell, lambda c: self._joined(job, c, cell))
                return
        call = Call(job.eval_hash, cell, job)
        job.call = call
        if job.cache_scope != "NONE":
            self.calls[job.eval_hash] = call
        if job.prov and not self.dryrun:
            self.store.add_task(task)

        if job.cache_scope == "BACKEND" and job.prov:
            self.lookups.append(job)  # answered in one batch at the end of this round
            return
        if job.prov:
            job.reason = "caching is off for this run (cache=False)" if not self.cache else \
                "caching is off for this task (cache=False or cache_scope)"
        self._miss(job)

    def _miss(self, job: Job) -> None:
        """No reusable result: plan the job (dry run) or queue it for its executor."""
        task = job.task
        if self.dryrun:
            job.status = "planned"
            reasons = self._miss_reasons(job)
            self.plan.would_run.append(PlannedCall(task.fullname, job.describe(), "; ".join(r.message for r in reasons),
                                                   job.eval_hash, reasons))
            return
        opts = self._options(task)
        spec = JobSpec(job.id, task.fullname, task.run_func, (), {}, opts["executor_options"], task.__module__)
        ba = inspect.BoundArguments(task.signature, collections.OrderedDict(job.arguments))
        spec.args, spec.kwargs = ba.args, ba.kwargs
        self._enqueue(job, spec)

    def _miss_reasons(self, job: Job) -> list[Reason]:
        """Why a dry-run call would run: the same diff against the store that ``slothflow explain`` makes."""
        if not job.prov:
            return [Reason("cache_off", "provenance is off for this task (prov=False): never reused")]
        previews: dict[str, str] = {}
        types_: dict[str, str] = {}
        for name, h in job.arg_hashes:
            value = job.arguments.get(name)
            previews[h] = preview(value)
            types_[h] = f"{type(value).__module__}.{type(value).__qualname__}"
        task = job.task
        facts = CallFacts(
            task_name=task.fullname, task_hash=task.hash, eval_hash=job.eval_hash, arguments=dict(job.arg_hashes),
            source=task.source, manifest=task.code_manifest,
            environment=json.loads(job.environment) if job.environment else None, reason=job.reason,
            previews=previews, type_names=types_,
        )
        try:
            reasons, _ = diff_call(self.store.conn, facts)
        finally:
            self.store.conn.rollback()
        return reasons

    def _joined(self, job: Job, c: Cell, cell: Cell) -> None:
        job.ended = time.time()
        if c.state == _ERROR:
            job.status = "failed"
            job.error = c.value
            self._record_job(job)
            self._fail(cell, c.value)
            return
        self._record_job(job)
        # The same call as one already computed in this run: reused, and counted so (as `slothflow log` does).
        self.stats.cached += 1
        self._emit("cached", job)
        self._resolve(cell, c.value)

    # ----------------------------------------------------------------------------------- reuse
    def _current_task_hashes(self) -> set[str]:
        if self._current_tasks is None:
            current = set()
            for t in get_task_registry():
                current.add(t.hash)
                mark = self._env_mark(t)
                if mark is not None:
                    current.add(mark)
            self._current_tasks = current
        return self._current_tasks

    def _env_mark(self, task: Task) -> str | None:
        """For a task whose env policy is not "ignore": a subtree entry that is current only while the
        policy-relevant versions are, so a shallow reuse above it also respects the policy."""
        try:
            policy = self._options(task)["env_policy"]
        except SlothflowError:
            return None
        if policy == "ignore":
            return None
        key = self._env_key(task, policy)
        return None if key is None else "env:" + hash_struct(task.hash, key)

    def _env_key(self, task: Task, policy: str) -> str | None:
        cached = self._env_keys.get((task.hash, policy), "")
        if cached == "":
            cached = self._env_keys[(task.hash, policy)] = task_environment(task).key(policy)
        return cached

    def _lookup_batch(self) -> None:
        """Answer this round's cache lookups with one query per kind, then reuse or queue each job."""
        batch, self.lookups = self.lookups, []
        store = self.store
        full: list[Job] = []
        shallow = [j for j in batch if j.check_valid == "shallow"]
        if shallow:
            finals = store.get_finals([j.eval_hash for j in shallow])
            current = self._current_task_hashes()
            for job in shallow:
                if not self._reuse_final(job, finals.get(job.eval_hash, []), current):
                    full.append(job)
        full.extend(j for j in batch if j.check_valid != "shallow")
        reductions = store.get_reductions([j.eval_hash for j in full]) if full else {}
        for job in full:
            hit = reductions.get(job.eval_hash)
            if hit is None:
                self._miss(job)
                continue
            value_hash, reduction, job.recorded_call = hit
            invalid = first_invalid(reduction)
            if invalid is not None:
                job.reason = f"cached result no longer valid: {_describe_invalid(invalid)}"
                log.info("cached result of %s is no longer valid (%s); rerunning", job.describe(), job.reason)
                self._miss(job)
                continue
            if _names_undefined_task(reduction):
                # The recorded sub-DAG calls a task not loaded here (its module is imported by the body,
                # say): running the body again is correct, failing the replay would not be.
                log.info("cached result of %s calls a task not defined here; rerunning", job.describe())
                job.reason = "the cached result calls a task not defined in this process"
                self._miss(job)
                continue
            self._mark_reused(job)
            self._reduced(job, reduction, computed=False, value_hash=value_hash)

    def _reuse_final(self, job: Job, finals: list[tuple[str, str, frozenset[str]]], current: set[str]) -> bool:
        """check_valid="shallow": reuse the newest final value whose whole subtree's code is unchanged."""
        for call_hash, value_hash, subtree in finals:
            if not subtree <= current | {job.task.hash}:
                continue
            found, value = self.store.load_value(value_hash)
            if not found:
                return False
            invalid = first_invalid(value)
            if invalid is not None:
                job.reason = f"cached result no longer valid: {_describe_invalid(invalid)}"
                return False
            job.recorded_call = call_hash
            self._mark_reused(job)
            self._finish(job, value, value_hash, subtree_override=subtree)
            return True
        return False

    def _mark_reused(self, job: Job) -> None:
        job.status = "cached"
        if self.dryrun:
            self.plan.reused.append(PlannedCall(job.task.fullname, job.describe(), "cached", job.eval_hash))

    # ------------------------------------------------------------------------------- execution
    def _enqueue(self, job: Job, spec: JobSpec) -> None:
        if job.limits and not self._acquire(job.limits):
            self.waiting_limits.append((job, spec))
            return
        self.to_submit.append((job, spec))

    def _acquire(self, limits: dict[str, int]) -> bool:
        caps = self.scheduler.limits
        if any(self.limits_used[k] + n > caps.get(k, 1) for k, n in limits.items()):
            return False
        for k, n in limits.items():
            self.limits_used[k] += n
        return True

    def _release(self, limits: dict[str, int]) -> None:
        for k, n in limits.items():
            self.limits_used[k] -= n
        still: collections.deque[tuple[Job, JobSpec]] = collections.deque()
        while self.waiting_limits:
            job, spec = self.waiting_limits.popleft()
            if self._acquire(job.limits):
                self.to_submit.append((job, spec))
            else:
                still.append((job, spec))
        self.waiting_limits = still

    def _submit_all(self) -> None:
        batch, self.to_submit = self.to_submit, []
        for job, spec in batch:
            if self.root_failed and self.scheduler.fail_fast:
                continue
            executor = self.scheduler.executors.get(job.executor)
            if executor is None:
                known = ", ".join(sorted(self.scheduler.executors))
                self._job_failed(job, ExecutorError(
                    f"task {job.task.fullname} asks for executor {job.executor!r}, which is not configured "
                    f"(known: {known})", job.task.fullname, job.executor), "", job.call.cell if job.call else Cell())
                continue
            # The scheduler, not the executor, holds jobs beyond an executor's capacity: "running" then means
            # running, and a later executor (Dask, Slurm) is never flooded.
            if self.exec_busy[executor.name] >= max(1, executor.max_workers):
                job.status = "queued"
                self.exec_queue[executor.name].append((job, spec))
                self.stats.pending += 1
                continue
            self._submit(executor, job, spec)

    def _submit(self, executor: Executor, job: Job, spec: JobSpec) -> None:
        job.status = "running"
        job.started = time.time()
        self.in_flight[job.id] = job
        self.exec_busy[executor.name] += 1
        self.stats.running += 1
        self._emit("started", job)
        if job.prov:
            self._record_job(job)
        executor.submit(spec, self.completions.put)

    def _on_outcome(self, outcome: Outcome) -> None:
        job = self.in_flight.pop(outcome.job_id, None)
        if job is None:
            return
        self.stats.running -= 1
        executor = self.scheduler.executors[job.executor]
        self.exec_busy[executor.name] -= 1
        queued = self.exec_queue[executor.name]
        if queued and not (self.root_failed and self.scheduler.fail_fast):
            self.stats.pending -= 1
            self._submit(executor, *queued.popleft())
        if job.limits:
            self._release(job.limits)
        cell = job.call.cell if job.call else Cell()
        if outcome.ok:
            job.status = "ran"
            self._reduced(job, outcome.value, computed=True)
        else:
            assert outcome.error is not None
            self._job_failed(job, outcome.error, outcome.traceback, cell)

    def _reduced(self, job: Job, result: Any, computed: bool, value_hash: str | None = None) -> None:
        """The job's body returned (or the cache replayed) ``result``: record it, then evaluate it."""
        assert job.call is not None
        cell = job.call.cell
        if computed and job.prov:
            try:
                value_hash = hash_value(result)
                self.store.add_value(value_hash, result)
            except FileAccessError as exc:  # e.g. the task returned a File it never wrote
                self._job_failed(job, type(exc)(f"the result of task {job.task.fullname}: {exc}", path=exc.path,
                                                task_name=job.task.fullname), "", cell)
                return
            except (HashingError, SerializationError) as exc:
                what = "hashed" if isinstance(exc, HashingError) else "stored"
                error = type(exc)(
                    f"the result of task {job.task.fullname} ({type(result).__qualname__}) cannot be {what}: "
                    f"{exc}. Return plain data, or give the type a hash/serialize hook.", task_name=job.task.fullname,
                )
                self._job_failed(job, error, "", cell)
                return
            self.store.set_evaluation(job.eval_hash, job.task.hash, job.args_hash, value_hash)
        job.reduction_hash = value_hash
        if contains_expression(result):
            if computed:
                self._emit("waiting", job)  # the body returned; its result's expressions are evaluated now
            self._then(self.evaluate(result, job), lambda c: self._evaluated(job, c))
        else:
            self._finish(job, result, value_hash)

    def _evaluated(self, job: Job, c: Cell) -> None:
        if c.state == _ERROR:
            assert job.call is not None
            self._job_failed(job, c.value, "", job.call.cell, origin=False)
        else:
            self._finish(job, c.value, None)

    def _finish(self, job: Job, value: Any, value_hash: str | None,
                subtree_override: frozenset[str] | None = None) -> None:
        call = job.call
        assert call is not None
        job.ended = time.time()
        if job.prov and not self.dryrun:
            try:
                if value_hash is None:
                    value_hash = hash_value(value)
                    self.store.add_value(value_hash, value)
            except (HashingError, SerializationError) as exc:
                self._job_failed(job, exc, "", call.cell)
                return
            if subtree_override is not None:
                call.subtree = subtree_override
                call.call_hash = job.recorded_call
            else:
                subtree = {job.task.hash}
                mark = self._env_mark(job.task)
                if mark is not None:
                    subtree.add(mark)
                if job.uses_context:
                    # Never a current task hash: a shallow lookup of any call above falls back to the
                    # full rule, which re-reads the context instead of trusting a final value.
                    subtree.add(CONTEXT_MARK)
                children: list[str] = []
                for child in job.children:
                    cc = child.call
                    if _holds_value(child.arguments):
                        # A file a call below read may have changed since: only its own lookup (which
                        # re-fingerprints its arguments) can tell, so a shallow lookup above falls back.
                        subtree.add(EXTERNAL_MARK)
                    if cc is not None and cc.call_hash is not None:
                        subtree |= cc.subtree
                        if cc.call_hash not in children:
                            children.append(cc.call_hash)
                    else:
                        # An unrecorded child (prov=False): nothing vouches for its code later, so a
                        # shallow lookup above must fall back to the full rule.
                        subtree.add(UNRECORDED_MARK)
                call.subtree = frozenset(subtree)
                call.call_hash = hash_struct("Call", job.task.hash, job.args_hash, value_hash, *sorted(children))
                if call.call_hash != job.recorded_call:
                    producer = self.producer
                    arguments = []
                    for position, (name, h) in enumerate(job.arg_hashes):
                        arguments.append((name, position, h, producer.get(h)))
                        try:
                            self.store.add_value(h, job.arguments[name])
                        except SerializationError:
                            pass
                    self.store.add_call(call.call_hash, job.eval_hash, job.task.hash, job.args_hash, value_hash,
                                        call.subtree, arguments, children)
            call.value_hash = value_hash
            self.producer[value_hash] = call.call_hash  # type: ignore[assignment]
            self._record_job(job)
        if job.status == "cached":
            self.stats.cached += 1
            self._emit("cached", job)
        else:
            self.stats.ran += 1
            self._emit("done", job)
        self._resolve(call.cell, value)

    def _job_failed(self, job: Job, error: BaseException, tb: str, cell: Cell, origin: bool = True) -> None:
        job.status = "failed"
        job.ended = time.time()
        job.error = error
        if origin and id(error) not in self.error_origins:
            # Kept aside, not on the exception: inside the workflow a recover task receives the task's
            # exception as it was raised (so it hashes the same in every run). The caller of run() gets
            # the note and the worker's traceback attached (see _raise).
            self.error_origins[id(error)] = (error, job.describe(), tb)
        self.stats.failed += 1
        if job.parent is None:
            self.root_failed = True
        if job.prov and not self.dryrun:
            if origin:  # keep the failed call's inputs, so `slothflow log` can show what it was given
                for name, value_hash in job.arg_hashes:
                    try:
                        self.store.add_value(value_hash, job.arguments[name])
                    except SerializationError:
                        pass
            self._record_job(job, tb if origin else "")
        self._emit("failed", job)
        self._fail(cell, error)

    def _record_job(self, job: Job, tb: str = "") -> None:
        if not job.prov or self.dryrun:
            return
        call = job.call
        row: dict[str, Any] = {
            "id": job.id,
            "execution_id": self.execution_id,
            "parent_id": job.parent.id if job.parent else None,
            "task_hash": job.task.hash,
            "task_name": job.task.fullname,
            "eval_hash": job.eval_hash,
            "call_hash": call.call_hash if call is not None else None,
            "status": job.status,
            "executor": job.executor,
            "started_at": job.started,
            "ended_at": job.ended,
            "error_type": None,
            "error_message": None,
            "error_traceback": None,
            "arguments": json.dumps(dict(job.arg_hashes)) if job.arg_hashes else None,
            "environment": job.environment,
            "reason": job.reason,
        }
        if job.error is not None:
            err = job.error
            row["error_type"] = f"{type(err).__module__}.{type(err).__qualname__}"
            row["error_message"] = str(err)
            origin = self.error_origins.get(id(err))
            row["error_traceback"] = tb or (origin[2] if origin is not None else None) or None
        self.store.put_job(row)

    def _emit(self, event: str, job: Job) -> None:
        for listener in self.listeners:
            listener(event, job, self.stats)


_SCHEDULER_OPTIONS = {
    "cache", "cache_scope", "check_valid", "config_args", "env_policy", "executor", "limits", "nout", "prov", "script",
    "tags",
}
