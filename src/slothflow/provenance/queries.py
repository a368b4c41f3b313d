"""Provenance queries: read-only views of what ran, for ``slothflow log`` and for Python callers.

Every function returns plain dicts and lists (JSON-ready), so the CLI, a UI and tests share one reading
of the records.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from slothflow._errors import SlothflowError
from slothflow.store import schema as s
from slothflow.store.records import Status, effective_status


class NotFound(SlothflowError, LookupError):
    """No record (or more than one) matches an id prefix."""


def _value_previews(conn: Connection, hashes: set[str]) -> dict[str, dict[str, Any]]:
    if not hashes:
        return {}
    rows = conn.execute(
        select(s.value.c.value_hash, s.value.c.type_name, s.value.c.preview, s.value.c.size).where(
            s.value.c.value_hash.in_(sorted(hashes))
        )
    )
    return {r.value_hash: {"type": r.type_name, "preview": r.preview, "size": r.size} for r in rows}


def _status(r: Any) -> str:
    """An execution's status as it stands now: ``running`` only while its scheduler lives."""
    return effective_status(r.status, r.host, r.pid, r.heartbeat_at, started_at=r.started_at)


def execution_status(conn: Connection, execution_id: str) -> str:
    """The status of one execution (``interrupted`` for a ``running`` one whose scheduler died)."""
    ex = s.execution
    r = conn.execute(select(ex.c.status, ex.c.host, ex.c.pid, ex.c.heartbeat_at, ex.c.started_at)
                     .where(ex.c.id == execution_id)).first()
    if r is None:
        raise NotFound(f"no execution {execution_id}")
    return _status(r)


