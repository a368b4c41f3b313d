"""The records the store keeps, typed: statuses, executions, jobs and call nodes, and when a ``running``
execution is known to be dead.

Statuses are ``StrEnum`` members, so they are stored, compared and printed as their plain strings.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """The status of an execution (``running``, ``done``, ``failed``, ``interrupted``) or of a job (also
    ``ran``, ``cached``, ``retrying``)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RAN = "ran"
    CACHED = "cached"
    RETRYING = "retrying"


HEARTBEAT_INTERVAL = 5.0  # seconds: a running execution's heartbeat is written at most this often
# A running execution on another host whose last heartbeat is older than this is shown as interrupted
# (a scheduler flushes at least once per round and about every 100 ms while jobs finish; a round can wait on
# a long job, which is why this is generous).
HEARTBEAT_EXPIRY = 600.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _process_started(pid: int) -> float | None:
    """When a process of this machine started (epoch seconds), where the OS says (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _same_process_alive(pid: int, started_at: float | None) -> bool:
    """The process is alive and is the one that started the execution (not a later one given the same pid)."""
    if not pid_alive(pid):
        return False
    if started_at is None:
        return True
    began = _process_started(pid)
    return began is None or began <= started_at + 2.0


def effective_status(status: str, host: str | None, pid: int | None, heartbeat_at: float | None,
                     now: float | None = None, started_at: float | None = None) -> str:
    """The status to show for an execution: a ``running`` one whose scheduler died (its process is gone on this
    host, or its heartbeat expired elsewhere) is ``interrupted``."""
    if status != Status.RUNNING:
        return status
    if pid is not None and host == socket.gethostname():
        alive = _same_process_alive(pid, started_at)
        return Status.RUNNING.value if alive else Status.INTERRUPTED.value
    if heartbeat_at is not None and (now or time.time()) - heartbeat_at > HEARTBEAT_EXPIRY:
        return Status.INTERRUPTED.value
    return Status.RUNNING.value


# ----------------------------------------------------------------------------------------- records
# What the scheduler hands the store: typed records, never row dicts. ``row()`` is the store's business.


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution (a ``Scheduler.run``), as it starts."""

    id: str
    args: list[str]
    user: str
    host: str
    pid: int
    cwd: str
    started_at: float
    status: str = Status.RUNNING
    root_job: str | None = None
    ended_at: float | None = None

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "root_job": self.root_job, "args": json.dumps(list(self.args)), "user": self.user,
                "host": self.host, "pid": self.pid, "cwd": self.cwd, "status": str(self.status),
                "started_at": self.started_at, "ended_at": self.ended_at, "heartbeat_at": self.started_at}


@dataclass(frozen=True)
class JobRecord:
    """The latest state of one job; recorded again as it changes (only the last state is written)."""

    id: str
    execution_id: str
    task_hash: str
    task_name: str
    eval_hash: str
    status: str
    started_at: float
    parent_id: str | None = None
    call_hash: str | None = None
    executor: str | None = None
    ended_at: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    arguments: dict[str, str] | None = None  # argument name -> value hash: known even when the job failed
    environment: str | None = None  # JSON {python, packages}
    reason: str | None = None  # why it ran instead of being reused, when the scheduler knows

    def row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["status"] = str(self.status)
        row["arguments"] = json.dumps(self.arguments) if self.arguments else None
        return row


@dataclass(frozen=True)
class ArgumentRecord:
    """One argument of a call: its value, and the call whose result it was (provenance by origin)."""

    name: str
    position: int
    value_hash: str
    upstream_call: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """A call node: a call, its final value, the task hashes of its subtree and its child calls."""

    call_hash: str
    eval_hash: str
    task_hash: str
    args_hash: str
    value_hash: str
    subtree_tasks: frozenset[str]
    arguments: tuple[ArgumentRecord, ...] = ()
    children: tuple[str, ...] = ()
