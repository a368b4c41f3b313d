"""Task definition semantics: names, namespaces, options, hashes, nout, partials, the registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

import slothflow
from slothflow import (
    PartialTask,
    Scheduler,
    Task,
    TaskDefinitionError,
    TaskExpression,
    get_current_namespace,
    get_task_registry,
    namespace,
    task,
)


class Pair(NamedTuple):
    left: int
    right: str


@task
def bare(x: int) -> int:
    return x + 1


@task(name="renamed", namespace="custom.ns")
def configured(x: int) -> int:
    return x * 2


@task
def returns_tuple(x: int) -> tuple[int, str]:
    return x, str(x)


@task
def returns_pair(x: int) -> Pair:
    return Pair(x, str(x))


@task
def returns_var_tuple(x: int) -> tuple[int, ...]:
    return (x,)


@task(nout=3)
def three(x: int) -> list[int]:
    return [x, x, x]


# ------------------------------------------------------------------------------------- definition


def test_bare_and_called_decorator_make_tasks() -> None:
    assert isinstance(bare, Task)
    assert isinstance(configured, Task)
    assert bare.func(1) == 2  # the function itself stays callable through .func
    assert isinstance(bare(1), TaskExpression)
    assert bare.name == "bare"
    assert bare.namespace == __name__
    assert bare.fullname == f"{__name__}.bare"
    assert configured.name == "renamed"
    assert configured.namespace == "custom.ns"
    assert configured.fullname == "custom.ns.renamed"
    assert bare.__doc__ is None and bare.__name__ == "bare"


def test_calling_a_task_runs_nothing() -> None:
    ran: list[int] = []

    @task
    def side_effect(x: int) -> int:
        ran.append(x)
        return x

    expr = side_effect(1)
    assert isinstance(expr, TaskExpression)
    assert expr.task is side_effect
    assert ran == []


@pytest.mark.parametrize("bad_name", ["1abc", "a-b", "a.b", "", "with space"])
def test_invalid_task_name_is_rejected(bad_name: str) -> None:
    def f() -> None:
        pass

    if bad_name == "":
        # An empty name falls back to the function's own name, which is valid.
        assert task(name=bad_name)(f).name == "f"
        return
    with pytest.raises(TaskDefinitionError, match="invalid task name"):
        task(name=bad_name)(f)


@pytest.mark.parametrize("bad_ns", ["a..b", ".a", "a.", "1a", "a-b", "a b"])
def test_invalid_namespace_is_rejected(bad_ns: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(TaskDefinitionError, match="invalid namespace"):
        task(namespace=bad_ns)(f)
    with pytest.raises(TaskDefinitionError):
        namespace(bad_ns)


def test_decorating_a_task_twice_is_an_error() -> None:
    with pytest.raises(TaskDefinitionError, match="already a task"):
        task(bare)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cache_scope": "SOMETIMES"}, "cache_scope"),
        ({"check_valid": "deep"}, "check_valid"),
        ({"config_args": ["nope"]}, "config_args"),
        ({"nout": -1}, "nout"),
        ({"nout": "2"}, "nout"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object], message: str) -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(TaskDefinitionError, match=message) as info:
        task(**options)(f)
    assert info.value.task_name == f"{__name__}.f"


def test_namespace_function_sets_default_namespace() -> None:
    assert get_current_namespace() is None
    namespace("my.space")
    try:
        assert get_current_namespace() == "my.space"

        @task
        def inside() -> int:
            return 1

        @task(namespace="explicit")
        def overridden() -> int:
            return 1
    finally:
        namespace()
    assert get_current_namespace() is None

    @task
    def after() -> int:
        return 1

    assert inside.fullname == "my.space.inside"
    assert overridden.fullname == "explicit.overridden"
    assert after.namespace == __name__


def test_empty_namespace_gives_bare_fullname() -> None:
    @task(namespace="")
    def no_ns() -> int:
        return 1

    assert no_ns.fullname == "no_ns"


def test_task_defined_through_exec_runs_and_is_cached(scheduler: Scheduler) -> None:
    code = textwrap.dedent(
        """
        ran = []

        @task
        def exec_square(x):
            ran.append(x)
            return x * x
        """
    )
    env: dict[str, object] = {"task": task, "__name__": "exec_generated"}
    exec(compile(code, "<generated>", "exec"), env)
    exec_square = env["exec_square"]
    assert isinstance(exec_square, Task)
    assert exec_square.fullname == "exec_generated.exec_square"
    assert "source not available" in exec_square.source
    assert scheduler.run(exec_square(7)) == 49
    assert scheduler.run(exec_square(7)) == 49
    assert env["ran"] == [7]

    # Redefining it with different code through exec changes its hash.
    env2: dict[str, object] = {"task": task, "__name__": "exec_generated"}
    exec(compile(code.replace("x * x", "x * x * x"), "<generated>", "exec"), env2)
    assert env2["exec_square"].hash != exec_square.hash  # type: ignore[attr-defined]
    assert scheduler.run(env2["exec_square"](7)) == 343  # type: ignore[operator]


def test_task_in_main_script_runs_in_subprocess(tmp_path: Path) -> None:
    script = tmp_path / "my_pipeline.py"
    db = tmp_path / "main.db"
    script.write_text(
        textwrap.dedent(
            f"""
            from slothflow import Scheduler, task

            @task
            def double(x: int) -> int:
                with open("ran.log", "a") as log:
                    log.write(f"double({{x}})\\n")
                return 2 * x

            @task(executor="processes")
            def cube(x: int) -> int:
                return x ** 3

            @task
            def main(n: int) -> list[int]:
                return [double(i) for i in range(n)] + [cube(n)]

            if __name__ == "__main__":
                assert double.namespace == "my_pipeline", double.namespace
                assert main.fullname == "my_pipeline.main", main.fullname
                s = Scheduler(config={{"backend": {{"db_uri": "sqlite:///{db}"}}}})
                print(s.run(main(4)))
                s.close()
            """
        )
    )
    for _ in range(2):  # the second run, in a fresh process, is served from the cache
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[0, 2, 4, 6, 64]"
    assert sorted((tmp_path / "ran.log").read_text().split()) == [f"double({i})" for i in range(4)]


def test_main_script_with_unusable_stem_gets_empty_namespace(tmp_path: Path) -> None:
    script = tmp_path / "my-pipeline.py"
    script.write_text("from slothflow import task\n@task\ndef t():\n    return 1\nprint(repr(t.fullname))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "'t'"


# ------------------------------------------------------------------------------------------- hash


def _fresh(source: str, **env: object) -> Task:
    """Define a task from source text with a fixed name, as a module would."""
    namespace_: dict[str, object] = {"task": task, "__name__": "hashmod", **env}
    exec(compile(textwrap.dedent(source), "<hashmod>", "exec"), namespace_)
    result = namespace_["t"]
    assert isinstance(result, Task)
    return result


def test_decorator_options_do_not_change_hash() -> None:
    a = _fresh("@task\ndef t(x):\n    return x\n", )
    b = _fresh("@task(memory=4, cache=False, limits=['db'])\ndef t(x):\n    return x\n")
    # Without source, exec'd functions are hashed by code object; both bodies are identical.
    assert a.hash == b.hash


def test_decorator_options_with_source_do_not_change_hash() -> None:
    src = "def t(x):\n    return x + 1\n"
    a = task(source=src, name="t", namespace="h")(lambda x: x + 1)
    b = task(source=src, name="t", namespace="h", memory=4, executor="processes", timeout=3)(lambda x: x + 1)
    assert a.hash == b.hash


def test_options_overrides_change_hash_and_keep_identity() -> None:
    a = bare.options(memory=4, image="tools:1")
    b = bare.options(memory=4, image="tools:1")
    c = bare.options(memory=4, image="tools:2")
    assert isinstance(a, Task)
    assert a.fullname == bare.fullname
    assert a.hash == b.hash
    assert a.hash != bare.hash  # an override that may change what runs (a container image) is in the key
    assert a.hash != c.hash
    # Where, when and with what resources a call runs never changes what it computes: not in the key.
    assert bare.options(memory=8, executor="processes", limits=["db"], check_valid="shallow").hash == bare.hash
    assert a.get_task_option("memory") == 4
    assert bare.get_task_option("memory") is None
    # options on options accumulate
    assert a.options(vcpus=2).get_task_options() == {"memory": 4, "image": "tools:1", "vcpus": 2}


def test_version_replaces_source_in_hash() -> None:
    def body_one(x: int) -> int:
        return x

    def body_two(x: int) -> int:
        return -x

    v1a = task(name="versioned", namespace="v", version="1")(body_one)
    v1b = task(name="versioned", namespace="v", version="1")(body_two)
    v2 = task(name="versioned", namespace="v", version="2")(body_one)
    unversioned = task(name="versioned", namespace="v")(body_one)
    assert v1a.hash == v1b.hash  # different code, same version: same hash
    assert v1a.hash != v2.hash
    assert unversioned.hash != v1a.hash
    assert v1a.version == "1"


def test_source_change_changes_hash_but_comments_do_not() -> None:
    a = task(name="s", namespace="src", source="def f(x):\n    return x + 1\n")(lambda x: x)
    b = task(name="s", namespace="src", source="def f(x):\n    # a comment\n    return (x +\n   1)\n")(lambda x: x)
    c = task(name="s", namespace="src", source='def f(x):\n    """doc"""\n    return x + 1\n')(lambda x: x)
    d = task(name="s", namespace="src", source="def f(x):\n    return x + 2\n")(lambda x: x)
    assert a.hash == b.hash == c.hash
    assert a.hash != d.hash
    assert a.source.startswith("def f(x)")


def test_hash_includes_changes_hash() -> None:
    def f(x: int) -> int:
        return x

    plain = task(name="inc", namespace="h")(f)
    one = task(name="inc", namespace="h", hash_includes=["data-v1"])(f)
    one_again = task(name="inc", namespace="h", hash_includes=["data-v1"])(f)
    two = task(name="inc", namespace="h", hash_includes=["data-v2"])(f)
    assert one.hash == one_again.hash
    assert len({plain.hash, one.hash, two.hash}) == 3


def test_name_and_namespace_are_part_of_hash() -> None:
    def f(x: int) -> int:
        return x

    assert task(name="a", namespace="n")(f).hash != task(name="b", namespace="n")(f).hash
    assert task(name="a", namespace="n")(f).hash != task(name="a", namespace="m")(f).hash


# ------------------------------------------------------------------------------------------- nout


def test_nout_from_annotation_and_option() -> None:
    assert returns_tuple.nout == 2
    assert returns_pair.nout == 2
    assert returns_var_tuple.nout is None
    assert bare.nout is None
    assert three.nout == 3
    assert bare.options(nout=2).nout == 2


def test_nout_unpacking_runs(scheduler: Scheduler) -> None:
    n, s = returns_tuple(5)
    left, right = returns_pair(6)
    a, b, c = three(1)
    assert scheduler.run([n, s, left, right, a, b, c]) == [5, "5", 6, "6", 1, 1, 1]
    assert scheduler.run(returns_pair(2).right) == "2"


# ---------------------------------------------------------------------------------------- partial


def test_partial_binds_arguments(scheduler: Scheduler) -> None:
    @task
    def combine(a: int, b: int, c: int = 0) -> int:
        return 100 * a + 10 * b + c

    p = combine.partial(1)
    assert isinstance(p, PartialTask)
    assert p.fullname == combine.fullname and p.name == "combine"
    pp = p.partial(c=3)
    expr = pp(2)
    assert isinstance(expr, TaskExpression)
    assert scheduler.run(expr) == 123
    assert scheduler.run(p(b=4)) == 140
    assert scheduler.run(p.options(memory=1)(5, 6)) == 156


def test_partial_hash_depends_on_bound_arguments() -> None:
    assert slothflow.hash_value(bare.partial(1)) == slothflow.hash_value(bare.partial(1))
    assert slothflow.hash_value(bare.partial(1)) != slothflow.hash_value(bare.partial(2))
    assert slothflow.hash_value(bare.partial(1)) != slothflow.hash_value(bare.partial(x=1))


# ------------------------------------------------------------------------------------- validity


def test_is_valid_follows_the_registry() -> None:
    def v1() -> int:
        return 1

    def v2() -> int:
        return 2

    first = task(name="valid_t", namespace="validity", version="1")(v1)
    assert first.is_valid()
    assert first.options(memory=2).is_valid()
    assert first.partial().is_valid()
    second = task(name="valid_t", namespace="validity", version="2")(v2)
    assert not first.is_valid()
    assert second.is_valid()
    # same code again: valid again
    third = task(name="valid_t", namespace="validity", version="1")(v1)
    assert first.is_valid() and third.is_valid() and not second.is_valid()


def test_registry_lists_defined_tasks() -> None:
    registry = get_task_registry()
    assert registry.get(bare.fullname) is bare
    assert registry.get(hash=bare.hash) is bare
    assert bare.fullname in registry
    assert bare in list(registry)
    assert len(registry) >= 5
    assert registry.get("no.such.task") is None

    @task(namespace="registry_test")
    def later() -> int:
        return 1

    assert registry.get("registry_test.later") is later
