"""The public surface: an explicit sorted ``__all__``, and the redun-compatible names of API.md."""

from __future__ import annotations

import inspect
import types

import slothflow
import slothflow.functools

# API.md "Top level", except `script` and the File family beyond `File` (a later issue).
REDUN_TOP_LEVEL = [
    "task",
    "Task",
    "PartialTask",
    "Scheduler",
    "run",
    "cond",
    "catch",
    "catch_all",
    "throw",
    "apply_tags",
    "namespace",
    "get_current_namespace",
    "get_context",
    "File",
    "Config",
    "Value",
    "ProxyValue",
    "get_task_registry",
]

REDUN_FUNCTOOLS = [
    "map_", "flat_map", "starmap", "seq", "compose", "delay", "force", "const", "identity", "eval_", "flatten",
    "zip_", "as_task",
]


def test_all_is_sorted_and_unique() -> None:
    names = list(slothflow.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in slothflow.__all__ if not hasattr(slothflow, name)]
    assert missing == []


def test_every_public_attribute_is_in_all() -> None:
    public = {
        name
        for name, value in vars(slothflow).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(slothflow.__all__) == set()


def test_redun_compatible_top_level_names() -> None:
    missing = [name for name in REDUN_TOP_LEVEL if name not in slothflow.__all__]
    assert missing == []
    for name in REDUN_TOP_LEVEL:
        assert callable(getattr(slothflow, name)), name


def test_functools_names() -> None:
    assert sorted(slothflow.functools.__all__) == list(slothflow.functools.__all__)
    for name in REDUN_FUNCTOOLS:
        assert name in slothflow.functools.__all__, name
        assert callable(getattr(slothflow.functools, name)), name


def test_signatures_match_the_documented_calls() -> None:
    params = inspect.signature(slothflow.Scheduler.run).parameters
    for name in ("expr", "dryrun", "cache", "tags", "context"):
        assert name in params, name
    assert params["dryrun"].default is False and params["cache"].default is True
    sched = inspect.signature(slothflow.Scheduler).parameters
    assert list(sched)[:3] == ["config", "backend", "executor"]
    assert "config_dir" in inspect.signature(slothflow.run).parameters
    tags = inspect.signature(slothflow.apply_tags).parameters
    assert list(tags) == ["value", "tags", "job_tags", "execution_tags"]
    assert list(inspect.signature(slothflow.catch_all).parameters) == ["exprs", "error_class", "recover"]
    task_params = inspect.signature(slothflow.task).parameters
    for name in ("name", "namespace", "version", "hash_includes", "source"):
        assert name in task_params, name


def test_errors_share_one_base() -> None:
    errors = [getattr(slothflow, n) for n in slothflow.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, slothflow.SlothflowError), error


def test_version_is_exposed() -> None:
    assert slothflow.__version__ == slothflow.version
    assert slothflow.__version__.count(".") >= 2
