"""Executors: where job bodies run. ``Executor`` is the interface; the built-ins are listed in ``EXECUTORS``.

Write your own by subclassing :class:`Executor` and registering it with :func:`register_executor`.
"""

from __future__ import annotations

from typing import Any

from slothflow._errors import ConfigError
from slothflow.executors.base import Executor, JobSpec, Outcome, run_job
from slothflow.executors.inline import InlineExecutor
from slothflow.executors.processes import ProcessExecutor
from slothflow.executors.threads import ThreadExecutor

EXECUTORS: dict[str, type[Executor]] = {
    "inline": InlineExecutor,
    "threads": ThreadExecutor,
    "processes": ProcessExecutor,
    # redun's names for the same things
    "local": ThreadExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
}


def register_executor(type_name: str, cls: type[Executor]) -> None:
    """Make ``type = "<type_name>"`` in an ``[executors.NAME]`` config section build ``cls``."""
    EXECUTORS[type_name] = cls


def make_executor(name: str, config: dict[str, Any]) -> Executor:
    type_name = str(config.get("type", name))
    if type_name == "local":
        type_name = "processes" if config.get("mode") == "process" else "threads"
    cls = EXECUTORS.get(type_name)
    if cls is None:
        raise ConfigError(
            f"executor {name!r} has unknown type {type_name!r}; known types: {', '.join(sorted(EXECUTORS))}"
        )
    return cls(name, config)


__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "JobSpec",
    "Outcome",
    "ProcessExecutor",
    "ThreadExecutor",
    "make_executor",
    "register_executor",
    "run_job",
]
