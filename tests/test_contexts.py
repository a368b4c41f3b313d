"""Execution contexts as redun has them: ``get_context("a.b", default)`` defaults, ``task.update_context``
overrides merged key by key and inherited by the calls a body returns, ``get_context_value`` on plain dicts,
and the context sources of a run (config, ``--context-file``, ``--context``), through real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow import Scheduler, catch, get_context, task
from slothflow.context import get_context_value
from slothflow.functools import map_

SRC = str(Path(__file__).resolve().parent.parent / "src")
calls: list[str] = []


@pytest.fixture(autouse=True)
def _calls() -> Iterator[None]:
    calls.clear()
    yield
    calls.clear()


@task
def add(a: int, b: int, offset: int = get_context("offset", 3), mult: int = get_context("mult", 1)) -> int:
    calls.append("add")
    return a + b + offset * mult


@task
def main_add() -> Any:
    return add(3, 4)


@task
def foo() -> Any:
    return add(1, 2)


@task
def both_foos() -> Any:
    return foo() + foo.update_context(offset=1)()


@task
def read_nested(x: str = get_context("aa.bb.cc", "foo"), whole: Any = get_context("aa")) -> list[Any]:  # noqa: B008
    return [x, whole]


@task
def fails(x: int) -> int:
    raise ValueError(x)


@task
def recover(error: Exception, offset: int = get_context("offset", 0)) -> int:
    return -offset


@task
def with_catch() -> Any:
    return catch(fails(1), ValueError, recover)


@task
def plus_offset(x: int, offset: int = get_context("offset", 0)) -> int:
    return x + offset


@task
def mapped() -> Any:
    return map_(plus_offset, [1, 2])


@task
def body_reads_context() -> Any:
    return [get_context("offset", 0), get_context("missing", "dflt")]


def test_get_context_value_reads_dotted_paths() -> None:
    context = {"foo": {"bar": {"baz": 10, "flag": True}}, "foo2": "hello", "list": [1, 2, 3]}
    assert get_context_value(context, "foo.bar.baz", 0) == 10
    assert get_context_value(context, "foo.bar.flag", False) is True
    assert get_context_value(context, "foo.bar.baz2", 0) == 0
    assert get_context_value(context, "bad", -1) == -1
    assert get_context_value(context, "foo2", "") == "hello"
    assert get_context_value(context, "list", []) == [1, 2, 3]
    assert get_context_value(context, "list.bad", []) == []
    assert get_context_value(context, "foo2.x", None) is None


def test_update_context_sets_the_defaults_of_the_call(scheduler: Scheduler) -> None:
    assert scheduler.run(add(1, 2)) == 6
    assert scheduler.run(add.update_context({"offset": 4})(1, 2)) == 7
    assert calls == ["add", "add"]
    assert scheduler.run(add.update_context({"offset": 4})(1, 2)) == 7  # cached: the arguments are the same
    assert calls == ["add", "add"]
    assert scheduler.run(add.update_context(offset=5)(1, 2)) == 8
    # A second update merges over the first.
    assert scheduler.run(add.update_context({"offset": 4}).update_context({"mult": 2})(1, 2)) == 11
    # An argument given explicitly wins over the context.
    assert scheduler.run(add.update_context(offset=100)(1, 2, offset=0)) == 3


def test_update_context_reaches_the_calls_a_body_returns(scheduler: Scheduler) -> None:
    assert scheduler.run(main_add.update_context({"offset": 10})()) == 17
    assert scheduler.run(main_add.update_context({"mult": 2})()) == 13
    # The run's context is the base; the override is merged over it.
    assert scheduler.run(main_add.update_context({"mult": 2})(), context={"offset": 10}) == 27
    assert scheduler.run(body_reads_context.update_context(offset=7)()) == [7, "dflt"]
    # catch's recover task and map_'s task run under the override too.
    assert scheduler.run(with_catch.update_context(offset=9)()) == -9
    assert scheduler.run(mapped.update_context(offset=10)()) == [11, 12]


def test_calls_under_different_contexts_are_not_merged(scheduler: Scheduler) -> None:
    assert scheduler.run(both_foos()) == 6 + 4
    assert calls == ["add", "add"]
    calls.clear()
    assert scheduler.run(both_foos.update_context(mult=5)()) == 26
    assert calls == ["add", "add"]


def test_nested_contexts_merge_key_by_key(scheduler: Scheduler) -> None:
    base = {"aa": {"zz": 1, "bb": {"cc": "base", "dd": 2}}}
    override = read_nested.update_context({"aa": {"bb": {"cc": "bar"}}})
    assert scheduler.run(override(), context=base) == ["bar", {"zz": 1, "bb": {"cc": "bar", "dd": 2}}]
    # A plain value replaces a whole dict: the path below it is gone, its default is used.
    assert scheduler.run(read_nested.update_context({"aa": 5})(), context=base) == ["foo", 5]
    assert scheduler.run(read_nested(), context=base) == ["base", base["aa"]]
    assert scheduler.run(read_nested()) == ["foo", None]


def test_default_none_and_run_context(scheduler: Scheduler) -> None:
    @task
    def maybe(x: Any = get_context("a.b.c")) -> Any:  # noqa: B008
        return x

    assert scheduler.run(maybe(), context={"a": {"b": 1}}) is None
    assert scheduler.run(add(1, 2), context={"offset": 10, "mult": 20}) == 203


def test_config_context_is_a_json_string_or_a_mapping(sqlite_uri: str) -> None:
    for value in ('{"offset": 10, "mult": 20}', {"offset": 10, "mult": 20}):
        scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri}, "scheduler": {"context": value}})
        try:
            assert scheduler.run(add(1, 2)) == 203
            # run(context=...) is merged over the configured context.
            assert scheduler.run(add(1, 2), context={"mult": 1}) == 13
        finally:
            scheduler.close()


def test_partial_task_update_context(scheduler: Scheduler) -> None:
    assert scheduler.run(add.partial(1).update_context(offset=0)(2)) == 3


def test_update_context_copies_and_hashes() -> None:
    changed = add.update_context(offset=1)
    assert add.context == {} and changed.context == {"offset": 1}
    assert changed.hash != add.hash
    assert add.update_context(offset=1).hash == changed.hash
    assert changed.options(cache=False).context == {"offset": 1}
    assert changed.is_valid()


WORKFLOW = '''
import os
from slothflow import get_context, task


def _log(name):
    with open(os.environ["SIDELOG"], "a") as fh:
        fh.write(name + "\\n")


@task
def leaf(x: int, offset: int = get_context("model.offset", 0), tag: str = get_context("tag", "none")) -> str:
    _log("leaf")
    return f"{x + offset}:{tag}"


@task
def main(x: int = 1) -> list:
    _log("main")
    return [leaf(x), leaf.update_context({"model": {"offset": 100}})(x)]


@task
def scaled(x: int = 1) -> list:
    return main.update_context({"model": {"offset": 1000}})(x)
'''


def _slothflow(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(project)]), "SIDELOG": str(project / "log")}
    for name in ("SLOTHFLOW_PROJECT_DIR", "SLOTHFLOW_CONFIG", "REDUN_CONFIG"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "slothflow.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def _log(project: Path) -> list[str]:
    path = project / "log"
    lines = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "wf.py").write_text(textwrap.dedent(WORKFLOW))
    folder = tmp_path / ".slothflow"
    folder.mkdir()
    (folder / "slothflow.toml").write_text('[scheduler]\ncontext = {tag = "config", model = {offset = 5}}\n')
    return tmp_path


def test_cli_context_file_and_flags_merge_over_the_config(project: Path) -> None:
    out = _slothflow(project, "run", "wf.py", "main")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')) == ["6:config", "101:config"]
    assert _log(project) == ["main", "leaf", "leaf"]

    (project / "ctx.json").write_text(json.dumps({"model": {"offset": 7}, "tag": "file"}))
    out = _slothflow(project, "run", "--context-file", "ctx.json", "wf.py", "main")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['8:file', '101:file']"
    # main's reduction is replayed (its body reads no context); both leaves get new arguments.
    assert _log(project) == ["leaf", "leaf"]

    out = _slothflow(project, "run", "--context-file", "ctx.json", "--context", "tag=flag", "wf.py", "main")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['8:flag', '101:flag']"

    out = _slothflow(project, "run", "--context-file", "missing.json", "wf.py", "main")
    assert out.returncode == 2 and "missing.json" in out.stderr
    (project / "bad.json").write_text("[1, 2]")
    out = _slothflow(project, "run", "--context-file", "bad.json", "wf.py", "main")
    assert out.returncode == 2 and "JSON object" in out.stderr


def test_overrides_are_reused_in_a_fresh_process(project: Path) -> None:
    out = _slothflow(project, "run", "wf.py", "scaled")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['1001:config', '101:config']"
    assert _log(project) == ["main", "leaf", "leaf"]
    again = _slothflow(project, "run", "wf.py", "scaled")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "['1001:config', '101:config']"
    assert _log(project) == []
    changed = _slothflow(project, "run", "--context", "tag=new", "wf.py", "scaled")
    assert changed.stdout.strip().splitlines()[-1] == "['1001:new', '101:new']"
    assert sorted(_log(project)) == ["leaf", "leaf"]  # main's reduction is replayed; its leaves reread the context


def test_overrides_travel_to_worker_processes(sqlite_uri: str) -> None:
    scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri},
                                  "executors.default": {"type": "processes", "max_workers": 1}})
    try:
        assert scheduler.run(main_add.update_context({"offset": 10})()) == 17
        assert scheduler.run(both_foos.update_context(mult=5)()) == 26
    finally:
        scheduler.close()


@task
def returns_a_cycle() -> Any:
    items: list[Any] = []
    items.append(items)
    return items


def test_a_cyclic_result_under_an_override_is_reported_as_usual(scheduler: Scheduler) -> None:
    from slothflow import NestingError

    with pytest.raises(NestingError, match="the result of task"):
        scheduler.run(returns_a_cycle.update_context(x=1)())
