"""Transitive code hashing: which edits change which task hashes, and the manifest of covered code.

Each case writes a small workflow package (a task module and a helper module) under a fresh package name,
imports it, then writes an edited copy under another name and imports that: exactly the tasks that depend
on the edited code must get a new hash. Names are hashed relative to the workflow's package, so the two
copies are comparable.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from slothflow import Task
from slothflow.hashing._code import CodeHasher, code_info

HELPERS = '''
import functools

SCALE = 2


def deco(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)
    return wrapper


def deco_factory(n):
    def apply(f):
        return f
    return apply


@deco
def decorated(x):
    return x + 1


def normalize(x, factor=SCALE):
    """Scale a value."""
    return x * factor


class Shape:
    def area(self):
        return _side() ** 2


class Square(Shape):
    pass


def _side():
    return 3


def unrelated():
    return 0
'''

WF = '''
from slothflow import task

from . import helpers
from .helpers import Shape, Square, decorated, normalize

OFFSET = 1


def make_adder(k):
    def add(x):
        return x + k
    return add


adder = make_adder(5)


def local_helper(x, bias=10):
    return x + OFFSET + bias


def unrelated_local():
    return 1


def countdown(n):
    return n if n < 1 else countdown(n - 1)


@task
def other(x):
    return x


@task
def t_same_module(x):
    return local_helper(x)


@task
def t_other_module(x):
    return normalize(x)


@task
def t_module_attr(x):
    return helpers.normalize(x)


@task
def t_closure(x):
    return adder(x)


@task
def t_method(x):
    return Shape().area() + x


@task
def t_subclass(x):
    return Square().area() + x


@task
def t_decorated(x):
    return decorated(x)


@task
def t_calls_task(x):
    return other(x)


@task
def t_recursive(x):
    return countdown(x)
'''

TASKS = ["other", "t_same_module", "t_other_module", "t_module_attr", "t_closure", "t_method", "t_subclass",
         "t_decorated", "t_calls_task", "t_recursive"]
_counter = itertools.count()


def load_package(tmp_path: Path, files: dict[str, str], name: str | None = None) -> dict[str, ModuleType]:
    """Write a package with ``files`` (under a fresh name unless ``name`` is given: then a fresh folder, and
    the modules of an earlier package of that name are forgotten), import every module of it."""
    name = name or f"_sf_pkg_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    parent = tmp_path / uuid.uuid4().hex[:8]
    root = parent / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    for file, text in files.items():
        (root / f"{file}.py").write_text(textwrap.dedent(text))
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    sys.path.insert(0, str(parent))
    try:
        importlib.invalidate_caches()
        return {file: importlib.import_module(f"{name}.{file}") for file in files}
    finally:
        sys.path.remove(str(parent))


def code_hashes(module: ModuleType) -> dict[str, str]:
    return {name: code_info(getattr(module, name).func).hash for name in TASKS}


def changed_tasks(tmp_path: Path, file: str, old: str, new: str) -> set[str]:
    files = {"helpers": HELPERS, "wf": WF}
    assert files[file].count(old) == 1, f"{old!r} occurs {files[file].count(old)} times in {file}"
    base = code_hashes(load_package(tmp_path, files)["wf"])
    assert code_hashes(load_package(tmp_path, files)["wf"]) == base  # a copy of the same code hashes the same
    edited = {**files, file: files[file].replace(old, new)}
    after = code_hashes(load_package(tmp_path, edited)["wf"])
    return {name for name in TASKS if after[name] != base[name]}


CHANGES = [
    ("helper body, same module", "wf", "return x + OFFSET + bias", "return x - OFFSET + bias", {"t_same_module"}),
    ("module constant", "wf", "OFFSET = 1", "OFFSET = 2", {"t_same_module"}),
    ("default argument of a helper", "wf", "bias=10", "bias=11", {"t_same_module"}),
    ("helper body, other module", "helpers", "return x * factor", "return x * factor + 0",
     {"t_other_module", "t_module_attr"}),
    ("constant used as a default, other module", "helpers", "SCALE = 2", "SCALE = 3",
     {"t_other_module", "t_module_attr"}),
    ("closure variable", "wf", "adder = make_adder(5)", "adder = make_adder(6)", {"t_closure"}),
    ("body of a closure", "wf", "return x + k", "return k + x + 0", {"t_closure"}),
    ("method of a user class", "helpers", "return _side() ** 2", "return _side() ** 3", {"t_method", "t_subclass"}),
    ("helper of a method", "helpers", "return 3\n", "return 4\n", {"t_method", "t_subclass"}),
    ("subclass body", "helpers", "class Square(Shape):\n    pass", "class Square(Shape):\n    sides = 4",
     {"t_subclass"}),
    ("body of a helper's decorator", "helpers", "return f(*args, **kwargs)", "return f(*args, **kwargs) * 1",
     {"t_decorated"}),
    ("decorator removed from a helper", "helpers", "@deco\ndef decorated", "def decorated", {"t_decorated"}),
    ("decorator added to a helper", "helpers", "@deco\ndef decorated", "@deco\n@deco_factory(1)\ndef decorated",
     {"t_decorated"}),
    ("recursive helper", "wf", "return n if n < 1 else", "return n if n < 2 else", {"t_recursive"}),
    ("a task's own body", "wf", "def other(x):\n    return x\n", "def other(x):\n    return x + 1\n", {"other"}),
]

NON_CHANGES = [
    ("comment in a helper", "helpers", "return x * factor", "return x * factor  # scaled"),
    ("docstring of a helper", "helpers", '"""Scale a value."""', '"""Scale a value, differently."""'),
    ("formatting of a helper", "helpers", "return x * factor", "return (x *\n            factor)"),
    ("unrelated function, same module", "wf", "return 1\n", "return 2\n"),
    ("unrelated function, other module", "helpers", "return 0\n", "return -1\n"),
    ("code moved down", "helpers", "import functools\n", "import functools\n\n\n\n# spacer\n"),
    ("new unused constant", "wf", "OFFSET = 1", "OFFSET = 1\nUNUSED = 3"),
]


@pytest.mark.parametrize("what, file, old, new, expected", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_reaches_exactly_the_dependent_tasks(tmp_path: Path, what: str, file: str, old: str, new: str,
                                                      expected: set[str]) -> None:
    assert changed_tasks(tmp_path, file, old, new) == expected


@pytest.mark.parametrize("what, file, old, new", NON_CHANGES, ids=[c[0] for c in NON_CHANGES])
def test_a_cosmetic_or_unrelated_change_reaches_no_task(tmp_path: Path, what: str, file: str, old: str,
                                                        new: str) -> None:
    assert changed_tasks(tmp_path, file, old, new) == set()


def test_manifest_lists_the_covered_code(tmp_path: Path) -> None:
    wf = load_package(tmp_path, {"helpers": HELPERS, "wf": WF})["wf"]
    pkg = wf.__name__.rpartition(".")[0]
    task: Task = wf.t_other_module
    manifest = {(e["kind"], e["name"]): e for e in task.code_manifest}
    assert set(manifest) == {
        ("function", f"{pkg}.helpers.normalize"),
        ("default", f"{pkg}.helpers.normalize::factor"),
    }
    entry = manifest[("function", f"{pkg}.helpers.normalize")]
    assert entry["file"].endswith("helpers.py") and entry["line"] == HELPERS.splitlines().index(
        "def normalize(x, factor=SCALE):") + 1
    assert "return x * factor" in entry["source"]
    assert manifest[("default", f"{pkg}.helpers.normalize::factor")]["source"] == "2"
    import json

    assert json.loads(task.code_manifest_json) == task.code_manifest

    kinds = {(e["kind"], e["name"].rpartition(".")[2]) for e in wf.t_same_module.code_manifest}
    assert kinds == {("function", "local_helper"), ("constant", "OFFSET"), ("default", "local_helper::bias")}
    closure = {(e["kind"], e["source"]) for e in wf.t_closure.code_manifest}
    assert ("closure", "5") in closure
    method = {e["name"].rpartition(".")[2] for e in wf.t_method.code_manifest}
    assert method == {"Shape", "_side"}
    assert wf.t_calls_task.code_manifest == []  # the called task is cached on its own
    assert wf.other.code_manifest == []


def test_version_replaces_all_code_and_hash_includes_adds(tmp_path: Path) -> None:
    src = WF + '''

@task(version="1")
def t_versioned(x):
    return local_helper(x)


@task(hash_includes=[INCLUDED])
def t_includes(x):
    return x
'''
    files = {"helpers": HELPERS, "wf": src.replace("OFFSET = 1", "OFFSET = 1\nINCLUDED = 'a'")}
    first = load_package(tmp_path, files)["wf"]
    second = load_package(tmp_path, {**files, "wf": files["wf"].replace("OFFSET = 1\n", "OFFSET = 5\n")})["wf"]
    third = load_package(tmp_path, {**files, "wf": files["wf"].replace("INCLUDED = 'a'", "INCLUDED = 'b'")})["wf"]

    def strip(h: Task) -> str:  # the task hash without its (package-specific) full name
        return code_info(h.func).hash

    assert first.t_versioned.code_manifest == []
    assert strip(first.t_same_module) != strip(second.t_same_module)
    # version= replaces the code: the helper's constant changed, the versioned task's hash did not
    assert first.t_versioned.hash.replace(first.t_versioned.fullname, "") and \
        _without_name(first.t_versioned) == _without_name(second.t_versioned)
    assert _without_name(first.t_includes) == _without_name(second.t_includes)
    assert _without_name(first.t_includes) != _without_name(third.t_includes)


def _without_name(task: Task) -> str:
    """The task hash as if every copy of the workflow had the same module name."""
    clone = Task(task.func, name=task.name, namespace="same", version=task.version, hash_includes=task.hash_includes)
    return clone.hash


def test_dynamic_functions_cycles_and_containers(tmp_path: Path) -> None:
    src = '''
from slothflow import task

namespace = {}
exec("def made(x):\\n    return x * 7\\n", namespace)
made = namespace["made"]

ADDERS = [None]


def ping(n):
    return 0 if n <= 0 else pong(n - 1)


def pong(n):
    return 0 if n <= 0 else ping(n - 1)


def make(k):
    return lambda x: x + k


FUNCS = [make(i) for i in range(3)]


class Registry:
    pass


TYPES = {"r": Registry}


@task
def t(x):
    return made(x) + ping(x) + FUNCS[0](x) + len(TYPES)
'''
    name = f"_sf_dyn_{uuid.uuid4().hex[:8]}"  # one package name: values inside constants hash with module names
    base = code_info(load_package(tmp_path, {"wf": src}, name)["wf"].t.func).hash
    variants = [
        src.replace("x * 7", "x * 8"),
        src.replace("else pong(n - 1)", "else pong(n - 2)"),
        src.replace("range(3)", "range(4)"),
        src.replace("class Registry:\n    pass", "class Registry:\n    size = 1"),
    ]
    hashes = [code_info(load_package(tmp_path, {"wf": v}, name)["wf"].t.func).hash for v in variants]
    assert code_info(load_package(tmp_path, {"wf": src}, name)["wf"].t.func).hash == base
    assert base not in hashes and len(set(hashes)) == len(hashes)


def test_cross_module_cycle(tmp_path: Path) -> None:
    a = '''
from slothflow import task
from . import b


def a_helper(n):
    return 0 if n <= 0 else b.b_helper(n - 1)


@task
def t(n):
    return a_helper(n)
'''
    b = '''
from . import a


def b_helper(n):
    return 0 if n <= 0 else a.a_helper(n - 1) + 1
'''
    one = code_info(load_package(tmp_path, {"b": b, "a": a})["a"].t.func)
    two = code_info(load_package(tmp_path, {"b": b.replace("+ 1", "+ 2"), "a": a})["a"].t.func)
    assert {e["name"].rpartition(".")[2] for e in one.manifest} == {"a_helper", "b_helper"}
    assert one.hash != two.hash


def test_standard_library_and_installed_packages_are_not_user_code(tmp_path: Path) -> None:
    src = '''
import json
import os.path
import click
from sqlalchemy import select
from slothflow import task


@task
def t(x):
    return [json.dumps(x), os.path.join("a", "b"), click.style("x"), select]
'''
    info = code_info(load_package(tmp_path, {"wf": src})["wf"].t.func)
    assert info.manifest == ()
    assert info.modules == frozenset({"click", "sqlalchemy"})


def test_huge_module_is_hashed_fast(tmp_path: Path) -> None:
    """A task in a module of 5000 functions and classes only walks what it refers to."""
    body = "\n".join(f"def f{i}(x):\n    return x + {i}\n\n\nclass C{i}:\n    v = {i}\n" for i in range(5000))
    src = "from slothflow import task\n\n" + body + "\n\n@task\ndef t(x):\n    return f1(x) + C2.v\n"
    wf = load_package(tmp_path, {"wf": src})["wf"]
    started = time.perf_counter()
    info = code_info(wf.t.func)
    elapsed = time.perf_counter() - started
    print(f"hashing a task in a module of 10000 definitions: {elapsed * 1000:.1f} ms")
    assert {e["name"].rpartition(".")[2] for e in info.manifest} == {"f1", "C2"}


def test_a_table_of_tasks_in_a_constant_counts_by_name(tmp_path: Path) -> None:
    """``STEPS = {"a": a, "b": b}``: editing task ``a`` must not change the hash of a task that only uses the
    table (tasks are cached on their own), while renaming an entry does (found by review)."""
    src = '''
from slothflow import task


@task
def step_a(x):
    return x + 1


@task
def step_b(x):
    return x + 2


STEPS = {"a": step_a, "b": step_b}


@task
def pipeline(name, x):
    return STEPS[name](x)
'''
    name = f"_sf_steps_{uuid.uuid4().hex[:8]}"
    base = code_info(load_package(tmp_path, {"wf": src}, name)["wf"].pipeline.func).hash
    body_edit = code_info(load_package(tmp_path, {"wf": src.replace("x + 1", "x + 10")}, name)["wf"].pipeline.func)
    assert body_edit.hash == base
    renamed = code_info(load_package(tmp_path, {"wf": src.replace('"b": step_b', '"b": step_a')}, name)["wf"]
                        .pipeline.func)
    assert renamed.hash != base


# ------------------------------------------------------------------------- imports inside functions
LAZY_HELPERS = '''
def f(x):
    return x + 1


def g(x):
    return x * 2
'''

LAZY_WF = '''
from slothflow import task


@task
def t_from(x):
    from {pkg}.helpers import f
    return f(x)


@task
def t_relative(x):
    from .helpers import f
    return f(x)


@task
def t_dotted(x):
    import {pkg}.helpers
    return {pkg}.helpers.f(x)


@task
def t_alias(x):
    import {pkg}.helpers as h
    return h.f(x)


@task
def t_nested(x):
    def inner(v):
        from .helpers import f
        return f(v)
    return [inner(v) for v in [x]]


@task
def t_other(x):
    from .helpers import g
    return g(x)
'''
LAZY_TASKS = ["t_from", "t_relative", "t_dotted", "t_alias", "t_nested", "t_other"]


def lazy_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: str, name: str) -> dict[str, str]:
    """Code hashes of LAZY_WF's tasks in a fresh copy of package ``name``, whose helpers module is imported
    by nothing but the task bodies (so not imported yet when hashing starts)."""
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    parent = tmp_path / uuid.uuid4().hex[:8]
    (parent / name).mkdir(parents=True)
    (parent / name / "__init__.py").write_text("")
    (parent / name / "helpers.py").write_text(textwrap.dedent(helpers))
    (parent / name / "wf.py").write_text(LAZY_WF.replace("{pkg}", name))
    monkeypatch.syspath_prepend(str(parent))
    importlib.invalidate_caches()
    wf = importlib.import_module(f"{name}.wf")
    assert f"{name}.helpers" not in sys.modules
    hasher = CodeHasher()
    hashes = {t: hasher.code_info(getattr(wf, t).func).hash for t in LAZY_TASKS}
    names = {e["name"] for e in hasher.code_info(wf.t_from.func).manifest}
    assert names == {f"{name}.helpers.f"}  # only what is imported counts, not the whole module
    return hashes


def test_imports_inside_function_bodies_are_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"_sf_lazy_{uuid.uuid4().hex[:8]}"
    base = lazy_hashes(tmp_path, monkeypatch, LAZY_HELPERS, name)
    assert lazy_hashes(tmp_path, monkeypatch, LAZY_HELPERS, name) == base  # a copy of the same code hashes the same
    edited_f = lazy_hashes(tmp_path, monkeypatch, LAZY_HELPERS.replace("x + 1", "x + 2"), name)
    assert {t for t in LAZY_TASKS if edited_f[t] != base[t]} == set(LAZY_TASKS) - {"t_other"}
    edited_g = lazy_hashes(tmp_path, monkeypatch, LAZY_HELPERS.replace("x * 2", "x * 3"), name)
    assert {t for t in LAZY_TASKS if edited_g[t] != base[t]} == {"t_other"}
    comment = lazy_hashes(tmp_path, monkeypatch, LAZY_HELPERS.replace("x + 1", "x + 1  # one more"), name)
    assert comment == base


def test_imports_that_cannot_be_resolved_do_not_break_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = '''
from slothflow import task


@task
def t_missing(x):
    import no_such_module_for_slothflow_tests
    from .absent import thing
    return x


@task
def t_broken(x):
    from .broken import value
    return value + x


@task
def t_library(x):
    import json
    import yaml
    from click import style
    return json.dumps(x)
'''
    name = f"_sf_unres_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "wf.py").write_text(src)
    (root / "broken.py").write_text("raise RuntimeError('needs a secret only workers have')\nvalue = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    wf = importlib.import_module(f"{name}.wf")
    hasher = CodeHasher()
    missing = hasher.code_info(wf.t_missing.func)
    assert {(e["kind"], e["name"]) for e in missing.manifest} == {
        ("import", "no_such_module_for_slothflow_tests"), ("import", f"{name}.absent")}
    broken = hasher.code_info(wf.t_broken.func)
    assert [(e["kind"], e["name"]) for e in broken.manifest] == [("import", f"{name}.broken")]
    (root / "broken.py").write_text("raise RuntimeError('needs a secret only workers have')\nvalue = 2\n")
    assert CodeHasher().code_info(wf.t_broken.func).hash != broken.hash  # an edit of its source still counts
    library = hasher.code_info(wf.t_library.func)
    assert library.manifest == () and library.modules == frozenset({"yaml", "click"})
