"""A small workflow: fan out over samples, reduce, branch lazily, recurse.

Run it twice; the second run takes its results from the cache:

    slothflow run examples/quickstart.py main --samples 20
    slothflow run examples/quickstart.py main --samples 20
    slothflow log
"""

from __future__ import annotations

import random
import statistics

from slothflow import cond, task


@task
def simulate(seed: int, size: int = 1000) -> list[float]:
    """Draw `size` values from a seeded random walk."""
    rng = random.Random(seed)
    x, out = 0.0, []
    for _ in range(size):
        x += rng.gauss(0, 1)
        out.append(x)
    return out


@task
def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "stdev": statistics.pstdev(values)}


@task
def combine(summaries: list[dict[str, float]]) -> dict[str, float]:
    return {
        "samples": len(summaries),
        "mean_of_means": statistics.fmean(s["mean"] for s in summaries),
        "max_stdev": max(s["stdev"] for s in summaries),
    }


@task
def describe(stats: dict[str, float], label: str) -> str:
    return f"{label}: {stats['samples']} samples, mean of means {stats['mean_of_means']:.2f}"


@task
def fib(n: int) -> int:
    """Recursion as a dynamic DAG: each call is a cached task."""
    if n < 2:
        return n
    return add(fib(n - 1), fib(n - 2))


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def main(samples: int = 10, size: int = 1000) -> dict[str, object]:
    """The whole pipeline: independent simulations run in parallel."""
    stats = combine([summarize(simulate(seed, size)) for seed in range(samples)])
    verdict = cond(stats["max_stdev"] > 30, describe(stats, "wide"), describe(stats, "narrow"))
    return {"stats": stats, "verdict": verdict, "fib": fib(20)}
