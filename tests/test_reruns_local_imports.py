"""Reruns in fresh processes after editing a module that task code imports *inside a function* (issue 7,
defect 11): ``from helpers import f`` or ``import helpers`` in a task body, in a helper it calls, or relative
to the task's package. The edited function's dependents rerun, nothing else does, and explain names it.

In a fresh process such a module is not imported yet when task hashes are computed (before any body runs):
the code hash must find and follow it anyway.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slothflow import Scheduler
from test_reruns_code import CodeProject

HELPERS = '''
"""Helpers imported only inside functions of the workflow."""


def f(x):
    return x + 1


def g(x):
    return x * 2


def h(x):
    return x - 1


def unrelated():
    return "unrelated"
'''

RELHELP = '''
def r(x):
    return x + 10


def s(x):
    return x + 20
'''

WF = '''
"""Tasks whose helpers are imported inside function bodies only."""

import os

from slothflow import task


def _ran(what):
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write(what + "\\n")


def via_helper(x):
    from helpers import h
    return h(x)


@task
def t_from(x: int) -> int:
    _ran("t_from")
    from helpers import f
    return f(x)


@task
def t_module(x: int) -> int:
    _ran("t_module")
    import helpers
    return helpers.g(x)


@task
def t_helper(x: int) -> int:
    _ran("t_helper")
    return via_helper(x)


@task
def t_relative(x: int) -> int:
    _ran("t_relative")
    from .relhelp import r
    return r(x)


@task
def t_relative_module(x: int) -> int:
    _ran("t_relative_module")
    from . import relhelp
    return relhelp.s(x)


@task
def t_nested(x: int) -> int:
    _ran("t_nested")

    def inner(v):
        from helpers import f
        return f(v)
    return [inner(i) for i in [x]][0] + _late_g(x)


def _late_g(x):
    import helpers as hp
    return hp.g(x)


@task
def main(x: int = 1) -> dict:
    _ran("main")
    return {"from": t_from(x), "module": t_module(x), "helper": t_helper(x), "relative": t_relative(x),
            "relative_module": t_relative_module(x), "nested": t_nested(x)}
'''

RUNNER = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app import wf
from slothflow import Scheduler

scheduler = Scheduler(config={"backend": {"db_uri": os.environ["RERUN_DB"]}})
try:
    result = scheduler.run(wf.main())
finally:
    scheduler.close()
print(json.dumps({"result": result, "execution": scheduler.last_execution_id}, sort_keys=True))
'''

FIRST = {"from": 2, "module": 2, "helper": 0, "relative": 11, "relative_module": 21, "nested": 4}
BODIES = {"main", "t_from", "t_module", "t_helper", "t_relative", "t_relative_module", "t_nested"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> CodeProject:
    root = tmp_path_factory.mktemp("local_imports") / "proj"
    (root / "app").mkdir(parents=True)
    project = CodeProject(root, files={"helpers.py": HELPERS, "app/__init__.py": "", "app/relhelp.py": RELHELP,
                                       "app/wf.py": WF, "runner.py": RUNNER})
    result, ran = project.run()
    assert result == FIRST
    assert set(ran) == BODIES and all(n == 1 for n in ran.values())
    return project


@pytest.fixture
def project(baseline: CodeProject, tmp_path: Path) -> CodeProject:
    return baseline.copy(tmp_path / "proj")


CHANGES = [
    ("from-import in a task body", "helpers.py", "return x + 1", "return x + 100", {"t_from", "t_nested"},
     {"from": 101, "nested": 103}),
    ("module import in a task body", "helpers.py", "return x * 2", "return x * 3", {"t_module", "t_nested"},
     {"module": 3, "nested": 5}),
    ("import in a helper function", "helpers.py", "return x - 1", "return x - 5", {"t_helper"}, {"helper": -4}),
    ("relative from-import", "app/relhelp.py", "return x + 10", "return x + 30", {"t_relative"}, {"relative": 31}),
    ("relative module import", "app/relhelp.py", "return x + 20", "return x + 40", {"t_relative_module"},
     {"relative_module": 41}),
]

NON_CHANGES = [
    ("comment", "helpers.py", "return x * 2", "return x * 2  # doubled"),
    ("unrelated function", "helpers.py", 'return "unrelated"', 'return "changed"'),
    ("new function", "app/relhelp.py", "def s(x):", "def extra():\n    return 0\n\n\ndef s(x):"),
]


@pytest.mark.parametrize("what, file, old, new, expected, result", CHANGES, ids=[c[0] for c in CHANGES])
def test_editing_a_locally_imported_function_reruns_its_dependents(
    project: CodeProject, what: str, file: str, old: str, new: str, expected: set[str], result: dict[str, int]
) -> None:
    project.edit(file, old, new)
    got, ran = project.run()
    assert set(ran) == expected and all(n == 1 for n in ran.values())
    assert got == {**FIRST, **result}  # never a stale value
    assert project.run()[1] == {}


@pytest.mark.parametrize("what, file, old, new", NON_CHANGES, ids=[c[0] for c in NON_CHANGES])
def test_cosmetic_or_unrelated_edit_of_a_locally_imported_module_reruns_nothing(
    project: CodeProject, what: str, file: str, old: str, new: str
) -> None:
    project.edit(file, old, new)
    got, ran = project.run()
    assert ran == {}
    assert got == FIRST


def test_explain_names_the_locally_imported_helper(project: CodeProject) -> None:
    project.edit("helpers.py", "return x - 1", "return x - 5")
    project.run()
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{project.db}"}})
    try:
        assert project.last_execution is not None
        explained = {e.task: e for e in scheduler.explain(project.last_execution)}
    finally:
        scheduler.close()
    assert set(explained) == {"app.wf.t_helper"}
    line = next(i for i, text in enumerate(textwrap.dedent(HELPERS).lstrip().splitlines(), 1) if "def h(" in text)
    assert [r.message for r in explained["app.wf.t_helper"].reasons] == [
        f"code of `helpers.h` changed (helpers.py:{line})"]
