"""The command line, driven as a user drives it: real workflow files, a real project database."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from slothflow import Scheduler
from slothflow.cli import cli
from slothflow.cli._display import Progress

WORKFLOW = '''
import datetime
import enum
import os
from typing import Optional

from slothflow import File, get_context, task


def _log(name):
    with open(os.environ["SIDELOG"], "a") as fh:
        fh.write(name + "\\n")


class Color(enum.Enum):
    red = 1
    blue = 2


@task
def inc(x: int) -> int:
    _log("inc")
    return x + 1


@task
def total(xs: list) -> int:
    _log("total")
    return sum(xs)


@task
def main(n: int = 3) -> int:
    """Sum of 1..n."""
    _log("main")
    return total([inc(i) for i in range(n)])


@task
def typed(a: int, b: float, flag: bool, words: list[str], color: Color, when: datetime.date,
          maybe: Optional[int] = None, path: File | None = None) -> str:
    return f"{a}|{b}|{flag}|{words}|{color.name}|{when.isoformat()}|{maybe}|{path.path if path else None}"


@task
def boom(x: int = 1) -> int:
    raise KeyError(f"no such key {x}")


@task
def ctx() -> dict:
    return {"depth": get_context("model.depth", 0)}
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    monkeypatch.setenv("SIDELOG", str(tmp_path / "side.log"))
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ran(project: Path) -> list[str]:
    log = project / "side.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_run_then_rerun_is_cached(project: Path) -> None:
    first = invoke("run", "wf.py", "main", "--n", "4")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().splitlines()[-1] == "10"
    assert sorted(ran(project)) == ["inc"] * 4 + ["main", "total"]
    assert (project / ".slothflow" / "slothflow.db").exists()

    second = invoke("run", "wf.py", "main", "--n", "4")
    assert second.exit_code == 0
    assert second.stdout.strip().splitlines()[-1] == "10"
    assert ran(project) == []
    assert "6 cached" in second.stderr

    third = invoke("run", "wf.py", "main", "--n", "5")
    assert third.stdout.strip().splitlines()[-1] == "15"
    assert sorted(ran(project)) == ["inc", "main", "total"]


def test_help_lists_tasks_and_parameters(project: Path) -> None:
    listing = invoke("run", "wf.py", "help")
    assert listing.exit_code == 0
    for name in ("inc(x: int)", "main(n: int = 3)", "typed("):
        assert name in listing.stdout
    params = invoke("run", "wf.py", "main", "--help")
    assert params.exit_code == 0
    assert "--n INTEGER" in params.stdout
    assert "Sum of 1..n." in params.stdout
    assert ran(project) == []


def test_parameters_are_typed_from_annotations(project: Path) -> None:
    (project / "in.txt").write_text("x")
    result = invoke(
        "run", "wf.py", "typed", "--a", "3", "--b", "2.5", "--flag", "true", "--words", "x", "--words", "y",
        "--color", "blue", "--when", "2024-02-29", "--path", "in.txt",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3|2.5|True|['x', 'y']|blue|2024-02-29|None|in.txt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "abc"], "'abc' is not a valid integer"),
        (["--n", "1", "--bogus", "2"], "No such option '--bogus'"),
    ],
)
def test_bad_parameter_values_are_usage_errors(project: Path, args: list[str], message: str) -> None:
    result = invoke("run", "wf.py", "main", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert ran(project) == []


def test_bad_enum_and_missing_required(project: Path) -> None:
    bad = invoke("run", "wf.py", "typed", "--a", "1", "--b", "1", "--flag", "maybe", "--words", "x",
                 "--color", "green", "--when", "2024-01-01")
    assert bad.exit_code == 2
    assert "--flag" in bad.stderr
    missing = invoke("run", "wf.py", "typed", "--a", "1")
    assert missing.exit_code == 2
    assert "Missing option" in missing.stderr


def test_unknown_task_file_and_broken_import(project: Path) -> None:
    unknown = invoke("run", "wf.py", "nope")
    assert unknown.exit_code == 2
    assert "no task 'nope'" in unknown.stderr and "main" in unknown.stderr
    missing = invoke("run", "missing.py", "main")
    assert missing.exit_code == 2
    assert "no such workflow file: missing.py" in missing.stderr
    missing_module = invoke("run", "no_such_module_xyz", "main")
    assert missing_module.exit_code == 2
    assert "no such workflow file or module" in missing_module.stderr
    (project / "broken.py").write_text("import slothflow\nraise RuntimeError('half-written workflow')\n")
    broken = invoke("run", "broken.py", "main")
    assert broken.exit_code == 2
    assert "half-written workflow" in broken.stderr
    assert "broken.py" in broken.stderr


def test_failed_task_shows_user_traceback_only(project: Path) -> None:
    result = invoke("run", "wf.py", "boom", "--x", "7")
    assert result.exit_code == 1
    assert "KeyError: 'no such key 7'" in result.stderr
    assert 'raise KeyError(f"no such key {x}")' in result.stderr
    assert "wf.py" in result.stderr
    assert "slothflow/scheduler/" not in result.stderr
    assert "slothflow/executors" not in result.stderr
    assert "wf.boom(x=7)" in result.stderr


def test_dryrun_runs_nothing(project: Path) -> None:
    plan = invoke("run", "wf.py", "main", "--n", "2", "--dryrun")
    assert plan.exit_code == 0
    assert "1 call(s) would run" in plan.stdout
    assert ran(project) == []
    invoke("run", "wf.py", "main", "--n", "2")
    ran(project)
    again = invoke("run", "wf.py", "main", "--n", "2", "--dryrun")
    assert "0 call(s) would run" in again.stdout
    assert "result: 3" in again.stdout
    assert ran(project) == []


def test_no_cache_reruns_everything(project: Path) -> None:
    invoke("run", "wf.py", "main", "--n", "2")
    ran(project)
    result = invoke("run", "wf.py", "main", "--n", "2", "--no-cache")
    assert result.exit_code == 0
    assert sorted(ran(project)) == ["inc", "inc", "main", "total"]


def test_tags_options_and_context(project: Path) -> None:
    result = invoke("run", "wf.py", "ctx", "-t", "owner=ana", "-t", "n=3", "-o", "executor=inline",
                    "--context", "model.depth=5")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "{'depth': 5}"
    listing = json.loads(invoke("log", "--format", "json").stdout)
    detail = json.loads(invoke("log", listing[0]["id"][:10], "--format", "json").stdout)
    assert {(t["key"], t["value"]) for t in detail["tags"]} == {("owner", "ana"), ("n", 3)}
    assert detail["tree"][0]["executor"] == "inline"
    bad = invoke("run", "wf.py", "ctx", "-t", "novalue")
    assert bad.exit_code == 2
    assert "key=value" in bad.stderr


def test_log_executions_tree_and_job(project: Path) -> None:
    assert invoke("run", "wf.py", "main", "--n", "2").exit_code == 0
    assert invoke("run", "wf.py", "boom").exit_code == 1
    executions = json.loads(invoke("log", "--format", "json").stdout)
    assert [e["status"] for e in executions] == ["failed", "done"]
    assert executions[1]["root_task"] == "wf.main"
    assert executions[1]["jobs"] == {"ran": 4}

    text = invoke("log")
    assert text.exit_code == 0 and "wf.main" in text.stdout

    tree = invoke("log", executions[1]["id"][:8])
    assert tree.exit_code == 0
    assert "wf.main" in tree.stdout and "wf.inc" in tree.stdout and "wf.total" in tree.stdout

    detail = json.loads(invoke("log", executions[1]["id"], "--format", "json").stdout)
    root = detail["tree"][0]
    assert root["task"] == "wf.main" and {c["task"] for c in root["children"]} == {"wf.inc", "wf.total"}
    total_job = next(c for c in root["children"] if c["task"] == "wf.total")

    job = json.loads(invoke("log", total_job["id"][:12], "--format", "json").stdout)
    assert job["type"] == "job" and job["status"] == "ran"
    assert job["arguments"][0]["name"] == "xs" and job["arguments"][0]["preview"] == "[1, 2]"
    assert job["result"]["preview"] == "3"
    assert "def total(xs: list)" in job["source"]
    job_text = invoke("log", total_job["id"][:12])
    assert "Task source" in job_text.stdout and "xs = [1, 2]" in job_text.stdout

    failed = executions[0]["root_job"]
    failed_text = invoke("log", failed)
    assert "KeyError" in failed_text.stdout and "no such key 1" in failed_text.stdout

    unknown = invoke("log", "ffffffffff")
    assert unknown.exit_code == 2 and "no execution or job" in unknown.stderr
    not_hex = invoke("log", "zz")
    assert not_hex.exit_code == 2


def test_log_without_project_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("log")
    assert result.exit_code == 1
    assert "slothflow init" in result.stderr
    assert not (tmp_path / ".slothflow").exists()


def test_init_and_db_commands(tmp_path: Path) -> None:
    result = invoke("init")
    assert result.exit_code == 0
    assert (tmp_path / ".slothflow" / "slothflow.toml").exists()
    assert (tmp_path / ".slothflow" / "slothflow.db").exists()
    info = invoke("db", "info")
    assert info.exit_code == 0 and "schema:   0002" in info.stdout
    assert invoke("db", "upgrade").exit_code == 0
    down = invoke("db", "downgrade", "base")
    assert down.exit_code == 0 and "schema None" in down.stdout
    up = invoke("db", "upgrade")
    assert up.exit_code == 0 and "schema 0002" in up.stdout


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    invoke("init")
    db = tmp_path / ".slothflow" / "slothflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    for args in (["db", "info"], ["log"], ["db", "upgrade"]):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert "newer slothflow" in result.stderr
        assert "Traceback" not in result.output


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / ".slothflow"
    folder.mkdir()
    (folder / "slothflow.db").write_bytes(b"this is not a database" * 100)
    result = invoke("log")
    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.output


def test_live_display_renders_progress(sqlite_uri: str) -> None:
    from slothflow import task

    @task
    def slow(i: int) -> int:
        return i

    buf = io.StringIO()
    progress = Progress(Console(file=buf, force_terminal=True, width=100), live=True)
    scheduler = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    scheduler.add_listener(progress)
    with progress:
        assert scheduler.run([slow(i) for i in range(20)]) == list(range(20))
    scheduler.close()
    assert "ran 20" in buf.getvalue()
    assert progress.summary(1.0).startswith("20 ran, 0 cached, 0 failed")


def test_module_target_and_console_script(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project)}
    result = subprocess.run(
        [sys.executable, "-m", "slothflow.cli", "run", "wf", "main", "--n", "3"],
        cwd=project, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "6"


def test_example_workflow_runs(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "quickstart.py"
    result = invoke("run", str(example), "main", "--samples", "3", "--size", "50")
    assert result.exit_code == 0, result.output
    assert "'fib': 6765" in result.stdout
    again = invoke("run", str(example), "main", "--samples", "3", "--size", "50")
    assert "0 ran" in again.stderr


def test_readme_snippets_are_consistent() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "slothflow run examples/quickstart.py main" in first_block
    assert "python3 -m pytest" in first_block
    assert textwrap.dedent(first_block).count("pip install") == 2


def test_log_shows_arguments_of_a_failed_job(project: Path) -> None:
    assert invoke("run", "wf.py", "boom", "--x", "41").exit_code == 1
    execution = json.loads(invoke("log", "--format", "json").stdout)[0]
    job = json.loads(invoke("log", execution["root_job"], "--format", "json").stdout)
    assert job["status"] == "failed"
    assert [(a["name"], a["preview"]) for a in job["arguments"]] == [("x", "41")]
    assert "KeyError" in job["error_type"]


def test_run_explain_says_why(project: Path) -> None:
    invoke("run", "wf.py", "main", "--n", "2")
    result = invoke("run", "wf.py", "main", "--n", "3", "--explain")
    assert result.exit_code == 0, result.output
    assert "argument `n`: 2 -> 3" in result.stderr
    again = invoke("run", "wf.py", "main", "--n", "3", "--explain")
    assert "every call was reused from the cache" in again.stderr
