"""An existing redun project's configuration works as it is: ``.redun/redun.ini`` (INI, dotted sections,
``${var}`` interpolation) found like redun finds it, the same sections and keys, redun's ``Config`` methods;
redun keys slothflow cannot honour are errors that say why."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slothflow import Scheduler
from slothflow._config import find_project_dir, load_project_config
from slothflow.config import Config, ConfigError, create_config_section

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLOTHFLOW_CONFIG", "SLOTHFLOW_PROJECT_DIR", "REDUN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


INI = """
[DEFAULT]
workers = 3
region = default-region

[backend]
db_uri = sqlite:///redun.db

[executors.default]
type = local
max_workers = ${workers}

[executors.batchy]
type = local
mode = process
max_workers = ${WORKERS_FROM_ENV}
where = ${region}
Role = section-${where}

[scheduler]
context =
  {"model": {"depth": 2}}

[limits]
db = 2
"""


def test_read_string_ini_interpolates_and_nests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS_FROM_ENV", "4")
    monkeypatch.setenv("workers", "from-env")  # the section and [DEFAULT] come before the environment
    config = Config()
    config.read_string(INI)
    assert config["executors.default"] == {"type": "local", "max_workers": "3"}
    batchy = config["executors"]["batchy"]
    assert batchy["max_workers"] == "4"
    assert batchy["where"] == "default-region" and batchy["Role"] == "section-default-region"  # case kept
    assert "workers" not in batchy  # [DEFAULT] only feeds ${...}
    assert "DEFAULT" not in config.sections()
    assert config.keys() == ["backend", "executors", "scheduler", "limits"]
    assert "executors" in config and "executors.batchy" in config and "nothing" not in config
    assert config.get("nothing", 5) == 5
    with pytest.raises(KeyError):
        config["nothing"]
    config["limits"] = {"db": "5"}
    assert config["limits"] == {"db": "5"}
    config["repos"] = {"default": {"config_dir": "/x"}}
    assert config["repos"]["default"] == {"config_dir": "/x"} and "repos.default" in config.sections()
    config["limits"] = {"db": "2"}
    flat = config.get_config_dict()
    assert Config(flat).get_config_dict() == flat
    assert flat["limits"] == {"db": "2"}


def test_read_string_toml_and_errors() -> None:
    config = Config()
    config.read_string('[executors.default]\ntype = "threads"\nmax_workers = 2\n')
    assert config["executors.default"] == {"type": "threads", "max_workers": 2}
    with pytest.raises(ConfigError, match="neither valid TOML"):
        Config().read_string("no section header = 1\n[x\n")
    with pytest.raises(ConfigError, match="is not a key of"):
        Config().read_string("[a]\nx = ${missing_variable_xyz}\n", format="ini")
    with pytest.raises(ConfigError, match="invalid INI"):
        Config().read_string("[a]\nx = 1\nx = 2\n", format="ini")
    with pytest.raises(ConfigError, match="nest more than"):
        Config().read_string("[a]\nx = ${x}\n", format="ini")
    config = Config()
    config.read_string("[a]\nx = 5$$ ${b:y}\n[b]\ny = ${z}\nz = 3\n", format="ini")
    assert config["a"] == {"x": "5$ 3"}


def test_read_path_sets_the_config_folder_and_replace_config_dir(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "redun.ini").write_text("[backend]\ndb_uri = sqlite:///other.db\n[repos.team]\n"
                                      f"config_dir = {folder}/shared\n")
    config = Config()
    config.read_path(folder / "redun.ini")
    assert config.config_dir == folder.resolve() and config.configdir == str(folder.resolve())
    assert config.get_config_dict(replace_config_dir="/else")["repos.team"] == {"config_dir": "/else/shared"}
    assert create_config_section({"a": "1"}) == {"a": "1"} and create_config_section() == {}
    assert Config(configdir=str(folder)).config_dir == folder


def test_redun_keys_are_accepted_or_refused_with_a_reason(tmp_path: Path) -> None:
    db = {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    ok = Scheduler(config={"backend": {**db, "automigrate": "false"},
                           "scheduler": {"job_status_interval": "20", "ignore_warnings": "namespace"},
                           "executors.default": {"type": "local", "max_workers": "2", "scratch": "/tmp/x"},
                           "repos.team": {"config_dir": "/somewhere"}})
    ok.close()
    refused = [
        ({"backend": {**db, "db_aws_secret_name": "s"}}, "backend.db_aws_secret_name (from redun) cannot be used"),
        ({"backend": {**db, "db_password_env": "P"}}, "PGPASSWORD"),
        ({"backend": {**db, "value_store_path": "/v"}}, "blob_dir"),
        ({"backend": db, "scheduler": {"setup_scheduler": "x::y"}}, "no setup_scheduler hook"),
        ({"backend": db, "executors.batch": {"type": "aws_batch", "queue": "q"}},
         "'aws_batch' is a redun executor that slothflow does not have"),
        ({"backend": db, "executors.mine": {"type": "local", "class": "pkg.Cls"}}, "register_executor"),
        ({"backend": db, "federated_tasks.x": {"namespace": "n"}}, "no federated tasks"),
        ({"backend": db, "scheduler": {"job_status_interval": "often"}}, "scheduler.job_status_interval"),
    ]
    for sections, message in refused:
        with pytest.raises(ConfigError) as info:
            Scheduler(config=sections)
        assert message in str(info.value)


def test_context_file_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    from slothflow import get_context, task

    @task
    def depth(d: int = get_context("model.depth", 0)) -> int:
        return d

    folder = tmp_path / ".redun"
    folder.mkdir()
    (folder / "ctx.json").write_text('{"model": {"depth": 7}}')
    (folder / "redun.ini").write_text("[scheduler]\ncontext_file = ctx.json\n")
    scheduler = Scheduler(config=load_project_config(folder))
    try:
        assert scheduler.run(depth()) == 7
    finally:
        scheduler.close()
    (folder / "redun.ini").write_text('[scheduler]\ncontext_file = ctx.json\ncontext = {"a": 1}\n')
    with pytest.raises(ConfigError, match="both given"):
        Scheduler(config=load_project_config(folder))
    (folder / "redun.ini").write_text("[scheduler]\ncontext_file = nope.json\n")
    with pytest.raises(ConfigError, match="nope.json"):
        Scheduler(config=load_project_config(folder))


def test_redun_database_is_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / ".redun"
    folder.mkdir()
    conn = sqlite3.connect(folder / "redun.db")
    conn.execute("CREATE TABLE redun_version (id INTEGER)")
    conn.commit()
    conn.close()
    (folder / "redun.ini").write_text("[backend]\ndb_uri = sqlite:///redun.db\n")
    config = load_project_config(folder)
    assert config["backend"]["db_uri"] == "sqlite:///slothflow.db"  # kept next to redun's, not in it
    (folder / "redun.ini").write_text("[backend]\ndb_uri = sqlite:///redun.db\n".replace("[backend]", "[x]"))
    with pytest.raises(ConfigError, match="redun's database"):
        Scheduler(config={"backend": {"db_uri": f"sqlite:///{folder / 'redun.db'}"}})


def test_project_folder_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    (outer / ".slothflow").mkdir(parents=True)
    (inner / ".redun").mkdir(parents=True)
    assert find_project_dir(inner) == (inner / ".redun").resolve()  # the nearest folder wins
    (inner / ".slothflow").mkdir()
    assert find_project_dir(inner) == (inner / ".slothflow").resolve()  # in one folder, .slothflow wins
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("REDUN_CONFIG", str(elsewhere))
    assert find_project_dir(inner) == elsewhere
    monkeypatch.setenv("SLOTHFLOW_CONFIG", str(outer / ".slothflow"))
    assert find_project_dir(inner) == outer / ".slothflow"
    (inner / ".slothflow" / "slothflow.toml").write_text("")
    (inner / ".slothflow" / "redun.ini").write_text("")
    with pytest.raises(ConfigError, match="keep one"):
        load_project_config(inner / ".slothflow")


WORKFLOW = '''
import os
from slothflow import get_context, task


@task(limits=["db"])
def leaf(x: int, offset: int = get_context("model.offset", 0)) -> int:
    with open(os.environ["SIDELOG"], "a") as fh:
        fh.write(f"leaf {os.getpid()}\\n")
    return x + offset


@task(executor="proc")
def main(n: int = 3) -> list:
    return [leaf(i) for i in range(n)]
'''

PROJECT_INI = """
# written by redun init, then edited
[DEFAULT]
root = ${PROJECT_ROOT}

