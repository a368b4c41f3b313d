"""The processes executor: worker processes of our own, for CPU-bound Python tasks.

Each slot is a *lane*: a daemon thread in the scheduler's process that feeds one worker process through a
pipe. Workers start with ``spawn`` (safe in a multi-threaded scheduler), are reused from job to job, and
ignore SIGINT: Ctrl-C reaches the scheduler, which cancels. Cancelling a running job (Ctrl-C, a
``timeout``) kills its worker; the lane starts a fresh one for its next job. A worker that dies on its own
(``os._exit``, out of memory) fails its job with an :class:`~slothflow.ExecutorError`.

Jobs travel by :mod:`slothflow.executors._wire`: the called task's own body, with the user's modules by
value, so a worker runs the code the scheduler hashed, with the options given at the call site.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from slothflow._config import ConfigKey
from slothflow._errors import ExecutorError, SerializationError
from slothflow.executors import _wire
from slothflow.executors.base import (
    GPUS_KEY,
    MEMORY_KEY,
    Done,
    Executor,
    JobSpec,
    Outcome,
    local_resources,
    report_safely,
)

START_METHODS = ("spawn", "forkserver", "fork")
_starting = threading.Lock()  # one worker start at a time: ``_main_without_missing_file`` edits __main__


def _worker_main(conn: Connection) -> None:
    """A worker process: run jobs from the pipe until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_wire.run_wire_job(data))


@contextlib.contextmanager
def _main_without_missing_file() -> Iterator[None]:
    """``spawn`` re-runs the parent's main script in each new worker; for ``python -`` or ``exec`` there is no
    such file, and the worker would die. Tasks from there travel by value anyway, so hide the bogus path."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class _Job:
    __slots__ = ("spec", "done", "payload", "cancelled")

    def __init__(self, spec: JobSpec, done: Done, payload: bytes) -> None:
        self.spec, self.done, self.payload, self.cancelled = spec, done, payload, False


class _Lane:
    """One slot: a worker process (started on first use) and the job it runs."""

    def __init__(self) -> None:
        self.process: Any = None
        self.conn: Connection | None = None
        self.job: _Job | None = None

    def kill(self) -> None:
        process, conn, self.process, self.conn = self.process, self.conn, None, None
        if process is not None and process.is_alive():
            process.kill()
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(timeout=5)


class ProcessExecutor(Executor):
    """Runs jobs locally; ``memory`` (GB) and ``gpus`` requests share what the config declares
    (``memory`` defaults to the machine's, ``gpus`` to none)."""

    def resources(self) -> dict[str, float]:
        return local_resources(self.config)

    config_schema: ClassVar[dict[str, Any] | None] = {
        "max_workers": ConfigKey(int, "how many worker processes run jobs at once", "the number of cores", 1),
        "start_method": ConfigKey(str, "how worker processes start", "spawn", choices=START_METHODS),
        "memory": MEMORY_KEY, "gpus": GPUS_KEY}
    remote: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", multiprocessing.cpu_count() or 2))
        self.start_method = str(self.config.get("start_method", "spawn"))
        self._lock = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._lanes: list[_Lane] = []
        self._idle = 0
        self._closed = False

    def submit(self, spec: JobSpec, done: Done) -> None:
        try:
            payload = _wire.dump_job(spec)
        except SerializationError as error:
            done(Outcome(spec.job_id, False, error=error))
            return
        with self._lock:
            self._closed = False
            self._queue.append(_Job(spec, done, payload))
            if self._idle:
                self._lock.notify()
            elif len(self._lanes) < self.max_workers:
                lane = _Lane()
                self._lanes.append(lane)
                threading.Thread(target=self._serve, args=(lane,), daemon=True,
                                 name=f"slothflow-{self.name}-lane{len(self._lanes)}").start()

    def _start_worker(self, lane: _Lane) -> None:
        ctx: Any = multiprocessing.get_context(self.start_method)
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child,), daemon=True,
                              name=f"slothflow-{self.name}-worker")
        with _starting, _main_without_missing_file():
            process.start()
        child.close()
        lane.process, lane.conn = process, parent

    def _serve(self, lane: _Lane) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._lock.wait()
                    self._idle -= 1
                if not self._queue:
                    self._lanes.remove(lane)
                    break
                job = lane.job = self._queue.popleft()
            report_safely(lambda outcome: self._deliver(lane, job, outcome), job.spec.job_id,  # noqa: B023
                          lambda: self._run(lane, job),  # noqa: B023
                          f"process executor {self.name!r} lost {job.spec.task_name}")
        lane.kill()

    def _run(self, lane: _Lane, job: _Job) -> Outcome:
        try:
            if lane.process is None or not lane.process.is_alive():
                lane.kill()
                self._start_worker(lane)
            assert lane.conn is not None
            lane.conn.send_bytes(job.payload)
            data = lane.conn.recv_bytes()
        except (EOFError, OSError, BrokenPipeError) as exc:
            code = lane.process.exitcode if lane.process is not None else None
            lane.kill()
            if job.cancelled:
                return Outcome(job.spec.job_id, False, error=ExecutorError("cancelled", job.spec.task_name))
            return Outcome(job.spec.job_id, False, error=ExecutorError(
                f"the worker process running {job.spec.task_name} died (exit code {code}): {exc or 'pipe closed'}",
                job.spec.task_name, self.name))
        return _wire.load_outcome(data, job.spec)

    def _deliver(self, lane: _Lane, job: _Job, outcome: Outcome) -> None:
        with self._lock:
            lane.job = None
            cancelled = job.cancelled
        if not cancelled:
            job.done(outcome)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for job in self._queue:
                if job.spec.job_id == job_id:
                    self._queue.remove(job)
                    return True
            for lane in self._lanes:
                if lane.job is not None and lane.job.spec.job_id == job_id:
                    lane.job.cancelled = True
                    if lane.process is not None and lane.process.is_alive():
                        lane.process.kill()  # the lane sees the pipe close and starts a fresh worker
                    return True
        return False

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel:
                self._queue.clear()
                for lane in self._lanes:
                    if lane.job is not None:
                        lane.job.cancelled = True
                        if lane.process is not None and lane.process.is_alive():
                            lane.process.kill()
            self._lock.notify_all()
