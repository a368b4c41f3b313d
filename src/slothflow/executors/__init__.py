"""Executors: where job bodies run. ``Executor`` is the interface; the built-ins are listed in ``EXECUTORS``.

Write your own by subclassing :class:`Executor`, registering it with :func:`register_executor`, and running
the conformance suite of :mod:`slothflow.testing` against it.
"""

from __future__ import annotations

from typing import Any

from slothflow._errors import ConfigError
from slothflow.executors.base import Done, Executor, JobSpec, Outcome, run_job
from slothflow.executors.dask import DaskExecutor
from slothflow.executors.inline import InlineExecutor
from slothflow.executors.processes import ProcessExecutor
from slothflow.executors.slurm import SlurmExecutor
from slothflow.executors.threads import ThreadExecutor

EXECUTORS: dict[str, type[Executor]] = {
    "inline": InlineExecutor,
    "threads": ThreadExecutor,
    "processes": ProcessExecutor,
    "dask": DaskExecutor,
    "slurm": SlurmExecutor,
    # redun's names for the same things
    "local": ThreadExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
}


def register_executor(type_name: str, cls: type[Executor]) -> None:
    """Make ``type = "<type_name>"`` in an ``[executors.NAME]`` config section build ``cls``."""
    EXECUTORS[type_name] = cls


def executor_class(name: str, config: dict[str, Any]) -> type[Executor]:
    """The class an ``[executors.NAME]`` section builds (``type`` defaults to threads)."""
    type_name = str(config.get("type", "threads" if name == "default" else name))
    if type_name == "local":
        type_name = "processes" if config.get("mode") == "process" else "threads"
    cls = EXECUTORS.get(type_name)
    if cls is None:
        import difflib

        close = difflib.get_close_matches(type_name, sorted(EXECUTORS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"[executors.{name}] type = {type_name!r} is not a known executor type "
            f"(known: {', '.join(sorted(EXECUTORS))}){hint}"
        )
    return cls


def make_executor(name: str, config: dict[str, Any]) -> Executor:
    return executor_class(name, config)(name, config)


__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Done",
    "Executor",
    "InlineExecutor",
    "JobSpec",
    "Outcome",
    "ProcessExecutor",
    "SlurmExecutor",
    "ThreadExecutor",
    "executor_class",
    "make_executor",
    "register_executor",
    "run_job",
]
