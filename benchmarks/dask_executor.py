"""slothflow's Dask executor vs raw ``dask.delayed`` on the same cluster (issue 10).

Starts one ``LocalCluster`` (2 worker processes, 1 thread each), then runs the same graph both ways: N
trivial calls (``inc(i)``) and one reduce over them (``total``).

- ``dask.delayed``: the graph built with ``dask.delayed`` and computed on the cluster's client;
- ``slothflow``: the same graph as ``@task`` calls run by a ``Scheduler`` whose default executor is
  ``type = "dask"`` with the cluster's address, recording full provenance in a fresh SQLite database
  (a cold run: nothing cached).

Prints both times (best of ``--reps``, seconds) and the ratio slothflow / dask; the issue's goal is at most
1.5. ``--max-workers`` lets slothflow keep more jobs submitted than the cluster has threads (the executor's
``max_workers``), so Dask's own queue keeps the workers busy between two scheduler rounds. Asserts nothing.

    python benchmarks/dask_executor.py [--calls 1000] [--reps 3] [--max-workers 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from slothflow import Scheduler, task


def inc_plain(i: int) -> int:
    return i + 1


def total_plain(values: list[int]) -> int:
    return sum(values)


@task
def inc(i: int) -> int:
    return i + 1


@task
def total(values: list[int]) -> int:
    return sum(values)


def run_dask(client: object, n: int) -> float:
    import dask

    started = time.perf_counter()
    graph = dask.delayed(total_plain)([dask.delayed(inc_plain)(i) for i in range(n)])
    result = graph.compute(scheduler=client)
    elapsed = time.perf_counter() - started
    assert result == n * (n + 1) // 2
    return elapsed


def run_slothflow(address: str, n: int, max_workers: int, folder: Path, rep: int) -> float:
    executor = {"type": "dask", "address": address, **({"max_workers": max_workers} if max_workers else {})}
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{folder / f'bench{rep}.db'}"},
                                  "executors.default": executor})
    scheduler.load()  # the database is created before the clock starts
    scheduler.executors["default"].start()
    started = time.perf_counter()
    result = scheduler.run(total([inc(i) for i in range(n)]))
    elapsed = time.perf_counter() - started
    scheduler.close()
    assert result == n * (n + 1) // 2
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-workers", type=int, default=0, help="slothflow's max_workers (0: the threads)")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        run_dask(client, 10)  # warm the workers up
        dask_times = [run_dask(client, args.calls) for _ in range(args.reps)]
        ours = [run_slothflow(cluster.scheduler_address, args.calls, args.max_workers, Path(tmp), rep)
                for rep in range(args.reps)]
    best_dask, best_ours = min(dask_times), min(ours)
    print(f"{args.calls} trivial calls + 1 reduce on a 2-worker LocalCluster (best of {args.reps})")
    print(f"  dask.delayed          {best_dask:8.3f} s")
    print(f"  slothflow (dask)      {best_ours:8.3f} s   max_workers={args.max_workers or 'threads'}")
    print(f"  ratio slothflow/dask  {best_ours / best_dask:8.2f}x")


if __name__ == "__main__":
    main()
