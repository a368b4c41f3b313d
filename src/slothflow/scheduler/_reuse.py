"""Call keys and reuse: what identifies a call, and when a recorded result may stand in for running it.

The **eval hash** = H(task hash, args hash [, environment key]). The execution's context is not part of it:
a task reads the context through ``get_context()`` arguments, whose values are. Within a run the same eval
hash is reduced once (common-subexpression elimination, in memory); across runs the store is asked, in one
batch per loop round: with ``check_valid="full"`` the recorded *reduction* (what the body returned) is
replayed and evaluated, so each child is looked up on its own; with ``"shallow"`` the final value is reused
when every task of the recorded subtree is unchanged. A reused value must still be valid (files unchanged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slothflow._errors import FileAccessError, HashingError, SlothflowError
from slothflow.hashing._code import forget_code_hashes
from slothflow.hashing._encode import hash_struct, hash_value
from slothflow.hashing._environment import task_environment, task_environment_json
from slothflow.model._expression import TaskExpression, iter_expressions
from slothflow.model._task import Task, _UndefinedTask, get_task_registry
from slothflow.model._value import first_invalid, preview
from slothflow.scheduler._job import PENDING, Call, Cell, Job
from slothflow.store.records import Status

if TYPE_CHECKING:
    from slothflow.scheduler._run import Run

log = logging.getLogger("slothflow")
_ATOMIC = (type(None), bool, int, float, complex, str, bytes)
CORRUPT_REASON = "stored value corrupt"  # how job.reason starts for a call whose recorded value was damaged


class Reuse:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.calls: dict[str, Call] = {}
        self.lookups: list[Job] = []
        self._current_tasks: set[str] | None = None
        self._env_keys: dict[tuple[str, str], str | None] = {}
        self._reported: set[str] = set()  # damaged values already reported in this run
        self._marks: dict[int, tuple[Task, str | None]] = {}  # per task object: env_mark() (once per run)

    def has_lookups(self) -> bool:
        return bool(self.lookups)

    def pending_jobs(self) -> list[Job]:
        return [c.job for c in self.calls.values() if c.cell.state == PENDING]

    # ------------------------------------------------------------------------------------- keys
    def start(self, job: Job, cell: Cell) -> None:
        """Key a new job, then join an identical call of this run, look it up, or hand it to dispatch."""
        run = self.run
        task = job.task
        name = ""
        try:
            for name, value in job.arguments.items():
                job.arg_hashes.append((name, hash_value(value)))
        except FileAccessError as exc:
            # A missing input file, an unreadable path, refused credentials: same type, with the context.
            run.recorder.failed(job, type(exc)(f"argument {name!r} of task {task.fullname}: {exc}", path=exc.path,
                                               task_name=task.fullname, argument=name), "", cell)
            return
        except HashingError as exc:
            run.recorder.failed(job, HashingError(
                f"argument {name!r} of task {task.fullname} cannot be hashed: {exc}",
                task_name=task.fullname, argument=name, value_type=exc.value_type,
            ), "", cell)
            return
        config_args = job.opts.config_args
        job.args_hash = hash_struct("Args", *[f"{n}={h}" for n, h in job.arg_hashes if n not in config_args])
        if job.prov:
            job.environment = task_environment_json(task)
        env_key = self.env_key(task, job.opts.env_policy) if job.opts.env_policy != "ignore" else None
        task_hash = task.hash
        if env_key is None:
            job.eval_hash = hash_struct("Eval", task_hash, job.args_hash)
        else:  # the policy makes the versions of Python and the packages the code imports part of the key
            job.eval_hash = hash_struct("Eval", task_hash, job.args_hash, "env", env_key)

        if job.cache_scope != "NONE":
            call = self.calls.get(job.eval_hash)
            if call is not None:
                job.call = call
                cell.call = call
                job.status = Status.CACHED
                run.loop.then(call.cell, lambda c: run.recorder.joined(job, c, cell))
                return
        call = Call(job.eval_hash, cell, job)
        job.call = call
        cell.call = call
        if job.cache_scope != "NONE":
            self.calls[job.eval_hash] = call
        if job.prov and not run.dryrun:
            run.store.add_task(task)
        if job.cache_scope == "BACKEND" and job.prov:
            self.lookups.append(job)  # answered in one batch at the end of this round
            return
        if job.prov:
            job.reason = "caching is off for this run (cache=False)" if not run.cache else \
                "caching is off for this task (cache=False or cache_scope)"
        run.dispatch.miss(job)

    def current_task_hashes(self) -> set[str]:
        if self._current_tasks is None:
            current = set()
            for t in get_task_registry():
                current.add(t.hash)
                mark = self.env_mark(t)
                if mark is not None:
                    current.add(mark)
            self._current_tasks = current
        return self._current_tasks

    def env_mark(self, task: Task) -> str | None:
        """For a task whose env policy is not "ignore": a subtree entry that is current only while the
        policy-relevant versions are, so a shallow reuse above it also respects the policy."""
        entry = self._marks.get(id(task))
        if entry is not None and entry[0] is task:
            return entry[1]
        mark = self._env_mark(task)
        self._marks[id(task)] = (task, mark)
        return mark

    def _env_mark(self, task: Task) -> str | None:
        try:
            policy = self.run.options(task).env_policy
        except SlothflowError:
            return None
        if policy == "ignore":
            return None
        key = self.env_key(task, policy)
        return None if key is None else "env:" + hash_struct(task.hash, key)

    def env_key(self, task: Task, policy: str) -> str | None:
        cached = self._env_keys.get((task.hash, policy), "")
        if cached == "":
            cached = self._env_keys[(task.hash, policy)] = task_environment(task).key(policy)
        return cached

    # ----------------------------------------------------------------------------------- lookup
    def lookup_batch(self) -> None:
        """Answer this round's cache lookups with one query per kind, then reuse or queue each job."""
        run = self.run
        batch, self.lookups = self.lookups, []
        store = run.store
        full: list[Job] = []
        shallow = [j for j in batch if j.check_valid == "shallow"]
        if shallow:
            finals = store.get_finals([j.eval_hash for j in shallow])
            current = self.current_task_hashes()
            for job in shallow:
                if not self._reuse_final(job, finals.get(job.eval_hash, []), current):
                    full.append(job)
        full.extend(j for j in batch if j.check_valid != "shallow")
        corrupt: dict[str, str] = {}
        reductions = store.get_reductions([j.eval_hash for j in full], corrupt) if full else {}
        for job in full:
            hit = reductions.get(job.eval_hash)
            if hit is None:
                if job.eval_hash in corrupt:
                    self._corrupt(job, corrupt[job.eval_hash])
                run.dispatch.miss(job)
                continue
            value_hash, reduction, job.recorded_call = hit
            if type(reduction) in _ATOMIC:  # nothing inside to validate or to call (most results)
                self._mark_reused(job)
                run.evaluator.reduced(job, reduction, computed=False, value_hash=value_hash)
                continue
            invalid = first_invalid(reduction)
            if invalid is not None:
                job.reason = f"cached result no longer valid: {describe_invalid(invalid)}"
                log.info("cached result of %s is no longer valid (%s); rerunning", job.describe(), job.reason)
                run.dispatch.miss(job)
                continue
            if names_undefined_task(reduction):
                # The recorded sub-DAG calls a task not loaded here (its module is imported by the body,
                # say): running the body again is correct, failing the replay would not be.
                log.info("cached result of %s calls a task not defined here; rerunning", job.describe())
                job.reason = "the cached result calls a task not defined in this process"
                run.dispatch.miss(job)
                continue
            self._mark_reused(job)
            run.evaluator.reduced(job, reduction, computed=False, value_hash=value_hash)

    def _reuse_final(self, job: Job, finals: list[tuple[str, str, frozenset[str]]], current: set[str]) -> bool:
        """check_valid="shallow": reuse the newest final value whose whole subtree's code is unchanged."""
        for call_hash, value_hash, subtree in finals:
            if not subtree <= current | {job.task.hash}:
                continue
            found, value = self.run.store.load_value(value_hash)
            if not found:
                if self.run.store.corruption(value_hash) is not None:
                    self._corrupt(job, value_hash)
                return False
            invalid = first_invalid(value)
            if invalid is not None:
                job.reason = f"cached result no longer valid: {describe_invalid(invalid)}"
                return False
            job.recorded_call = call_hash
            self._mark_reused(job)
            self.run.recorder.finish(job, value, value_hash, subtree_override=subtree)
            return True
        return False

    def _corrupt(self, job: Job, value_hash: str) -> None:
        """A recorded value whose bytes changed since they were written: never used; the call reruns, and its
        new result is written over the damaged one."""
        what = self.run.store.corruption(value_hash) or f"stored value {value_hash[:12]} is corrupt"
        job.reason = f"{CORRUPT_REASON}: {what}"
        if value_hash in self._reported:  # the shallow and the full lookup may both meet it
            return
        self._reported.add(value_hash)
        log.warning("slothflow: the cached result of %s (value %s) is not used: %s; rerunning the call (its new "
                    "result repairs the store)", job.describe(), value_hash, what)

    def _mark_reused(self, job: Job) -> None:
        job.status = Status.CACHED
        if self.run.dryrun:
            self.run.plan.add_reused(job)


