"""``slothflow log``: executions, an execution's job tree, one job; as text or JSON."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

from slothflow._errors import CLIError
from slothflow.provenance.queries import NotFound, execution_detail, job_detail, list_executions, resolve_id
from slothflow.store import Store, sqlite_path

if TYPE_CHECKING:
    from slothflow.scheduler import Scheduler

_STATUS_STYLE = {"ran": "green", "cached": "cyan", "failed": "bold red", "running": "yellow", "done": "green",
                 "interrupted": "magenta"}


@contextlib.contextmanager
def reading_store(scheduler: Scheduler, require_current: bool = True) -> Iterator[Store]:
    """The scheduler's database, opened read-only: reading works in a read-only project folder and never
    migrates. A SQLite database that does not exist yet is created, as ``slothflow run`` would."""
    path = sqlite_path(scheduler.db_uri)
    if path is not None and not os.path.exists(path):
        yield scheduler.store
        return
    backend = scheduler.config.section("backend")
    timeout = backend.get("busy_timeout")
    store = Store.open_readonly(scheduler.db_uri, blob_dir=backend.get("blob_dir"),
                               busy_timeout=None if timeout is None else float(timeout),
                               require_current=require_current)
    try:
        yield store
    finally:
        store.close()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _status(status: str) -> str:
    style = _STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def render_log(console: Console, store: Store, ident: str | None, fmt: str, limit: int) -> None:
    conn = store.conn
    try:
        if ident is None:
            data: Any = list_executions(conn, limit)
            if fmt == "json":
                console.print_json(json.dumps(data))
            else:
                _print_executions(console, data)
            return
        kind, full_id = resolve_id(conn, ident)
        data = execution_detail(conn, full_id) if kind == "execution" else job_detail(conn, full_id)
    except NotFound as exc:
        raise CLIError(str(exc)) from exc
    finally:
        conn.rollback()
    if fmt == "json":
        console.print_json(json.dumps({"type": kind, **data}))
    elif kind == "execution":
        _print_execution(console, data)
    else:
        _print_job(console, data)


def _print_executions(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no executions recorded yet")
        return
    table = Table(title="Recent executions", title_justify="left")
    for col in ("id", "started", "status", "task", "ran", "cached", "failed", "duration"):
        table.add_column(col, justify="right" if col in ("ran", "cached", "failed", "duration") else "left")
    for r in rows:
        jobs = r["jobs"]
        table.add_row(
            r["id"][:8], _when(r["started_at"]), _status(r["status"]), r["root_task"] or "-",
            str(jobs.get("ran", 0)), str(jobs.get("cached", 0)), str(jobs.get("failed", 0)), _secs(r["duration"]),
        )
    console.print(table)


def _print_execution(console: Console, data: dict[str, Any]) -> None:
    jobs = data["jobs"]
    console.print(
        f"Execution [bold]{data['id']}[/]  {_status(data['status'])}  started {_when(data['started_at'])}  "
        f"duration {_secs(data['duration'])}  by {data['user']}@{data['host']}",
        highlight=False,
    )
    console.print("  " + " ".join(data["args"]), markup=False, highlight=False)
    console.print("  jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())), highlight=False)
    for tag in data["tags"]:
        console.print(f"  tag {tag['key']}={tag['value']!r}", markup=False, highlight=False)
    tree = Tree("jobs", guide_style="dim")
    stack: list[tuple[Tree, dict[str, Any]]] = [(tree, job) for job in reversed(data["tree"])]
    shown = 0
    while stack and shown < 2000:
        parent, job = stack.pop()
        label = f"{job['id'][:8]} {job['task']}  {_status(job['status'])}  {_secs(job['duration'])}"
        if job["error_type"]:
            label += f"  [red]{job['error_type'].rsplit('.', 1)[-1]}: {job['error_message']}[/]"
        node = parent.add(label)
        shown += 1
        stack.extend((node, child) for child in reversed(job["children"]))
    console.print(tree)
    if stack:
        console.print(f"... {len(stack)} more jobs not shown", highlight=False)


def _print_job(console: Console, data: dict[str, Any]) -> None:
    console.print(f"Job [bold]{data['id']}[/]  {data['task']}  {_status(data['status'])}", highlight=False)
    console.print(
        f"  execution {data['execution_id'][:8]}  started {_when(data['started_at'])}  "
        f"duration {_secs(data['duration'])}  executor {data['executor']}",
        highlight=False,
    )
    console.print(f"  eval hash {data['eval_hash']}\n  call hash {data['call_hash'] or '-'}", highlight=False)
    if data["arguments"]:
        console.print("[bold]Arguments[/]")
        for arg in data["arguments"]:
            source = f"  (from call {arg['upstream_call'][:8]})" if arg.get("upstream_call") else ""
            console.print(f"  {arg['name']} = {arg['preview']}{source}", markup=False, highlight=False)
    if data["result"]:
        console.print("[bold]Result[/]")
        console.print(f"  {data['result'].get('preview', '?')}", markup=False, highlight=False)
    if data["error_type"]:
        console.print("[bold red]Error[/]")
        console.print(f"  {data['error_type']}: {data['error_message']}", markup=False, highlight=False)
        if data.get("error_traceback"):
            console.print(data["error_traceback"], markup=False, highlight=False)
    if data["children"]:
        console.print("[bold]Child jobs[/]")
        for child in data["children"]:
            console.print(f"  {child['id'][:8]} {child['task']}  {_status(child['status'])}", highlight=False)
    if data.get("source"):
        console.print("[bold]Task source[/]")
        console.print(Syntax(data["source"], "python", line_numbers=False))


def render_explain(console: Console, explanations: list[Any], fmt: str) -> None:
    """``slothflow explain``: one job in full; several (an execution) grouped by task, each distinct reason
    printed once with the number of calls it applies to."""
    from slothflow.provenance.explain import group_explanations

    if fmt == "json":
        console.print_json(json.dumps([e.to_dict() for e in explanations]))
        return
    if not explanations:
        console.print("every job of this execution was reused from the cache", highlight=False)
    elif len(explanations) == 1:
        console.print(str(explanations[0]), markup=False, highlight=False)
    else:
        for group in group_explanations(explanations):
            console.print(str(group), markup=False, highlight=False)


def render_lineage(console: Console, store: Store, path: str, fmt: str) -> None:
    from slothflow.provenance.lineage import file_lineage

    try:
        data = file_lineage(store.conn, path)
    except NotFound as exc:
        raise CLIError(str(exc)) from exc
    finally:
        store.conn.rollback()
    if fmt == "json":
        console.print_json(json.dumps(data))
        return
    state = "" if data["exists"] else "  [red](missing now)[/]"
    if data["changed_since_recorded"]:
        state = "  [yellow](changed since it was recorded)[/]"
    tree = Tree(f"[bold]{data['path']}[/]{state}")
    if data["raw_input"]:
        branch = tree.add("raw input: no recorded call produced it; used by")
        for c in data.get("consumers", []):
            branch.add(f"{c['task']}  call {c['call_hash'][:8]}")
        console.print(tree)
        return
    stack: list[tuple[Tree, dict[str, Any]]] = [(tree, data["producer"])]
    while stack:
        parent, node = stack.pop()
        job = f"  job {node['job_id'][:8]}" if node.get("job_id") else ""
        branch = parent.add(f"produced by [bold]{node['task']}[/]  call {node['call_hash'][:8]}{job}")
        for arg in node.get("arguments", []):
            label = f"{arg['name']} = {arg['preview']}"
            ups = arg.get("upstreams") or ([arg["upstream"]] if arg.get("upstream") else [])
            if not ups:
                kind = "input file" if arg["files"] else "value"
                branch.add(f"{label}  [dim]({kind})[/]", highlight=False)
                continue
            seen = [up for up in ups if up.get("seen")]
            fresh = [up for up in ups if not up.get("seen")]
            shown = ", ".join(f"{up['task']} {up['call_hash'][:8]}" for up in seen)
            arg_branch = branch.add(label + (f"  [dim](from {shown}, shown above)[/]" if seen else ""),
                                    highlight=False)
            stack.extend((arg_branch, up) for up in reversed(fresh))
    console.print(tree)
