"""Built-in lazy operations: cond, catch, catch_all, throw, apply_tags, seq, get_context."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from slothflow import Scheduler, apply_tags, catch, catch_all, cond, get_context, task, throw
from slothflow.functools import seq

Query = Callable[..., list[tuple[Any, ...]]]

RAN: Counter[str] = Counter()
_LOCK = threading.Lock()


def mark(name: str) -> None:
    with _LOCK:
        RAN[name] += 1


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


class RecoverableError(Exception):
    pass


@task
def value(x: Any) -> Any:
    mark(f"value:{x}")
    return x


@task
def fail(message: str, kind: str = "value") -> Any:
    mark(f"fail:{message}")
    errors: dict[str, type[Exception]] = {
        "value": ValueError, "key": KeyError, "recoverable": RecoverableError, "type": TypeError,
    }
    raise errors[kind](message)


@task
def describe_error(error: Exception) -> str:
    mark("describe_error")
    return f"{type(error).__name__}: {error.args[0]}"


@task
def summarize(results: list[Any]) -> list[str]:
    mark("summarize")
    return [f"error:{r.args[0]}" if isinstance(r, Exception) else f"ok:{r}" for r in results]


# --------------------------------------------------------------------------------------------- cond


def test_cond_evaluates_only_the_chosen_branch(scheduler: Scheduler) -> None:
    assert scheduler.run(cond(value(True), value("then"), fail("else"))) == "then"
    assert scheduler.run(cond(value(0), fail("then"), value("else"))) == "else"
    assert RAN == {"value:True": 1, "value:then": 1, "value:0": 1, "value:else": 1}


def test_cond_elif_chain(scheduler: Scheduler) -> None:
    def classify(n: int) -> Any:
        x = value(n)
        return cond(x < 0, value("negative"), x == 0, value("zero"), x < 10, value("small"), value("large"))

    assert scheduler.run([classify(n) for n in (-3, 0, 4, 99)]) == ["negative", "zero", "small", "large"]
    # later predicates are not evaluated once one matched
    RAN.clear()
    assert scheduler.run(cond(value("p1"), value("a"), fail("p2"), value("b"), value("c"))) == "a"
    assert "fail:p2" not in RAN


def test_cond_with_plain_values_and_errors(scheduler: Scheduler) -> None:
    assert scheduler.run(cond(False, 1, 2)) == 2
    assert scheduler.run(cond([], 1, [value(3)])) == [3]
    with pytest.raises(ValueError, match="pred"):
        scheduler.run(cond(fail("pred"), 1, 2))
    # Any number of pairs; without a final else, no true predicate gives None (as in redun).
    assert scheduler.run(cond(True, 1)) == 1
    assert scheduler.run(cond(False, 1, False, 2)) is None
    assert scheduler.run(cond(False, 1, True, 2)) == 2


def test_cond_inside_a_task_drives_recursion(scheduler: Scheduler) -> None:
    @task
    def dec(n: int) -> int:
        return n - 1

    @task
    def countdown(n: int) -> Any:
        mark("countdown")
        return cond(value(n) <= 0, "liftoff", countdown(dec(n)))

    # only the chosen branch is built into a call: countdown(dec(0)) is never evaluated
    assert scheduler.run(countdown(3)) == "liftoff"
    assert RAN["countdown"] == 4


# -------------------------------------------------------------------------------------------- catch


def test_catch_recovers_with_the_exception(scheduler: Scheduler) -> None:
    assert scheduler.run(catch(fail("boom"), ValueError, describe_error)) == "ValueError: boom"
    assert scheduler.run(catch(value(5), ValueError, describe_error)) == 5
    assert RAN["describe_error"] == 1


def test_catch_matches_classes_in_order_and_by_subclass(scheduler: Scheduler) -> None:
    @task
    def first(e: Exception) -> str:
        return "first"

    @task
    def second(e: Exception) -> str:
        return "second"

    assert scheduler.run(catch(fail("k", "key"), ValueError, first, LookupError, second)) == "second"
    assert scheduler.run(catch(fail("v"), Exception, first, ValueError, second)) == "first"
    assert scheduler.run(catch(fail("r", "recoverable"), (TypeError, RecoverableError), first)) == "first"


def test_catch_reraises_unmatched_errors(scheduler: Scheduler) -> None:
    with pytest.raises(KeyError):
        scheduler.run(catch(fail("k", "key"), ValueError, describe_error))


def test_catch_recover_may_fail_or_be_a_plain_function(scheduler: Scheduler) -> None:
    def plain_recover(error: Exception) -> Any:
        return value(f"recovered {error.args[0]}")

    assert scheduler.run(catch(fail("x"), ValueError, plain_recover)) == "recovered x"
    with pytest.raises(TypeError, match="from recover"):
        scheduler.run(catch(fail("x"), ValueError, lambda e: fail("from recover", "type")))


def test_catch_around_a_failing_subtree(scheduler: Scheduler) -> None:
    @task
    def parent(n: int) -> Any:
        return [value(n), fail(f"child {n}")]

    assert scheduler.run(catch(parent(1), ValueError, describe_error)) == "ValueError: child 1"


def test_recovered_call_is_cached_across_runs(scheduler: Scheduler) -> None:
    # The failed call reruns (errors are never cached), but the recover task receives an equal
    # exception and is reused: the error's recorded context must be deterministic.
    for _ in range(3):
        assert scheduler.run(catch(fail("again"), ValueError, describe_error)) == "ValueError: again"
    assert RAN == {"fail:again": 3, "describe_error": 1}


def test_catch_argument_validation() -> None:
    with pytest.raises(TypeError):
        catch(value(1))
    with pytest.raises(TypeError):
        catch(value(1), ValueError)


# ---------------------------------------------------------------------------------------- catch_all


def test_catch_all_waits_for_all_then_recovers(scheduler: Scheduler) -> None:
    @task
    def slow(x: int) -> int:
        time.sleep(0.2)
        mark("slow")
        return x

    exprs = [value(1), fail("bad"), slow(3)]
    assert scheduler.run(catch_all(exprs, ValueError, summarize)) == ["ok:1", "error:bad", "ok:3"]
    assert RAN["slow"] == 1 and RAN["summarize"] == 1


def test_catch_all_without_errors_returns_the_values(scheduler: Scheduler) -> None:
    assert scheduler.run(catch_all([value(1), {"k": value(2)}], ValueError, summarize)) == [1, {"k": 2}]
    assert scheduler.run(catch_all([1, 2])) == [1, 2]
    assert "summarize" not in RAN


def test_catch_all_reraises_unmatched_or_unrecovered(scheduler: Scheduler) -> None:
    with pytest.raises(KeyError):
        scheduler.run(catch_all([fail("v"), fail("k", "key")], ValueError, summarize))
    with pytest.raises(ValueError, match="only"):
        scheduler.run(catch_all([value(1), fail("only")]))
    assert "summarize" not in RAN


def test_catch_all_with_any_error_class(scheduler: Scheduler) -> None:
    result = scheduler.run(catch_all([fail("v"), fail("k", "key")], None, summarize))
    assert result == ["error:v", "error:k"]


# -------------------------------------------------------------------------------------------- throw


def test_throw_raises_lazily(scheduler: Scheduler) -> None:
    expr = throw(RecoverableError("lazy"))
    assert RAN == {}  # building it raised nothing
    with pytest.raises(RecoverableError, match="lazy"):
        scheduler.run(expr)
    assert scheduler.run(cond(True, value(1), throw(ValueError("not chosen")))) == 1
    assert scheduler.run(catch(throw(ValueError("caught")), ValueError, describe_error)) == "ValueError: caught"
    with pytest.raises(TypeError, match="exception"):
        scheduler.run(throw("not an exception"))


def test_task_returning_throw(scheduler: Scheduler) -> None:
    @task
    def validate(x: int) -> Any:
        return x if x > 0 else throw(ValueError(f"{x} is not positive"))

    assert scheduler.run(validate(1)) == 1
    with pytest.raises(ValueError, match="-1 is not positive"):
        scheduler.run(validate(-1))


# --------------------------------------------------------------------------------------- apply_tags


def test_apply_tags_records_value_job_and_execution_tags(scheduler: Scheduler, sql: Query) -> None:
    @task
    def tagged(x: int) -> Any:
        return apply_tags(value(x), tags={"kind": "result"}, job_tags=[("stage", "train")],
                          execution_tags={"project": "p1"})

    assert scheduler.run(tagged(3)) == 3
    rows = sql("SELECT entity_type, entity_id, key, value FROM tag")
    by_type = {(t, k): (eid, json.loads(v)) for t, eid, k, v in rows}
    assert by_type[("value", "kind")][1] == "result"
    assert by_type[("job", "stage")][1] == "train"
    assert by_type[("execution", "project")] == (scheduler.last_execution_id, "p1")
    (tagged_job,) = sql("SELECT id FROM job WHERE task_name = ?", tagged.fullname)[0]
    assert by_type[("job", "stage")][0] == tagged_job
    from slothflow import hash_value

    assert by_type[("value", "kind")][0] == hash_value(3)


def test_run_tags_go_on_the_execution(scheduler: Scheduler, sql: Query) -> None:
    assert scheduler.run(value(1), tags={"who": "me"}) == 1
    assert sql("SELECT entity_type, key, value FROM tag") == [("execution", "who", '"me"')]


def test_apply_tags_passes_errors_through(scheduler: Scheduler, sql: Query) -> None:
    with pytest.raises(ValueError):
        scheduler.run(apply_tags(fail("x"), tags={"k": "v"}))
    assert sql("SELECT count(*) FROM tag") == [(0,)]


# ---------------------------------------------------------------------------------------------- seq


def test_seq_evaluates_in_order(scheduler: Scheduler) -> None:
    spans: list[tuple[str, float, float]] = []

    @task
    def timed(name: str, delay: float) -> str:
        start = time.monotonic()
        time.sleep(delay)
        spans.append((name, start, time.monotonic()))
        return name

    assert scheduler.run(seq([timed("a", 0.15), timed("b", 0.05), timed("c", 0.0)])) == ["a", "b", "c"]
    assert [s[0] for s in spans] == ["a", "b", "c"]
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert start >= end  # each starts after the previous finished


def test_seq_stops_at_the_first_error(scheduler: Scheduler) -> None:
    with pytest.raises(ValueError):
        scheduler.run(seq([value(1), fail("stop"), value("never")]))
    assert "value:never" not in RAN
    assert scheduler.run(seq([])) == []


# ------------------------------------------------------------------------------------- get_context


def test_get_context_only_reruns_tasks_that_read_it(scheduler: Scheduler) -> None:
    @task
    def reads(x: int, scale: int = get_context("scale", 1)) -> int:
        mark("reads")
        return x * scale

    @task
    def ignores(x: int) -> int:
        mark("ignores")
        return x

    def workflow() -> Any:
        return [reads(2), ignores(2)]

    assert scheduler.run(workflow(), context={"scale": 3}) == [6, 2]
    assert scheduler.run(workflow(), context={"scale": 3}) == [6, 2]
    assert scheduler.run(workflow(), context={"scale": 5, "unrelated": 1}) == [10, 2]
    assert RAN == {"reads": 2, "ignores": 1}


def test_shallow_reuse_never_returns_a_stale_context_value(scheduler: Scheduler) -> None:
    @task
    def reads(scale: int = get_context("scale", 1)) -> int:
        mark("reads")
        return scale

    @task(check_valid="shallow")
    def top() -> Any:
        mark("top")
        return [reads(), get_context("scale")]

    assert scheduler.run(top(), context={"scale": 2}) == [2, 2]
    assert scheduler.run(top(), context={"scale": 2}) == [2, 2]
    assert scheduler.run(top(), context={"scale": 7}) == [7, 7]
    assert RAN == {"top": 1, "reads": 2}
