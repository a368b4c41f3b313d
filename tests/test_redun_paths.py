"""redun's import paths (``redun.file``, ``redun.task``, ...) work under ``slothflow.``: each name is the very
object the top level exports, so code may mix both spellings."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import slothflow

SAME_AS_TOP_LEVEL = {
    "slothflow.file": ["File", "Dir", "FileSet", "StagingFile", "StagingDir", "ContentFile", "ContentDir"],
    "slothflow.task": ["task", "Task", "PartialTask", "namespace", "get_current_namespace", "get_task_registry"],
    "slothflow.expression": ["Expression", "TaskExpression", "SchedulerExpression", "SimpleExpression",
                             "ValueExpression"],
    "slothflow.context": ["get_context"],
    "slothflow.scripting": ["script", "ScriptError"],
    "slothflow.config": ["Config", "ConfigError"],
    "slothflow.scheduler": ["Scheduler", "run", "cond", "catch", "catch_all", "throw", "apply_tags"],
}


@pytest.mark.parametrize("module", sorted(SAME_AS_TOP_LEVEL))
def test_redun_module_paths_give_the_top_level_objects(module: str) -> None:
    mod = importlib.import_module(module)
    for name in SAME_AS_TOP_LEVEL[module]:
        assert getattr(mod, name) is getattr(slothflow, name), f"{module}.{name}"
        assert name in mod.__all__, f"{module}.__all__ lacks {name}"


def test_every_listed_name_exists() -> None:
    for module in ("slothflow.file", "slothflow.task", "slothflow.expression", "slothflow.context",
                   "slothflow.scripting", "slothflow.tools", "slothflow.scheduler"):
        mod = importlib.import_module(module)
        assert list(mod.__all__) == sorted(mod.__all__), module
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
        assert missing == [], module


def test_slothflow_task_stays_the_decorator_after_importing_the_module() -> None:
    """``import slothflow.task`` must not replace the decorator ``slothflow.task`` by the module."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    code = ("import slothflow.task, types, slothflow; from slothflow.task import Task; "
            "from slothflow import task; "
            "assert not isinstance(slothflow.task, types.ModuleType); assert task is slothflow.task; "
            "print(type(task).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "function"


def test_redun_style_script_runs_with_only_the_import_changed(tmp_path: Path) -> None:
    from slothflow.file import File
    from slothflow.scheduler import Scheduler, cond
    from slothflow.task import task
    from slothflow.tools import copy_dir, copy_file

    @task
    def write(path: str, text: str) -> File:
        f = File(path)
        f.write(text)
        return f

    @task
    def is_long(f: File) -> bool:
        return len(f.read()) > 3

    @task
    def upper(f: File) -> str:
        return f.read().upper()

    src = tmp_path / "in"
    src.mkdir()
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    try:
        made = write(str(src / "a.txt"), "hello")
        copied = copy_file(made, str(tmp_path / "copy.txt"))
        assert scheduler.run(cond(is_long(copied), upper(copied), "short")) == "HELLO"
        assert (tmp_path / "copy.txt").read_text() == "hello"
        from slothflow.file import Dir

        out = scheduler.run(copy_dir(Dir(str(src)), str(tmp_path / "out")))
        assert isinstance(out, Dir)
        assert (tmp_path / "out" / "a.txt").read_text() == "hello"
    finally:
        scheduler.close()