def describe_invalid(value: Any) -> str:
    path = getattr(value, "path", None)
    exists = getattr(value, "exists", None)
    if isinstance(path, str) and callable(exists):
        kind = "directory" if type(value).__name__.endswith("Dir") else "file"
        try:
            missing = not exists()
        except Exception:
            missing = True
        return f"{kind} {path} {'missing' if missing else 'changed'}"
    return f"{preview(value)} is no longer valid"


def names_undefined_task(value: Any) -> bool:
    """True when an expression in ``value`` (at any depth) calls a task not defined in this process."""
    if isinstance(value, _ATOMIC):
        return False
    stack = list(iter_expressions(value))
    seen: set[int] = set()
    while stack:
        expr = stack.pop()
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        if isinstance(expr, TaskExpression) and isinstance(expr.task, _UndefinedTask):
            return True
        stack.extend(iter_expressions(expr._children()))
    return False


def hash_registered_tasks() -> None:
    """Hash every defined task, afresh, before any body runs. A task's hash covers the user code and module
    values it uses: recomputing it per run sees helpers or constants redefined in the same process (a
    notebook), and computing it before bodies run keeps their side effects out of it."""
    forget_code_hashes()  # a notebook may have redefined a helper or a constant since the last run
    for task in get_task_registry():
        try:
            task.hash  # noqa: B018 - computed and cached for this run
        except Exception:  # a task that cannot be hashed fails when (and if) it is called
            continue
