"""The executor interface: where a job's function body runs.

An executor receives a ready job (a function and concrete arguments) and reports one outcome for it
through the callback it was given, from any thread. It knows nothing of caching, hashing or the store:
that keeps executors small and lets one conformance suite (:mod:`slothflow.testing`) test them all.

The scheduler holds jobs beyond an executor's :attr:`Executor.capacity` (so "running" means running), may
:meth:`Executor.cancel` an attempt (Ctrl-C, a ``timeout``), and :meth:`Executor.shutdown` s it at the end.
Options a task gives that are meant for one executor (a Slurm ``partition``) are declared by that
executor in :attr:`Executor.options`; the scheduler rejects options nobody declares.
"""

from __future__ import annotations

import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slothflow._config import ConfigKey


@dataclass(slots=True)
class JobSpec:
    """What an executor needs to run one job.

    ``func`` is what to call (the called task object's body, with its call-site options applied: for a
    script task, the runner of its command). ``options`` are the task's executor-specific options,
    ``resources`` its ``vcpus``/``memory``/``gpus`` requests, ``timeout`` its limit in seconds (the
    scheduler enforces it through :meth:`Executor.cancel`; an executor may also pass it on).
    ``code_hash`` is the task hash the scheduler computed, so a remote worker that imports the task by
    name can check it runs the same code.
    """

    job_id: str
    task_name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    task_module: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    timeout: float | None = None
    code_hash: str | None = None


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
    would kill a worker without reporting the job, and the run would wait for it forever. Only
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

    An exception escaping a worker's reporting path would leave the job unreported and the scheduler
    waiting forever.
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
    while tb is not None and "/slothflow/executors/" in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def machine_memory_gb() -> float:
    """This machine's physical memory in GB (what local jobs' ``memory`` requests share by default)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


MEMORY_KEY = ConfigKey(float, "GB that jobs' memory requests share", "the machine's memory", 0)
GPUS_KEY = ConfigKey(int, "GPUs that jobs' gpus requests share", 0, 0)


def local_resources(config: dict[str, Any]) -> dict[str, float]:
    """Memory and GPUs of a local executor: from its config (``memory`` in GB, ``gpus``), else the machine's
    memory and no GPUs."""
    found = {"memory": float(config.get("memory") or machine_memory_gb())}
    gpus = float(config.get("gpus") or 0)
    if gpus:
        found["gpus"] = gpus
    return found


class Executor(ABC):
    """Runs jobs somewhere and reports their outcomes.

    Subclasses implement :meth:`submit`, and :meth:`cancel` when they can stop a running job. Class
    attributes declare what the executor understands: ``options`` (task options meant for it) and
    ``config_schema`` (its keys in an ``[executors.NAME]`` section, each mapped to a type or a checker).
    """

    #: Task options this executor understands beyond the scheduler's own (e.g. Slurm's ``partition``).
    options: ClassVar[frozenset[str]] = frozenset()
    #: Keys of an ``[executors.NAME]`` config section this executor reads (besides ``type``): key name ->
    #: :class:`~slothflow._config.ConfigKey` (or a plain type). Any other key is an error naming it. None: the
    #: executor does not say, and its section's keys are passed through unchecked.
    config_schema: ClassVar[dict[str, Any] | None] = None
    #: Whether jobs leave the scheduler's process (their arguments and results are then serialized).
    remote: ClassVar[bool] = False
    #: How many jobs may run at once (see :attr:`capacity`).
    max_workers: int = 1

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})

    @property
    def capacity(self) -> int:
        """How many slots run at once (a job asking for ``vcpus=4`` takes four); the scheduler never
        submits more."""
        return max(1, int(self.max_workers))

    def resources(self) -> dict[str, float]:
        """What jobs' ``memory`` (GB) and ``gpus`` requests count against, beyond the slots of
        :attr:`capacity`. A resource missing here is one the executor does not have: asking for it fails
        the job with an error naming the option. Executors that place jobs elsewhere (a cluster) report
        what one job may ask for at most."""
        return {}

    def start(self) -> None:  # noqa: B027 (an optional hook)
        """Acquire resources (pools, clients); called before the first submit of a run."""

    @abstractmethod
    def submit(self, spec: JobSpec, done: Done) -> None:
        """Start running ``spec``; call ``done`` exactly once with its outcome (from any thread), unless the
        job is cancelled first."""

    def cancel(self, job_id: str) -> bool:
        """Stop job ``job_id`` if it is queued or running; its outcome, if it still arrives, is ignored by
        the scheduler. Returns whether the work itself was stopped (a thread cannot be: it is abandoned)."""
        return False

    def shutdown(self, cancel: bool = False) -> None:  # noqa: B027 (an optional hook)
        """Release resources. With ``cancel``, stop running jobs instead of waiting for them; never block
        on a job that does not end."""

    def stop(self) -> None:
        """Release resources after the last run (kept for executors written against the first interface)."""
        self.shutdown(cancel=True)
