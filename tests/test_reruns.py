"""Reruns in fresh processes: change exactly one thing, rerun, and assert which task bodies executed.

Never a stale result (a body that should have rerun did not), never a redundant rerun (a body ran although
its code and arguments did not change). The workflow is tests/workflows/rerun_base.py, copied into a
temporary folder; every body appends a line to a log file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

WORKFLOWS = Path(__file__).parent / "workflows"
SQUARES_0_TO_2 = {"square(0)": 1, "square(1)": 1, "square(2)": 1}
FIRST_RUN = {**SQUARES_0_TO_2, "main": 1, "total": 1, "scale": 1, "report": 1, "group": 1}
FIRST_RESULT = {"group": ["alpha", "delta", "epsilon"], "report": "sum: 5"}


class Project:
    """A workflow module, its runner and one SQLite database in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.module = root / "wf.py"
        shutil.copy(WORKFLOWS / "rerun_base.py", self.module)
        shutil.copy(WORKFLOWS / "rerun_runner.py", root / "runner.py")
        self.log = root / "ran.log"
        self.db = root / "cache.db"

    def edit(self, old: str, new: str) -> None:
        """Change exactly one place of the workflow's source."""
        text = self.module.read_text()
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        self.module.write_text(text.replace(old, new))

    def run(self, arguments: dict[str, Any] | None = None, hash_seed: str = "0",
            expect_failure: bool = False) -> tuple[Any, Counter[str]]:
        """Run main(**arguments) in a fresh interpreter: (result, Counter of bodies that ran)."""
        self.log.write_text("")
        env = {
            **os.environ,
            "RERUN_LOG": str(self.log),
            "RERUN_DB": f"sqlite:///{self.db}",
            "PYTHONHASHSEED": hash_seed,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = subprocess.run(
            [sys.executable, str(self.root / "runner.py"), json.dumps(arguments or {})],
            capture_output=True, text=True, env=env, cwd=self.root, timeout=90,
        )
        ran = Counter(line for line in self.log.read_text().splitlines() if line)
        if expect_failure:
            assert proc.returncode != 0, proc.stdout
            return proc.stderr, ran
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1]), ran


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path / "proj")
    result, ran = p.run()
    assert result == FIRST_RESULT
    assert ran == FIRST_RUN
    return p


def test_no_change_reruns_nothing(project: Project) -> None:
    result, ran = project.run()
    assert result == FIRST_RESULT
    assert ran == {}


def test_changed_argument_reruns_only_that_call_and_its_consumers(project: Project) -> None:
    result, ran = project.run({"label": "total"})
    assert result["report"] == "total: 5"
    assert ran == {"main": 1, "report": 1}

    result, ran = project.run({"factor": 2})
    assert result["report"] == "sum: 10"
    assert ran == {"main": 1, "scale": 1, "report": 1}

    result, ran = project.run({"n": 4})
    assert result["report"] == "sum: 14"
    assert ran == {"main": 1, "square(3)": 1, "total": 1, "scale": 1, "report": 1}

    # every earlier variant is still cached
    for arguments in ({}, {"label": "total"}, {"factor": 2}, {"n": 4}):
        assert project.run(arguments)[1] == {}


def test_changed_task_body_reruns_that_task_not_the_parent(project: Project) -> None:
    project.edit("    return x * x\n", "    return x * x + 1\n")
    result, ran = project.run()
    assert result["report"] == "sum: 8"
    # main's body does not rerun: its recorded reduction is replayed and each child looked up on its own
    assert ran == {**SQUARES_0_TO_2, "total": 1, "scale": 1, "report": 1}
    assert project.run()[1] == {}


def test_changed_body_with_equal_result_stops_at_the_changed_task(project: Project) -> None:
    project.edit("    return x * x\n", "    return x**2\n")
    result, ran = project.run()
    assert result == FIRST_RESULT
    assert ran == SQUARES_0_TO_2  # consumers see equal values: early cutoff


def test_changed_parent_body_reuses_all_children(project: Project) -> None:
    project.edit('    words = {"alpha",', '    words = {"lambda", "alpha",')
    result, ran = project.run()
    assert result["group"] == ["alpha", "delta", "epsilon", "lambda"]
    assert ran == {"main": 1, "group": 1}


