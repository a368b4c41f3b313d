"""Reruns in fresh processes after changing exactly one piece of *helper* code (not a task's own source).

The workflow (two user modules, ``wf.py`` and ``helpers.py``) is run once per test session; each test copies
that project (sources and database), changes one thing, runs it again in a fresh interpreter, and asserts
which task bodies executed: exactly the tasks whose code depends on the change, never one more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

HELPERS = '''
"""Helpers of the workflow, in another user module."""

import functools
import os


def _ran(what):
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write(what + "\\n")


def normalize(x):
    return x * 2


def deco(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args)
    return wrapper


@deco
def shifted(x):
    return x + 100


class Scaler:
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k
'''

WF = '''
"""A workflow whose tasks use helpers in many ways."""

from slothflow import task

import helpers
from helpers import Scaler, _ran, normalize, shifted

OFFSET = 1


def add_offset(x, extra=0):
    return x + OFFSET + extra


def unrelated():
    return "unrelated"


def make_multiplier(k):
    def multiply(x):
        return x * k
    return multiply


triple = make_multiplier(3)


@task
def t_local(x: int) -> int:
    _ran("t_local")
    return add_offset(x)


@task
def t_constant(x: int) -> int:
    _ran("t_constant")
    return x + OFFSET


@task
def t_module(x: int) -> int:
    _ran("t_module")
    return normalize(x)


@task
def t_attr(x: int) -> int:
    _ran("t_attr")
    return helpers.normalize(x) + 1


@task
def t_closure(x: int) -> int:
    _ran("t_closure")
    return triple(x)


@task
def t_method(x: int) -> int:
    _ran("t_method")
    return Scaler(2).apply(x)


@task
def t_decorated(x: int) -> int:
    _ran("t_decorated")
    return shifted(x)


@task
def t_callee(x: int) -> int:
    _ran("t_callee")
    return x - 1


@task
def t_caller(x: int) -> int:
    _ran("t_caller")
    return t_callee(x)


@task
def main(x: int = 1) -> dict:
    _ran("main")
    return {
        "local": t_local(x), "constant": t_constant(x), "module": t_module(x), "attr": t_attr(x),
        "closure": t_closure(x), "method": t_method(x), "decorated": t_decorated(x), "caller": t_caller(x),
    }
'''

RUNNER = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wf
from slothflow import Scheduler

config = {"backend": {"db_uri": os.environ["RERUN_DB"]}}
if os.environ.get("ENV_POLICY"):
    config["scheduler"] = {"env_policy": os.environ["ENV_POLICY"]}
scheduler = Scheduler(config=config)
try:
    arguments = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if os.environ.get("DRYRUN"):
        plan = scheduler.run(wf.main(**arguments), dryrun=True)
        print(json.dumps({"would_run": plan.would_run_counts(), "reused": plan.reused_counts(),
                          "reasons": {c.call: [r.message for r in c.reasons] for c in plan.would_run}}))
        raise SystemExit(0)
    result = scheduler.run(wf.main(**arguments))
finally:
    scheduler.close()
print(json.dumps({"result": result, "execution": scheduler.last_execution_id}, sort_keys=True, default=repr))
'''

FIRST_RESULT = {"local": 2, "constant": 2, "module": 2, "attr": 3, "closure": 3, "method": 2, "decorated": 101,
                "caller": 0}
ALL_BODIES = {"main", "t_local", "t_constant", "t_module", "t_attr", "t_closure", "t_method", "t_decorated",
              "t_callee", "t_caller"}


class CodeProject:
    """The workflow, its runner and its SQLite database in one folder."""

    def __init__(self, root: Path, files: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        defaults = {"wf.py": WF, "helpers.py": HELPERS, "runner.py": RUNNER}
        for name, text in (defaults if files is None else files).items():
            (root / name).write_text(textwrap.dedent(text).lstrip())
        self.log = root / "ran.log"
        self.db = root / "cache.db"
        self.last_execution: str | None = None

    def copy(self, dest: Path) -> CodeProject:
        shutil.copytree(self.root, dest)
        return CodeProject(dest, files={})

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.root / file
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
        path.write_text(text.replace(old, new))

    def run(self, arguments: dict[str, Any] | None = None, env: dict[str, str] | None = None,
            dryrun: bool = False) -> tuple[Any, Counter[str]]:
        """Run main(**arguments) in a fresh interpreter: (result, Counter of bodies that ran)."""
        self.log.write_text("")
        full_env = {**os.environ, "RERUN_LOG": str(self.log), "RERUN_DB": f"sqlite:///{self.db}",
                    "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        if dryrun:
            full_env["DRYRUN"] = "1"
        proc = subprocess.run([sys.executable, str(self.root / "runner.py"), json.dumps(arguments or {})],
                              capture_output=True, text=True, env=full_env, cwd=self.root, timeout=90)
        assert proc.returncode == 0, proc.stderr
        ran = Counter(line for line in self.log.read_text().splitlines() if line)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if dryrun:
            return out, ran
        self.last_execution = out["execution"]
        return out["result"], ran


def make_baseline(tmp_path_factory: pytest.TempPathFactory) -> CodeProject:
    """The workflow after its first run: every body ran once."""
    project = CodeProject(tmp_path_factory.mktemp("code_baseline") / "proj")
    result, ran = project.run()
    assert result == FIRST_RESULT
    assert set(ran) == ALL_BODIES and all(n == 1 for n in ran.values())
    return project


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> CodeProject:
    return make_baseline(tmp_path_factory)


@pytest.fixture
def project(baseline: CodeProject, tmp_path: Path) -> CodeProject:
    return baseline.copy(tmp_path / "proj")


CHANGES = [
    ("helper body, same module", "wf.py", "return x + OFFSET + extra", "return x + OFFSET + extra + 10",
     {"t_local": 1}, {"local": 12}),
    ("helper body, other module", "helpers.py", "return x * 2", "return x * 3",
     {"t_module": 1, "t_attr": 1}, {"module": 3, "attr": 4}),
    ("module constant", "wf.py", "OFFSET = 1", "OFFSET = 5", {"t_local": 1, "t_constant": 1},
     {"local": 6, "constant": 6}),
    ("closure variable", "wf.py", "triple = make_multiplier(3)", "triple = make_multiplier(4)", {"t_closure": 1},
     {"closure": 4}),
    ("default argument", "wf.py", "def add_offset(x, extra=0):", "def add_offset(x, extra=7):", {"t_local": 1},
     {"local": 9}),
    ("method of a user class", "helpers.py", "return x * self.k", "return x * self.k * 10", {"t_method": 1},
     {"method": 20}),
    ("decorator of a helper", "helpers.py", "return f(*args)", "return f(*args) * 2", {"t_decorated": 1},
     {"decorated": 202}),
]

NON_CHANGES = [
    ("comment", "helpers.py", "return x * 2", "return x * 2  # doubled"),
    ("docstring", "wf.py", "def add_offset(x, extra=0):\n", 'def add_offset(x, extra=0):\n    """Shift."""\n'),
    ("formatting", "helpers.py", "return x * self.k", "return (x\n                * self.k)"),
    ("unrelated function, same module", "wf.py", 'return "unrelated"', 'return "changed"'),
    ("new unused function", "helpers.py", "class Scaler:", "def unused():\n    return 1\n\n\nclass Scaler:"),
]


@pytest.mark.parametrize("what, file, old, new, expected_ran, expected_result", CHANGES, ids=[c[0] for c in CHANGES])
def test_helper_change_reruns_exactly_the_dependent_tasks(project: CodeProject, what: str, file: str, old: str,
                                                          new: str, expected_ran: dict[str, int],
                                                          expected_result: dict[str, int]) -> None:
    project.edit(file, old, new)
    result, ran = project.run()
    assert ran == expected_ran
    assert result == {**FIRST_RESULT, **expected_result}  # never a stale value
    assert project.run()[1] == {}  # and then it is cached


@pytest.mark.parametrize("what, file, old, new", NON_CHANGES, ids=[c[0] for c in NON_CHANGES])
def test_cosmetic_or_unrelated_change_reruns_nothing(project: CodeProject, what: str, file: str, old: str,
                                                     new: str) -> None:
    project.edit(file, old, new)
    result, ran = project.run()
    assert ran == {}
    assert result == FIRST_RESULT


def test_changing_a_called_task_reruns_only_that_task(project: CodeProject) -> None:
    project.edit("wf.py", "return x - 1", "return x - 2")
    result, ran = project.run()
    assert ran == {"t_callee": 1}  # t_caller's body, which calls it, does not rerun
    assert result == {**FIRST_RESULT, "caller": -1}


STATEFUL = '''
import os
import sys

from slothflow import Scheduler, task

_log_fd = None          # rebound by a helper at run time (like a lazily opened log file)
_seen = {}              # mutated in place at run time (a memo)
LIMIT = 10              # a real constant


def note(name):
    global _log_fd
    if _log_fd is None:
        _log_fd = os.open(os.environ["RERUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    _seen[name] = _seen.get(name, 0) + 1
    os.write(_log_fd, (name + "\\n").encode())


@task
def leaf(i: int) -> int:
    note("leaf")
    return min(i, LIMIT)


@task
def root(n: int) -> list:
    note("root")
    return [leaf(i) for i in range(n)]


if __name__ == "__main__":
    s = Scheduler(config={"backend": {"db_uri": "sqlite:///" + sys.argv[1]}})
    print(s.run(root(3)))
'''


def test_runtime_state_in_module_globals_does_not_rerun(tmp_path: Path) -> None:
    """Globals that helpers rebind or mutate while a run goes on are state, not code: a cached rerun (where
    no body runs, so the state stays as imported) must not see them as changed."""
    (tmp_path / "stateful.py").write_text(STATEFUL)
    log = tmp_path / "ran.log"

    def run() -> list[str]:
        log.unlink(missing_ok=True)
        subprocess.run([sys.executable, str(tmp_path / "stateful.py"), str(tmp_path / "db.sqlite")],
                       env={**os.environ, "RERUN_LOG": str(log)}, check=True, capture_output=True, timeout=60)
        return log.read_text().split() if log.exists() else []

    assert Counter(run()) == Counter({"leaf": 3, "root": 1})
    assert run() == []
    source = (tmp_path / "stateful.py").read_text()
    (tmp_path / "stateful.py").write_text(source.replace("LIMIT = 10", "LIMIT = 1"))
    assert Counter(run()) == Counter({"leaf": 3})  # the real constant still counts


def test_same_process_sees_redefined_helpers_and_constants_but_not_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook redefines a constant or a helper between runs: the next run must see it. A memo that
    bodies fill in place is state, not code: it must not make the next run rerun."""
    import importlib

    from slothflow import Scheduler

    (tmp_path / "nbmod.py").write_text(textwrap.dedent('''
        from slothflow import task

        K = 1
        MEMO = {}
        RAN = []


        def helper(x):
            return x + K


        @task
        def compute(x: int) -> int:
            RAN.append(x)
            MEMO[x] = True
            return helper(x)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("nbmod")
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'nb.db'}"}})
    assert scheduler.run(mod.compute(10)) == 11
    assert scheduler.run(mod.compute(10)) == 11
    assert mod.RAN == [10]  # MEMO and RAN were filled in place: not a change

    mod.K = 500  # a cell re-run with a new constant
    assert scheduler.run(mod.compute(10)) == 510
    exec("def helper(x):\n    return x * 2 + K\n", mod.__dict__)  # a helper redefined in a cell
    assert scheduler.run(mod.compute(10)) == 520
    assert mod.RAN == [10, 10, 10]
    scheduler.close()


def test_relative_imports_inside_a_task_body_are_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from slothflow import get_task_registry

    pkg = tmp_path / "relpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def compute(x):\n    return x + 1\n")
    (pkg / "wf.py").write_text(textwrap.dedent('''
        from slothflow import task


        @task
        def via_name(x: int) -> int:
            from .helpers import compute
            return compute(x)


        @task
        def via_module(x: int) -> int:
            from . import helpers
            return helpers.compute(x)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    wf = importlib.import_module("relpkg.wf")
    before = (wf.via_name.hash, wf.via_module.hash)
    from slothflow.hashing._code import CodeHasher, use_code_hasher

    helpers = importlib.import_module("relpkg.helpers")
    exec("def compute(x):\n    return x + 2\n", helpers.__dict__)
    with use_code_hasher(CodeHasher()):  # a new owner (a new run) sees the code as it is now
        after = (wf.via_name.hash, wf.via_module.hash)
    assert before[0] != after[0] and before[1] != after[1]
    assert get_task_registry().get("relpkg.wf.via_name") is wf.via_name


def test_child_task_from_a_lazily_imported_module_is_replayed(tmp_path: Path) -> None:
    """A body imports the module of the task it returns: in a fresh process that module is not imported when
    the cached reduction is replayed; it is imported then, instead of rerunning the parent (found by review)."""
    (tmp_path / "lazychild.py").write_text(textwrap.dedent('''
        import os
        from slothflow import task

        @task
        def child(x: int) -> int:
            with open(os.environ["RERUN_LOG"], "a") as fh:
                fh.write("child\\n")
            return x * 3
    '''))
    (tmp_path / "lazyparent.py").write_text(textwrap.dedent('''
        import os
        import sys
        from slothflow import Scheduler, task

        @task
        def parent(x: int):
            with open(os.environ["RERUN_LOG"], "a") as fh:
                fh.write("parent\\n")
            from lazychild import child
            return child(x)

        if __name__ == "__main__":
            s = Scheduler(config={"backend": {"db_uri": "sqlite:///" + sys.argv[1]}})
            print(s.run(parent(4)))
    '''))
    log = tmp_path / "ran.log"

    def run() -> list[str]:
        log.unlink(missing_ok=True)
        out = subprocess.run([sys.executable, str(tmp_path / "lazyparent.py"), str(tmp_path / "db.sqlite")],
                             env={**os.environ, "RERUN_LOG": str(log)}, capture_output=True, text=True, timeout=60,
                             check=True, cwd=tmp_path)
        assert out.stdout.strip() == "12"
        return sorted(log.read_text().split()) if log.exists() else []

    assert run() == ["child", "parent"]
    assert run() == []
    assert run() == []
