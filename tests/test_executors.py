"""One conformance suite, run against every executor (inline, threads, processes).

Jobs run through a real ``Scheduler`` on an on-disk SQLite database; the processes executor starts real
worker processes (spawn), which import this module by name to find its tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow import (
    ExecutorError,
    HashingError,
    Scheduler,
    SerializationError,
    SlothflowError,
    task,
)
from slothflow.executors import EXECUTORS, JobSpec, Outcome, make_executor

NAMES = ["inline", "threads", "processes"]


@dataclasses.dataclass(frozen=True)
class Box:
    label: str
    items: frozenset[int]


class Boom(Exception):
    pass


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled (its __init__ wants two arguments)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"two-arg {a}/{b}")


@task
def add(a: int, b: int = 10) -> int:
    return a + b


@task
def echo(value: Any, *, scale: int = 1) -> Any:
    return {"value": value, "scale": scale, "type": type(value).__name__}


@task
def fib(n: int) -> Any:
    if n < 2:
        return n
    return add(fib(n - 1), fib(n - 2), )


@task
def explode(message: str) -> int:
    raise Boom(message)


@task
def explode_two_args() -> int:
    raise TwoArgError(1, 2)


@task
def calls_exit() -> int:
    sys.exit(7)


@task
def make_lock() -> Any:
    return threading.Lock()


@task
def make_lambda() -> Any:
    return lambda x: x


@task
def nap(label: str, seconds: float) -> tuple[str, float, float]:
    start = time.time()
    time.sleep(seconds)
    return label, start, time.time()


@task
def where() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


@task(executor="side")
def where_side() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


@task(executor="nowhere")
def lost() -> int:
    return 1


@pytest.fixture(params=NAMES)
def executor_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _scheduler(sqlite_uri: str, name: str, **extra: Any) -> Scheduler:
    config: dict[str, Any] = {
        "backend": {"db_uri": sqlite_uri},
        "executors.default": {"type": name, **({} if name == "inline" else {"max_workers": 2})},
    }
    config.update(extra)
    return Scheduler(config=config)


@pytest.fixture
def sched(sqlite_uri: str, executor_name: str) -> Iterator[Scheduler]:
    s = _scheduler(sqlite_uri, executor_name)
    yield s
    s.close()


def test_this_module_is_importable_by_workers() -> None:
    # The processes executor finds module-level tasks by importing this module in the worker.
    assert __name__ == "test_executors"
    assert add.__module__ == "test_executors" or add.func.__module__ == "test_executors"


def test_values_come_back(sched: Scheduler) -> None:
    assert sched.run(add(1, 2)) == 3
    assert sched.run(add(add(1, 2), add(3, b=4))) == 10
    box = Box("b", frozenset({1, 2, 3}))
    got = sched.run(echo(box, scale=3))
    assert got == {"value": box, "scale": 3, "type": "Box"}
    big = list(range(50_000))
    assert sched.run(echo(big))["value"] == big
    assert sched.run([add(1), {"k": add(2)}]) == [11, {"k": 12}]


def test_errors_come_back_as_the_tasks_own_exception(sched: Scheduler) -> None:
    with pytest.raises(Boom) as info:
        sched.run(explode("kaboom 42"))
    assert type(info.value) is Boom
    assert str(info.value) == "kaboom 42"
    # the task-level traceback points into the task's body
    traceback_text = getattr(info.value, "slothflow_traceback", "")
    assert "explode" in traceback_text and "raise Boom(message)" in traceback_text
    # a failing child fails its parent expression too
    with pytest.raises(Boom, match="inner"):
        sched.run(add(1, explode("inner")))


def test_sys_exit_in_a_task_is_reported_not_hung(sched: Scheduler) -> None:
    with pytest.raises(SystemExit) as info:
        sched.run(calls_exit())
    assert info.value.code == 7
    assert sched.run(add(2, 2)) == 4  # the executor is still usable


def test_exception_that_cannot_be_unpickled_keeps_its_message(sched: Scheduler, executor_name: str) -> None:
    with pytest.raises(Exception) as info:
        sched.run(explode_two_args())
    assert "two-arg 1/2" in str(info.value)
    if executor_name != "processes":
        assert type(info.value) is TwoArgError
    else:
        assert "TwoArgError" in str(info.value)


def test_recursion_through_returned_expressions(sched: Scheduler) -> None:
    assert sched.run(fib(12)) == 144


def test_tasks_defined_inside_a_function(sched: Scheduler) -> None:
    offset = 1000

    @task
    def local_inc(x: int) -> int:
        return x + offset

    assert sched.run(local_inc(5)) == 1005


def test_unpicklable_results_fail_with_a_clear_error_naming_the_task(
    sched: Scheduler, executor_name: str
) -> None:
    with pytest.raises(SlothflowError) as info:
        sched.run(make_lock())
    assert "make_lock" in str(info.value)
    assert getattr(info.value, "task_name", "").endswith("make_lock")
    if executor_name == "processes":
        assert isinstance(info.value, SerializationError)
    else:
        assert isinstance(info.value, HashingError | SerializationError)

    with pytest.raises(SerializationError) as info2:
        sched.run(make_lambda())
    assert "make_lambda" in str(info2.value)
    assert sched.run(add(1, 1)) == 2


def test_unhashable_arguments_name_the_task_and_argument(sched: Scheduler) -> None:
    with pytest.raises(HashingError) as info:
        sched.run(echo(threading.Lock()))
    assert info.value.argument == "value"
    assert "echo" in str(info.value) and "'value'" in str(info.value)


def test_parallelism_is_real(sched: Scheduler, executor_name: str) -> None:
    (_, a0, a1), (_, b0, b1) = sched.run([nap("a", 1.0), nap("b", 1.0)])
    overlap = a0 < b1 and b0 < a1
    if executor_name == "inline":
        assert not overlap
    else:
        assert overlap, (a0, a1, b0, b1)


def test_executor_option_routes_a_task(sqlite_uri: str, executor_name: str) -> None:
    side = "threads" if executor_name == "inline" else "inline"
    s = _scheduler(sqlite_uri, executor_name, **{"executors.side": {"type": side}})
    try:
        (pid, thread), (side_pid, side_thread) = s.run([where(), where_side()])
    finally:
        s.close()
    me = os.getpid()
    if executor_name == "inline":
        assert (pid, thread) == (me, threading.current_thread().name)
    elif executor_name == "threads":
        assert pid == me and thread.startswith("slothflow-default")
    else:
        assert pid != me
    if side == "inline":
        assert (side_pid, side_thread) == (me, threading.current_thread().name)
    else:
        assert side_pid == me and side_thread.startswith("slothflow-side")


def test_unknown_executor_name_fails_naming_the_task(sched: Scheduler) -> None:
    with pytest.raises(ExecutorError) as info:
        sched.run(lost())
    assert info.value.task_name is not None and info.value.task_name.endswith("lost")
    assert "nowhere" in str(info.value) and "lost" in str(info.value)


MAIN_SCRIPT = """
import json, sys
from slothflow import Scheduler, task

