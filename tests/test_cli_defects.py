"""The command line's contract, from issue 7: list parameters, typed values, exit codes (2 bad input, 1 failed
workflow, 130 Ctrl-C), "did you mean", checked configuration and options, and no database made by a typo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from slothflow.cli import cli

WORKFLOW = textwrap.dedent('''
    import os, time
    from slothflow import task

    @task
    def show(tags: list[str], counts: list[int] = [0], opts: dict | None = None, unique: set[int] = set()) -> str:
        return f"{tags}|{counts}|{opts}|{sorted(unique)}"

    @task
    def greet(name: str = "world") -> str:
        return "hello " + name

    @task
    def hang() -> int:
        with open(os.environ["STARTED"], "w") as fh:
            fh.write("started")
        time.sleep(3)  # a thread cannot be stopped: the run ends when it does
        return 1
''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["--tags", "a", "b", "--counts", "1", "2"],
        ["--tags", "a", "--tags", "b", "--counts", "1", "--counts", "2"],
        ["--tags", '["a", "b"]', "--counts", "[1, 2]"],
        ["--counts", "1", "2", "--tags=a", "b"],
    ],
)
def test_list_parameters_take_several_values(project: Path, args: list[str]) -> None:
    result = invoke("run", "wf.py", "show", *args)
    assert result.exit_code == 0, result.output
    assert last_line(result) == "['a', 'b']|[1, 2]|None|[]"


def test_set_and_dict_parameters(project: Path) -> None:
    result = invoke("run", "wf.py", "show", "--tags", "x", "--unique", "3", "1", "3", "--opts", '{"k": [1]}')
    assert result.exit_code == 0, result.output
    assert last_line(result) == "['x']|[0]|{'k': [1]}|[1, 3]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tags", "a", "--counts", "1", "x"], "--counts"),
        (["--tags", "a", "--counts", "[1.5]"], "'1.5' is not a valid integer"),
        (["--tags", "a", "--opts", "[1, 2]"], "expected a JSON object"),
        (["--tags", "a", "--opts", "{nope"], "--opts"),
        (["--tags"], "--tags"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_parameter(project: Path, args: list[str], message: str) -> None:
    result = invoke("run", "wf.py", "show", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_mistyped_task_name_says_did_you_mean(project: Path) -> None:
    result = invoke("run", "wf.py", "gret")
    assert result.exit_code == 2
    assert "did you mean 'greet'?" in result.stderr
    full = invoke("run", "wf.py", "wf.greet", "--name", "ana")
    assert full.exit_code == 0 and last_line(full) == "hello ana"


def test_unknown_task_option_is_a_usage_error(project: Path) -> None:
    result = invoke("run", "wf.py", "greet", "-o", "retires=2")
    assert result.exit_code == 2
    assert "unknown task option 'retires'; did you mean 'retries'?" in result.stderr
    bad_value = invoke("run", "wf.py", "greet", "-o", "retries=-1")
    assert bad_value.exit_code == 2 and "retries" in bad_value.stderr
    executor = invoke("run", "wf.py", "greet", "-o", "executor=proceses")
    assert executor.exit_code == 2 and "did you mean 'processes'?" in executor.stderr
    good = invoke("run", "wf.py", "greet", "-o", "retries=2", "-o", "executor=inline")
    assert good.exit_code == 0, good.output


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[executors.default]\nmax_workers = "lots"\n', "executors.default.max_workers = 'lots'"),
        ("[executors.default]\nmax_workers = -1\n", "executors.default.max_workers = -1"),
        ("[executors.default]\nmax_wrokers = 2\n", "did you mean 'max_workers'?"),
        ("[shceduler]\nfail_fast = true\n", "did you mean 'scheduler'?"),
        ("[backend\n", "invalid TOML"),
    ],
)
def test_bad_configuration_is_a_usage_error(project: Path, toml: str, message: str) -> None:
    (project / ".slothflow").mkdir()
    (project / ".slothflow" / "slothflow.toml").write_text(toml)
    result = invoke("run", "wf.py", "greet")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_only_init_creates_a_named_database(project: Path) -> None:
    missing = project / "nope" / "x.db"
    result = invoke("--db", f"sqlite:///{missing}", "run", "wf.py", "greet")
    assert result.exit_code == 2
    assert f"no database at {missing}; run `slothflow --db sqlite:///{missing} init`" in result.stderr
    assert not missing.parent.exists()

    relative = invoke("--db", "sqlite:///team.db", "run", "wf.py", "greet")
    assert relative.exit_code == 2 and f"no database at {project / 'team.db'}" in relative.stderr
    assert invoke("--db", "sqlite:///team.db", "init").exit_code == 0
    assert (project / "team.db").exists()
    ran = invoke("--db", "sqlite:///team.db", "run", "wf.py", "greet")
    assert ran.exit_code == 0, ran.output

    (project / ".slothflow" / "slothflow.toml").write_text('[backend]\ndb_uri = "sqlite:///typo.db"\n')
    configured = invoke("run", "wf.py", "greet")
    assert configured.exit_code == 2
    assert f"no database at {project / '.slothflow' / 'typo.db'}; run `slothflow init`" in configured.stderr
    assert invoke("log").exit_code == 2


def test_a_malformed_database_uri_is_a_usage_error(project: Path) -> None:
    result = invoke("--db", "nonsense", "run", "wf.py", "greet")
    assert result.exit_code == 2
    assert "--db 'nonsense' is not a database URI" in result.stderr


def test_first_run_in_a_fresh_folder_creates_the_default_database(project: Path) -> None:
    result = invoke("run", "wf.py", "greet")
    assert result.exit_code == 0, result.output
    assert (project / ".slothflow" / "slothflow.db").exists()


def test_reading_commands_never_create_a_database(project: Path) -> None:
    (project / ".slothflow").mkdir()
    for args in (["log"], ["db", "info"], ["explain", "abcd"]):
        result = invoke(*args)
        assert result.exit_code == 2, args
        assert "run `slothflow init`" in result.stderr
    assert not (project / ".slothflow" / "slothflow.db").exists()


def test_ctrl_c_exits_130(project: Path) -> None:
    started = project / "started"
    env = {**os.environ, "STARTED": str(started)}
    proc = subprocess.Popen([sys.executable, "-m", "slothflow.cli", "run", "wf.py", "hang", "--plain"],
                            cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "Aborted" not in err
