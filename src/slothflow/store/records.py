"""Typed words of the records: the statuses an execution and a job go through, and when a ``running``
execution is known to be dead.

Statuses are ``StrEnum`` members, so they are stored, compared and printed as their plain strings.
"""

from __future__ import annotations

import os
import socket
import time
from enum import StrEnum


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


def effective_status(status: str, host: str | None, pid: int | None, heartbeat_at: float | None,
                     now: float | None = None) -> str:
    """The status to show for an execution: a ``running`` one whose scheduler died (its process is gone on this
    host, or its heartbeat expired elsewhere) is ``interrupted``."""
    if status != Status.RUNNING:
        return status
    if pid is not None and host == socket.gethostname():
        return Status.RUNNING.value if pid_alive(pid) else Status.INTERRUPTED.value
    if heartbeat_at is not None and (now or time.time()) - heartbeat_at > HEARTBEAT_EXPIRY:
        return Status.INTERRUPTED.value
    return Status.RUNNING.value
