"""A task's options, resolved once per task object per run into :class:`CallOptions`, and checked.

Nothing a user writes is silently ignored: an option is either the scheduler's own (below), a resource the
scheduler counts against an executor's capacity, or declared by the executor the call runs on
(``Executor.options``). Anything else is an error naming the option, with the nearest valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slothflow._errors import TaskDefinitionError
from slothflow.hashing._environment import check_policy

if TYPE_CHECKING:
    from slothflow.executors import Executor
    from slothflow.model._task import Task

# Options the scheduler itself acts on.
SCHEDULER_OPTIONS = frozenset({
    "cache", "cache_scope", "check_valid", "config_args", "env_policy", "executor", "limits", "nout", "prov",
    "script", "tags", "retries", "retry_delay", "retry_backoff", "timeout",
})
# Resources the scheduler counts against an executor's capacity before it submits a job.
RESOURCE_OPTIONS = frozenset({"vcpus", "memory", "gpus"})
DEFAULT_RETRY_DELAY = 1.0  # seconds before the first retry
DEFAULT_RETRY_BACKOFF = 2.0  # each further retry waits this many times longer
MAX_RETRY_DELAY = 300.0


@dataclass(frozen=True)
class CallOptions:
    """What the scheduler needs to know about how a task's calls run and are reused."""

    cache_scope: str = "BACKEND"
    check_valid: str = "full"
    config_args: frozenset[str] = frozenset()
    executor: str = "default"
    limits: dict[str, int] = field(default_factory=dict)
    prov: bool = True
    env_policy: str = "ignore"
    retries: int = 0
    retry_delay: float = DEFAULT_RETRY_DELAY
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    timeout: float | None = None
    resources: dict[str, float] = field(default_factory=dict)  # vcpus, memory, gpus
    executor_options: dict[str, Any] = field(default_factory=dict)  # passed through to the executor

    def retry_wait(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        return min(MAX_RETRY_DELAY, self.retry_delay * self.retry_backoff ** (attempt - 1))


def _number(task: Task, name: str, value: Any, minimum: float, integer: bool = False) -> Any:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise TaskDefinitionError(
            f"task {task.fullname}: option {name}={value!r} must be {kind} >= {minimum}", task.fullname)
    if value < minimum:
        raise TaskDefinitionError(
            f"task {task.fullname}: option {name}={value!r} must be {kind} >= {minimum}", task.fullname)
    return value


def known_options(executors: dict[str, Executor]) -> set[str]:
    """Every task option some part of this scheduler acts on: its own, resources, and executors' declared ones."""
    every = set(SCHEDULER_OPTIONS) | RESOURCE_OPTIONS
    for executor in executors.values():
        every |= set(getattr(executor, "options", ()) or ())
    return every


def unknown_option_error(task: Task, name: str, valid: Iterable[str],
                         executor: str | None = None) -> TaskDefinitionError:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f" (executor {executor!r} does not declare it)" if executor else ""
    return TaskDefinitionError(f"task {task.fullname}: unknown option {name!r}{where}{hint}", task.fullname)


def resolve(task: Task, cache: bool, default_env_policy: str, executors: dict[str, Executor]) -> CallOptions:
    """Check and resolve ``task``'s options for a run (``cache=False`` turns backend caching off)."""
    o = task.get_task_options()
    scope = o.get("cache_scope")
    scope = str(getattr(scope, "name", scope)).upper() if scope is not None else None
    if scope is None:
        scope = "BACKEND" if o.get("cache", True) else "CSE"
    if not cache and scope == "BACKEND":
        scope = "CSE"
    check = str(getattr(o.get("check_valid", "full"), "value", o.get("check_valid", "full"))).lower()
    limits = o.get("limits") or {}
    if not isinstance(limits, dict):
        limits = {str(name): 1 for name in limits}
    executor_name = str(o.get("executor", "default"))
    executor = executors.get(executor_name)
    declared = frozenset(getattr(executor, "options", ()) or ()) if executor is not None else frozenset()
    extra = {k: v for k, v in o.items() if k not in SCHEDULER_OPTIONS and k not in RESOURCE_OPTIONS}
    if executor is not None:
        for name in extra:
            if name not in declared:
                every = known_options(executors)
                raise unknown_option_error(task, name, every, executor_name if name in every else None)
    resources: dict[str, float] = {}
    for name in RESOURCE_OPTIONS:
        if o.get(name) is not None:
            resources[name] = _number(task, name, o[name], 0)
    retries = _number(task, "retries", o.get("retries") or 0, 0, integer=True)
    timeout = o.get("timeout")
    return CallOptions(
        cache_scope=scope,
        check_valid=check,
        config_args=frozenset(o.get("config_args") or ()),
        executor=executor_name,
        limits={str(k): int(v) for k, v in limits.items()},
        prov=bool(o.get("prov", True)),
        env_policy=check_policy(o.get("env_policy") or default_env_policy, f"task {task.fullname}"),
        retries=retries,
        retry_delay=float(_number(task, "retry_delay", o.get("retry_delay", DEFAULT_RETRY_DELAY), 0)),
        retry_backoff=float(_number(task, "retry_backoff", o.get("retry_backoff", DEFAULT_RETRY_BACKOFF), 1)),
        timeout=None if timeout is None else float(_number(task, "timeout", timeout, 0)),
        resources=resources,
        executor_options=extra,
    )
