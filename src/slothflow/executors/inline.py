"""The inline executor: runs each job in the scheduler's own thread, for debugging with pdb."""

from __future__ import annotations

from slothflow.executors.base import Done, Executor, JobSpec, run_job


class InlineExecutor(Executor):
    max_workers = 1

    def submit(self, spec: JobSpec, done: Done) -> None:
        done(run_job(spec))