class MainError(Exception):
    pass

SCALE = 3

def helper(x):
    return x * SCALE

@task
def triple(x):
    return helper(x)

@task
def total(n):
    if n == 0:
        return 0
    return plus(triple(n), total(n - 1))

@task
def plus(a, b):
    return a + b

@task
def fails():
    raise MainError("from main")

if __name__ == "__main__":
    s = Scheduler(config={"backend": {"db_uri": sys.argv[1]},
                          "executors.default": {"type": sys.argv[2]}})
    out = {"total": s.run(total(4))}
    try:
        s.run(fails())
    except MainError as exc:
        out["error"] = [type(exc).__name__, str(exc), type(exc) is MainError]
    s.close()
    print(json.dumps(out))
"""


def test_tasks_defined_in_main_of_a_script(tmp_path: Path, sqlite_uri: str, executor_name: str) -> None:
    script = tmp_path / "wf_main.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), sqlite_uri, executor_name],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"total": 30, "error": ["MainError", "from main", True]}


# ---------------------------------------------------------------- the executor interface itself


def _raise_system_exit() -> None:
    raise SystemExit(3)


def _raise_value_error(text: str) -> None:
    raise ValueError(text)


def _collect(name: str, specs: list[JobSpec]) -> dict[str, list[Outcome]]:
    executor = make_executor(name, {"type": name, **({} if name == "inline" else {"max_workers": 2})})
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    executor.start()
    try:
        for spec in specs:
            executor.submit(spec, outcomes.put)
        got: dict[str, list[Outcome]] = {}
        for _ in specs:
            o = outcomes.get(timeout=60)
            got.setdefault(o.job_id, []).append(o)
        time.sleep(0.05)
        assert outcomes.empty(), "done() was called more than once for a job"
    finally:
        executor.stop()
    return got


def test_executor_interface_reports_each_job_exactly_once(executor_name: str) -> None:
    specs = [
        JobSpec("ok", "t.ok", pow, (2, 10), {}),
        JobSpec("err", "t.err", _raise_value_error, ("bad",), {}),
        JobSpec("exit", "t.exit", _raise_system_exit, (), {}),
        JobSpec("kw", "t.kw", dict, (), {"a": 1}),
    ]
    got = _collect(executor_name, specs)
    assert set(got) == {"ok", "err", "exit", "kw"}
    assert all(len(v) == 1 for v in got.values())
    assert got["ok"][0].ok and got["ok"][0].value == 1024
    assert got["kw"][0].value == {"a": 1}
    err = got["err"][0]
    assert not err.ok and isinstance(err.error, ValueError) and str(err.error) == "bad"
    assert "_raise_value_error" in err.traceback
    assert isinstance(got["exit"][0].error, SystemExit)


def test_processes_executor_recovers_after_a_worker_dies() -> None:
    specs = [JobSpec("die", "t.die", os._exit, (3,), {})]
    got = _collect("processes", specs)
    assert isinstance(got["die"][0].error, ExecutorError)
    executor = make_executor("processes", {"type": "processes", "max_workers": 1})
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    try:
        executor.submit(JobSpec("die", "t.die", os._exit, (3,), {}), outcomes.put)
        assert isinstance(outcomes.get(timeout=60).error, ExecutorError)
        executor.submit(JobSpec("next", "t.next", pow, (3, 2), {}), outcomes.put)
        after = outcomes.get(timeout=60)
        assert after.ok and after.value == 9
    finally:
        executor.stop()


def test_unpicklable_arguments_to_a_worker_fail_the_job() -> None:
    lock = threading.Lock()
    got = _collect("processes", [JobSpec("j", "t.args", id, (lock,), {})])
    error = got["j"][0].error
    assert isinstance(error, SerializationError) and "t.args" in str(error)


def test_every_builtin_executor_type_is_covered() -> None:
    cluster = {"DaskExecutor", "SlurmExecutor"}  # tested against real clusters in their own test modules
    assert {cls.__name__ for cls in EXECUTORS.values()} - cluster == {
        type(make_executor(n, {"type": n})).__name__ for n in NAMES
    }