[backend]
db_uri = sqlite:///cache/project.db

[executors.default]
type = local
max_workers = 2

[executors.proc]
type = local
mode = process
max_workers = 1
start_method = spawn

[scheduler]
context = {"model": {"offset": 10}}
job_status_interval = 5

[limits]
db = 1

[tags]
project_root = ${root}
"""


def _slothflow(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(cwd)]), **env}
    for name in ("SLOTHFLOW_PROJECT_DIR", "SLOTHFLOW_CONFIG", "REDUN_CONFIG"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run([sys.executable, "-m", "slothflow.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=180)


def test_a_redun_project_runs_with_slothflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / ".redun" / "cache").mkdir(parents=True)
    (project / ".redun" / "redun.ini").write_text(textwrap.dedent(PROJECT_INI))
    (project / "wf.py").write_text(textwrap.dedent(WORKFLOW))
    sub = project / "sub"
    sub.mkdir()
    # db_uri is relative to the config folder, as in redun; Python's Scheduler creates it on first use.
    monkeypatch.setenv("PROJECT_ROOT", str(project))
    config = load_project_config(project / ".redun")
    Scheduler(config=config).load().close()
    db = project / ".redun" / "cache" / "project.db"
    assert db.exists()

    env = {"SIDELOG": str(tmp_path / "log"), "PROJECT_ROOT": str(project)}
    out = _slothflow(sub, "run", "../wf.py", "main", **env)  # found by walking up from a subfolder
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[10, 11, 12]"
    pids = {line.split()[1] for line in (tmp_path / "log").read_text().splitlines()}
    assert str(os.getpid()) not in pids and len(pids) == 1  # leaves ran in the one worker of [executors.proc]
    with sqlite3.connect(db) as conn:
        tags = dict(conn.execute("SELECT key, value FROM tag").fetchall())
    assert str(project) in tags["project_root"]

    again = _slothflow(sub, "run", "../wf.py", "main", **env)
    assert again.returncode == 0, again.stderr
    assert "0 ran" in again.stderr  # the cache is the project's database

    # REDUN_CONFIG names the folder from anywhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "wf.py").write_text(textwrap.dedent(WORKFLOW))
    moved = _slothflow(elsewhere, "run", "wf.py", "main", REDUN_CONFIG=str(project / ".redun"), **env)
    assert moved.returncode == 0, moved.stderr
    assert "0 ran" in moved.stderr


REDUN_INIT_INI = """\
# redun configuration.

[backend]
db_uri = sqlite:///redun.db

[executors.default]
type = local
max_workers = 20

# [executors.batch]
# type = aws_batch
"""


def test_the_ini_redun_init_writes_runs_as_it_is(tmp_path: Path) -> None:
    (tmp_path / ".redun").mkdir()
    (tmp_path / ".redun" / "redun.ini").write_text(REDUN_INIT_INI)
    (tmp_path / "wf.py").write_text(textwrap.dedent(WORKFLOW).replace('@task(executor="proc")', "@task")
                                    .replace('@task(limits=["db"])', "@task"))
    env = {"SIDELOG": str(tmp_path / "log")}
    out = _slothflow(tmp_path, "run", "wf.py", "main", **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[0, 1, 2]"
    assert (tmp_path / ".redun" / "slothflow.db").exists()  # its own database, next to redun's
    assert not (tmp_path / ".redun" / "redun.db").exists()
    assert not (tmp_path / ".slothflow").exists()
    again = _slothflow(tmp_path, "run", "wf.py", "main", **env)
    assert "0 ran" in again.stderr
