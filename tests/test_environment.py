"""Environment fingerprints: recorded on every job; a version change invalidates the cache only as the
policy says ("ignore" by default, "minor", "exact"; per task or for the whole project).

A fake installed distribution (``fakepkg``, in a folder named ``site-packages`` on ``PYTHONPATH``) lets the
tests change a package version between fresh processes, for real: its ``dist-info`` folder is rewritten.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from pathlib import Path

import pytest

from slothflow import Scheduler, TaskDefinitionError, task
from slothflow.hashing._environment import Environment, environment_of_modules, task_environment
from test_reruns_code import RUNNER, CodeProject

WF = '''
import os
import fakepkg
from slothflow import task


def _ran(what):
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write(what + "\\n")


@task
def uses(x: int) -> int:
    _ran("uses")
    return fakepkg.compute(x)


@task(env_policy="exact")
def strict(x: int) -> int:
    _ran("strict")
    return fakepkg.compute(x) * 10


@task
def plain(x: int) -> int:
    _ran("plain")
    return x


@task
def main(x: int = 1) -> list:
    _ran("main")
    return [uses(x), strict(x), plain(x)]
'''


def install_fakepkg(site: Path, version: str) -> None:
    """(Re)install the fake distribution at ``version``."""
    for old in site.glob("fakepkg-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    pkg = site / "fakepkg"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("def compute(x):\n    return x + 1\n")
    info = site / f"fakepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakepkg\n")


@pytest.fixture
def env_project(tmp_path: Path) -> tuple[CodeProject, Path]:
    project = CodeProject(tmp_path / "proj", files={"wf.py": WF, "runner.py": RUNNER})
    site = tmp_path / "lib" / "site-packages"
    install_fakepkg(site, "1.0.0")
    return project, site


def _env(site: Path, policy: str | None = None) -> dict[str, str]:
    # Keep the caller's PYTHONPATH (the slothflow under test) after the fake site folder.
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    if policy:
        env["ENV_POLICY"] = policy
    return env


def _job_environments(project: CodeProject) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(project.db)
    try:
        rows = conn.execute("SELECT task_name, environment FROM job WHERE execution_id = ?",
                            (project.last_execution,)).fetchall()
    finally:
        conn.close()
    return {name: json.loads(env) for name, env in rows if env}


def test_versions_are_recorded_and_ignored_by_default(env_project: tuple[CodeProject, Path]) -> None:
    project, site = env_project
    result, ran = project.run(env=_env(site))
    assert result == [2, 20, 1] and set(ran) == {"main", "uses", "strict", "plain"}
    envs = _job_environments(project)
    assert envs["wf.uses"] == {"python": platform.python_version(), "packages": {"fakepkg": "1.0.0"}}
    assert envs["wf.plain"]["packages"] == {}

    install_fakepkg(site, "2.0.0")
    result, ran = project.run(env=_env(site))
    assert ran == {"strict": 1}  # only the task whose own policy is "exact"
    assert _job_environments(project)["wf.uses"]["packages"] == {"fakepkg": "2.0.0"}

    explained = {e.task: e for e in Scheduler(config={"backend": {"db_uri": f"sqlite:///{project.db}"}})
                 .explain(project.last_execution or "")}
    assert set(explained) == {"wf.strict"}
    reasons = explained["wf.strict"].reasons
    assert [(r.kind, r.message) for r in reasons] == [("package", "package fakepkg 1.0.0 -> 2.0.0")]


@pytest.mark.parametrize("policy, version, reruns", [
    ("minor", "1.0.1", False),
    ("minor", "1.1.0", True),
    ("exact", "1.0.1", True),
    ("ignore", "3.0.0", False),
])
def test_project_wide_policy(env_project: tuple[CodeProject, Path], policy: str, version: str,
                             reruns: bool) -> None:
    project, site = env_project
    project.run(env=_env(site, policy))
    assert project.run(env=_env(site, policy))[1] == {}
    install_fakepkg(site, version)
    result, ran = project.run(env=_env(site, policy))
    assert result == [2, 20, 1]
    expected = {"strict": 1} | ({"uses": 1} if reruns else {})  # plain imports nothing: never
    assert ran == expected
    assert project.run(env=_env(site, policy))[1] == {}


LAZY_WF = '''
import os
from slothflow import task


@task(env_policy="exact")
def lazy(x: int) -> int:
    with open(os.environ["RERUN_LOG"], "a") as log:
        log.write("lazy\\n")
    import fakepkg
    return fakepkg.compute(x)


@task
def main(x: int = 1) -> list:
    return [lazy(x)]
'''


def test_a_package_imported_inside_a_body_is_part_of_the_environment(tmp_path: Path) -> None:
    """``import fakepkg`` inside the body only: when hashes are computed (before bodies run) it is not
    imported yet; it is still an installed package, recorded and compared, never walked as user code."""
    project = CodeProject(tmp_path / "proj", files={"wf.py": LAZY_WF, "runner.py": RUNNER})
    site = tmp_path / "lib" / "site-packages"
    install_fakepkg(site, "1.0.0")
    assert project.run(env=_env(site)) == ([2], {"lazy": 1})
    assert _job_environments(project)["wf.lazy"]["packages"] == {"fakepkg": "1.0.0"}
    assert project.run(env=_env(site))[1] == {}
    install_fakepkg(site, "2.0.0")
    assert project.run(env=_env(site))[1] == {"lazy": 1}


def test_environment_keys_by_policy() -> None:
    env = Environment("3.11.7", {"numpy": "1.26.4", "pandas": "2.2.0"})
    assert env.key("ignore") is None
    assert env.key("minor") == Environment("3.11.2", {"numpy": "1.26.0", "pandas": "2.2.3"}).key("minor")
    assert env.key("minor") != Environment("3.12.0", {"numpy": "1.26.4", "pandas": "2.2.0"}).key("minor")
    assert env.key("minor") != Environment("3.11.7", {"numpy": "2.0.0", "pandas": "2.2.0"}).key("minor")
    assert env.key("exact") != Environment("3.11.7", {"numpy": "1.26.5", "pandas": "2.2.0"}).key("exact")
    assert env.key("exact") == Environment("3.11.7", {"pandas": "2.2.0", "numpy": "1.26.4"}).key("exact")
    assert json.loads(env.to_json()) == {"python": "3.11.7", "packages": {"numpy": "1.26.4", "pandas": "2.2.0"}}


def test_task_environment_maps_modules_to_distributions() -> None:
    import click
    import sqlalchemy

    @task(name="env_uses_click", namespace="test_environment")
    def uses_click(x: str) -> str:
        return click.style(x) + str(sqlalchemy.select)

    env = task_environment(uses_click)
    assert env.python == platform.python_version()
    from importlib.metadata import version

    assert env.packages == {"click": version("click"), "SQLAlchemy": sqlalchemy.__version__}
    assert task_environment(uses_click) is env  # once per task per process
    assert environment_of_modules(frozenset({"json", "no_such_module_xyz"})).packages == {}


def test_bad_policies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskDefinitionError, match="env_policy"):
        task(lambda x: x, name="bad_policy", env_policy="sometimes")
    from slothflow import ConfigError

    with pytest.raises(ConfigError, match="env_policy"):
        Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'x.db'}"}, "scheduler": {"env_policy": "x"}})
