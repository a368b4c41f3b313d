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
- ``previous_failed``: the same call (same code, arguments and environment) was attempted before and failed:
  a failure is never cached;
- ``corrupt_value``: the recorded result's bytes changed after they were written, so it was not used;
- ``not_reusable``: nothing differs (the earlier result was not reusable: caching was off, or it failed).

The nearest earlier call is chosen among the calls of the same task with the same eval hash or the same
arguments, the calls that share an argument value, and the newest ones: however many calls a task has, the
closest one is found. The comparison works on :class:`CallFacts`, which a recorded job or the scheduler's dry
run provide alike. :func:`group_explanations` folds the explanations of a whole execution into one entry per
task, each distinct reason given once with the number of calls it applies to.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, or_, select

from slothflow.hashing._source import normalize_source
from slothflow.provenance.queries import NotFound, resolve_id
from slothflow.store import schema as s
from slothflow.store.records import Status

if TYPE_CHECKING:
    from slothflow.store import Store

MAX_CANDIDATES = 50  # per way of finding earlier calls (same key, shared argument values, newest)
CORRUPT_REASON = "stored value corrupt"  # how the scheduler's reason starts for a damaged recorded value


class ReasonKind(StrEnum):
    """What kind of difference a :class:`Reason` is (a ``str``: compares equal to its value)."""

    NEW_TASK = "new_task"
    CODE = "code"
    CODE_ADDED = "code_added"
    CODE_REMOVED = "code_removed"
    CONSTANT = "constant"
    CLOSURE = "closure"
    DEFAULT = "default"
    ARGUMENT = "argument"
    ARGUMENT_ADDED = "argument_added"
    ARGUMENT_REMOVED = "argument_removed"
    INPUT_FILE = "input_file"
    PYTHON = "python"
    PACKAGE = "package"
    INVALID_RESULT = "invalid_result"
    CORRUPT_VALUE = "corrupt_value"
    CACHE_OFF = "cache_off"
    RECORDED = "recorded"
    PREVIOUS_FAILED = "previous_failed"
    NOT_REUSABLE = "not_reusable"
    REUSED = "reused"
    UNKNOWN = "unknown"


@dataclass
class Reason:
    """One reason a call ran: a difference from the nearest earlier call of the same task, or a fact the
    scheduler recorded. ``name`` is what differs (an argument, a helper, a package), ``old``/``new`` its
    previews, ``diff`` a source diff; ``task`` the task's full name."""

    kind: ReasonKind
    message: str
    name: str | None = None
    old: str | None = None
    new: str | None = None
    diff: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        self.kind = _kind(self.kind)

    def key(self) -> tuple[str, str, str | None]:
        """What makes two reasons the same (for grouping): kind, message and diff."""
        return (self.kind.value, self.message, self.diff)


def _kind(kind: str) -> ReasonKind:
    try:
        return ReasonKind(kind)
    except ValueError:
        return ReasonKind.UNKNOWN


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
class TaskReasons:
    """Why the calls of one task ran in an execution: each distinct reason once, with how many calls it
    applies to (a code change that made 500 calls rerun is one reason, not 500)."""

    task: str
    calls: int
    reasons: list[tuple[Reason, int]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.task}: {self.calls} call{'s' if self.calls != 1 else ''} not reused"]
        for reason, count in self.reasons:
            lines.append(f"  - {reason.message}" + (f"  ({count} of {self.calls} calls)" if self.calls > 1 else ""))
            if reason.diff:
                lines.append("\n".join("      " + ln for ln in reason.diff.splitlines()))
        return "\n".join(lines)


