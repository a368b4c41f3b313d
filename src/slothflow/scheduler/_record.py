"""What the store keeps of a run: the execution, each job, each call node with its subtree, and events
for listeners (the CLI's live display).

A call node's **subtree** is the set of task hashes below it (plus marks that make a shallow reuse above
fall back to the full rule: context read, an unrecorded child, files taken); its **call hash** summarizes
the whole subtree, so an unchanged rerun writes no new call node.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from slothflow._errors import HashingError, SerializationError
from slothflow._walk import contains
from slothflow.hashing._encode import hash_struct, hash_value
from slothflow.model._value import Value
from slothflow.scheduler._job import Cell, Job
from slothflow.store.records import ArgumentRecord, CallRecord, ExecutionRecord, JobRecord, Status

if TYPE_CHECKING:
    from slothflow.scheduler._run import Run

CONTEXT_MARK = "context"  # in a call's subtree task hashes: the subtree read the execution's context
UNRECORDED_MARK = "unrecorded"  # in a call's subtree task hashes: a call below it was not recorded
EXTERNAL_MARK = "external"  # in a call's subtree task hashes: a call below it took files (or other Values)
_ATOMIC = (type(None), bool, int, float, complex, str, bytes)


class Recorder:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.listeners = run.scheduler._listeners
        # Kept aside, not on the exception: inside the workflow a recover task receives the task's exception
        # as it was raised (so it hashes the same in every run). The caller of run() gets the note and the
        # worker's traceback attached (see Run.raise_).
        self.error_origins: dict[int, tuple[BaseException, str, str]] = {}
        self._subtrees: dict[frozenset[str], frozenset[str]] = {}

    # -------------------------------------------------------------------------------- execution
    def start_execution(self, argv: list[str], tags: list[tuple[str, Any]]) -> None:
        run = self.run
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
        run.store.start_execution(ExecutionRecord(
            id=run.execution_id, args=list(argv), user=user, host=socket.gethostname(), pid=os.getpid(),
            cwd=os.getcwd(), started_at=time.time(),
        ))
        if tags:
            run.store.add_tags("execution", run.execution_id, tags)

    def end_execution(self, status: str) -> None:
        run = self.run
        root_id = run.root_job.id if run.root_job else None
        run.store.end_execution(run.execution_id, status, root_id)
        run.store.flush()

    # ------------------------------------------------------------------------------------- jobs
    def emit(self, event: str, job: Job) -> None:
        for listener in self.listeners:
            listener(event, job, self.run.stats)

    def joined(self, job: Job, c: Cell, cell: Cell) -> None:
        """The same call as one already reduced (or running) in this run: share its outcome."""
        run = self.run
        job.ended = time.time()
        if c.state == 2:  # ERROR
            job.status = Status.FAILED
            job.error = c.value
            self.record_job(job)
            run.loop.fail(cell, c.value)
            return
        self.record_job(job)
        run.stats.cached += 1  # reused, and counted so (as `slothflow log` does)
        self.emit("cached", job)
        run.loop.resolve(cell, c.value)

    def finish(self, job: Job, value: Any, value_hash: str | None,
               subtree_override: frozenset[str] | None = None) -> None:
        run = self.run
        call = job.call
        assert call is not None
        job.ended = time.time()
        if job.prov and not run.dryrun:
            try:
                if value_hash is None:
                    value_hash = hash_value(value)
                    run.store.add_value(value_hash, value)
            except (HashingError, SerializationError) as exc:
                self.failed(job, exc, "", call.cell)
                return
            if subtree_override is not None:
                call.subtree = subtree_override
                call.call_hash = job.recorded_call
            else:
                self._record_call(job, value_hash)
            call.value_hash = value_hash
            self.record_job(job)
        run.evaluator.release(job)
        if job.status == Status.CACHED:
            run.stats.cached += 1
            self.emit("cached", job)
        else:
            run.stats.ran += 1
            self.emit("done", job)
        run.loop.resolve(call.cell, value)

    def _record_call(self, job: Job, value_hash: str) -> None:
        run = self.run
        call = job.call
        assert call is not None
        task_hash = job.task.hash
        subtree = {task_hash}
        mark = run.reuse.env_mark(job.task)
        if mark is not None:
            subtree.add(mark)
        if job.uses_context:
            # Never a current task hash: a shallow lookup of any call above falls back to the full rule,
            # which re-reads the context instead of trusting a final value.
            subtree.add(CONTEXT_MARK)
        children: list[str] = []
        seen_children: set[str] = set()
        for child in job.children or ():
            cc = child.call
            if _holds_value(child.arguments):
                # A file a call below read may have changed since: only its own lookup (which re-fingerprints
                # its arguments) can tell, so a shallow lookup above falls back.
                subtree.add(EXTERNAL_MARK)
            if cc is not None and cc.call_hash is not None:
                subtree |= cc.subtree
                if cc.call_hash not in seen_children:
                    seen_children.add(cc.call_hash)
                    children.append(cc.call_hash)
            else:
                # An unrecorded child (prov=False): nothing vouches for its code later, so a shallow lookup
                # above must fall back to the full rule.
                subtree.add(UNRECORDED_MARK)
        # Calls of one task mostly share a subtree: one frozenset for all of them, not one per call.
        frozen = frozenset(subtree)
        call.subtree = self._subtrees.setdefault(frozen, frozen)
        call.call_hash = hash_struct("Call", task_hash, job.args_hash, value_hash, *sorted(children))
        if call.call_hash == job.recorded_call:
            return
        arguments = []
        for position, (name, h) in enumerate(job.arg_hashes):
            arguments.append(ArgumentRecord(name, position, h, job.producers.get(name) if job.producers else None))
            try:
                run.store.add_value(h, job.arguments[name])
            except SerializationError:
                pass
        run.store.record_call(CallRecord(call.call_hash, job.eval_hash, task_hash, job.args_hash, value_hash,
                                         call.subtree, tuple(arguments), tuple(children)))

    def retrying(self, job: Job, error: BaseException, wait: float) -> None:
        """A failed attempt that will be retried: recorded on the job, never cached."""
        job.reason = f"attempt {job.attempt} failed ({type(error).__name__}: {error}); retrying in {wait:g} s"
        job.status = Status.RETRYING
        self.emit("retrying", job)
        if job.prov and not self.run.dryrun:
            self.record_job(job)

    def failed(self, job: Job, error: BaseException, tb: str, cell: Cell, origin: bool = True) -> None:
        run = self.run
        job.status = Status.FAILED
        job.ended = time.time()
        job.error = error
        if origin and id(error) not in self.error_origins:
            self.error_origins[id(error)] = (error, job.describe(), tb)
        run.stats.failed += 1
        if job.parent is None:
            run.root_failed = True
        if job.prov and not run.dryrun:
            if origin:  # keep the failed call's inputs, so `slothflow log` can show what it was given
                for name, value_hash in job.arg_hashes:
                    try:
                        run.store.add_value(value_hash, job.arguments[name])
                    except SerializationError:
                        pass
            self.record_job(job, tb if origin else "")
        self.emit("failed", job)
        run.loop.fail(cell, error)

    def interrupted(self, jobs: list[Job]) -> None:
        """Jobs cut short by Ctrl-C: recorded as interrupted (never cached)."""
        for job in jobs:
            job.status = Status.INTERRUPTED
            job.ended = time.time()
            if job.prov and not self.run.dryrun:
                self.record_job(job)

    def record_job(self, job: Job, tb: str = "") -> None:
        run = self.run
        if not job.prov or run.dryrun:
            return
        call = job.call
        err = job.error
        origin = self.error_origins.get(id(err)) if err is not None else None
        run.store.record_job(JobRecord(
            id=job.id,
            execution_id=run.execution_id,
            parent_id=job.parent.id if job.parent else None,
            task_hash=job.task.hash,
            task_name=job.task.fullname,
            eval_hash=job.eval_hash,
            call_hash=call.call_hash if call is not None else None,
            status=job.status,
            executor=job.executor,
            started_at=job.started,
            ended_at=job.ended,
            error_type=f"{type(err).__module__}.{type(err).__qualname__}" if err is not None else None,
            error_message=str(err) if err is not None else None,
            error_traceback=(tb or (origin[2] if origin is not None else None) or None) if err is not None else None,
            arguments=dict(job.arg_hashes) if job.arg_hashes else None,
            environment=job.environment,
            reason=job.reason,
        ))


def _holds_value(arguments: dict[str, Any]) -> bool:
    """Whether any argument is or contains a ``Value`` (a File, Dir, ...): data that lives outside. Seen by the
    one walker, so a file inside a plain object or a dict key counts like one in a list."""
    return any(not isinstance(v, _ATOMIC) and contains(v, Value) for v in arguments.values())
