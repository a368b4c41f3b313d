"""The threads executor (the default): a pool of threads in the scheduler's process."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slothflow.executors.base import Done, Executor, JobSpec, Outcome, report_safely, run_job


class ThreadExecutor(Executor):
    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", 8))
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=f"slothflow-{self.name}")

    def submit(self, spec: JobSpec, done: Done) -> None:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        future = self._pool.submit(run_job, spec)

        def _report(fut: Future[Outcome]) -> None:
            report_safely(done, spec.job_id, fut.result, f"thread executor {self.name!r} lost {spec.task_name}")

        future.add_done_callback(_report)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
