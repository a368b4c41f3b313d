"""The Dask executor against a real ``LocalCluster`` (2 worker processes, 1 thread each, one per module).

Workers import this module by name (like the processes executor's workers), so the tasks live here.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from slothflow import ExecutorError, Scheduler, WorkerLostError, task  # noqa: E402
from slothflow.executors import EXECUTORS, Executor, JobSpec, Outcome  # noqa: E402
from slothflow.executors.dask import GB, DaskExecutor  # noqa: E402
from slothflow.testing import ExecutorConformance  # noqa: E402

ADDRESS: dict[str, str] = {}


class Unlucky(Exception):
    pass


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def sweep(n: int) -> Any:
    return total([square(i) for i in range(n)])


@task
def unlucky(n: int) -> int:
    raise Unlucky(f"number {n} is unlucky")


@task
def pid() -> int:
    return os.getpid()


@task(retries=1, retry_delay=0.1)
def die_once(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(13)
    return "second attempt"


@task
def die() -> int:
    os._exit(13)


@task(gpus=1, memory=1)
def on_gpu() -> int:
    return 7


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    """One LocalCluster for the module, started by the executor itself (its config path is tested too)."""
    executor = DaskExecutor("cluster", {"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                        "resources": {"GPU": 1, "MEMORY": 2 * GB}})
    executor.start()
    ADDRESS["address"] = executor._cluster.scheduler_address
    yield executor
    executor.shutdown(cancel=True)


def _settled(cluster: DaskExecutor, workers: int = 2, deadline: float = 90.0) -> None:
    """Wait until the shared cluster has all its workers and none is being replaced: a test that cancelled a
    running job ended that job's worker (in the background), and a job of the next test must not land on it."""
    client = cluster._client
    assert client is not None
    end = time.monotonic() + deadline
    previous: dict[str, Any] | None = None
    while time.monotonic() < end:
        try:
            pids = client.run(os.getpid, on_error="return")
        except Exception:
            pids = {}
        ok = len(pids) == workers and all(isinstance(p, int) for p in pids.values())
        if ok and pids == previous:
            return
        previous = pids if ok else None
        time.sleep(1.0)
    raise AssertionError("the shared Dask cluster did not settle")


@pytest.fixture
def sched(cluster: DaskExecutor, sqlite_uri: str) -> Iterator[Scheduler]:
    _settled(cluster)
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri},
                          "executors.default": {"type": "dask", "address": ADDRESS["address"]}})
    yield s
    s.close()


def _ran(s: Scheduler, expr: Any) -> tuple[Any, int]:
    """Run ``expr``; its result and how many jobs were submitted to the executor."""
    started: list[Any] = []
    s.add_listener(lambda event, job, stats: started.append(job) if event == "started" else None)
    return s.run(expr), len(started)


