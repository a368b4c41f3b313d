"""Configuration is checked against its declared schema: a bad value or an unknown key is an error naming
``section.key``, never an internal error, a late task failure or a silently ignored setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from slothflow import Config, ConfigError, Scheduler, task
from slothflow._config import ConfigKey, validate_config
from slothflow.executors import EXECUTORS, ThreadExecutor, register_executor


def _db(tmp_path: Path) -> dict[str, Any]:
    return {"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"executors.default": {"max_workers": "lots"}},
         "executors.default.max_workers = 'lots' is not valid: expected a whole number >= 1"),
        ({"executors.default": {"max_workers": -1}}, "executors.default.max_workers = -1"),
        ({"executors.default": {"max_workers": 0}}, "executors.default.max_workers = 0"),
        ({"executors.default": {"max_workers": True}}, "executors.default.max_workers = True"),
        ({"executors.cpu": {"type": "processes", "start_method": "clone"}},
         "executors.cpu.start_method = 'clone' is not valid: expected one of 'spawn', 'forkserver', 'fork'"),
        ({"executors.default": {"type": "thraeds"}}, "did you mean 'threads'?"),
        ({"executors.default": {"max_wokers": 2}}, "unknown config key executors.default.max_wokers; "
                                                   "did you mean 'max_workers'?"),
        ({"executors.debug": {"type": "inline", "max_workers": 2}}, "unknown config key executors.debug.max_workers"),
        ({"executors.cpu": {"max_workers": 2}}, "executors.cpu.type is missing"),
        ({"scheduler": {"fail_fast": "maybe"}}, "scheduler.fail_fast = 'maybe'"),
        ({"scheduler": {"fial_fast": True}}, "did you mean 'fail_fast'?"),
        ({"scheduler": {"context": "[1, 2]"}}, "scheduler.context = '[1, 2]'"),
        ({"scheduler": {"env_policy": "sometimes"}}, "scheduler.env_policy"),
        ({"backend": {"db_uri": 5}}, "backend.db_uri = 5 is not valid: expected a string"),
        ({"backend": {"busy_timeout": -1}}, "backend.busy_timeout = -1"),
        ({"backnd": {"db_uri": "sqlite://"}}, "unknown config section [backnd]; did you mean 'backend'?"),
        ({"limits": {"gpu": 0}}, "limits.gpu = 0"),
        ({"limits": {"gpu": "two"}}, "limits.gpu = 'two'"),
    ],
)
def test_bad_values_and_unknown_keys_name_the_key(tmp_path: Path, sections: dict[str, Any], message: str) -> None:
    config = {**_db(tmp_path), **sections}
    with pytest.raises(ConfigError) as info:
        Scheduler(config=config)
    assert message in str(info.value)
    assert not (tmp_path / "db.sqlite").exists()


def test_values_spelled_as_strings_are_converted(tmp_path: Path) -> None:
    """redun's INI configurations hold only strings: those that spell a valid value are taken as it."""
    scheduler = Scheduler(config={
        **_db(tmp_path),
        "executors.default": {"max_workers": "3"},
        "scheduler": {"fail_fast": "false", "context": '{"model": {"depth": 2}}'},
        "limits": {"db": "2"},
    })
    try:
        assert scheduler.executors["default"].max_workers == 3
        assert scheduler.fail_fast is False
        assert scheduler.default_context == {"model": {"depth": 2}}
        assert scheduler.limits == {"db": 2}
    finally:
        scheduler.close()


def test_default_executor_without_type_is_threads(tmp_path: Path) -> None:
    scheduler = Scheduler(config={**_db(tmp_path), "executors.default": {"max_workers": 2}})
    try:
        assert isinstance(scheduler.executors["default"], ThreadExecutor)
        assert scheduler.executors["default"].max_workers == 2
    finally:
        scheduler.close()


def test_a_config_error_is_raised_before_any_task_runs(tmp_path: Path) -> None:
    ran: list[int] = []

    @task
    def noted(x: int) -> int:
        ran.append(x)
        return x

    with pytest.raises(ConfigError, match="max_workers"):
        Scheduler(config={**_db(tmp_path), "executors.default": {"max_workers": -1}}).run(noted(1))
    assert ran == []


def test_executor_classes_declare_their_own_keys(tmp_path: Path) -> None:
    class Cluster(ThreadExecutor):
        config_schema: ClassVar[dict[str, Any]] = {"queue": ConfigKey(str, "where jobs go"), "max_workers": int}

    register_executor("test-cluster", Cluster)
    try:
        good = Scheduler(config={**_db(tmp_path), "executors.big": {"type": "test-cluster", "queue": "long",
                                                                   "max_workers": "4"}})
        assert good.executors["big"].config == {"type": "test-cluster", "queue": "long", "max_workers": 4}
        good.close()
        with pytest.raises(ConfigError, match="executors.big.qeue; did you mean 'queue'"):
            Scheduler(config={**_db(tmp_path), "executors.big": {"type": "test-cluster", "qeue": "long"}})
    finally:
        EXECUTORS.pop("test-cluster")


def test_validate_config_returns_normalized_sections() -> None:
    config = validate_config(Config({"executors": {"default": {"max_workers": "2"}}, "tags": {"team": "x"}}),
                             EXECUTORS)
    assert config.to_dict() == {"executors.default": {"type": "threads", "max_workers": 2}, "tags": {"team": "x"}}
    with pytest.raises(ConfigError, match=r"unknown config section \[executors\]"):
        validate_config({"executors": {"type": "threads"}}, EXECUTORS)


def test_configured_tags_go_on_every_execution(tmp_path: Path) -> None:
    import sqlite3

    @task
    def one() -> int:
        return 1

    scheduler = Scheduler(config={**_db(tmp_path), "tags": {"team": "genomics", "owner": "ana"}})
    try:
        scheduler.run(one(), tags={"owner": "bo"})
    finally:
        scheduler.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        tags = sorted(conn.execute("SELECT key, value FROM tag").fetchall())
    assert [key for key, _ in tags] == ["owner", "team"]
    assert "bo" in tags[0][1] and "genomics" in tags[1][1]


def test_readme_documents_every_key() -> None:
    from slothflow._config import OPEN_SECTIONS, SECTIONS
    from slothflow.executors import InlineExecutor, ProcessExecutor, ThreadExecutor

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Configuration and the database", 1)[1].split("\n## ", 1)[0]
    names = [f"{section}.{key}" for section, keys in SECTIONS.items() for key in keys]
    names += [f"{section}.NAME" for section in OPEN_SECTIONS if section != "context"]
    names += [f"executors.NAME.{key}" for cls in (InlineExecutor, ThreadExecutor, ProcessExecutor)
              for key in cls.config_schema or {}]
    for name in ["executors.NAME.type", *names]:
        assert f"| `{name}` |" in table, name
