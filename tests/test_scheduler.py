"""Scheduler semantics: dynamic DAGs, recursion, CSE, cache scopes, validity modes, limits, provenance,
context, dry runs, argument normalization, hashing errors and error propagation.

Every test runs against a real SQLite file and the real threads executor; bodies count their own runs.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slothflow import (
    ExecutorError,
    HashingError,
    PartialTask,
    Plan,
    Scheduler,
    SlothflowError,
    Task,
    TaskLookupError,
    get_context,
    task,
)

Query = Callable[..., list[tuple[Any, ...]]]


class Tally:
    """Thread-safe count of task bodies that ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def take(self) -> Counter[str]:
        with self._lock:
            out, self.counts = self.counts, Counter()
        return out


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def make_scheduler(sqlite_uri: str) -> Iterator[Callable[..., Scheduler]]:
    """Build extra schedulers on the test's database (each is closed at the end)."""
    made: list[Scheduler] = []

    def make(**sections: Any) -> Scheduler:
        config: dict[str, Any] = {"backend": {"db_uri": sqlite_uri}, **sections}
        s = Scheduler(config=config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# ------------------------------------------------------------------------------ dynamic DAGs


def test_task_returning_expression_is_evaluated(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def inc(x: int) -> int:
        tally("inc")
        return x + 1

    @task
    def fan(n: int) -> Any:
        tally("fan")
        return {"sum": sum_all([inc(i) for i in range(n)]), "first": inc(0)}

    @task
    def sum_all(values: list[int]) -> int:
        tally("sum_all")
        return sum(values)

    assert scheduler.run(fan(4)) == {"sum": 10, "first": 1}
    assert tally.take() == {"fan": 1, "inc": 4, "sum_all": 1}  # inc(0) shared by CSE
    assert scheduler.run(fan(4)) == {"sum": 10, "first": 1}
    assert tally.take() == {}


def test_fib_runs_each_distinct_call_exactly_once(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def add(a: int, b: int) -> int:
        tally("add")
        return a + b

    @task
    def fib(n: int) -> Any:
        tally("fib")
        if n < 2:
            return n
        return add(fib(n - 1), fib(n - 2))

    assert scheduler.run(fib(20)) == 6765
    # CSE ideal: fib(0..20) once each; add on the distinct pairs (fib(k-1), fib(k-2)), k = 2..20
    assert tally.take() == {"fib": 21, "add": 19}
    assert scheduler.run(fib(20)) == 6765
    assert tally.take() == {}
    assert scheduler.run(fib(22)) == 17711
    assert tally.take() == {"fib": 2, "add": 2}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(-5, 5), max_size=12))
def test_map_reduce_matches_python(scheduler: Scheduler, values: list[int]) -> None:
    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @task
    def pipeline(xs: list[int]) -> Any:
        return total([square(x) for x in xs])

    assert scheduler.run(pipeline(values)) == sum(x * x for x in values)


def test_higher_order_tasks_as_arguments_and_results(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def double(x: int) -> int:
        tally("double")
        return 2 * x

    @task
    def power(x: int, k: int) -> int:
        tally("power")
        return x**k

    @task
    def apply_all(fn: Any, xs: list[int]) -> Any:
        tally("apply_all")
        assert isinstance(fn, (Task, PartialTask))
        return [fn(x) for x in xs]

    @task
    def choose(name: str) -> Any:
        tally("choose")
        return double if name == "double" else power.partial(k=3)

    assert scheduler.run(apply_all(double, [1, 2])) == [2, 4]
    assert scheduler.run(apply_all(power.partial(k=2), [3])) == [9]
    assert scheduler.run(apply_all(choose("double"), [5])) == [10]
    assert scheduler.run(apply_all(choose("power"), [2])) == [8]
    assert tally.take() == {"apply_all": 4, "double": 3, "power": 2, "choose": 2}
    # results that are tasks round-trip through the store: rerun is fully cached
    assert scheduler.run(apply_all(choose("power"), [2])) == [8]
    assert scheduler.run(choose("double")) is double
    assert tally.take() == {}


def test_deep_chain_without_raising_recursion_limit(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def step(x: int) -> int:
        return x + 1

    @task
    def countdown(n: int) -> Any:
        tally("countdown")
        return n if n == 0 else countdown(n - 1)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        expr: Any = 0
        for _ in range(3000):
            expr = step(expr)
        assert scheduler.run(expr) == 3000
        assert scheduler.run(countdown(3000)) == 0
        assert tally.take() == {"countdown": 3001}
        assert scheduler.run(countdown(3000)) == 0  # replaying 3000 stored reductions
        assert tally.take() == {}
        assert scheduler.run(countdown.options(check_valid="shallow")(3000)) == 0
    finally:
        sys.setrecursionlimit(limit)


def test_error_at_the_bottom_of_a_deep_chain(scheduler: Scheduler) -> None:
    @task
    def descend(n: int) -> Any:
        if n == 0:
            raise LookupError("bottom reached")
        return descend(n - 1)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        with pytest.raises(LookupError, match="bottom reached"):
            scheduler.run(descend(2000))
    finally:
        sys.setrecursionlimit(limit)


# --------------------------------------------------------------------------------- cache rules


def test_cache_scopes(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def backend(x: int) -> int:
        tally("backend")
        return x

    @task(cache_scope="CSE")
    def cse(x: int) -> int:
        tally("cse")
        return x

    @task(cache=False)
    def uncached(x: int) -> int:
        tally("uncached")
        return x

    @task(cache_scope="NONE")
    def none(x: int) -> int:
        tally("none")
        return x

    def workflow() -> list[Any]:
        return [f(1) for f in (backend, cse, uncached, none) for _ in range(3)]

    assert scheduler.run(workflow()) == [1] * 12
    assert tally.take() == {"backend": 1, "cse": 1, "uncached": 1, "none": 3}
    assert scheduler.run(workflow()) == [1] * 12
    assert tally.take() == {"cse": 1, "uncached": 1, "none": 3}
    # run(cache=False) ignores the backend cache but keeps CSE
    assert scheduler.run(workflow(), cache=False) == [1] * 12
    assert tally.take() == {"backend": 1, "cse": 1, "uncached": 1, "none": 3}


def test_options_override_of_cache(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def t(x: int) -> int:
        tally("t")
        return x

    scheduler.run(t(1))
    scheduler.run(t.options(cache=False)(1))
    scheduler.run(t.options(cache=False)(1))
    assert tally.take() == {"t": 3}


def test_config_args_are_left_out_of_the_key(scheduler: Scheduler, tally: Tally) -> None:
    @task(config_args=["workers", "verbose"])
    def compute(x: int, workers: int = 1, verbose: bool = False) -> int:
        tally("compute")
        return x * 10 + workers

    assert scheduler.run(compute(1, workers=2)) == 12
    assert scheduler.run(compute(1, workers=4, verbose=True)) == 12  # reused
    assert scheduler.run(compute(2, workers=4)) == 24
    assert tally.take() == {"compute": 2}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(), b=st.integers())
def test_argument_normalization_shares_one_cache_entry(scheduler: Scheduler, a: int, b: int) -> None:
    ran: list[tuple[int, int]] = []

    @task
    def f(a: int, b: int = 7, *rest: int, c: int = 3, **extra: int) -> int:
        ran.append((a, b))
        return a + b + c

    forms = [f(a), f(a=a), f(a, b=7), f(a, 7), f(a=a, b=7, c=3), f(a, c=3)]
    assert scheduler.run(forms) == [a + 10] * 6
    assert scheduler.run(f(a, 7, c=3)) == a + 10
    assert ran.count((a, 7)) <= 1  # the first example may have cached it already in this db
    ran.clear()
    assert scheduler.run([f(a, b), f(a=a, b=b), f(b=b, a=a)]) == [a + b + 3] * 3
    assert len(ran) <= 1


def test_argument_normalization_exact_counts(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def g(a: int, b: int = 2) -> int:
        tally("g")
        return a * b

    assert scheduler.run(g(1)) == 2
    assert scheduler.run(g(a=1)) == 2
    assert scheduler.run(g(1, b=2)) == 2
    assert scheduler.run(g(b=2, a=1)) == 2
    assert tally.take() == {"g": 1}
    assert scheduler.run(g(1, 3)) == 3
    assert tally.take() == {"g": 1}


def test_bad_arguments_fail_with_task_name(scheduler: Scheduler) -> None:
    @task
    def two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="two"):
        scheduler.run(two(1))
    with pytest.raises(TypeError, match="two"):
        scheduler.run(two(1, 2, 3))


# --------------------------------------------------------------------------------- validity


def _redefine(name: str, body: Callable[..., Any], namespace: str = "redef", **opts: Any) -> Task:
    return task(name=name, namespace=namespace, **opts)(body)


def test_full_validity_reruns_only_the_changed_child(scheduler: Scheduler, tally: Tally) -> None:
    def leaf_v1(x: int) -> int:
        tally("leaf")
        return x + 1

    def leaf_v2(x: int) -> int:
        tally("leaf")
        return x + 100

    def same_leaf_v3(x: int) -> int:
        tally("leaf")
        return x + 1 + 0

    leaf = _redefine("leaf", leaf_v1)

    @task(namespace="redef")
    def consume(y: int) -> int:
        tally("consume")
        return y * 2

    @task(namespace="redef")
    def parent(x: int) -> Any:
        tally("parent")
        return consume(leaf(x))

    assert scheduler.run(parent(1)) == 4
    assert tally.take() == {"parent": 1, "leaf": 1, "consume": 1}

    _redefine("leaf", leaf_v2)  # the registry now has new leaf code
    assert scheduler.run(parent(1)) == 202
    assert tally.take() == {"leaf": 1, "consume": 1}  # the parent's body did not rerun

    _redefine("leaf", same_leaf_v3)  # different code, same result as v1: consumer is cut off early
    assert scheduler.run(parent(1)) == 4
    assert tally.take() == {"leaf": 1}


def test_shallow_validity_skips_walking_an_unchanged_subtree(
    make_scheduler: Callable[..., Scheduler], tally: Tally
) -> None:
    def leaf_v1(x: int) -> int:
        tally("leaf")
        return x + 1

    def leaf_v2(x: int) -> int:
        tally("leaf")
        return x + 2

    _redefine("sleaf", leaf_v1, namespace="shallow")

    @task(namespace="shallow")
    def mid(x: int) -> Any:
        tally("mid")
        from slothflow import get_task_registry

        return get_task_registry().get("shallow.sleaf")(x)  # type: ignore[misc]

    @task(namespace="shallow", check_valid="shallow")
    def top(x: int) -> Any:
        tally("top")
        return mid(x)

    events: list[tuple[str, str]] = []
    s = make_scheduler()
    s.add_listener(lambda event, job, stats: events.append((event, job.task.name)))
    assert s.run(top(1)) == 2
    assert tally.take() == {"top": 1, "mid": 1, "leaf": 1}
    events.clear()

    assert s.run(top(1)) == 2
    assert tally.take() == {}
    assert events == [("cached", "top")]  # no child lookups at all
    events.clear()

    # In full mode the same rerun looks up every child on its own. (How a call is checked is not part of
    # its key: top is the same call and is replayed.)
    full_top = top.options(check_valid="full")
    assert full_top.hash == top.hash
    assert s.run(full_top(1)) == 2
    assert tally.take() == {}
    assert sorted(name for ev, name in events if ev == "cached") == ["mid", "sleaf", "top"]
    events.clear()
    assert s.run(full_top(1)) == 2
    assert tally.take() == {}
    assert sorted(name for ev, name in events if ev == "cached") == ["mid", "sleaf", "top"]

    # A changed task deep in the subtree makes shallow fall back to the full rule: only that task reruns.
    _redefine("sleaf", leaf_v2, namespace="shallow")
    assert s.run(top(1)) == 3
    assert tally.take() == {"leaf": 1}


def test_failed_call_is_not_cached(scheduler: Scheduler, tally: Tally, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("yes")

    @task
    def fragile(x: int) -> int:
        tally("fragile")
        if flag.exists():
            raise RuntimeError("still broken")
        return x

    @task
    def parent(x: int) -> Any:
        tally("parent")
        return fragile(x)

    for _ in range(2):
        with pytest.raises(RuntimeError, match="still broken"):
            scheduler.run(parent(1))
    assert tally.take() == {"fragile": 2, "parent": 1}  # parent's reduction is a valid cache entry
    flag.unlink()
    assert scheduler.run(parent(1)) == 1
    assert tally.take() == {"fragile": 1}
    assert scheduler.run(parent(1)) == 1
    assert tally.take() == {}


# ------------------------------------------------------------------------------------- errors


class PipelineError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def test_task_error_reaches_caller_as_itself(scheduler: Scheduler) -> None:
    @task
    def explode(x: int) -> int:
        raise PipelineError(f"exploded on {x}", code=x)

    @task
    def outer(x: int) -> Any:
        return explode(x) + 1

    with pytest.raises(PipelineError) as info:
        scheduler.run(outer(7))
    exc = info.value
    assert type(exc) is PipelineError
    assert str(exc) == "exploded on 7"
    assert exc.code == 7
    frames = traceback.extract_tb(exc.__traceback__)
    assert any(f.name == "explode" and f.filename == __file__ for f in frames), frames
    assert frames[-1].name == "explode"  # the innermost frame is the task's own raise
    assert any("explode" in note for note in getattr(exc, "__notes__", []))


def test_failed_job_is_recorded_with_its_error(scheduler: Scheduler, sql: Query) -> None:
    @task
    def bad() -> int:
        raise ValueError("nope")

    with pytest.raises(ValueError):
        scheduler.run(bad())
    rows = sql("SELECT status, error_type, error_message, error_traceback FROM job WHERE task_name LIKE '%.bad'")
    assert len(rows) == 1
    status, etype, message, tb = rows[0]
    assert status == "failed" and etype == "builtins.ValueError" and message == "nope"
    assert "def bad" in tb or "raise ValueError" in tb
    assert sql("SELECT status FROM execution") == [("failed",)]
    assert sql("SELECT count(*) FROM evaluation") == [(0,)]


def test_other_branches_keep_running_after_an_error(scheduler: Scheduler, tmp_path: Path) -> None:
    done = tmp_path / "slow-branch-finished"

    @task
    def fail_fast() -> int:
        raise KeyError("early")

    @task
    def slow() -> int:
        time.sleep(0.3)
        done.write_text("ok")
        return 1

    @task
    def after_slow(x: int) -> int:
        (tmp_path / "after").write_text(str(x))
        return x

    with pytest.raises(KeyError):
        scheduler.run([fail_fast(), after_slow(slow())])
    assert done.read_text() == "ok"
    assert (tmp_path / "after").read_text() == "1"
    # the finished branch is cached: a rerun of it alone does nothing
    assert scheduler.run(after_slow(slow())) == 1


def test_unhashable_argument_names_task_and_argument(scheduler: Scheduler) -> None:
    @task
    def takes_lock(name: str, resource: Any) -> str:
        return name

    with pytest.raises(HashingError) as info:
        scheduler.run(takes_lock("x", threading.Lock()))
    assert info.value.task_name == takes_lock.fullname
    assert info.value.argument == "resource"
    assert "resource" in str(info.value) and takes_lock.fullname in str(info.value)


def test_unknown_executor_is_an_error(scheduler: Scheduler) -> None:
    @task(executor="no_such_executor")
    def somewhere() -> int:
        return 1

    with pytest.raises(ExecutorError, match="no_such_executor"):
        scheduler.run(somewhere())


def test_undefined_task_in_a_replayed_reduction(scheduler: Scheduler) -> None:
    from slothflow.model._task import _UndefinedTask

    ghost = _UndefinedTask("gone.task", "0" * 64)
    with pytest.raises(TaskLookupError, match="gone.task"):
        scheduler.run(ghost(1))


# ------------------------------------------------------------------------------------- limits


def test_limits_bound_concurrency(make_scheduler: Callable[..., Scheduler]) -> None:
    lock = threading.Lock()
    active = {"db": 0, "gpu": 0}
    peak = {"db": 0, "gpu": 0}

    def enter(name: str) -> None:
        with lock:
            active[name] += 1
            peak[name] = max(peak[name], active[name])

    def leave(name: str) -> None:
        with lock:
            active[name] -= 1

    @task(limits=["db"])
    def query(i: int) -> int:
        enter("db")
        time.sleep(0.05)
        leave("db")
        return i

    @task(limits={"gpu": 2})
    def train(i: int) -> int:
        enter("gpu")
        time.sleep(0.05)
        leave("gpu")
        return i

    s = make_scheduler(limits={"db": 2, "gpu": 3}, **{"executors.default": {"type": "threads", "max_workers": 16}})
    assert s.run([query(i) for i in range(10)] + [train(i) for i in range(6)]) == list(range(10)) + list(range(6))
    assert peak["db"] == 2  # reached, never exceeded
    assert peak["gpu"] == 1  # each needs 2 of 3


def test_limit_larger_than_capacity_is_an_error(make_scheduler: Callable[..., Scheduler]) -> None:
    @task(limits={"db": 5})
    def greedy() -> int:
        return 1

    s = make_scheduler(limits={"db": 2})
    with pytest.raises(ExecutorError, match="limits"):
        s.run(greedy())


# ----------------------------------------------------------------------------------- provenance


def test_prov_false_records_nothing_for_the_subtree(scheduler: Scheduler, tally: Tally, sql: Query) -> None:
    @task
    def child(x: int) -> int:
        tally("child")
        return x + 1

    @task(prov=False)
    def quiet(x: int) -> Any:
        tally("quiet")
        return child(x)

    @task
    def root(x: int) -> Any:
        return [quiet(x), child(100)]

    assert scheduler.run(root(1)) == [2, 101]
    assert scheduler.run(root(1)) == [2, 101]  # root is reused; quiet, never cached, reruns
    assert tally.take() == {"quiet": 2, "child": 3}
    recorded = {name.rsplit(".", 1)[1] for (name,) in sql("SELECT task_name FROM job")}
    assert recorded == {"root", "child"}
    quiet_rows = sql("SELECT count(*) FROM job WHERE task_name = ?", quiet.fullname)
    assert quiet_rows == [(0,)]
    assert sql("SELECT count(*) FROM task WHERE hash = ?", quiet.hash) == [(0,)]
    assert sql("SELECT count(*) FROM call_node WHERE task_hash IN (?, ?)", quiet.hash, child.hash) == [(1,)]
    assert sql("SELECT count(*) FROM evaluation WHERE task_hash = ?", quiet.hash) == [(0,)]


def test_provenance_records_the_call_tree(scheduler: Scheduler, sql: Query) -> None:
    @task
    def leaf(x: int) -> int:
        return x

    @task
    def node(x: int) -> Any:
        return [leaf(x), leaf(x + 1)]

    scheduler.run(node(1))
    (execution_id, root_job, status) = sql("SELECT id, root_job, status FROM execution")[0]
    assert status == "done"
    jobs = sql("SELECT id, parent_id, task_name, status FROM job WHERE execution_id = ?", execution_id)
    by_id = {j[0]: j for j in jobs}
    assert by_id[root_job][2] == node.fullname and by_id[root_job][1] is None
    children = [j for j in jobs if j[1] == root_job]
    assert sorted(j[2] for j in children) == [leaf.fullname, leaf.fullname]
    assert {j[3] for j in jobs} == {"ran"}
    (root_call,) = sql("SELECT call_hash FROM job WHERE id = ?", root_job)[0]
    edges = sql("SELECT child_call FROM call_edge WHERE parent_call = ? ORDER BY position", root_call)
    assert len(edges) == 2
    scheduler.run(node(1))
    statuses = sql("SELECT status FROM job WHERE execution_id = ?", scheduler.last_execution_id)
    assert sorted(s for (s,) in statuses) == ["cached", "cached", "cached"]


# ------------------------------------------------------------------------------------- context


def test_context_values_reach_tasks_and_key_the_cache(make_scheduler: Callable[..., Scheduler], tally: Tally) -> None:
    @task
    def configured(x: int, factor: int = get_context("model.factor", 1), name: str = get_context("name")) -> Any:
        tally("configured")
        return [x * factor, name]

    s = make_scheduler(scheduler={"context": {"model": {"factor": 5, "depth": 2}}})
    assert s.run(configured(2)) == [10, None]
    assert s.run(configured(2), context={"model": {"factor": 3}, "name": "n"}) == [6, "n"]
    assert s.run(configured(2), context={"model": {"factor": 3}, "name": "n"}) == [6, "n"]
    assert s.run(configured(2, factor=4)) == [8, None]
    assert tally.take() == {"configured": 3}
    assert s.run(get_context("model")) == {"factor": 5, "depth": 2}
    # run(context=...) is merged into the configured context key by key
    assert s.run(get_context("model"), context={"model": {"factor": 1}}) == {"factor": 1, "depth": 2}
    assert s.run(get_context("missing.path", "fallback")) == "fallback"
    assert s.run(get_context("model.factor.too_deep", "fallback")) == "fallback"


def test_context_from_a_context_section(make_scheduler: Callable[..., Scheduler]) -> None:
    s = make_scheduler(context={"db": {"url": "x://y"}})
    assert s.run(get_context("db.url")) == "x://y"


# --------------------------------------------------------------------------------------- dryrun


def test_dryrun_plans_without_running(scheduler: Scheduler, tally: Tally, sql: Query) -> None:
    @task
    def leaf(x: int) -> int:
        tally("leaf")
        return x * 2

    @task
    def branch(xs: list[int]) -> Any:
        tally("branch")
        return [leaf(x) for x in xs]

    plan = scheduler.run(branch([1, 2]), dryrun=True)
    assert isinstance(plan, Plan)
    assert not plan.complete and plan.result is None
    assert [p.task for p in plan.would_run] == [branch.fullname]
    assert plan.reused == []
    assert tally.take() == {}
    assert sql("SELECT count(*) FROM job") == [(0,)]
    assert sql("SELECT count(*) FROM execution") == [(0,)]

    scheduler.run(branch([1, 2]))
    tally.take()
    plan = scheduler.run(branch([1, 2]), dryrun=True)
    assert plan.complete and plan.result == [2, 4] and plan.would_run == []
    assert sorted(p.task.rsplit(".", 1)[1] for p in plan.reused) == ["branch", "leaf", "leaf"]

    plan = scheduler.run([branch([1, 2]), leaf(3)], dryrun=True)
    assert not plan.complete
    assert [p.task for p in plan.would_run] == [leaf.fullname]
    assert "3" in plan.would_run[0].call
    assert tally.take() == {}
    assert sql("SELECT count(*) FROM execution") == [(1,)]


def test_call_waiting_for_itself_is_reported(scheduler: Scheduler, sql: Query) -> None:
    @task
    def forever(x: int) -> Any:
        return forever(x)

    with pytest.raises(SlothflowError, match=r"forever\(x=1\).*base case"):
        scheduler.run(forever(1))
    assert sql("SELECT status FROM execution") == [("failed",)]


def test_kwargs_order_does_not_matter(scheduler: Scheduler, tally: Tally) -> None:
    @task
    def opts(x: int, **extra: int) -> int:
        tally("opts")
        return x + sum(extra.values())

    assert scheduler.run([opts(1, a=1, b=2), opts(1, b=2, a=1), opts(x=1, b=2, a=1)]) == [4, 4, 4]
    assert tally.take() == {"opts": 1}


def test_run_without_a_task(scheduler: Scheduler, sql: Query) -> None:
    assert scheduler.run({"a": [1, 2]}) == {"a": [1, 2]}
    assert sql("SELECT status, root_job FROM execution") == [("done", None)]


def test_shallow_reuse_sees_a_changed_unrecorded_child(scheduler: Scheduler, tally: Tally) -> None:
    """A prov=False child leaves no record, so the parent's recorded subtree cannot vouch for it."""

    def child_v1(x: int) -> int:
        tally("child")
        return x + 1

    def child_v2(x: int) -> int:
        tally("child")
        return x + 2

    from slothflow import get_task_registry

    _redefine("pchild", child_v1, namespace="shprov", prov=False)

    @task(namespace="shprov", check_valid="shallow")
    def top(x: int) -> Any:
        tally("top")
        return get_task_registry().get("shprov.pchild")(x)  # type: ignore[misc]

    assert scheduler.run(top(1)) == 2
    _redefine("pchild", child_v2, namespace="shprov", prov=False)
    assert scheduler.run(top(1)) == 3  # never the stale 2
    assert tally.take() == {"top": 1, "child": 2}


def test_shallow_reuse_sees_a_child_shared_by_two_parents(scheduler: Scheduler, tally: Tally) -> None:
    """One expression object returned by two bodies (threads share memory) is a child of both."""

    def leaf_v1(x: int) -> int:
        tally("leaf")
        return x + 1

    def leaf_v2(x: int) -> int:
        tally("leaf")
        return x + 2

    from slothflow import get_task_registry

    _redefine("sleaf2", leaf_v1, namespace="shshare")
    shared: dict[str, Any] = {}

    def the_shared_leaf() -> Any:
        if "expr" not in shared:
            shared["expr"] = get_task_registry().get("shshare.sleaf2")(1)  # type: ignore[misc]
        return shared["expr"]

    @task(namespace="shshare", check_valid="shallow")
    def first() -> Any:
        return the_shared_leaf()

    @task(namespace="shshare", check_valid="shallow")
    def second() -> Any:
        time.sleep(0.05)
        return the_shared_leaf()

    assert scheduler.run([first(), second()]) == [2, 2]
    shared.clear()
    _redefine("sleaf2", leaf_v2, namespace="shshare")
    assert scheduler.run(second()) == 3  # never the stale 2