@pytest.mark.parametrize(
    "old, new",
    [
        ("    _ran(\"total\")\n", "    # add them up\n    _ran(\"total\")  # trailing comment\n"),
        ("def total(values: list[int]) -> int:\n", 'def total(values: list[int]) -> int:\n    """Add."""\n'),
        ("    return x * x\n", "    return (x *\n            x)\n"),
        ('"""The workflow of', '\n\n\n# a new header comment\n"""The workflow of'),
        ("@task\ndef square", "@task()\ndef square"),
    ],
    ids=["comment", "docstring", "formatting", "line-shift", "decorator-call"],
)
def test_cosmetic_change_reruns_nothing(project: Project, old: str, new: str) -> None:
    project.edit(old, new)
    result, ran = project.run()
    assert result == FIRST_RESULT
    assert ran == {}


def test_version_bump_reruns_and_body_change_without_bump_does_not(project: Project) -> None:
    # With version= set, the version replaces the source in the hash: the author decides.
    project.edit("    return value * factor\n", "    return factor * value\n")
    assert project.run()[1] == {}
    project.edit('@task(version="1")', '@task(version="2")')
    result, ran = project.run()
    assert result == FIRST_RESULT
    assert ran == {"scale": 1}  # same value: report is cut off


def test_hash_seed_does_not_cause_reruns(project: Project) -> None:
    for seed in ("1", "2", "12345", "random"):
        result, ran = project.run(hash_seed=seed)
        assert result == FIRST_RESULT, seed
        assert ran == {}, seed


def test_failed_call_reruns_after_fix_and_finished_siblings_are_kept(tmp_path: Path) -> None:
    p = Project(tmp_path / "proj")
    p.edit("    return x * x\n", "    if x == 2:\n        raise ValueError('two')\n    return x * x\n")
    stderr, ran = p.run(expect_failure=True)
    assert "ValueError: two" in stderr
    assert ran == {**SQUARES_0_TO_2, "main": 1, "group": 1}
    stderr, ran = p.run(expect_failure=True)
    assert ran == {"square(2)": 1}  # the failure was not cached; main and the finished squares were
    p.edit("    if x == 2:\n        raise ValueError('two')\n", "")
    result, ran = p.run()
    assert result == FIRST_RESULT
    assert ran == {**SQUARES_0_TO_2, "total": 1, "scale": 1, "report": 1}


def test_replayed_reduction_calling_a_task_from_a_lazily_imported_module(tmp_path: Path) -> None:
    """A body that imports its child's module: replaying its reduction in a fresh process (where that
    module is not imported yet) must not fail; rerunning the body is the correct fallback."""
    p = Project(tmp_path / "proj")
    (p.root / "wf_extra.py").write_text(
        "from slothflow import task\n"
        "import wf\n\n"
        "@task\n"
        "def extra(x: int) -> int:\n"
        "    wf._ran('extra')\n"
        "    return x + 100\n"
    )
    p.edit(
        '        "group": group(frozenset(words), weights),\n',
        '        "group": group(frozenset(words), weights),\n        "extra": __import__("wf_extra").extra(n),\n',
    )
    result, ran = p.run()
    assert result["extra"] == 103
    assert ran == {**FIRST_RUN, "extra": 1}
    result, ran = p.run()
    assert result["extra"] == 103
    assert ran["extra"] == 0 and ran["square(0)"] == 0


def test_changed_helper_function_reruns_the_task_using_it(project: Project) -> None:
    project.edit(
        "@task\ndef square",
        "def _combine(a: int, b: int) -> int:\n    return a * b\n\n\n@task\ndef square",
    )
    project.edit("    return x * x\n", "    return _combine(x, x)\n")
    assert project.run()[1] == SQUARES_0_TO_2  # a real change of square's own source
    project.edit("    return a * b\n", "    return a * b + 1\n")
    result, ran = project.run()
    assert result["report"] == "sum: 8"  # never the stale 5
    assert ran == {**SQUARES_0_TO_2, "total": 1, "scale": 1, "report": 1}


def test_changed_module_constant_reruns_the_task_using_it(project: Project) -> None:
    project.edit("@task\ndef square", "OFFSET = 0\n\n\n@task\ndef square")
    project.edit("    return x * x\n", "    return x * x + OFFSET\n")
    assert project.run()[1] == SQUARES_0_TO_2
    project.edit("OFFSET = 0\n", "OFFSET = 1\n")
    result, ran = project.run()
    assert result["report"] == "sum: 8"
