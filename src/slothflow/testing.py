"""The executor conformance suite, importable so that an executor written outside slothflow can run it.

Subclass :class:`ExecutorConformance` in a pytest module and say how to build your executor::

    from slothflow.testing import ExecutorConformance
    from mypackage import MyExecutor

    class TestMyExecutor(ExecutorConformance):
        def make_executor(self):
            return MyExecutor("mine", {"max_workers": 2})

Every test drives the executor through the :class:`~slothflow.executors.Executor` interface alone (submit,
cancel, shutdown), the way the scheduler does. Class attributes turn off what an executor cannot do by
design: ``concurrent = False`` for one that runs jobs one at a time in the caller's thread (inline), and
``cancellable = False`` for one whose running jobs cannot be stopped. The job functions live in this
module, so a worker in another process or machine imports them by name.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow._errors import SerializationError
from slothflow.executors.base import Executor, JobSpec, Outcome

WAIT = 60.0  # seconds: the longest any single outcome may take to arrive


# ----------------------------------------------------------------------------- job functions
def add(a: int, b: int = 0) -> int:
    return a + b


def fail_with(message: str) -> None:
    raise ValueError(message)


def exit_with(code: int) -> None:
    raise SystemExit(code)


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def meet(folder: str, me: str, other: str) -> str:
    """Returns only when the job named ``other`` has started too: proof that both run at once."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 20
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started while {me} was running")
        time.sleep(0.01)
    return me


def size_of(data: bytes) -> int:
    return len(data)


def make_lock() -> Any:
    return threading.Lock()


def whoami() -> int:
    return os.getpid()


