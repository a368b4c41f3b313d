"""Why did a call run instead of coming from the cache? A diff against the nearest earlier call.

For a job that ran, the nearest earlier call of the same task (fewest differences, newest first) is found
among the recorded call nodes; each difference becomes a :class:`Reason`: the task's code changed (with a
source diff), an argument changed (old and new value), or nothing differs (then the earlier result was not
reusable: caching was off, a value it held became invalid, or the earlier call failed).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from . import schema as s
from .queries import NotFound, resolve_id


@dataclass
class Reason:
    """One difference between a call and the nearest earlier call of the same task."""

    kind: str  # "new_task", "code", "argument", "argument_added", "argument_removed", "not_reusable"
    message: str
    name: str | None = None
    old: str | None = None
    new: str | None = None
    diff: str | None = None


@dataclass
class Explanation:
    """Why one job ran (or that it was reused)."""

    job_id: str
    task: str
    status: str
    reasons: list[Reason] = field(default_factory=list)
    compared_with: str | None = None  # the call hash of the nearest earlier call

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        head = f"{self.task} ({self.job_id[:8]}) {self.status}"
        lines = [head] + [f"  - {r.message}" for r in self.reasons]
        for r in self.reasons:
            if r.diff:
                lines.append("\n".join("      " + ln for ln in r.diff.splitlines()))
        return "\n".join(lines)


def _arguments(conn: Connection, call_hash: str) -> dict[str, str]:
    rows = conn.execute(select(s.argument.c.name, s.argument.c.value_hash).where(s.argument.c.call_hash == call_hash))
    return {r.name: r.value_hash for r in rows}


def _previews(conn: Connection, hashes: set[str]) -> dict[str, str]:
    if not hashes:
        return {}
    rows = conn.execute(
        select(s.value.c.value_hash, s.value.c.preview).where(s.value.c.value_hash.in_(sorted(hashes)))
    )
    return {r.value_hash: r.preview for r in rows}


def _source(conn: Connection, task_hash: str) -> str:
    row = conn.execute(select(s.task.c.source).where(s.task.c.hash == task_hash)).first()
    return row.source if row is not None else ""


def explain_job(conn: Connection, job_id: str) -> Explanation:
    """Explain one job (by full id)."""
    job = conn.execute(select(s.job).where(s.job.c.id == job_id)).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    out = Explanation(job.id, job.task_name, job.status)
    if job.status == "cached":
        out.reasons.append(Reason("reused", "reused from the cache: code and arguments unchanged"))
        return out
    if not job.call_hash:
        out.reasons.append(Reason("unknown", f"the job {job.status} before its arguments were recorded"))
        return out
    mine = _arguments(conn, job.call_hash)
    run_start = conn.execute(
        select(s.execution.c.started_at).where(s.execution.c.id == job.execution_id)
    ).scalar_one_or_none()
    task_hashes = {
        r.hash: r.source for r in conn.execute(select(s.task.c.hash, s.task.c.source).where(
            s.task.c.fullname == job.task_name))
    }
    earlier = conn.execute(
        select(s.call_node.c.call_hash, s.call_node.c.task_hash, s.call_node.c.eval_hash, s.call_node.c.created_at)
        .where(s.call_node.c.task_hash.in_(sorted(task_hashes)), s.call_node.c.call_hash != job.call_hash)
        .where(s.call_node.c.created_at < (run_start if run_start is not None else job.started_at))
        .order_by(s.call_node.c.created_at.desc())
        .limit(200)
    ).all()
    if not earlier:
        out.reasons.append(Reason("new_task", f"new task: {job.task_name} never ran before with this code or any"
                                  " other"))
        return out
    best: tuple[int, Any, dict[str, str]] | None = None
    for candidate in earlier:
        theirs = _arguments(conn, candidate.call_hash)
        score = sum(1 for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        score += 1 if candidate.task_hash != job.task_hash else 0
        if best is None or score < best[0]:
            best = (score, candidate, theirs)
        if score == 0:
            break
    assert best is not None
    _, nearest, theirs = best
    out.compared_with = nearest.call_hash
    if nearest.task_hash != job.task_hash:
        old_src, new_src = task_hashes.get(nearest.task_hash, ""), _source(conn, job.task_hash)
        diff = "".join(difflib.unified_diff(old_src.splitlines(True), new_src.splitlines(True),
                                            "before", "now", n=1))
        out.reasons.append(Reason("code", f"code of {job.task_name} changed", name=job.task_name, diff=diff))
    previews = _previews(conn, set(mine.values()) | set(theirs.values()))
    for name in sorted(mine.keys() | theirs.keys()):
        old, new = theirs.get(name), mine.get(name)
        if old == new:
            continue
        if old is None:
            out.reasons.append(Reason("argument_added", f"argument `{name}` is new: {previews.get(new or '', '?')}",
                                      name=name, new=previews.get(new or "")))
        elif new is None:
            out.reasons.append(Reason("argument_removed", f"argument `{name}` was removed", name=name,
                                      old=previews.get(old)))
        else:
            o, n = previews.get(old, "?"), previews.get(new, "?")
            out.reasons.append(Reason("argument", f"argument `{name}`: {o} -> {n}", name=name, old=o, new=n))
    if not out.reasons:
        out.reasons.append(Reason(
            "not_reusable",
            "same code and arguments as an earlier call, whose result was not reused (caching was off for the "
            "run or task, a value it held was no longer valid, or the earlier call failed)",
        ))
    return out


def explain(conn: Connection, ident: str) -> list[Explanation]:
    """Explain a job, or every job of an execution that ran instead of being reused."""
    kind, full_id = resolve_id(conn, ident)
    if kind == "job":
        return [explain_job(conn, full_id)]
    rows = conn.execute(
        select(s.job.c.id).where(s.job.c.execution_id == full_id, s.job.c.status != "cached")
        .order_by(s.job.c.started_at)
    ).all()
    return [explain_job(conn, r.id) for r in rows]
