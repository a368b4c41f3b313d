"""The inline executor: runs each job in the scheduler's own thread, for debugging with pdb."""

from __future__ import annotations

from typing import Any, ClassVar

from slothflow.executors.base import GPUS_KEY, MEMORY_KEY, Done, Executor, JobSpec, local_resources, run_job


class InlineExecutor(Executor):
    """Runs jobs locally; ``memory`` (GB) and ``gpus`` requests share what the config declares
    (``memory`` defaults to the machine's, ``gpus`` to none)."""

    def resources(self) -> dict[str, float]:
        return local_resources(self.config)

    max_workers = 1
    config_schema: ClassVar[dict[str, Any] | None] = {"memory": MEMORY_KEY, "gpus": GPUS_KEY}

    def submit(self, spec: JobSpec, done: Done) -> None:
        done(run_job(spec))