def list_executions(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest executions with their job counts by status."""
    ex = s.execution
    rows = conn.execute(select(ex).order_by(ex.c.started_at.desc()).limit(limit)).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    for r in conn.execute(
        select(s.job.c.execution_id, s.job.c.status, func.count())
        .where(s.job.c.execution_id.in_(ids))
        .group_by(s.job.c.execution_id, s.job.c.status)
    ):
        counts[r[0]][r[1]] = r[2]
    roots = {
        r.id: r.task_name
        for r in conn.execute(
            select(s.job.c.id, s.job.c.task_name).where(s.job.c.id.in_([r.root_job for r in rows if r.root_job]))
        )
    }
    return [
        {
            "id": r.id,
            "status": _status(r),
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "duration": (r.ended_at - r.started_at) if r.ended_at else None,
            "user": r.user,
            "host": r.host,
            "args": json.loads(r.args),
            "root_task": roots.get(r.root_job or ""),
            "root_job": r.root_job,
            "jobs": counts[r.id],
        }
        for r in rows
    ]


def resolve_id(conn: Connection, prefix: str) -> tuple[str, str]:
    """("execution" | "job", full id) for an id or unique id prefix."""
    prefix = prefix.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFound(f"{prefix!r} is not an execution or job id (ids are hexadecimal)")
    matches: list[tuple[str, str]] = []
    for kind, table in (("execution", s.execution), ("job", s.job)):
        for (ident,) in conn.execute(select(table.c.id).where(table.c.id.like(prefix + "%")).limit(3)):
            matches.append((kind, ident))
    if not matches:
        raise NotFound(f"no execution or job has an id starting with {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(f"{k} {i[:12]}" for k, i in matches)
        raise NotFound(f"id prefix {prefix!r} is ambiguous ({shown}); give more characters")
    return matches[0]


def _job_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "task": r.task_name,
        "task_hash": r.task_hash,
        "status": r.status,
        "parent_id": r.parent_id,
        "execution_id": r.execution_id,
        "eval_hash": r.eval_hash,
        "call_hash": r.call_hash,
        "executor": r.executor,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "duration": (r.ended_at - r.started_at) if r.ended_at else None,
        "error_type": r.error_type,
        "error_message": r.error_message,
    }


def execution_detail(conn: Connection, execution_id: str) -> dict[str, Any]:
    """An execution and its jobs as a tree (children nested under ``children``)."""
    ex = conn.execute(select(s.execution).where(s.execution.c.id == execution_id)).first()
    if ex is None:
        raise NotFound(f"no execution {execution_id}")
    rows = conn.execute(
        select(s.job).where(s.job.c.execution_id == execution_id).order_by(s.job.c.started_at)
    ).all()
    status = _status(ex)
    jobs = {r.id: {**_job_dict(r), "children": []} for r in rows}
    if status == Status.INTERRUPTED:  # its scheduler died: nothing of it is still running
        for job in jobs.values():
            if job["status"] == Status.RUNNING:
                job["status"] = Status.INTERRUPTED.value
    roots: list[dict[str, Any]] = []
    for job in jobs.values():
        parent = jobs.get(job["parent_id"] or "")
        (parent["children"] if parent else roots).append(job)
    counts: dict[str, int] = {}
    for job in jobs.values():
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    tags = [
        {"key": t.key, "value": json.loads(t.value)}
        for t in conn.execute(
            select(s.tag).where(s.tag.c.entity_type == "execution", s.tag.c.entity_id == execution_id)
        )
    ]
    return {
        "id": ex.id,
        "status": status,
        "started_at": ex.started_at,
        "ended_at": ex.ended_at,
        "duration": (ex.ended_at - ex.started_at) if ex.ended_at else None,
        "user": ex.user,
        "host": ex.host,
        "cwd": ex.cwd,
        "args": json.loads(ex.args),
        "tags": tags,
        "jobs": counts,
        "tree": roots,
    }


def job_detail(conn: Connection, job_id: str) -> dict[str, Any]:
    """One job: task (with source), arguments, result, error, children."""
    r = conn.execute(select(s.job).where(s.job.c.id == job_id)).first()
    if r is None:
        raise NotFound(f"no job {job_id}")
    out = _job_dict(r)
    out["error_traceback"] = r.error_traceback
    task = conn.execute(select(s.task).where(s.task.c.hash == r.task_hash)).first()
    out["source"] = task.source if task is not None else None
    arguments: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    if r.call_hash:
        call = conn.execute(select(s.call_node).where(s.call_node.c.call_hash == r.call_hash)).first()
        args = conn.execute(
            select(s.argument).where(s.argument.c.call_hash == r.call_hash).order_by(s.argument.c.position)
        ).all()
        previews = _value_previews(conn, {a.value_hash for a in args} | ({call.value_hash} if call else set()))
        arguments = [
            {
                "name": a.name,
                "value_hash": a.value_hash,
                "upstream_call": a.upstream_call,
                **previews.get(a.value_hash, {"type": "?", "preview": "<not stored>", "size": 0}),
            }
            for a in args
        ]
        if call is not None:
            result = {"value_hash": call.value_hash, **previews.get(call.value_hash, {})}
    if not arguments and r.arguments:  # a job that failed: its inputs are on the job row
        recorded = json.loads(r.arguments)
        previews = _value_previews(conn, set(recorded.values()))
        arguments = [
            {"name": name, "value_hash": h, "upstream_call": None,
             **previews.get(h, {"type": "?", "preview": "<not stored>", "size": 0})}
            for name, h in recorded.items()
        ]
    out["arguments"] = arguments
    out["result"] = result
    out["children"] = [
        _job_dict(c)
        for c in conn.execute(select(s.job).where(s.job.c.parent_id == job_id).order_by(s.job.c.started_at))
    ]
    return out


def table_counts(conn: Connection) -> dict[str, int]:
    names = ("execution", "job", "task", "call_node", "evaluation", "value", "argument", "call_edge", "tag")
    return {name: int(conn.execute(select(func.count()).select_from(s.metadata.tables[name])).scalar_one())
            for name in names}