def test_registered_and_lazy() -> None:
    assert EXECUTORS["dask"] is DaskExecutor
    code = ("import sys, slothflow; slothflow.Scheduler(config={'backend': {'db_uri': 'sqlite://'}}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_fan_out_and_reduce_runs_on_the_workers(sched: Scheduler, cluster: DaskExecutor) -> None:
    result, submitted = _ran(sched, sweep(20))
    assert result == sum(i * i for i in range(20))
    assert submitted == 22
    assert sched.executors["default"].capacity == 2
    assert sched.run(pid()) != os.getpid()


def test_second_run_executes_nothing(sched: Scheduler) -> None:
    assert _ran(sched, sweep(8)) == (140, 10)
    assert _ran(sched, sweep(8)) == (140, 0)


def test_a_tasks_exception_reaches_the_caller(sched: Scheduler) -> None:
    with pytest.raises(Unlucky, match="number 13 is unlucky") as info:
        sched.run(unlucky(13))
    assert type(info.value) is Unlucky


def test_resources_become_dask_requests(sched: Scheduler) -> None:
    executor = sched.executors["default"]
    deadline = time.monotonic() + 30
    while executor.resources() != {"memory": 4.0, "gpus": 2.0} and time.monotonic() < deadline:
        time.sleep(0.5)  # a worker restarted by an earlier test may still be coming back
        executor._info_at = 0.0
    assert executor.resources() == {"memory": 4.0, "gpus": 2.0}
    assert sched.run(on_gpu()) == 7
    too_big = JobSpec("big", "t.big", square.func, (2,), {}, resources={"gpus": 2})
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    executor.submit(too_big, outcomes.put)
    error = outcomes.get(timeout=30).error
    assert isinstance(error, ExecutorError) and "more than any one worker" in str(error)


def test_a_worker_that_dies_fails_with_a_typed_error_naming_it(sched: Scheduler) -> None:
    with pytest.raises(WorkerLostError, match="died while running") as info:
        sched.run(die())
    assert info.value.worker and info.value.worker.startswith("tcp://")
    assert info.value.worker in str(info.value)


def test_retries_apply_after_a_worker_dies(sched: Scheduler, tmp_path: Path) -> None:
    assert sched.run(die_once(str(tmp_path / "marker"))) == "second attempt"


def test_cancel_stops_a_running_job_and_ctrl_c_cancels_the_runs_futures(cluster: DaskExecutor) -> None:
    executor = DaskExecutor("c", {"address": ADDRESS["address"]})
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    try:
        specs = [JobSpec(f"s{i}", "t.sleep", time.sleep, (60,), {}) for i in range(3)]
        for spec in specs:
            executor.submit(spec, outcomes.put)
        time.sleep(1.5)
        for spec in specs:
            assert executor.cancel(spec.job_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = executor.client.run_on_scheduler(_task_count)
            if info == 0:
                break
            time.sleep(0.2)
        assert info == 0, "cancelled jobs are still known to the Dask scheduler"
        executor.submit(JobSpec("after", "t.pow", pow, (2, 5), {}), outcomes.put)
        got = outcomes.get(timeout=30)
        assert got.job_id == "after" and got.value == 32
    finally:
        executor.shutdown(cancel=True)


def _task_count(dask_scheduler: Any = None) -> int:
    return sum(1 for key in dask_scheduler.tasks if str(key).startswith("t.sleep"))


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
def plus(values):
    return sum(values)

@task
def fails():
    raise MainError("from main")

if __name__ == "__main__":
    s = Scheduler(config={"backend": {"db_uri": sys.argv[1]},
                          "executors.default": {"type": "dask", "address": sys.argv[2]}})
    out = {"total": s.run(plus([triple(i) for i in range(5)]))}
    try:
        s.run(fails())
    except MainError as exc:
        out["error"] = [type(exc).__name__, str(exc), type(exc) is MainError]
    s.close()
    print(json.dumps(out))
"""


def test_tasks_defined_in_main_of_a_script(cluster: DaskExecutor, tmp_path: Path, sqlite_uri: str) -> None:
    script = tmp_path / "wf_main.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, str(script), sqlite_uri, ADDRESS["address"]],
                          capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"total": 30, "error": ["MainError", "from main", True]}


def test_a_local_cluster_starts_on_first_use_and_stops_at_shutdown() -> None:
    executor = DaskExecutor("own", {"n_workers": 1, "threads_per_worker": 2, "processes": False})
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    executor.submit(JobSpec("one", "t.pow", pow, (3, 2), {}), outcomes.put)
    assert outcomes.get(timeout=60).value == 9
    assert executor.capacity == 2
    cluster = executor._cluster
    executor.shutdown()
    assert executor._client is None and cluster.status.name == "closed"
    assert threading.active_count() < 50


class TestDaskConformance(ExecutorConformance):
    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: DaskExecutor) -> None:
        _settled(cluster)

    def make_executor(self) -> Executor:
        return DaskExecutor("dask", {"address": ADDRESS["address"]})


CTRL_C_SCRIPT = """
import sys
from slothflow import Scheduler, task

@task
def {name}(i):
    import time
    time.sleep(120)
    return i

if __name__ == "__main__":
    s = Scheduler(config={{"backend": {{"db_uri": sys.argv[1]}},
                          "executors.default": {{"type": "dask", "address": sys.argv[2], "max_workers": 6}}}})
    s.run([{name}(i) for i in range(6)])
"""


def test_ctrl_c_cancels_the_runs_futures(cluster: DaskExecutor, tmp_path: Path, sqlite_uri: str) -> None:
    name = f"nap_{os.getpid()}_{int(time.time())}"
    script = tmp_path / "wf.py"
    script.write_text(textwrap.dedent(CTRL_C_SCRIPT.format(name=name)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, str(script), sqlite_uri, ADDRESS["address"]], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = cluster.client
    deadline = time.monotonic() + 60
    while client.run_on_scheduler(_count_named, name) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.run_on_scheduler(_count_named, name) == 6
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    deadline = time.monotonic() + 30
    while client.run_on_scheduler(_count_named, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.run_on_scheduler(_count_named, name) == 0
    started = time.monotonic()  # the workers that were sleeping are free again (their processes were ended)
    assert client.submit(pow, 2, 3, pure=False).result(timeout=60) == 8
    assert time.monotonic() - started < 30


def _count_named(name: str, dask_scheduler: Any = None) -> int:
    return sum(1 for key in dask_scheduler.tasks if name in str(key))
