"""The workflow of tests/test_reruns.py. Each body appends one line to the file named by $RERUN_LOG."""

import os

from slothflow import task


def _ran(what: str) -> None:
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write(what + "\n")


@task
def square(x: int) -> int:
    _ran(f"square({x})")
    return x * x


@task
def total(values: list[int]) -> int:
    _ran("total")
    return sum(values)


@task(version="1")
def scale(value: int, factor: int) -> int:
    _ran("scale")
    return value * factor


@task
def report(value: int, label: str) -> str:
    _ran("report")
    return f"{label}: {value}"


@task
def group(words: frozenset[str], weights: dict[tuple[str, int], float]) -> list[str]:
    _ran("group")
    return sorted(w for w in words if weights.get((w, len(w)), 0.0) > 0.5)


@task
def main(n: int = 3, label: str = "sum", factor: int = 1) -> dict[str, object]:
    _ran("main")
    words = {"alpha", "beta", "gamma", "delta", "epsilon"}
    weights = {(w, len(w)): (0.9 if "l" in w else 0.1) for w in words}
    return {
        "report": report(scale(total([square(x) for x in range(n)]), factor), label),
        "group": group(frozenset(words), weights),
    }
