"""Dispatch: jobs that must run go to their executors, within named ``limits`` and each executor's capacity.

The scheduler, not the executor, holds jobs beyond an executor's capacity: "running" then means running, and
an executor for other machines is never flooded. A job asking for ``vcpus=4`` takes four slots, and
``memory`` (GB) and ``gpus`` count against what the executor declares it has (:meth:`Executor.resources`). Failed
attempts are retried (``retries``, waiting ``retry_delay`` seconds, times ``retry_backoff`` per further
attempt); an attempt that outlives ``timeout`` seconds is cancelled on its executor (a process is killed, a
thread abandoned) and fails with :class:`~slothflow.TaskTimeoutError`. Neither a failed nor a timed-out
attempt is ever cached. Each attempt has its own submission id, so a late outcome of an abandoned attempt is
recognised and discarded.
"""

from __future__ import annotations

import collections
import heapq
import inspect
import math
import queue
import time
from typing import TYPE_CHECKING

from slothflow._errors import ExecutorError, TaskTimeoutError
from slothflow.executors import Executor, JobSpec, Outcome
from slothflow.scheduler._job import Cell, Job

if TYPE_CHECKING:
    from slothflow.model._task import Task
    from slothflow.scheduler._run import Run


class Dispatch:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.completions: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.to_submit: list[tuple[Job, JobSpec]] = []
        self.waiting_limits: collections.deque[tuple[Job, JobSpec]] = collections.deque()
        self.limits_used: dict[str, int] = collections.defaultdict(int)
        self.in_flight: dict[str, tuple[Job, JobSpec]] = {}  # submission id -> (job, spec)
        self.used: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
        self.exec_queue: dict[str, collections.deque[tuple[Job, JobSpec]]] = collections.defaultdict(
            collections.deque
        )
        self.deadlines: list[tuple[float, str]] = []  # (monotonic deadline, submission id)
        self.retries: list[tuple[float, int, Job, JobSpec]] = []  # (due, tie-breaker, job, spec)
        self._seq = 0
        self._have: dict[str, dict[str, float]] = {}
        self._need: dict[int, tuple[object, dict[str, float]]] = {}
        self._simple: dict[int, tuple[Task, bool]] = {}

    # -------------------------------------------------------------------------------- queueing
    def miss(self, job: Job) -> None:
        """No reusable result: plan the job (dry run) or queue it for its executor."""
        run = self.run
        if run.dryrun:
            job.status = "planned"
            run.plan.add_would_run(job, run.store)
            return
        task = job.task
        if self._positional(task):  # every parameter positional: the bound arguments, in order
            args, kwargs = tuple(job.arguments.values()), {}
        else:
            ba = inspect.BoundArguments(task.signature, collections.OrderedDict(job.arguments))
            args, kwargs = ba.args, ba.kwargs
        opts = job.opts
        spec = JobSpec(job.id, task.fullname, task.run_func, args, kwargs, dict(opts.executor_options),
                       task.__module__, dict(opts.resources), opts.timeout, task.hash)
        self._enqueue(job, spec)

    def _positional(self, task: Task) -> bool:
        """Whether every parameter of the task's signature may be passed by position (once per task)."""
        entry = self._simple.get(id(task))
        if entry is None or entry[0] is not task:
            params = task.signature.parameters.values()
            ok = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
            entry = self._simple[id(task)] = (task, ok)
        return entry[1]

    def _enqueue(self, job: Job, spec: JobSpec) -> None:
        if job.limits and not self._acquire(job.limits):
            self.waiting_limits.append((job, spec))
            return
        self.to_submit.append((job, spec))

    def _acquire(self, limits: dict[str, int]) -> bool:
        caps = self.run.scheduler.limits
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

    def _totals(self, executor: Executor) -> dict[str, float]:
        """What ``executor`` has, asked once per run (it may read the machine or a cluster)."""
        have = self._have.get(executor.name)
        if have is None:
            have = self._have[executor.name] = {"vcpus": float(executor.capacity), **executor.resources()}
        return have

    def _needs(self, job: Job) -> dict[str, float]:
        """What one attempt takes, computed once per task's options."""
        entry = self._need.get(id(job.opts))
        if entry is None or entry[0] is not job.opts:
            entry = self._need[id(job.opts)] = (job.opts, _needs(job))
        return entry[1]

    def has_submissions(self) -> bool:
        return bool(self.to_submit)

    def busy(self) -> bool:
        return bool(self.in_flight or self.retries)

    def check_stuck(self) -> None:
        if self.waiting_limits and not self.run.dryrun:
            job, _ = self.waiting_limits[0]
            caps = self.run.scheduler.limits
            raise ExecutorError(
                f"task {job.task.fullname} needs limits {job.limits}, more than configured "
                f"({ {k: caps.get(k, 1) for k in job.limits} }); raise them in [limits]",
                job.task.fullname,
            )

    # ------------------------------------------------------------------------------ submission
    def _stopping(self) -> bool:
        return self.run.root_failed and self.run.scheduler.fail_fast

    def submit_all(self) -> None:
        run = self.run
        batch, self.to_submit = self.to_submit, []
        for job, spec in batch:
            if self._stopping():
                continue
            executor = run.scheduler.executors.get(job.executor)
            if executor is None:
                known = ", ".join(sorted(run.scheduler.executors))
                self._fail(job, ExecutorError(
                    f"task {job.task.fullname} asks for executor {job.executor!r}, which is not configured "
                    f"(known: {known})", job.task.fullname, job.executor))
                continue
            have = self._totals(executor)
            need = self._needs(job)
            too_much = [k for k, n in need.items() if n > have.get(k, 0.0)]
            if too_much:
                kind = too_much[0]
                self._fail(job, ExecutorError(
                    f"task {job.task.fullname} asks for {kind}={_show(need[kind])}, more than executor "
                    f"{executor.name!r} has ({_show(have.get(kind, 0.0))}); lower {kind}, or declare more in "
                    f"[executors.{executor.name}] ({_CONFIG_KEY[kind]} = ...)", job.task.fullname, executor.name))
                continue
            if not _fits(self.used[executor.name], need, have):
                job.status = "queued"
                self.exec_queue[executor.name].append((job, spec))
                run.stats.pending += 1
                continue
            self._submit(executor, job, spec)

    def _submit(self, executor: Executor, job: Job, spec: JobSpec) -> None:
        run = self.run
        job.status = "running"
        job.started = time.time()
        spec.job_id = f"{job.id}.{job.attempt}"
        self.in_flight[spec.job_id] = (job, spec)
        used = self.used[executor.name]
        for kind, n in self._needs(job).items():
            used[kind] += n
        if job.opts.timeout is not None:
            heapq.heappush(self.deadlines, (time.monotonic() + job.opts.timeout, spec.job_id))
        run.stats.running += 1
        run.recorder.emit("started", job)
        if job.prov:
            run.recorder.record_job(job)
        executor.submit(spec, self.completions.put)

    def _fail(self, job: Job, error: BaseException) -> None:
        self.run.recorder.failed(job, error, "", job.call.cell if job.call else Cell())

    # --------------------------------------------------------------------------------- outcomes
    def wait(self, most: float) -> None:
        """Wait up to ``most`` seconds for finished jobs, then handle them, due timeouts and due retries."""
        now = time.monotonic()
        due = [most]
        if self.deadlines:
            due.append(self.deadlines[0][0] - now)
        if self.retries:
            due.append(self.retries[0][0] - now)
        try:
            outcome = self.completions.get(timeout=max(0.0, min(due)))
        except queue.Empty:
            pass
        else:
            self._on_outcome(outcome)
            while True:
                try:
                    outcome = self.completions.get_nowait()
                except queue.Empty:
                    break
                self._on_outcome(outcome)
        self._expire()
        self._retry_due()

    def _free(self, job: Job, spec: JobSpec) -> None:
        run = self.run
        run.stats.running -= 1
        executor = run.scheduler.executors[job.executor]
        used = self.used[executor.name]
        for kind, n in self._needs(job).items():
            used[kind] -= n
        queued = self.exec_queue[executor.name]
        have = self._totals(executor)
        while queued and not self._stopping() and _fits(used, self._needs(queued[0][0]), have):
            run.stats.pending -= 1
            self._submit(executor, *queued.popleft())
        if job.limits:
            self._release(job.limits)

    def _on_outcome(self, outcome: Outcome) -> None:
        entry = self.in_flight.pop(outcome.job_id, None)
        if entry is None:  # a cancelled or timed-out attempt reporting late: discarded
            return
        job, spec = entry
        self._free(job, spec)
        timeout = job.opts.timeout
        if timeout is not None and time.time() - job.started > timeout:
            # Finished, but late: an executor that cannot stop a job (inline) still honours the limit.
            self._attempt_failed(job, spec, self._timeout_error(job), "")
            return
        if outcome.ok:
            job.status = "ran"
            self.run.evaluator.reduced(job, outcome.value, computed=True)
            return
        assert outcome.error is not None
        self._attempt_failed(job, spec, outcome.error, outcome.traceback)

    def _attempt_failed(self, job: Job, spec: JobSpec, error: BaseException, tb: str) -> None:
        if job.attempt <= job.opts.retries and not self._stopping():
            wait = job.opts.retry_wait(job.attempt)
            self.run.recorder.retrying(job, error, wait)
            job.attempt += 1
            self._seq += 1
            heapq.heappush(self.retries, (time.monotonic() + wait, self._seq, job, spec))
            return
        self.run.recorder.failed(job, error, tb, job.call.cell if job.call else Cell())

    def _expire(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, sid = heapq.heappop(self.deadlines)
            entry = self.in_flight.pop(sid, None)
            if entry is None:
                continue  # finished in time
            job, spec = entry
            self._cancel_on_executor(job, sid)
            self._free(job, spec)
            self._attempt_failed(job, spec, self._timeout_error(job), "")

    @staticmethod
    def _timeout_error(job: Job) -> TaskTimeoutError:
        timeout = job.opts.timeout or 0.0
        return TaskTimeoutError(
            f"task {job.task.fullname} timed out after {timeout:g} s (attempt {job.attempt}); "
            "raise timeout= or make the task faster", task_name=job.task.fullname, timeout=timeout)

    def _retry_due(self) -> None:
        now = time.monotonic()
        while self.retries and self.retries[0][0] <= now:
            _, _, job, spec = heapq.heappop(self.retries)
            if self._stopping():
                self._fail(job, job.error or ExecutorError("the run stopped before a retry", job.task.fullname))
                continue
            self._enqueue(job, spec)

    def _cancel_on_executor(self, job: Job, submission_id: str) -> None:
        executor = self.run.scheduler.executors.get(job.executor)
        if executor is not None:
            try:
                executor.cancel(submission_id)
            except Exception:  # the job may have just finished; its late outcome is discarded anyway
                pass

    def cancel_all(self) -> list[Job]:
        """Stop everything (Ctrl-C): cancel running attempts, drop queued ones. Returns the jobs cut short."""
        cut: list[Job] = []
        for sid, (job, _) in list(self.in_flight.items()):
            self._cancel_on_executor(job, sid)
            cut.append(job)
        self.in_flight.clear()
        for queued in self.exec_queue.values():
            cut.extend(job for job, _ in queued)
            queued.clear()
        cut.extend(job for job, _ in self.to_submit)
        cut.extend(job for job, _ in self.waiting_limits)
        cut.extend(job for _, _, job, _ in self.retries)
        self.to_submit, self.retries, self.deadlines = [], [], []
        self.waiting_limits.clear()
        return cut


_CONFIG_KEY = {"vcpus": "max_workers", "memory": "memory", "gpus": "gpus"}


def _needs(job: Job) -> dict[str, float]:
    """What one attempt takes from its executor: ``vcpus`` whole slots (at least one), memory, gpus."""
    res = job.opts.resources
    need = {"vcpus": float(max(1, math.ceil(res.get("vcpus") or 1)))}
    for kind in ("memory", "gpus"):
        if res.get(kind):
            need[kind] = float(res[kind])
    return need


def _fits(used: dict[str, float], need: dict[str, float], have: dict[str, float]) -> bool:
    return all(used[k] + n <= have.get(k, 0.0) + 1e-9 for k, n in need.items())


def _show(n: float) -> str:
    return f"{n:g}"
