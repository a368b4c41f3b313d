"""Why did a call run instead of coming from the cache? A diff against the nearest earlier call.

For a call (a recorded job, or a call a dry run would make), the nearest earlier call of the same task (fewest
differences, newest first) is found among the recorded call nodes; each difference becomes a :class:`Reason`:

- ``new_task``: the task never ran before;
- ``code``: the task's own source changed (with a diff), or a helper function or class it uses changed
  ("code of `helpers.normalize` changed (wf/helpers.py:12)", with that helper's diff); ``code_added`` /
  ``code_removed``: it now uses, or no longer uses, a helper;
- ``constant``, ``closure``, ``default``: a module constant, a closure variable or a helper's default value
  that the code uses changed (old and new value);
- ``argument`` (``argument_added``, ``argument_removed``); ``input_file``: a ``File``/``Dir`` argument with the
  same path whose content changed;
- ``python``, ``package``: the Python version or a package the code imports changed (``job.environment``);
- ``invalid_result``, ``cache_off``, ``recorded``: what the scheduler recorded when it knew (``job.reason``),
  e.g. a cached result held a file that changed or is missing;
- ``not_reusable``: nothing differs (the earlier result was not reusable: caching was off, or it failed).

The comparison works on :class:`CallFacts`, which a recorded job or the scheduler's dry run provide alike.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from slothflow.hashing._source import normalize_source
from slothflow.provenance.queries import NotFound, resolve_id
from slothflow.store import schema as s

MAX_CANDIDATES = 50


@dataclass
class Reason:
    """One difference between a call and the nearest earlier call of the same task."""

    kind: str
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

    @property
    def kinds(self) -> list[str]:
        return [r.kind for r in self.reasons]

    @property
    def messages(self) -> list[str]:
        return [r.message for r in self.reasons]

    def __str__(self) -> str:
        head = f"{self.task} ({self.job_id[:8]}) {self.status}"
        lines = [head] + [f"  - {r.message}" for r in self.reasons]
        for r in self.reasons:
            if r.diff:
                lines.append("\n".join("      " + ln for ln in r.diff.splitlines()))
        return "\n".join(lines)


@dataclass
class CallFacts:
    """What is known about one call, to compare it with the calls recorded before it."""

    task_name: str
    task_hash: str
    eval_hash: str
    arguments: dict[str, str]  # argument name -> value hash
    source: str | None = None  # the task's own source (None: read the task row)
    manifest: list[dict[str, Any]] | None = None  # the task's code manifest (None: read the task row)
    environment: dict[str, Any] | None = None  # {"python": ..., "packages": {...}}
    reason: str | None = None  # what the scheduler recorded
    before: float | None = None  # only calls recorded before this time
    exclude_call: str | None = None
    previews: dict[str, str] = field(default_factory=dict)  # value hash -> preview, for values not stored
    type_names: dict[str, str] = field(default_factory=dict)  # value hash -> type name, for values not stored


def _values(conn: Connection, hashes: set[str]) -> dict[str, tuple[str, str]]:
    """value hash -> (type name, preview), for the stored ones."""
    if not hashes:
        return {}
    rows = conn.execute(
        select(s.value.c.value_hash, s.value.c.type_name, s.value.c.preview)
        .where(s.value.c.value_hash.in_(sorted(hashes)))
    )
    return {r.value_hash: (r.type_name, r.preview) for r in rows}


def _arguments_of(conn: Connection, call_hashes: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {h: {} for h in call_hashes}
    if call_hashes:
        rows = conn.execute(select(s.argument.c.call_hash, s.argument.c.name, s.argument.c.value_hash)
                            .where(s.argument.c.call_hash.in_(call_hashes)))
        for r in rows:
            out[r.call_hash][r.name] = r.value_hash
    return out


def _task_row(conn: Connection, task_hash: str) -> Any:
    return conn.execute(select(s.task.c.source, s.task.c.code_manifest).where(s.task.c.hash == task_hash)).first()


def _load_manifest(text: str | None) -> list[dict[str, Any]] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, list) else None


def _diff(old: str | None, new: str | None) -> str:
    return "".join(difflib.unified_diff((old or "").splitlines(True), (new or "").splitlines(True),
                                        "before", "now", n=1))


def _normalized(source: str | None) -> str:
    if not source:
        return ""
    try:
        return normalize_source(source)
    except SyntaxError:
        return source.strip()


_PATH_PREVIEW = re.compile(r"^\w+\(\s*(?:path\s*=\s*)?(['\"])(?P<path>.*)\1\s*(?:,.*)?\)$", re.S)


def _file_path(type_name: str | None, preview: str | None) -> str | None:
    """The path of a File/Dir value from its type name and preview (``File('data/a.csv')``)."""
    if not type_name or not preview or not type_name.endswith(("File", "Dir")):
        return None
    match = _PATH_PREVIEW.match(preview.strip())
    return match.group("path") if match else None


def _code_reasons(task_name: str, old_source: str | None, new_source: str | None,
                  old_manifest: list[dict[str, Any]] | None,
                  new_manifest: list[dict[str, Any]] | None) -> list[Reason]:
    out: list[Reason] = []
    if _normalized(old_source) != _normalized(new_source):
        out.append(Reason("code", f"code of {task_name} changed", name=task_name,
                          diff=_diff(old_source, new_source)))
    if old_manifest is None or new_manifest is None:
        return out
    old_items = {(e.get("kind"), e.get("name")): e for e in old_manifest}
    new_items = {(e.get("kind"), e.get("name")): e for e in new_manifest}
    for key in sorted(old_items.keys() | new_items.keys(), key=lambda k: (str(k[1]), str(k[0]))):
        kind, name = str(key[0]), str(key[1])
        old, new = old_items.get(key), new_items.get(key)
        if old is not None and new is not None and old.get("hash") == new.get("hash"):
            continue
        where = ""
        entry = new or old
        assert entry is not None
        if entry.get("file"):
            where = f" ({entry['file']}:{entry['line']})" if entry.get("line") else f" ({entry['file']})"
        if old is None:
            out.append(Reason("code_added", f"now uses {_describe(kind, name)}{where}", name=name,
                              new=entry.get("source")))
        elif new is None:
            out.append(Reason("code_removed", f"no longer uses {_describe(kind, name)}", name=name,
                              old=entry.get("source")))
        elif kind in ("function", "class"):
            out.append(Reason("code", f"code of `{name}` changed{where}", name=name,
                              diff=_diff(old.get("source"), new.get("source"))))
        else:
            o, n = old.get("source"), new.get("source")
            out.append(Reason(kind, f"{_describe(kind, name)} changed: {o} -> {n}", name=name, old=o, new=n))
    return out


def _describe(kind: str, name: str) -> str:
    owner, _, var = name.rpartition("::")
    if kind == "closure" and owner:
        return f"closure variable `{var}` of `{owner}`"
    if kind == "default" and owner:
        return f"default value of `{var}` in `{owner}`"
    if kind == "constant":
        return f"constant `{name}`"
    return f"`{name}`"


def _environment_reasons(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Reason]:
    if not old or not new:
        return []
    out: list[Reason] = []
    if old.get("python") != new.get("python"):
        out.append(Reason("python", f"python {old.get('python')} -> {new.get('python')}", name="python",
                          old=old.get("python"), new=new.get("python")))
    before, now = old.get("packages") or {}, new.get("packages") or {}
    for name in sorted(before.keys() | now.keys()):
        o, n = before.get(name), now.get(name)
        if o == n:
            continue
        if o is None:
            out.append(Reason("package", f"package {name} {n} is now used", name=name, new=n))
        elif n is None:
            out.append(Reason("package", f"package {name} {o} is no longer used", name=name, old=o))
        else:
            out.append(Reason("package", f"package {name} {o} -> {n}", name=name, old=o, new=n))
    return out


def _recorded_reason(text: str) -> Reason:
    if text.startswith("cached result no longer valid"):
        return Reason("invalid_result", text)
    if text.startswith("caching"):
        return Reason("cache_off", text)
    return Reason("recorded", text)


def diff_call(conn: Connection, facts: CallFacts) -> tuple[list[Reason], str | None]:
    """The reasons a call ran, against the nearest earlier call of its task; and that call's hash."""
    reasons: list[Reason] = [_recorded_reason(facts.reason)] if facts.reason else []
    task_rows = {r.hash: r for r in conn.execute(
        select(s.task.c.hash, s.task.c.source, s.task.c.code_manifest).where(s.task.c.fullname == facts.task_name))}
    query = (
        select(s.call_node.c.call_hash, s.call_node.c.task_hash, s.call_node.c.eval_hash)
        .where(s.call_node.c.task_hash.in_(sorted(task_rows)))
        .order_by(s.call_node.c.created_at.desc())
        .limit(MAX_CANDIDATES)
    )
    if facts.exclude_call:
        query = query.where(s.call_node.c.call_hash != facts.exclude_call)
    if facts.before is not None:
        query = query.where(s.call_node.c.created_at < facts.before)
    earlier = conn.execute(query).all() if task_rows else []
    if not earlier:
        if not reasons:
            reasons.append(Reason("new_task", f"new task: {facts.task_name} never ran before with this code or any"
                                  " other"))
        return reasons, None
    mine = facts.arguments
    candidates = _arguments_of(conn, [c.call_hash for c in earlier])
    best: tuple[int, Any] | None = None
    for candidate in earlier:
        theirs = candidates[candidate.call_hash]
        score = sum(1 for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        score += 1 if candidate.task_hash != facts.task_hash else 0
        if best is None or score < best[0]:
            best = (score, candidate)
        if score == 0:
            break
    assert best is not None
    nearest = best[1]
    theirs = candidates[nearest.call_hash]

    if nearest.task_hash != facts.task_hash:
        old_row = task_rows.get(nearest.task_hash)
        new_row = task_rows.get(facts.task_hash) or _task_row(conn, facts.task_hash)
        new_source = facts.source if facts.source is not None else (new_row.source if new_row else None)
        new_manifest = facts.manifest if facts.manifest is not None else _load_manifest(
            new_row.code_manifest if new_row else None)
        code = _code_reasons(facts.task_name, old_row.source if old_row else None, new_source,
                             _load_manifest(old_row.code_manifest if old_row else None), new_manifest)
        if not code:
            code = [Reason("code", f"the hash of {facts.task_name} changed (its version=, hash_includes or options)",
                           name=facts.task_name)]
        reasons.extend(code)

    stored = _values(conn, set(mine.values()) | set(theirs.values()))

    def info(h: str | None) -> tuple[str | None, str]:
        if h is None:
            return None, "?"
        if h in stored:
            return stored[h]
        return facts.type_names.get(h), facts.previews.get(h, "?")

    for name in sorted(mine.keys() | theirs.keys()):
        old, new = theirs.get(name), mine.get(name)
        if old == new:
            continue
        (old_type, o), (new_type, n) = info(old), info(new)
        if old is None:
            reasons.append(Reason("argument_added", f"argument `{name}` is new: {n}", name=name, new=n))
        elif new is None:
            reasons.append(Reason("argument_removed", f"argument `{name}` was removed", name=name, old=o))
        else:
            path = _file_path(new_type, n)
            if path is not None and path == _file_path(old_type, o):
                what = "directory" if (new_type or "").endswith("Dir") else "file"
                reasons.append(Reason("input_file", f"input {what} {path} changed (content)", name=name, old=o,
                                      new=n))
            else:
                reasons.append(Reason("argument", f"argument `{name}`: {o} -> {n}", name=name, old=o, new=n))

    if facts.environment:
        env_query = (
            select(s.job.c.environment).where(s.job.c.call_hash == nearest.call_hash, s.job.c.environment.is_not(None))
            .order_by(s.job.c.started_at.desc()).limit(1)
        )
        if facts.before is not None:  # the same call may have been made again since: its job does not count
            env_query = env_query.where(s.job.c.started_at < facts.before)
        row = conn.execute(env_query).first()
        if row is not None:
            try:
                old_env = json.loads(row.environment)
            except ValueError:
                old_env = None
            reasons.extend(_environment_reasons(old_env, facts.environment))

    if not reasons:
        if nearest.eval_hash == facts.eval_hash:
            reasons.append(Reason(
                "not_reusable",
                "same code and arguments as an earlier call, whose result was not reused (caching was off for the "
                "run or task, a value it held was no longer valid, or the earlier call failed)",
            ))
        else:
            reasons.append(Reason(
                "unknown", "the cache key differs from the nearest earlier call's, but no difference of code, "
                "arguments or environment was recorded (a changed env_policy?)"))
    return reasons, nearest.call_hash


def explain_job(conn: Connection, job_id: str) -> Explanation:
    """Explain one job (by full id)."""
    job = conn.execute(select(s.job).where(s.job.c.id == job_id)).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    out = Explanation(job.id, job.task_name, job.status)
    if job.status == "cached":
        out.reasons.append(Reason("reused", "reused from the cache: code and arguments unchanged"))
        return out
    if job.call_hash:
        mine = _arguments_of(conn, [job.call_hash])[job.call_hash]
    elif job.arguments:
        mine = dict(json.loads(job.arguments))
    else:
        out.reasons.append(Reason("unknown", f"the job {job.status} before its arguments were recorded"))
        return out
    run_start = conn.execute(
        select(s.execution.c.started_at).where(s.execution.c.id == job.execution_id)
    ).scalar_one_or_none()
    environment = None
    if job.environment:
        try:
            environment = json.loads(job.environment)
        except ValueError:
            environment = None
    facts = CallFacts(
        task_name=job.task_name, task_hash=job.task_hash, eval_hash=job.eval_hash, arguments=mine,
        environment=environment, reason=job.reason,
        before=run_start if run_start is not None else job.started_at,
    )
    out.reasons, out.compared_with = diff_call(conn, facts)
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