def group_explanations(explanations: list[Explanation]) -> list[TaskReasons]:
    """One :class:`TaskReasons` per task (in order of first appearance), identical reasons counted once."""
    groups: dict[str, TaskReasons] = {}
    counts: dict[str, dict[tuple[str, str, str | None], list[Any]]] = {}
    for e in explanations:
        group = groups.setdefault(e.task, TaskReasons(e.task, 0))
        group.calls += 1
        seen = counts.setdefault(e.task, {})
        for reason in e.reasons:
            entry = seen.get(reason.key())
            if entry is None:
                seen[reason.key()] = [reason, 1]
            else:
                entry[1] += 1
    for task, group in groups.items():
        group.reasons = [(r, n) for r, n in counts[task].values()]
    return list(groups.values())


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
    args_hash: str | None = None  # when known: earlier calls with the same arguments are found first
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
        out.append(Reason(ReasonKind.CODE, f"code of {task_name} changed", name=task_name,
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
            out.append(Reason(ReasonKind.CODE_ADDED, f"now uses {_describe(kind, name)}{where}", name=name,
                              new=entry.get("source")))
        elif new is None:
            out.append(Reason(ReasonKind.CODE_REMOVED, f"no longer uses {_describe(kind, name)}", name=name,
                              old=entry.get("source")))
        elif kind in ("function", "class"):
            out.append(Reason(ReasonKind.CODE, f"code of `{name}` changed{where}", name=name,
                              diff=_diff(old.get("source"), new.get("source"))))
        else:
            o, n = old.get("source"), new.get("source")
            out.append(Reason(_kind(kind), f"{_describe(kind, name)} changed: {o} -> {n}", name=name, old=o, new=n))
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
        out.append(Reason(ReasonKind.PYTHON, f"python {old.get('python')} -> {new.get('python')}", name="python",
                          old=old.get("python"), new=new.get("python")))
    before, now = old.get("packages") or {}, new.get("packages") or {}
    for name in sorted(before.keys() | now.keys()):
        o, n = before.get(name), now.get(name)
        if o == n:
            continue
        if o is None:
            out.append(Reason(ReasonKind.PACKAGE, f"package {name} {n} is now used", name=name, new=n))
        elif n is None:
            out.append(Reason(ReasonKind.PACKAGE, f"package {name} {o} is no longer used", name=name, old=o))
        else:
            out.append(Reason(ReasonKind.PACKAGE, f"package {name} {o} -> {n}", name=name, old=o, new=n))
    return out


def _recorded_reason(text: str) -> Reason:
    if text.startswith("cached result no longer valid"):
        return Reason(ReasonKind.INVALID_RESULT, text)
    if text.startswith(CORRUPT_REASON):
        return Reason(ReasonKind.CORRUPT_VALUE, text)
    if text.startswith("caching"):
        return Reason(ReasonKind.CACHE_OFF, text)
    return Reason(ReasonKind.RECORDED, text)


def _candidates(conn: Connection, facts: CallFacts, task_hashes: list[str]) -> list[Any]:
    """Earlier calls of the task, newest first: those with the same key or arguments, those sharing an argument
    value, and the newest (at most MAX_CANDIDATES of each)."""
    c = s.call_node.c

    def earlier(*where: Any) -> Select[Any]:
        query = select(c.call_hash, c.task_hash, c.eval_hash, c.created_at).where(c.task_hash.in_(task_hashes),
                                                                                    *where)
        if facts.exclude_call:
            query = query.where(c.call_hash != facts.exclude_call)
        if facts.before is not None:
            query = query.where(c.created_at < facts.before)
        return query.order_by(c.created_at.desc()).limit(MAX_CANDIDATES)

    same = [c.eval_hash == facts.eval_hash] + ([c.args_hash == facts.args_hash] if facts.args_hash else [])
    queries = [earlier(or_(*same)), earlier()]
    values = sorted(set(facts.arguments.values()))
    if values:
        sharing = select(s.argument.c.call_hash).where(s.argument.c.value_hash.in_(values))
        queries.insert(1, earlier(c.call_hash.in_(sharing)))
    found: dict[str, Any] = {}
    for query in queries:
        for row in conn.execute(query):
            found.setdefault(row.call_hash, row)
    return sorted(found.values(), key=lambda r: r.created_at, reverse=True)


def _previous_failure(conn: Connection, facts: CallFacts) -> Reason | None:
    """The same call's latest earlier attempt, when it failed (a failure is never cached)."""
    j = s.job.c
    query = (select(j.status, j.error_type, j.error_message, j.execution_id)
             .where(j.eval_hash == facts.eval_hash, j.status != Status.RETRYING.value)
             .order_by(j.started_at.desc()).limit(1))
    if facts.before is not None:
        query = query.where(j.started_at < facts.before)
    last = conn.execute(query).first()
    if last is None or last.status not in (Status.FAILED, Status.INTERRUPTED):
        return None
    what = "was interrupted" if last.status == Status.INTERRUPTED else "failed"
    error = f" ({last.error_type.rsplit('.', 1)[-1]}: {last.error_message})" if last.error_type else ""
    return Reason(ReasonKind.PREVIOUS_FAILED,
                  f"the previous attempt of this call {what}{error} in execution {last.execution_id[:8]}; "
                  "failed calls are never cached", old=last.status, new=None)


def diff_call(conn: Connection, facts: CallFacts) -> tuple[list[Reason], str | None]:
    """The reasons a call ran, against the nearest earlier call of its task; and that call's hash."""
    reasons: list[Reason] = [_recorded_reason(facts.reason)] if facts.reason else []
    task_rows = {r.hash: r for r in conn.execute(
        select(s.task.c.hash, s.task.c.source, s.task.c.code_manifest).where(s.task.c.fullname == facts.task_name))}
    failure = _previous_failure(conn, facts)
    if failure is not None:  # same code, arguments and environment as an attempt that failed: nothing else differs
        return _tagged(reasons + [failure], facts), None
    earlier = _candidates(conn, facts, sorted(task_rows)) if task_rows else []
    if not earlier:
        if not reasons:
            reasons.append(Reason(ReasonKind.NEW_TASK, f"new task: {facts.task_name} never ran before with this code "
                                  "or any other"))
        return _tagged(reasons, facts), None
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
            code = [Reason(ReasonKind.CODE, f"the hash of {facts.task_name} changed (its version=, hash_includes "
                           "or options)", name=facts.task_name)]
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
            reasons.append(Reason(ReasonKind.ARGUMENT_ADDED, f"argument `{name}` is new: {n}", name=name, new=n))
        elif new is None:
            reasons.append(Reason(ReasonKind.ARGUMENT_REMOVED, f"argument `{name}` was removed", name=name, old=o))
        else:
            path = _file_path(new_type, n)
            if path is not None and path == _file_path(old_type, o):
                what = "directory" if (new_type or "").endswith("Dir") else "file"
                reasons.append(Reason(ReasonKind.INPUT_FILE, f"input {what} {path} changed (content)", name=name, old=o,
                                      new=n))
            else:
                reasons.append(Reason(ReasonKind.ARGUMENT, f"argument `{name}`: {o} -> {n}", name=name, old=o, new=n))

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
                ReasonKind.NOT_REUSABLE,
                "same code and arguments as an earlier call, whose result was not reused (caching was off for the "
                "run or task, a value it held was no longer valid, or the earlier call failed)",
            ))
        else:
            reasons.append(Reason(
                ReasonKind.UNKNOWN, "the cache key differs from the nearest earlier call's, but no difference of code, "
                "arguments or environment was recorded (a changed env_policy?)"))
    return _tagged(reasons, facts), nearest.call_hash


