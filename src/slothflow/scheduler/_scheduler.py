"""The public scheduler: configuration, the store, the executors, and ``run``.

A run goes through :mod:`~slothflow.scheduler._run` (one execution's wiring) and its parts:
:mod:`._loop` (the event loop), :mod:`._evaluate` (expressions -> calls), :mod:`._reuse` (call keys, cache
lookups, validity), :mod:`._dispatch` (executors, limits, retries, timeouts, cancel), :mod:`._record` (what
the store keeps) and :mod:`._plan` (dry runs).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slothflow._config import DB_FILENAME, Config, load_project_config, validate_config
from slothflow.hashing._environment import DEFAULT_POLICY, check_policy

if TYPE_CHECKING:
    from slothflow.executors import Executor
    from slothflow.scheduler._job import Job
    from slothflow.store import Store

log = logging.getLogger("slothflow")


@dataclass
class RunStats:
    ran: int = 0
    cached: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0


Listener = Callable[[str, "Job", RunStats], None]


class Scheduler:
    """Evaluates workflows. ``Scheduler()`` uses the project's database (``.slothflow/slothflow.db``).

    ``config`` is a :class:`Config` or a dict of sections, e.g.
    ``{"backend": {"db_uri": "sqlite:///cache.db"}, "executors.default": {"type": "processes"}}``.
    """

    def __init__(self, config: Config | dict[str, Any] | None = None, backend: Store | None = None,
                 executor: Executor | None = None) -> None:
        # The executors package loads the serialization stack: imported when a scheduler is made, not with
        # `import slothflow`.
        from slothflow.executors import EXECUTORS

        if config is None:
            config = load_project_config()
        config = validate_config(config, EXECUTORS)  # every key checked before anything is built
        self.config = config
        self._store = backend
        self.executors: dict[str, Executor] = {}
        self._build_executors(executor)
        self.limits: dict[str, int] = config.section("limits")
        sched = config.section("scheduler")
        self.fail_fast = bool(sched.get("fail_fast", False))
        self.env_policy = check_policy(sched.get("env_policy", DEFAULT_POLICY), "config scheduler.env_policy")
        self.default_context: dict[str, Any] = {**config.section("context"), **sched.get("context", {})}
        self.default_tags: dict[str, Any] = config.section("tags")
        self._listeners: list[Listener] = []
        self.last_execution_id: str | None = None

    # ------------------------------------------------------------------------------------ set-up
    def _build_executors(self, executor: Executor | None) -> None:
        from slothflow.executors import make_executor

        defaults = {
            "default": {"type": "threads"},
            "threads": {"type": "threads"},
            "inline": {"type": "inline"},
            "processes": {"type": "processes"},
            "process": {"type": "processes"},
        }
        for section in self.config.sections():
            if section.startswith("executors."):
                defaults[section.split(".", 1)[1]] = self.config.section(section)
        for name, conf in defaults.items():
            self.executors[name] = make_executor(name, conf)
        if executor is not None:
            self.executors["default"] = executor

    @property
    def db_uri(self) -> str:
        return database_uri(self.config)

    def load(self, migrate: bool | None = None) -> Store:
        """Open (and, for a new database, create) the store."""
        if self._store is None:
            backend = self.config.section("backend")
            timeout = backend.get("busy_timeout")
            from slothflow.store import Store
            from slothflow.store._options import store_options

            configured = backend.get("automigrate")  # redun's key: true migrates PostgreSQL too, false never
            automigrate = False if migrate is False or configured is False else None if configured else True
            self._store = Store(self.db_uri, automigrate=automigrate,
                                busy_timeout=None if timeout is None else float(timeout), **store_options(backend))
            log.info("slothflow database: %s", self.db_uri)
        return self._store

    @property
    def store(self) -> Store:
        return self.load()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, job, stats)`` on job events, in the scheduler's thread.

        Events: ``started`` (submitted to its executor), ``waiting`` (its body returned expressions, now being
        evaluated), ``done``, ``cached``, ``failed``.
        """
        self._listeners.append(listener)

    def explain(self, ident: str) -> list[Any]:
        """Why a job (id or prefix), or every job of an execution that ran, was not reused from the cache.

        Returns :class:`~slothflow.Explanation` objects; ``str()`` of one reads like ``slothflow explain``.
        """
        from slothflow.provenance.explain import explain_store

        return explain_store(self.load(), ident)

    def lineage(self, path: str) -> dict[str, Any]:
        """Where a file (local path or URL) came from: the call that produced it, with its code and inputs,
        recursively up to the raw inputs, as plain data (what ``slothflow log --file`` shows)."""
        from slothflow.provenance.lineage import store_lineage

        return store_lineage(self.load(), path)

    def close(self) -> None:
        for executor in self.executors.values():
            executor.stop()
        if self._store is not None:
            self._store.close()
            self._store = None

    # --------------------------------------------------------------------------------------- run
    def run(
        self,
        expr: Any,
        dryrun: bool = False,
        cache: bool = True,
        tags: Iterable[tuple[str, Any]] | dict[str, Any] = (),
        context: dict[str, Any] | None = None,
        exec_argv: list[str] | None = None,
        execution_id: str | None = None,
    ) -> Any:
        """Evaluate ``expr`` and return its value; a task's error is raised as itself.

        With ``dryrun=True`` nothing runs: a :class:`Plan` of reused and would-run calls is returned.
        """
        store = self.load()
        ctx = _merge_context(self.default_context, context or {})
        from slothflow.scheduler._run import Run

        run = Run(self, store, cache=cache, dryrun=dryrun, context=ctx, stats=RunStats())
        given = list(tags.items()) if isinstance(tags, dict) else list(tags)
        keys = {key for key, _ in given}  # a tag given to this run replaces the configured one
        tag_pairs = [(k, v) for k, v in self.default_tags.items() if k not in keys] + given
        run.start_execution(exec_argv or sys.argv, tag_pairs, execution_id)
        self.last_execution_id = run.execution_id
        return run.run(expr)



def database_uri(config: Config) -> str:
    """The database a configuration names: ``[backend] db_uri`` (a relative SQLite path is relative to the
    project folder), by default ``slothflow.db`` in the project folder."""
    uri = config.section("backend").get("db_uri")
    base = config.config_dir
    if uri is None:
        folder = base if base is not None else load_project_config().config_dir
        assert folder is not None
        return f"sqlite:///{Path(folder) / DB_FILENAME}"
    uri = str(uri)
    from slothflow.store import sqlite_path  # the database stack loads when first needed

    path = sqlite_path(uri)
    if path is not None and not os.path.isabs(path) and base is not None:
        return f"sqlite:///{base / path}"
    return uri


def _merge_context(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, merging nested mappings key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_context(out[key], value)
        else:
            out[key] = value
    return out


def run(expr: Any, config_dir: str | None = None, **run_args: Any) -> Any:
    """Run an expression with the project's scheduler, as ``slothflow run`` does."""
    config = load_project_config(Path(config_dir) if config_dir else None)
    scheduler = Scheduler(config=config)
    try:
        return scheduler.run(expr, **run_args)
    finally:
        scheduler.close()
