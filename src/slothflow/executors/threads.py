"""The threads executor (the default): worker threads in the scheduler's process.

The workers are daemon threads of our own rather than a ``ThreadPoolExecutor``, whose threads the
interpreter joins at exit: a task stuck in a long sleep would then keep a Ctrl-C'd or timed-out run
from ending. A thread cannot be stopped from outside, so a cancelled running job is *abandoned*: its
slot gets a fresh thread at once, and its late outcome is dropped.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, ClassVar

from slothflow._config import ConfigKey
from slothflow.executors.base import (
    GPUS_KEY,
    MEMORY_KEY,
    Done,
    Executor,
    JobSpec,
    local_resources,
    report_safely,
    run_job,
)


class _Entry:
    __slots__ = ("spec", "done", "cancelled")

    def __init__(self, spec: JobSpec, done: Done) -> None:
        self.spec, self.done, self.cancelled = spec, done, False


class ThreadExecutor(Executor):
    """Runs jobs locally; ``memory`` (GB) and ``gpus`` requests share what the config declares
    (``memory`` defaults to the machine's, ``gpus`` to none)."""

    def resources(self) -> dict[str, float]:
        return local_resources(self.config)

    config_schema: ClassVar[dict[str, Any] | None] = {
        "max_workers": ConfigKey(int, "how many jobs run at once", 8, 1), "memory": MEMORY_KEY, "gpus": GPUS_KEY}

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", 8))
        self._lock = threading.Condition()
        self._queue: collections.deque[_Entry] = collections.deque()
        self._running: dict[str, _Entry] = {}
        self._idle = 0
        self._threads = 0  # live, not abandoned
        self._closed = False
        self._seq = 0

    def submit(self, spec: JobSpec, done: Done) -> None:
        with self._lock:
            self._closed = False
            self._queue.append(_Entry(spec, done))
            if self._idle:
                self._lock.notify()
            elif self._threads < self.max_workers:
                self._spawn()

    def _spawn(self) -> None:
        self._threads += 1
        self._seq += 1
        threading.Thread(target=self._work, name=f"slothflow-{self.name}-{self._seq}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._lock.wait()
                    self._idle -= 1
                if self._closed and not self._queue:
                    self._threads -= 1
                    return
                entry = self._queue.popleft()
                self._running[entry.spec.job_id] = entry
            report_safely(lambda outcome: self._deliver(entry, outcome), entry.spec.job_id,  # noqa: B023
                          lambda: run_job(entry.spec),  # noqa: B023
                          f"thread executor {self.name!r} lost {entry.spec.task_name}")
            if entry.cancelled:  # abandoned: a replacement already took this thread's slot
                return

    def _deliver(self, entry: _Entry, outcome: Any) -> None:
        with self._lock:
            self._running.pop(entry.spec.job_id, None)
            done = _drop if entry.cancelled else entry.done
        done(outcome)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for entry in self._queue:
                if entry.spec.job_id == job_id:
                    self._queue.remove(entry)
                    return True
            entry_ = self._running.get(job_id)
            if entry_ is not None and not entry_.cancelled:
                entry_.cancelled = True
                self._threads -= 1
                if self._queue and not self._closed:
                    self._spawn()
        return False

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            if cancel:
                self._queue.clear()
                for job_id in list(self._running):
                    entry = self._running[job_id]
                    if not entry.cancelled:
                        entry.cancelled = True
                        self._threads -= 1
            self._closed = True
            self._lock.notify_all()


def _drop(_: Any) -> None:
    """Where an abandoned job's outcome goes."""
