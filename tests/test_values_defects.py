"""Regression tests for values nested in unusual places (issue 7, defects 1, 2, 3 and 12). Reruns happen in
fresh processes on one SQLite file, as a user's would."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from slothflow import ExpressionError, File, NestingError, Scheduler, Value, hash_value, script, task

WORKFLOW = textwrap.dedent(
    """
    import collections
    import dataclasses
    import os

    import attrs

    from slothflow import File, task

    def note(what):
        with open(os.environ["RUNLOG"], "a") as log:
            log.write(what + "\\n")

    class Box:  # an ordinary class: neither a dataclass nor attrs
        def __init__(self, file, label):
            self.file = file
            self.label = label

    class Slotted:
        __slots__ = ("file",)

        def __init__(self, file):
            self.file = file

    @attrs.define
    class AttrsBox:
        file: File

    @dataclasses.dataclass
    class Config:
        name: str
        size: int

    def _written(path, text):
        f = File(path)
        f.write(text)
        return f

    @task
    def make(kind: str, path: str):
        note("make " + kind)
        f = _written(path, kind)
        if kind == "object":
            return Box(f, "x")
        if kind == "slots":
            return Slotted(f)
        if kind == "attrs":
            return AttrsBox(f)
        if kind == "key":
            return {f: "value"}
        if kind == "defaultdict-key":
            d = collections.defaultdict(list)
            d[f].append(1)
            return d
        if kind == "nested-object":
            return [{"boxes": (Box(Box(f, "inner"), "outer"),)}]
        raise ValueError(kind)

    def _find_file(value):
        if isinstance(value, list):
            return value[0]["boxes"][0].file.file
        if isinstance(value, dict):
            return next(iter(value))
        return value.file

    @task
    def consume(value) -> str:
        note("consume")
        return _find_file(value).read()

    @task
    def main(kind: str, path: str) -> str:
        return consume(make(kind, path))

    @task
    def config_class():
        note("config_class")
        return Config

    @task
    def describe(cls) -> list:
        note("describe")
        return [f.name for f in dataclasses.fields(cls)]

    @task
    def classes() -> list:
        return describe(config_class())
    """
)

RUNNER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wf
    from slothflow import Scheduler
    scheduler = Scheduler(config={"backend": {"db_uri": os.environ["DB"]}})
    try:
        entry, args = sys.argv[1], json.loads(sys.argv[2])
        result = scheduler.run(getattr(wf, entry)(*args))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps({"result": result}))
    finally:
        scheduler.close()
    """
)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "wf.py").write_text(WORKFLOW)
        (root / "runner.py").write_text(RUNNER)
        self.log = root / "runs.log"
        self.env = {**os.environ, "RUNLOG": str(self.log), "DB": f"sqlite:///{root / 'runs.db'}"}

    def run(self, entry: str, *args: Any) -> tuple[dict[str, Any], list[str]]:
        """Run ``wf.entry(*args)`` in a fresh process: its outcome and the task bodies that ran."""
        if self.log.exists():
            self.log.unlink()
        out = subprocess.run([sys.executable, str(self.root / "runner.py"), entry, json.dumps(args)],
                             capture_output=True, text=True, env=self.env, cwd=self.root, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        ran = self.log.read_text().splitlines() if self.log.exists() else []
        return json.loads(out.stdout.strip().splitlines()[-1]), ran


@pytest.mark.parametrize("kind", ["object", "slots", "attrs", "key", "defaultdict-key", "nested-object"])
def test_deleted_file_inside_a_result_reruns_its_producer(tmp_path: Path, kind: str) -> None:
    """Defect 1: a File inside a plain object, a __slots__ object, an attrs object or a dict key."""
    project = Project(tmp_path)
    data = tmp_path / "data.txt"
    outcome, ran = project.run("main", kind, str(data))
    assert outcome == {"result": kind} and sorted(ran) == ["consume", f"make {kind}"]
    outcome, ran = project.run("main", kind, str(data))
    assert outcome == {"result": kind} and ran == []  # unchanged: everything reused
    data.unlink()
    outcome, ran = project.run("main", kind, str(data))
    assert outcome == {"result": kind}, outcome  # not a MissingFileError for the consumer
    assert ran == [f"make {kind}"]  # the producer reran; the consumer's argument is the same data again
    assert data.read_text() == kind


def test_task_returning_a_class_is_reused(tmp_path: Path) -> None:
    """Defect 3: a task returns a dataclass type; the cached rerun reuses it instead of crashing."""
    project = Project(tmp_path)
    first, ran = project.run("classes")
    assert first == {"result": ["name", "size"]} and sorted(ran) == ["config_class", "describe"]
    again, ran = project.run("classes")
    assert again == first and ran == []


class Holder:
    def __init__(self, file: File) -> None:
        self.file = file


@task
def produce_file(path: str, where: str) -> Any:
    f = File(path)
    f.write("data")
    return [Holder(f)] if where == "object" else {f: 1}


@pytest.mark.parametrize("where", ["object", "key"])
def test_files_inside_objects_and_dict_keys_are_recorded_for_lineage(scheduler: Scheduler, sql: Any,
                                                                     tmp_path: Path, where: str) -> None:
    """Lineage sees the same files as validity: in plain objects and as dict keys."""
    scheduler.run(produce_file(str(tmp_path / "f.txt"), where))
    assert str(tmp_path / "f.txt") in {p for (p,) in sql("SELECT path FROM value_file")}


class SlotHolder:
    __slots__ = ("file",)

    def __init__(self, file: File) -> None:
        self.file = file


def test_argument_hash_sees_files_inside_objects_slots_and_dict_keys(tmp_path: Path) -> None:
    """Hashing sees the same files as validity: a changed file changes the key of the call that takes it."""
    path = tmp_path / "in.txt"
    path.write_text("one")

    def shapes() -> list[Any]:
        return [Holder(File(str(path))), SlotHolder(File(str(path))), {File(str(path)): 1},
                collections.defaultdict(list, {File(str(path)): [1]})]

    before = [hash_value(v) for v in shapes()]
    assert before == [hash_value(v) for v in shapes()]  # stable while nothing changes
    path.write_text("two!")
    after = [hash_value(v) for v in shapes()]
    assert all(b != a for b, a in zip(before, after, strict=True))


@dataclasses.dataclass
class Outputs:
    upper: File
    lower: File


def test_script_outputs_inside_a_dataclass_are_staged(scheduler: Scheduler, tmp_path: Path) -> None:
    """Staging sees the same structure: outputs inside a dataclass are declared, then checked and returned."""
    up, low = tmp_path / "up.txt", tmp_path / "low.txt"
    out = scheduler.run(script(f"echo AB > {up} && echo ab > {low}", outputs=Outputs(File(str(up)), File(str(low)))))
    assert isinstance(out, Outputs) and (out.upper.read(), out.lower.read()) == ("AB\n", "ab\n")


class Sample(Value):
    """A Value class of the user's own, holding a file as an attribute."""

    def __init__(self, reads: File) -> None:
        self.reads = reads


def test_files_inside_a_value_of_your_own_are_checked(tmp_path: Path) -> None:
    from slothflow.files._file import iter_files
    from slothflow.model._value import first_invalid

    path = tmp_path / "reads.fq"
    path.write_text("ACGT")
    sample = Sample(File(str(path)))
    hash_value(sample)  # records the file's fingerprint, as storing a result does
    assert [f.path for f in iter_files({"s": [sample]})] == [str(path)]
    assert first_invalid([sample]) is None
    path.unlink()
    assert first_invalid([sample]) is sample.reads


# ------------------------------------------------------------------------------- defect 2: defaultdict
@task
def plus_one(x: int) -> int:
    return x + 1


@task
def summarize(groups: collections.defaultdict[str, list[int]]) -> dict[str, Any]:
    assert type(groups) is collections.defaultdict and groups.default_factory is list
    return {"sums": {k: sum(v) for k, v in groups.items()}, "missing": groups["nothing"]}


@task
def grouped() -> Any:
    groups: collections.defaultdict[str, list[Any]] = collections.defaultdict(list)
    groups["a"].extend([plus_one(1), plus_one(2)])
    groups["b"].append(plus_one(10))
    return summarize(groups)


def test_expressions_inside_a_defaultdict(scheduler: Scheduler) -> None:
    """Defect 2: a defaultdict holding expressions is rebuilt with its factory, not called with items."""
    assert scheduler.run(grouped()) == {"sums": {"a": 5, "b": 11}, "missing": []}
    groups: collections.defaultdict[str, list[Any]] = collections.defaultdict(list, {"c": [plus_one(0)]})
    assert scheduler.run(summarize(groups)) == {"sums": {"c": 1}, "missing": []}
    # The result of a body may be a defaultdict of expressions too.
    result = scheduler.run(defaultdict_result())
    assert type(result) is collections.defaultdict and result.default_factory is int and result == {"x": 3}


@task
def defaultdict_result() -> Any:
    return collections.defaultdict(int, x=plus_one(2))


# --------------------------------------------------------------------- defect 12: cycles and depth
PROBE = textwrap.dedent(
    """
    import json, sys, time
    from slothflow import Scheduler, task

    @task
    def consume(items: list) -> int:
        return 1

    @task
    def parent(shape: str):
        return consume(build(shape))

    def build(shape):
        if shape == "cycle":
            items = [1, {"k": []}]
            items[1]["k"].append(items)
            return items
        deep = []
        cur = deep
        for _ in range(10_000):
            nxt = []
            cur.append(nxt)
            cur = nxt
        return deep

    where, shape = sys.argv[1], sys.argv[2]
    scheduler = Scheduler(config={"backend": {"db_uri": sys.argv[3]}})
    start = time.monotonic()
    try:
        scheduler.run(consume(build(shape)) if where == "top" else parent(shape))
    except Exception as exc:
        print(json.dumps({"type": type(exc).__name__, "message": str(exc), "task": getattr(exc, "task_name", None),
                          "argument": getattr(exc, "argument", None), "kind": getattr(exc, "kind", None),
                          "seconds": time.monotonic() - start}))
    else:
        print(json.dumps({"type": None}))
    """
)


@pytest.mark.parametrize("where", ["top", "returned"])
@pytest.mark.parametrize("shape", ["cycle", "deep"])
def test_self_referencing_and_very_deep_arguments_fail_at_once(tmp_path: Path, where: str, shape: str) -> None:
    """Defect 12: a list that contains itself, or one nested 10,000 deep, as an argument of a call (made by
    the caller, or returned by a task body): a NestingError naming the task and argument, at once."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(probe), where, shape, f"sqlite:///{tmp_path / 'db.sqlite'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["type"] == "NestingError", report
    assert report["task"] == "probe.consume" and report["argument"] == "items"
    assert report["kind"] == ("cycle" if shape == "cycle" else "depth")
    assert "argument 'items' of task probe.consume" in report["message"]
    assert "RecursionError" not in out.stdout + out.stderr
    assert report["seconds"] < 10 and time.monotonic() - started < 60


@task
def takes(items: list[Any]) -> int:
    return 1


def test_messages_about_a_call_with_a_very_deep_argument_are_not_recursion_errors() -> None:
    """Defect 12: formatting a message about ``takes(deep)`` must not raise RecursionError and hide it."""
    deep: list[Any] = []
    cur = deep
    for _ in range(10_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    expr = takes(deep)
    assert "takes(<list>)" in repr(expr)
    with pytest.raises(ExpressionError, match="lazy expression"):
        bool(expr)


def test_nesting_error_pickles_with_its_context() -> None:
    import pickle

    err = NestingError("m", path="x[0]", kind="depth", task_name="t", argument="x")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.kind, back.task_name, back.argument) == ("m", "x[0]", "depth", "t", "x")