def _tagged(reasons: list[Reason], facts: CallFacts) -> list[Reason]:
    for r in reasons:
        r.task = facts.task_name
    return reasons


def call_reasons(store: Store, facts: CallFacts) -> list[Reason]:
    """:func:`diff_call` on a store, leaving no read transaction open: the scheduler's dry run asks this way,
    without touching a connection itself."""
    conn = store.conn
    try:
        return diff_call(conn, facts)[0]
    finally:
        conn.rollback()


def explain_job(conn: Connection, job_id: str) -> Explanation:
    """Explain one job (by full id)."""
    job = conn.execute(select(s.job).where(s.job.c.id == job_id)).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    out = Explanation(job.id, job.task_name, job.status)
    if job.status == Status.CACHED:
        out.reasons.append(Reason(ReasonKind.REUSED, "reused from the cache: code and arguments unchanged"))
        return out
    if job.call_hash:
        mine = _arguments_of(conn, [job.call_hash])[job.call_hash]
    elif job.arguments:
        mine = dict(json.loads(job.arguments))
    else:
        out.reasons.append(Reason(ReasonKind.UNKNOWN, f"the job {job.status} before its arguments were recorded"))
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
    args_hash = conn.execute(select(s.call_node.c.args_hash).where(s.call_node.c.call_hash == job.call_hash)
                             ).scalar_one_or_none() if job.call_hash else None
    facts = CallFacts(
        task_name=job.task_name, task_hash=job.task_hash, eval_hash=job.eval_hash, arguments=mine,
        environment=environment, reason=job.reason, args_hash=args_hash,
        before=run_start if run_start is not None else job.started_at,
    )
    out.reasons, out.compared_with = diff_call(conn, facts)
    return out


def explain_store(store: Store, ident: str) -> list[Explanation]:
    """:func:`explain` on a store, leaving no read transaction open."""
    conn = store.conn
    try:
        return explain(conn, ident)
    finally:
        conn.rollback()


def explain(conn: Connection, ident: str) -> list[Explanation]:
    """Explain a job, or every job of an execution that ran instead of being reused."""
    kind, full_id = resolve_id(conn, ident)
    if kind == "job":
        return [explain_job(conn, full_id)]
    rows = conn.execute(
        select(s.job.c.id).where(s.job.c.execution_id == full_id, s.job.c.status != Status.CACHED.value)
        .order_by(s.job.c.started_at)
    ).all()
    return [explain_job(conn, r.id) for r in rows]