# ----------------------------------------------------------------------------------- the suite
class ExecutorConformance:
    """The behaviour every executor owes the scheduler."""

    concurrent = True
    cancellable = True

    def make_executor(self) -> Executor:
        raise NotImplementedError("subclasses return the executor under test")

    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        executor = self.make_executor()
        executor.start()
        try:
            yield executor
        finally:
            executor.shutdown(cancel=True)

    # helpers --------------------------------------------------------------------------------
    @staticmethod
    def submit(executor: Executor, *specs: JobSpec) -> queue.SimpleQueue[Outcome]:
        outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        for spec in specs:
            executor.submit(spec, outcomes.put)
        return outcomes

    @staticmethod
    def collect(outcomes: queue.SimpleQueue[Outcome], count: int) -> dict[str, Outcome]:
        got: dict[str, Outcome] = {}
        for _ in range(count):
            outcome = outcomes.get(timeout=WAIT)
            assert outcome.job_id not in got, f"job {outcome.job_id} was reported twice"
            got[outcome.job_id] = outcome
        return got

    # values and errors ----------------------------------------------------------------------
    def test_returns_the_value(self, executor: Executor) -> None:
        got = self.collect(self.submit(executor, JobSpec("j1", "conf.add", add, (2, 3), {})), 1)
        assert got["j1"].ok and got["j1"].value == 5

    def test_passes_keyword_arguments(self, executor: Executor) -> None:
        got = self.collect(self.submit(executor, JobSpec("j1", "conf.add", add, (2,), {"b": 40})), 1)
        assert got["j1"].value == 42

    def test_reports_the_tasks_own_exception_with_its_traceback(self, executor: Executor) -> None:
        got = self.collect(self.submit(executor, JobSpec("bad", "conf.fail", fail_with, ("no good",), {})), 1)
        outcome = got["bad"]
        assert not outcome.ok and type(outcome.error) is ValueError and str(outcome.error) == "no good"
        assert "fail_with" in outcome.traceback

    def test_system_exit_is_a_job_error_not_a_dead_worker(self, executor: Executor) -> None:
        outcomes = self.submit(executor, JobSpec("exit", "conf.exit", exit_with, (3,), {}),
                               JobSpec("next", "conf.add", add, (1, 1), {}))
        got = self.collect(outcomes, 2)
        assert isinstance(got["exit"].error, SystemExit)
        assert got["next"].value == 2

    def test_every_job_is_reported_exactly_once(self, executor: Executor) -> None:
        specs = [JobSpec(f"j{i}", "conf.add", add, (i, i), {}) for i in range(25)]
        got = self.collect(self.submit(executor, *specs), len(specs))
        assert {k: v.value for k, v in got.items()} == {f"j{i}": 2 * i for i in range(25)}
        time.sleep(0.1)

    def test_large_arguments_travel_intact(self, executor: Executor) -> None:
        data = os.urandom(8 << 20)
        got = self.collect(self.submit(executor, JobSpec("big", "conf.size", size_of, (data,), {})), 1)
        assert got["big"].value == len(data)

    def test_a_result_that_cannot_travel_fails_its_job(self, executor: Executor) -> None:
        if not executor.remote:
            pytest.skip("results stay in the scheduler's process")
        got = self.collect(self.submit(executor, JobSpec("lock", "conf.lock", make_lock, (), {})), 1)
        assert isinstance(got["lock"].error, SerializationError)
        assert "conf.lock" in str(got["lock"].error)

    def test_a_function_defined_in_a_function_runs(self, executor: Executor) -> None:
        offset = 1000

        def local(x: int) -> int:
            return x + offset

        got = self.collect(self.submit(executor, JobSpec("local", "conf.local", local, (1,), {})), 1)
        assert got["local"].value == 1001

    # capacity, cancel, shutdown ----------------------------------------------------------------
    def test_runs_jobs_at_the_same_time_up_to_its_capacity(self, executor: Executor, tmp_path: Path) -> None:
        if not self.concurrent or executor.capacity < 2:
            pytest.skip("runs one job at a time")
        got = self.collect(self.submit(
            executor,
            JobSpec("a", "conf.meet", meet, (str(tmp_path), "a", "b"), {}),
            JobSpec("b", "conf.meet", meet, (str(tmp_path), "b", "a"), {}),
        ), 2)
        assert got["a"].ok and got["b"].ok, (got["a"].error, got["b"].error)

    def test_cancelling_a_running_job_frees_its_slot(self, executor: Executor) -> None:
        if not self.cancellable:
            pytest.skip("running jobs cannot be cancelled")
        slow = [JobSpec(f"slow{i}", "conf.sleep", sleep_then, (60, i), {}) for i in range(executor.capacity)]
        outcomes = self.submit(executor, *slow)
        time.sleep(1.0)
        for spec in slow:
            executor.cancel(spec.job_id)
        started = time.monotonic()
        quick = self.submit(executor, JobSpec("quick", "conf.add", add, (1, 2), {}))
        assert quick.get(timeout=WAIT).value == 3
        assert time.monotonic() - started < 30, "a cancelled job kept its slot"
        time.sleep(0.2)
        assert outcomes.empty() or all(not o.ok for o in _drain(outcomes)), "a cancelled job reported success"

    def test_cancelling_a_queued_job_means_it_never_runs(self, executor: Executor) -> None:
        if not self.cancellable:
            pytest.skip("jobs cannot be cancelled")
        blockers = [JobSpec(f"b{i}", "conf.sleep", sleep_then, (1.0, i), {}) for i in range(executor.capacity)]
        outcomes = self.submit(executor, *blockers)
        queued = JobSpec("queued", "conf.add", add, (1, 1), {})
        executor.submit(queued, outcomes.put)
        executor.cancel("queued")
        got = self.collect(outcomes, len(blockers))
        assert "queued" not in got
        time.sleep(0.5)
        assert all(o.job_id != "queued" for o in _drain(outcomes))

    def test_shutdown_with_cancel_does_not_wait_for_running_jobs(self) -> None:
        if not self.cancellable:
            pytest.skip("running jobs cannot be cancelled")
        executor = self.make_executor()
        executor.start()
        outcomes = self.submit(executor, JobSpec("hang", "conf.sleep", sleep_then, (120, 0), {}))
        time.sleep(1.0)
        started = time.monotonic()
        executor.shutdown(cancel=True)
        assert time.monotonic() - started < 10
        assert outcomes.empty() or all(not o.ok for o in _drain(outcomes))

    def test_usable_again_after_shutdown(self) -> None:
        executor = self.make_executor()
        executor.start()
        assert self.collect(self.submit(executor, JobSpec("one", "conf.add", add, (1, 0), {})), 1)["one"].value == 1
        executor.shutdown()
        executor.start()
        try:
            got = self.collect(self.submit(executor, JobSpec("two", "conf.add", add, (2, 0), {})), 1)
            assert got["two"].value == 2
        finally:
            executor.shutdown(cancel=True)


def _drain(outcomes: queue.SimpleQueue[Outcome]) -> list[Outcome]:
    out = []
    while True:
        try:
            out.append(outcomes.get_nowait())
        except queue.Empty:
            return out


__all__ = ["ExecutorConformance"]
