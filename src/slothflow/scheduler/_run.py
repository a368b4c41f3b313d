"""One execution: the objects that evaluate, reuse, dispatch and record, wired together around one loop."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from slothflow.files._fs import bind_digest_store
from slothflow.scheduler import _options
from slothflow.scheduler._dispatch import Dispatch
from slothflow.scheduler._evaluate import Evaluator
from slothflow.scheduler._gc import fewer_collections
from slothflow.scheduler._job import ERROR, OK, Job
from slothflow.scheduler._loop import Loop, run_until_settled
from slothflow.scheduler._plan import Plan
from slothflow.scheduler._record import Recorder
from slothflow.scheduler._reuse import Reuse, hash_registered_tasks

if TYPE_CHECKING:
    from slothflow.model._task import Task
    from slothflow.scheduler._scheduler import RunStats, Scheduler
    from slothflow.store import Store


class Run:
    """The state of one execution (``Scheduler.run``)."""

    def __init__(self, scheduler: Scheduler, store: Store, cache: bool, dryrun: bool,
                 context: dict[str, Any], stats: RunStats) -> None:
        self.scheduler = scheduler
        self.store = store
        self.cache = cache
        self.dryrun = dryrun
        self.context = context
        self.stats = stats
        self.plan = Plan(complete=False)
        self.execution_id = ""
        self.root_job: Job | None = None
        self.root_failed = False
        self._task_opts: dict[int, tuple[Task, _options.CallOptions]] = {}
        self.loop = Loop()
        self.recorder = Recorder(self)
        self.reuse = Reuse(self)
        self.dispatch = Dispatch(self)
        self.evaluator = Evaluator(self)

    def options(self, task: Task) -> _options.CallOptions:
        """The task's resolved options (once per task object and run)."""
        entry = self._task_opts.get(id(task))
        if entry is not None and entry[0] is task:
            return entry[1]
        opts = _options.resolve(task, self.cache, self.scheduler.env_policy, self.scheduler.executors)
        self._task_opts[id(task)] = (task, opts)
        return opts

    def start_execution(self, argv: list[str], tags: list[tuple[str, Any]], execution_id: str | None) -> None:
        self.execution_id = execution_id or os.urandom(16).hex()
        if not self.dryrun:
            self.recorder.start_execution(argv, tags)

    def run(self, expr: Any) -> Any:
        with fewer_collections():
            return self._run(expr)

    def _run(self, expr: Any) -> Any:
        for executor in self.scheduler.executors.values():
            if executor.name == "default":
                executor.start()
        # Local file digests are remembered in the store, so an unchanged file is never read twice.
        bind_digest_store(self.store)
        hash_registered_tasks()
        root = self.evaluator.evaluate(expr, None)
        status = "failed"
        try:
            run_until_settled(self, root)
            status = "done" if root.state == OK else "failed"
        except KeyboardInterrupt:
            status = "interrupted"
            self.recorder.interrupted(self.dispatch.cancel_all())
            raise
        finally:
            bind_digest_store(None)
            if not self.dryrun:
                self.recorder.end_execution(status)
        if self.dryrun:
            self.plan.complete = root.state == OK
            self.plan.result = root.value if root.state == OK else None
            return self.plan
        if root.state == ERROR:
            self.raise_(root.value)
        return root.value

    def raise_(self, error: BaseException) -> None:
        """Raise a task's own exception to the caller, with where it happened attached."""
        origin = self.recorder.error_origins.get(id(error))
        if origin is not None and origin[0] is error:
            _, where, tb = origin
            note = f"in slothflow task {where}"
            try:
                if note not in getattr(error, "__notes__", ()):
                    error.add_note(note)
                if tb:
                    vars(error)["slothflow_traceback"] = tb
            except Exception:  # an exception type that refuses attributes: raise it as it is
                pass
        raise error
