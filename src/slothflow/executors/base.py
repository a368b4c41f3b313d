"""The executor interface: where a job's function body runs.

An executor receives a ready job (a function and concrete arguments) and reports one outcome for it
through the callback it was given, from any thread. It knows nothing of caching, hashing or the store:
that keeps executors small and lets one conformance suite test them all. Executors for other machines
(Dask, Slurm) receive the same :class:`JobSpec`; ``task_module`` lets a remote worker import the task by
name instead of receiving its code.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class JobSpec:
    """What an executor needs to run one job."""

    job_id: str
    task_name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    task_module: str | None = None


@dataclass(slots=True)
class Outcome:
    """The result of running a job: a value, or an exception with its formatted traceback."""

    job_id: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""


Done = Callable[[Outcome], None]


def run_job(spec: JobSpec) -> Outcome:
    """Call a job's function, capturing any exception (used by every local executor).

    ``SystemExit`` (a task calling ``sys.exit``) is a task error like any other: letting it escape
    would kill a pool thread without reporting the job, and the run would wait for it forever. Only
    ``KeyboardInterrupt`` propagates, so that Ctrl-C stops an inline run.
    """
    try:
        return Outcome(spec.job_id, True, spec.func(*spec.args, **spec.kwargs))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a task's own error: reported, never raised into the executor
        return Outcome(spec.job_id, False, error=exc, traceback=format_task_traceback(exc))


def report_safely(done: Done, job_id: str, make: Callable[[], Outcome], what: str) -> None:
    """Call ``done`` exactly once with ``make()``, or with an :class:`ExecutorError` if ``make`` fails.

    Used in future callbacks: an exception escaping a callback is only logged by ``concurrent.futures``,
    which would leave the job unreported and the scheduler waiting forever.
    """
    try:
        outcome = make()
    except BaseException as exc:
        from slothflow._errors import ExecutorError

        outcome = Outcome(job_id, False, error=ExecutorError(f"{what}: {type(exc).__name__}: {exc}"))
    done(outcome)


def format_task_traceback(exc: BaseException) -> str:
    """The traceback of an error raised in a task, without the executor's own frames."""
    tb = exc.__traceback__
    # Skip frames that belong to slothflow's executor machinery.
    while tb is not None and "/slothflow/executors/" in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Executor(ABC):  # noqa: B024 (start and stop are optional hooks)
    """Runs jobs somewhere and reports their outcomes."""

    #: How many jobs may run at once (the scheduler never submits more).
    max_workers: int = 1

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})

    def start(self) -> None:  # noqa: B027 (an optional hook)
        """Acquire resources (pools, clients); called before the first submit of a run."""

    @abstractmethod
    def submit(self, spec: JobSpec, done: Done) -> None:
        """Start running ``spec``; call ``done`` exactly once with its outcome (from any thread)."""

    def stop(self) -> None:  # noqa: B027 (an optional hook)
        """Release resources; called when the scheduler is closed."""
