"""Explanations, as text and as data, for each kind of change: helper code (with its source diff), module
constants, closure variables, default values, arguments, input files, invalid cached results, new tasks; and
the same reasons in a dry-run plan, computed before anything runs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from slothflow import Explanation, Scheduler
from test_reruns_code import CHANGES, HELPERS, RUNNER, WF, CodeProject, make_baseline


@pytest.fixture(scope="session")
def explain_baseline(tmp_path_factory: pytest.TempPathFactory) -> CodeProject:
    return make_baseline(tmp_path_factory)


@pytest.fixture
def project(explain_baseline: CodeProject, tmp_path: Path) -> CodeProject:
    return explain_baseline.copy(tmp_path / "proj")


def explain(p: CodeProject) -> dict[str, Explanation]:
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{p.db}"}})
    try:
        assert p.last_execution is not None
        return {e.task: e for e in scheduler.explain(p.last_execution)}
    finally:
        scheduler.close()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(text).lstrip().splitlines(), 1) if needle in line)


def change(p: CodeProject, what: str) -> None:
    _, file, old, new, _, _ = next(c for c in CHANGES if c[0] == what)
    p.edit(file, old, new)


def test_helper_in_another_module(project: CodeProject) -> None:
    change(project, "helper body, other module")
    project.run()
    explained = explain(project)
    assert set(explained) == {"wf.t_module", "wf.t_attr"}
    line = line_of(HELPERS, "def normalize(x):")
    for e in explained.values():
        assert [(r.kind, r.name) for r in e.reasons] == [("code", "helpers.normalize")]
        reason = e.reasons[0]
        assert reason.message == f"code of `helpers.normalize` changed (helpers.py:{line})"
        assert reason.diff is not None and "-    return x * 2" in reason.diff and "+    return x * 3" in reason.diff
        assert str(e).splitlines()[1] == f"  - code of `helpers.normalize` changed (helpers.py:{line})"


def test_helper_in_the_same_module_and_its_default(project: CodeProject) -> None:
    change(project, "default argument")
    project.run()
    reasons = explain(project)["wf.t_local"].reasons
    assert [(r.kind, r.message) for r in reasons] == [
        ("code", f"code of `wf.add_offset` changed (wf.py:{line_of(WF, 'def add_offset')})"),
        ("default", "default value of `extra` in `wf.add_offset` changed: 0 -> 7"),
    ]
    assert reasons[0].diff is not None and "+def add_offset(x, extra=7):" in reasons[0].diff


def test_constant(project: CodeProject) -> None:
    change(project, "module constant")
    project.run()
    explained = explain(project)
    assert set(explained) == {"wf.t_local", "wf.t_constant"}
    for e in explained.values():
        assert [(r.kind, r.name, r.old, r.new) for r in e.reasons] == [("constant", "wf.OFFSET", "1", "5")]
        assert e.reasons[0].message == "constant `wf.OFFSET` changed: 1 -> 5"


def test_closure_variable(project: CodeProject) -> None:
    change(project, "closure variable")
    project.run()
    reasons = explain(project)["wf.t_closure"].reasons
    assert [(r.kind, r.message) for r in reasons] == [
        ("closure", "closure variable `k` of `wf.make_multiplier.<locals>.multiply` changed: 3 -> 4")]


def test_method_and_decorator(project: CodeProject) -> None:
    change(project, "method of a user class")
    change(project, "decorator of a helper")
    project.run()
    explained = explain(project)
    scaler = explained["wf.t_method"].reasons
    line = line_of(HELPERS, "class Scaler")
    assert [r.message for r in scaler] == [f"code of `helpers.Scaler` changed (helpers.py:{line})"]
    assert scaler[0].diff is not None and "+        return x * self.k * 10" in scaler[0].diff
    decorated = {r.name for r in explained["wf.t_decorated"].reasons if r.kind == "code"}
    assert decorated == {"helpers.deco", "helpers.deco.<locals>.wrapper"}


def test_argument_and_new_task(project: CodeProject) -> None:
    project.edit("wf.py", '"caller": t_caller(x),\n', '"caller": t_caller(x), "extra": t_extra(x),\n')
    project.edit("wf.py", "@task\ndef main", "@task\ndef t_extra(x: int) -> int:\n    return x\n\n\n@task\ndef main")
    project.run({"x": 2})
    explained = explain(project)
    assert explained["wf.main"].reasons[0].kind == "code"  # its own source changed
    assert ("argument", "argument `x`: 1 -> 2") in [(r.kind, r.message) for r in explained["wf.main"].reasons]
    assert [(r.kind, r.old, r.new) for r in explained["wf.t_local"].reasons] == [("argument", "1", "2")]
    assert explained["wf.t_extra"].kinds == ["new_task"]
    assert explained["wf.t_extra"].to_dict()["reasons"][0]["kind"] == "new_task"


def test_dry_run_plan_gives_the_same_reasons_without_running(project: CodeProject) -> None:
    change(project, "helper body, other module")
    change(project, "closure variable")
    plan, ran = project.run(dryrun=True)
    assert ran == {}  # nothing ran
    assert plan["would_run"] == {"wf.t_module": 1, "wf.t_attr": 1, "wf.t_closure": 1}
    assert plan["reused"]["wf.main"] == 1 and "wf.t_local" in plan["reused"]
    line = line_of(HELPERS, "def normalize(x):")
    assert plan["reasons"]["wf.t_module(x=1)"] == [f"code of `helpers.normalize` changed (helpers.py:{line})"]
    assert plan["reasons"]["wf.t_closure(x=1)"] == [
        "closure variable `k` of `wf.make_multiplier.<locals>.multiply` changed: 3 -> 4"]
    plan, _ = project.run({"x": 5}, dryrun=True)
    assert plan["reasons"]["wf.main(x=5)"] == ["argument `x`: 1 -> 5"]


FILE_WF = '''
import os
from slothflow import File, task


def _ran(what):
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write(what + "\\n")


@task
def count_lines(data: File) -> int:
    _ran("count_lines")
    return len(data.read().splitlines())


@task
def write_out(n: int) -> File:
    _ran("write_out")
    out = File("out/b.txt")
    out.write(str(n))
    return out


@task
def main(path: str = "data/a.csv") -> File:
    _ran("main")
    return write_out(count_lines(File(path)))
'''


@pytest.fixture
def file_project(tmp_path: Path) -> CodeProject:
    p = CodeProject(tmp_path / "files", files={"wf.py": FILE_WF, "runner.py": RUNNER})
    (p.root / "data").mkdir()
    (p.root / "out").mkdir()
    (p.root / "data" / "a.csv").write_text("a,b\n1,2\n")
    result, ran = p.run()
    assert set(ran) == {"main", "count_lines", "write_out"}
    return p


def test_input_file_changed_and_output_file_missing(file_project: CodeProject) -> None:
    p = file_project
    (p.root / "data" / "a.csv").write_text("a,b\n1,3\n")  # same number of lines, new content
    _, ran = p.run()
    # main's recorded reduction holds the file it passes on: it no longer holds what it held, so main's body
    # reruns too (conservative: a body may have written that file), and count_lines sees the new content.
    assert ran == {"count_lines": 1, "main": 1}
    explained = explain(p)
    assert set(explained) == {"wf.count_lines", "wf.main"}
    assert [(r.kind, r.message) for r in explained["wf.count_lines"].reasons] == [
        ("input_file", "input file data/a.csv changed (content)")]
    assert [r.kind for r in explained["wf.main"].reasons] == ["invalid_result"]
    assert "data/a.csv" in explained["wf.main"].reasons[0].message

    os.remove(p.root / "out" / "b.txt")
    _, ran = p.run()
    assert ran == {"write_out": 1}
    assert [(r.kind, r.message) for r in explain(p)["wf.write_out"].reasons] == [
        ("invalid_result", "cached result no longer valid: file out/b.txt missing")]
