"""The run-time records of one execution: a :class:`Job` per attempt to reduce a call, a :class:`Call` per
distinct eval hash (every job of the same call shares its outcome), and :class:`Cell`, a promised value."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slothflow.model._task import Task
    from slothflow.scheduler._options import CallOptions

PENDING, OK, ERROR = 0, 1, 2


class Cell:
    """A value that will be known later (or an error). Waiters are queued by the loop, never called in place."""

    __slots__ = ("state", "value", "waiters", "call")

    def __init__(self) -> None:
        self.state = PENDING
        self.value: Any = None
        self.waiters: list[Callable[[Cell], None]] | None = []
        self.call: Call | None = None  # for a task call's cell: the call whose result it holds


def resolved(value: Any) -> Cell:
    cell = Cell()
    cell.state, cell.value, cell.waiters = OK, value, None
    return cell



class Job:
    """One attempt, in this execution, to reduce one call."""

    __slots__ = (
        "id", "task", "parent", "arguments", "arg_hashes", "args_hash", "eval_hash", "status", "started",
        "ended", "call", "children", "opts", "prov", "error", "reduction_hash", "recorded_call", "uses_context",
        "environment", "reason", "attempt", "producers",
    )

    def __init__(self, task: Task, parent: Job | None, arguments: dict[str, Any], opts: CallOptions) -> None:
        self.id = os.urandom(16).hex()
        self.task = task
        self.parent = parent
        self.arguments = arguments
        self.opts = opts
        self.arg_hashes: list[tuple[str, str]] = []
        self.args_hash = ""
        self.eval_hash = ""
        self.status = "pending"
        self.started = time.time()
        self.ended: float | None = None
        self.call: Call | None = None
        self.children: list[Job] | None = None  # made with the first child: most calls have none
        self.prov: bool = opts.prov and (parent is None or parent.prov)
        self.error: BaseException | None = None
        self.reduction_hash: str | None = None
        self.recorded_call: str | None = None
        self.uses_context = False  # something in this job's reduction read the execution's context
        self.environment: str | None = None  # JSON fingerprint of the task's environment
        self.reason: str | None = None  # why it runs instead of being reused, when the scheduler knows
        self.attempt = 1  # 1 + the retries used so far
        self.producers: dict[str, str] | None = None  # argument name -> call hash of the call whose result it is

    @property
    def duration(self) -> float:
        return (self.ended or time.time()) - self.started

    @property
    def executor(self) -> str:
        return self.opts.executor

    @property
    def limits(self) -> dict[str, int]:
        return self.opts.limits

    @property
    def check_valid(self) -> str:
        return self.opts.check_valid

    @property
    def cache_scope(self) -> str:
        return self.opts.cache_scope

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.arguments.items())
        return f"{self.task.fullname}({args})"


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__}>"
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
