"""The Slurm executor against the real one-node Slurm of ``scripts/slurm-up.sh`` (run it first; CI does).

Jobs run as array tasks on this machine with ``work_dir`` in the test's folder, which every "node" sees.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from slothflow import Scheduler, WorkerLostError, task
from slothflow.executors import EXECUTORS, Executor, JobSpec, Outcome
from slothflow.executors.slurm import SlurmExecutor, sbatch_flags
from slothflow.testing import ExecutorConformance

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


if not _slurm_up():
    if os.environ.get("SLOTHFLOW_REQUIRE_SLURM"):
        raise RuntimeError("Slurm is not running although scripts/slurm-up.sh started it")
    pytest.skip("Slurm is not running here (run scripts/slurm-up.sh)", allow_module_level=True)


class Unlucky(Exception):
    pass


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def unlucky(n: int) -> int:
    print("about to fail", flush=True)
    raise Unlucky(f"number {n} is unlucky")


@task
def die() -> int:
    print("dying now", flush=True)
    os._exit(9)


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "slurm", "work_dir": str(tmp_path / "slurm"), "max_workers": 2, "poll_interval": 0.2,
            "poll_max": 1.0, "batch_wait": 0.2, **extra}


@pytest.fixture
def sched(tmp_path: Path, sqlite_uri: str) -> Any:
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri}, "executors.default": _config(tmp_path)})
    yield s
    s.close()


def test_registered() -> None:
    assert EXECUTORS["slurm"] is SlurmExecutor


def test_options_map_to_sbatch_flags() -> None:
    spec = JobSpec("j", "t.x", print, (), {}, options={"partition": "debug", "sbatch_args": "--nice=5 -J x"},
                   resources={"memory": 1.5, "vcpus": 2, "gpus": 1}, timeout=90)
    assert sbatch_flags(spec, {"qos": "normal"}) == (
        "--mem=1536M", "--cpus-per-task=2", "--gres=gpu:1", "--time=2", "--partition=debug", "--qos=normal",
        "--nice=5", "-J", "x")


def test_fan_out_and_reduce_in_few_job_arrays(sched: Scheduler, tmp_path: Path) -> None:
    executor = sched.executors["default"]
    executor.config["max_workers"] = 40
    executor.max_workers = 40
    assert sched.run(total([square(i) for i in range(30)])) == sum(i * i for i in range(30))
    assert isinstance(executor, SlurmExecutor)
    assert executor.counts["sbatch"] <= 4, executor.counts  # 30 squares in one or two arrays, then the total


def test_second_run_executes_nothing(sched: Scheduler) -> None:
    started: list[Any] = []
    sched.add_listener(lambda event, job, stats: started.append(job) if event == "started" else None)
    assert sched.run(total([square(i) for i in range(3)])) == 5
    count = len(started)
    assert sched.run(total([square(i) for i in range(3)])) == 5
    assert count == 4 and len(started) == count


def test_a_tasks_exception_reaches_the_caller_with_the_output_tail(tmp_path: Path) -> None:
    executor = SlurmExecutor("s", _config(tmp_path))
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    try:
        executor.submit(JobSpec("bad", "t.unlucky", unlucky.func, (13,), {}), outcomes.put)
        outcome = outcomes.get(timeout=60)
    finally:
        executor.shutdown(cancel=True)
    assert type(outcome.error) is Unlucky and str(outcome.error) == "number 13 is unlucky"
    assert "the last lines of" in outcome.traceback and "about to fail" in outcome.traceback
    assert "Unlucky: number 13 is unlucky" in outcome.traceback


def test_a_job_that_dies_fails_with_a_typed_error_and_the_output_tail(sched: Scheduler) -> None:
    with pytest.raises(WorkerLostError, match="dying now") as info:
        sched.run(die())
    assert info.value.worker and "Slurm job" in str(info.value) and "FAILED" in str(info.value)


def test_resources_read_back_from_slurm(tmp_path: Path) -> None:
    executor = SlurmExecutor("s", _config(tmp_path))
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    spec = JobSpec("r", "t.sleep", time.sleep, (30,), {}, options={"partition": "debug"},
                   resources={"memory": 0.5, "vcpus": 2, "gpus": 1}, timeout=90)
    try:
        executor.submit(spec, outcomes.put)
        deadline = time.monotonic() + 30
        while executor._jobs["r"].slurm_id is None and time.monotonic() < deadline:
            time.sleep(0.1)
        slurm_id = executor._jobs["r"].slurm_id
        assert slurm_id is not None
        shown = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True).stdout
        assert "mem=512M" in shown and "NumCPUs=2" in shown and "gres:gpu:1" in shown
        assert "TimeLimit=00:02:00" in shown and "Partition=debug" in shown
        assert executor.cancel("r")
    finally:
        executor.shutdown(cancel=True)
    time.sleep(1)
    state = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", slurm_id.split("_")[0], "-o", "%T"],
                           capture_output=True, text=True).stdout.split()
    assert state == ["CANCELLED"] or not state


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
                          "executors.default": {{"type": "slurm", "work_dir": sys.argv[2], "max_workers": 6,
                                                "batch_wait": 0.1, "poll_interval": 0.2}}}})
    print("running", flush=True)
    s.run([{name}(i) for i in range(6)])
"""


def test_ctrl_c_leaves_nothing_in_squeue(tmp_path: Path, sqlite_uri: str) -> None:
    name = f"nap_{os.getpid()}_{int(time.time())}"
    script = tmp_path / "wf.py"
    script.write_text(textwrap.dedent(CTRL_C_SCRIPT.format(name=name)))
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, str(script), sqlite_uri, str(tmp_path / "slurm")], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ours = ["squeue", "-h", "-r", "-n", f"slothflow-{name}", "-t", "PENDING,RUNNING", "-o", "%i %T"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # two running (2 CPUs), four pending
        if len(subprocess.run(ours, capture_output=True, text=True).stdout.split("\n")) > 5:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    time.sleep(1)
    left = subprocess.run(ours, capture_output=True, text=True).stdout.strip()
    assert left == "", left


class TestSlurmConformance(ExecutorConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    def make_executor(self) -> Executor:
        return SlurmExecutor("slurm", _config(self.folder))
