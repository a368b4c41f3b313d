"""Job arrays vs one ``sbatch`` per call on Slurm (issue 10).

Runs N trivial calls (``inc(i)``) and one reduce through a ``Scheduler`` whose default executor is
``type = "slurm"``, twice on the same cluster: with job arrays (``array_size`` = N) and with one ``sbatch``
per call (``array_size = 1``). Each run starts cold (a fresh SQLite database, nothing cached). Prints both
times, the sbatch and squeue counts, and the ratio. Needs a running Slurm (``scripts/slurm-up.sh``) and a
``--work-dir`` every node sees. Asserts nothing.

    python benchmarks/slurm_executor.py [--calls 200] [--max-workers 200] [--work-dir .slothflow/slurm-bench]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from slothflow import Scheduler, task


@task
def inc(i: int) -> int:
    return i + 1


@task
def total(values: list[int]) -> int:
    return sum(values)


def run(n: int, array_size: int, max_workers: int, work_dir: str, db: Path) -> tuple[float, Any]:
    config = {"type": "slurm", "work_dir": work_dir, "array_size": array_size, "max_workers": max_workers,
              "batch_wait": 0.3 if array_size > 1 else 0.0}
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{db}"}, "executors.default": config})
    scheduler.load()
    executor = scheduler.executors["default"]
    executor.start()
    started = time.perf_counter()
    result = scheduler.run(total([inc(i) for i in range(n)]))
    elapsed = time.perf_counter() - started
    counts = dict(getattr(executor, "counts", {}))
    scheduler.close()
    assert result == n * (n + 1) // 2
    return elapsed, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--max-workers", type=int, default=200)
    parser.add_argument("--work-dir", default=".slothflow/slurm-bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arrays, arrays_counts = run(args.calls, args.calls, args.max_workers, args.work_dir, Path(tmp, "a.db"))
        single, single_counts = run(args.calls, 1, args.max_workers, args.work_dir, Path(tmp, "b.db"))
    print(f"{args.calls} trivial calls + 1 reduce on Slurm (max_workers={args.max_workers})")
    print(f"  job arrays           {arrays:8.2f} s   {arrays_counts}")
    print(f"  one sbatch per call  {single:8.2f} s   {single_counts}")
    print(f"  ratio single/arrays  {single / arrays:8.2f}x")


if __name__ == "__main__":
    main()
