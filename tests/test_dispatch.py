"""Retries, timeouts, resource slots and option checking: what the scheduler does with a task's options."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from slothflow import Scheduler, TaskDefinitionError, TaskTimeoutError, task
from slothflow._errors import ExecutorError


def _scheduler(tmp_path: Path, **executor: object) -> Scheduler:
    config: dict[str, dict[str, object]] = {"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}}
    if executor:
        config["executors.default"] = {"type": "threads", **executor}
    return Scheduler(config=config)


def _job_statuses(tmp_path: Path, task_name: str) -> list[str]:
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT status FROM job WHERE task_name LIKE ?", (f"%{task_name}",))]
    finally:
        conn.close()


def test_retries_rerun_a_failing_call_until_it_succeeds(tmp_path: Path) -> None:
    attempts: list[int] = []

    @task(retries=2, retry_delay=0.05, namespace="retry_ok")
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} fails")
        return x * 10

    sched = _scheduler(tmp_path)
    try:
        assert sched.run(flaky(4)) == 40
    finally:
        sched.close()
    assert attempts == [4, 4, 4]


def test_retries_exhausted_raise_the_last_error_and_nothing_is_cached(tmp_path: Path) -> None:
    attempts: list[int] = []

    @task(retries=1, retry_delay=0, namespace="retry_fail")
    def broken(x: int) -> int:
        attempts.append(x)
        raise ValueError(f"bad {len(attempts)}")

    sched = _scheduler(tmp_path)
    try:
        with pytest.raises(ValueError, match="bad 2"):
            sched.run(broken(1))
        assert len(attempts) == 2
        with pytest.raises(ValueError, match="bad 4"):  # a failure is never reused
            sched.run(broken(1))
    finally:
        sched.close()
    assert len(attempts) == 4


def test_retry_waits_grow_with_backoff(tmp_path: Path) -> None:
    stamps: list[float] = []

    @task(retries=2, retry_delay=0.2, retry_backoff=2.0, namespace="retry_backoff")
    def slow_to_work() -> str:
        stamps.append(time.monotonic())
        if len(stamps) < 3:
            raise RuntimeError("not yet")
        return "ok"

    sched = _scheduler(tmp_path)
    try:
        assert sched.run(slow_to_work()) == "ok"
    finally:
        sched.close()
    first, second = stamps[1] - stamps[0], stamps[2] - stamps[1]
    assert first >= 0.19 and second >= 0.39


def test_timeout_fails_the_call_with_a_typed_error_naming_the_task(tmp_path: Path) -> None:
    release = threading.Event()

    @task(timeout=0.3, namespace="timeout_threads")
    def sleepy() -> str:
        release.wait(10)
        return "late"

    sched = _scheduler(tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(TaskTimeoutError, match="timeout_threads.sleepy") as info:
            sched.run(sleepy())
    finally:
        release.set()
        sched.close()
    assert time.monotonic() - started < 5
    assert info.value.task_name == "timeout_threads.sleepy"
    assert info.value.timeout == pytest.approx(0.3)
    assert isinstance(info.value, TimeoutError)
    assert _job_statuses(tmp_path, "sleepy") == ["failed"]


def test_a_timed_out_attempt_is_retried_and_never_cached(tmp_path: Path) -> None:
    calls: list[int] = []
    release = threading.Event()

    @task(timeout=0.3, retries=1, retry_delay=0, namespace="timeout_retry")
    def sometimes_slow() -> int:
        calls.append(1)
        if len(calls) == 1:
            release.wait(10)  # the first attempt hangs and is abandoned
            return -1
        return 7

    sched = _scheduler(tmp_path)
    try:
        assert sched.run(sometimes_slow()) == 7
        assert sched.run(sometimes_slow()) == 7
    finally:
        release.set()
        sched.close()
    assert len(calls) == 2  # the second run reused the successful attempt, not the abandoned one


def test_vcpus_take_that_many_slots(tmp_path: Path) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    @task(vcpus=2, namespace="vcpus_slots")
    def heavy(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        with lock:
            running -= 1
        return i

    sched = _scheduler(tmp_path, max_workers=4)
    try:
        assert sched.run([heavy(i) for i in range(6)]) == list(range(6))
    finally:
        sched.close()
    assert most == 2  # 4 slots / 2 vcpus each


def test_a_job_larger_than_its_executor_is_refused(tmp_path: Path) -> None:
    @task(vcpus=16, namespace="vcpus_too_many")
    def huge() -> int:
        return 1

    sched = _scheduler(tmp_path, max_workers=4)
    try:
        with pytest.raises(ExecutorError, match="vcpus=16"):
            sched.run(huge())
    finally:
        sched.close()


def test_unknown_option_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    @task(memroy=4, namespace="typo_option")
    def typo() -> int:
        return 1

    sched = _scheduler(tmp_path)
    try:
        with pytest.raises(TaskDefinitionError, match="'memroy'.*did you mean 'memory'"):
            sched.run(typo())
    finally:
        sched.close()


@pytest.mark.parametrize("option", [{"retries": -1}, {"retries": "3"}, {"timeout": "soon"}, {"vcpus": -2}])
def test_bad_option_values_are_errors_naming_the_option(tmp_path: Path, option: dict[str, object]) -> None:
    @task(namespace="bad_option_value", **option)
    def bad() -> int:
        return 1

    sched = _scheduler(tmp_path)
    try:
        with pytest.raises(TaskDefinitionError, match=next(iter(option))):
            sched.run(bad())
    finally:
        sched.close()


def _most_at_once(tmp_path: Path, namespace: str, options: dict[str, object], **executor: object) -> int:
    running = 0
    most = 0
    lock = threading.Lock()

    @task(namespace=namespace, **options)
    def hungry(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.15)
        with lock:
            running -= 1
        return i

    sched = _scheduler(tmp_path, **executor)
    try:
        assert sched.run([hungry(i) for i in range(6)]) == list(range(6))
    finally:
        sched.close()
    return most


def test_memory_counts_against_what_the_executor_has(tmp_path: Path) -> None:
    # 8 slots, but 10 GB shared by jobs asking 4 GB each: at most two at once.
    assert _most_at_once(tmp_path, "mem_share", {"memory": 4}, max_workers=8, memory=10) == 2


def test_gpus_count_against_the_executors_gpus(tmp_path: Path) -> None:
    assert _most_at_once(tmp_path, "gpu_share", {"gpus": 1}, max_workers=8, gpus=3) == 3


@pytest.mark.parametrize(("option", "executor", "message"), [
    ({"gpus": 1}, {}, "gpus=1, more than executor 'default' has \\(0\\)"),
    ({"memory": 64}, {"memory": 8}, "memory=64, more than executor 'default' has \\(8\\)"),
])
def test_a_resource_the_executor_lacks_fails_the_call_naming_it(
    tmp_path: Path, option: dict[str, object], executor: dict[str, object], message: str
) -> None:
    @task(namespace=f"lacks_{next(iter(option))}", **option)
    def needy() -> int:
        return 1

    sched = _scheduler(tmp_path, max_workers=2, **executor)
    try:
        with pytest.raises(ExecutorError, match=message):
            sched.run(needy())
    finally:
        sched.close()


def test_timeout_is_honoured_by_the_inline_executor(tmp_path: Path) -> None:
    """Inline runs the body in the scheduler's thread and cannot stop it: a late result still fails."""

    @task(timeout=0.2, namespace="timeout_inline")
    def late() -> int:
        time.sleep(0.5)
        return 1

    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"},
                              "executors.default": {"type": "inline"}})
    try:
        with pytest.raises(TaskTimeoutError, match="timeout_inline.late"):
            sched.run(late())
    finally:
        sched.close()
    assert _job_statuses(tmp_path, "timeout_inline.late") == ["failed"]


def test_timeout_kills_a_process_worker(tmp_path: Path) -> None:
    sched = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"},
                              "executors.default": {"type": "processes", "max_workers": 1}})
    try:
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError, match="timeout_proc._sleeper"):
            sched.run(_sleeper.options(timeout=1.0)(60))
        assert time.monotonic() - started < 30
        # The slot is free again: the next call runs at once on a fresh worker.
        assert sched.run(_sleeper(0)) == 0
    finally:
        sched.close()


@task(namespace="timeout_proc")
def _sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
