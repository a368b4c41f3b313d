"""File lineage: which call produced a file, from which code and inputs, recursively down to raw inputs.

Every stored value records the files inside it (table ``value_file``). The producer of a file is the call
whose *result* holds it and none of whose child calls' results do (the call that made it, not the parents
that passed it along). Its arguments lead upstream, each to every call it came from (``upstreams``):
an argument that was another call's result (``argument.upstream_call``) leads to that call; one holding files
(a list or dict of them, too) leads to the maker of each file; a plain value the parent call passed down from
its own argument leads to where the parent's came from (by origin, up the call tree, never by equal value).
An argument holding files that no call produced is a raw input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from slothflow.files._file import File, normalize_path
from slothflow.provenance.queries import NotFound, _value_previews
from slothflow.store import schema as s

if TYPE_CHECKING:
    from slothflow.store import Store

MAX_NODES = 500


def _current_file_hash(path: str) -> str | None:
    try:
        return File(path).content_key()
    except Exception:  # an unreachable remote store: lineage still answers from the records
        return None


def _files_in(conn: Connection, value_hashes: set[str]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    if not value_hashes:
        return out
    rows = conn.execute(select(s.value_file).where(s.value_file.c.value_hash.in_(sorted(value_hashes))))
    for r in rows:
        out.setdefault(r.value_hash, []).append({"path": r.path, "file_hash": r.file_hash})
    return out


def _producer(conn: Connection, path: str) -> tuple[str | None, list[str], str | None]:
    """(producing call hash, value hashes holding the file, its recorded file hash)."""
    holders = conn.execute(
        select(s.value_file.c.value_hash, s.value_file.c.file_hash).where(s.value_file.c.path == path)
    ).all()
    if not holders:
        return None, [], None
    by_value = {r.value_hash: r.file_hash for r in holders}
    calls = conn.execute(
        select(s.call_node.c.call_hash, s.call_node.c.value_hash, s.call_node.c.created_at).where(
            s.call_node.c.value_hash.in_(sorted(by_value))
        )
    ).all()
    if not calls:
        return None, list(by_value), None
    holding = {c.call_hash for c in calls}
    children: dict[str, set[str]] = {}
    for e in conn.execute(select(s.call_edge).where(s.call_edge.c.parent_call.in_(sorted(holding)))):
        children.setdefault(e.parent_call, set()).add(e.child_call)
    origins = [c for c in calls if not (children.get(c.call_hash, set()) & holding)] or list(calls)
    current = _current_file_hash(path)
    origins.sort(key=lambda c: ((by_value[c.value_hash] == current), c.created_at), reverse=True)
    best = origins[0]
    return best.call_hash, list(by_value), by_value[best.value_hash]


def _call_node(conn: Connection, call_hash: str) -> dict[str, Any]:
    call = conn.execute(select(s.call_node).where(s.call_node.c.call_hash == call_hash)).first()
    if call is None:
        return {"call_hash": call_hash, "missing": True}
    task = conn.execute(select(s.task).where(s.task.c.hash == call.task_hash)).first()
    job = conn.execute(
        select(s.job.c.id, s.job.c.execution_id, s.job.c.status)
        .where(s.job.c.call_hash == call_hash, s.job.c.status == "ran")
        .order_by(s.job.c.started_at.desc())
        .limit(1)
    ).first()
    args = conn.execute(
        select(s.argument).where(s.argument.c.call_hash == call_hash).order_by(s.argument.c.position)
    ).all()
    previews = _value_previews(conn, {a.value_hash for a in args} | {call.value_hash})
    files = _files_in(conn, {a.value_hash for a in args})
    return {
        "call_hash": call_hash,
        "task": task.fullname if task is not None else "?",
        "task_hash": call.task_hash,
        "source": task.source if task is not None else None,
        "created_at": call.created_at,
        "job_id": job.id if job is not None else None,
        "execution_id": job.execution_id if job is not None else None,
        "result": previews.get(call.value_hash, {}).get("preview"),
        "arguments": [
            {
                "name": a.name,
                "value_hash": a.value_hash,
                "preview": previews.get(a.value_hash, {}).get("preview", "<not stored>"),
                "files": files.get(a.value_hash, []),
                "upstream_call": a.upstream_call,
                "upstream": None,  # the first of upstreams (kept for callers that read one)
                "upstreams": [],
            }
            for a in args
        ],
    }


def store_lineage(store: Store, path: str) -> dict[str, Any]:
    """:func:`file_lineage` on a store, leaving no read transaction open."""
    conn = store.conn
    try:
        return file_lineage(conn, path)
    finally:
        conn.rollback()


def file_lineage(conn: Connection, path: str) -> dict[str, Any]:
    """The lineage tree of a file (a local path or URL), as plain data."""
    normalized = normalize_path(path)
    producer, holders, recorded_hash = _producer(conn, normalized)
    if not holders:
        raise NotFound(f"no recorded call produced or used {normalized}")
    current = _current_file_hash(normalized)
    out: dict[str, Any] = {
        "path": normalized,
        "exists": current is not None,
        "changed_since_recorded": current is not None and recorded_hash is not None and current != recorded_hash,
        "producer": None,
    }
    if producer is None:
        consumers = conn.execute(
            select(s.argument.c.call_hash).where(s.argument.c.value_hash.in_(holders)).limit(20)
        ).all()
        tasks = conn.execute(
            select(s.call_node.c.call_hash, s.call_node.c.task_hash).where(
                s.call_node.c.call_hash.in_([c.call_hash for c in consumers])
            )
        ).all()
        names = {
            t.hash: t.fullname
            for t in conn.execute(select(s.task.c.hash, s.task.c.fullname).where(
                s.task.c.hash.in_([t.task_hash for t in tasks])))
        }
        out["raw_input"] = True
        out["consumers"] = [{"call_hash": t.call_hash, "task": names.get(t.task_hash, "?")} for t in tasks]
        return out
    nodes: dict[str, dict[str, Any]] = {}
    root = _call_node(conn, producer)
    nodes[producer] = root
    stack = [root]
    while stack and len(nodes) < MAX_NODES:
        node = stack.pop()
        for arg in node.get("arguments", []):
            for upstream in _upstream_calls(conn, node["call_hash"], arg):
                if upstream in nodes:
                    ref = {"call_hash": upstream, "task": nodes[upstream].get("task"), "seen": True}
                else:
                    ref = nodes[upstream] = _call_node(conn, upstream)
                    stack.append(ref)
                arg["upstreams"].append(ref)
            arg["upstream"] = arg["upstreams"][0] if arg["upstreams"] else None
    out["raw_input"] = False
    out["producer"] = root
    return out


def _upstream_calls(conn: Connection, call_hash: str, arg: dict[str, Any]) -> list[str]:
    """Every call an argument's value came from (see the module's docstring)."""
    if arg["upstream_call"]:
        return [arg["upstream_call"]]
    if arg["files"]:
        found: list[str] = []
        for f in arg["files"]:
            made_by, _, _ = _producer(conn, f["path"])
            if made_by is not None and made_by != call_hash and made_by not in found:
                found.append(made_by)
        return found
    inherited = _passed_down(conn, call_hash, arg["value_hash"])
    return [inherited] if inherited is not None else []


def _passed_down(conn: Connection, call_hash: str, value_hash: str) -> str | None:
    """The call that made a value which a parent call (or its parent, ...) received as an argument and passed
    down unchanged to ``call_hash``: provenance by origin through the call tree."""
    frontier, seen = [call_hash], {call_hash}
    while frontier and len(seen) < MAX_NODES:
        parents = select(s.call_edge.c.parent_call).where(s.call_edge.c.child_call.in_(frontier))
        rows = conn.execute(
            select(s.argument.c.call_hash, s.argument.c.upstream_call)
            .where(s.argument.c.call_hash.in_(parents), s.argument.c.value_hash == value_hash)
        ).all()
        for r in rows:
            if r.upstream_call:
                return str(r.upstream_call)
        frontier = [r.call_hash for r in rows if r.call_hash not in seen]
        seen.update(frontier)
    return None
