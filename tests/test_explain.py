"""`slothflow explain` and Scheduler.explain: why each call ran, as data and as text."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from slothflow import Scheduler
from slothflow.cli import cli

WF = """
from slothflow import Scheduler, task

@task
def scale(x: int, factor: float = 2.0) -> float:
    return x * factor

@task
def main(n: int, factor: float = 2.0) -> list:
    return [scale(i, factor) for i in range(n)]

if __name__ == "__main__":
    import sys
    s = Scheduler(config={"backend": {"db_uri": "sqlite:///" + sys.argv[1]}})
    print(s.run(main(int(sys.argv[2]), float(sys.argv[3]))))
    print("EXEC", s.last_execution_id)
"""


def _run(tmp_path: Path, n: int, factor: float, body: str = "x * factor") -> str:
    (tmp_path / "expwf.py").write_text(textwrap.dedent(WF).replace("x * factor", body))
    out = subprocess.run([sys.executable, str(tmp_path / "expwf.py"), str(tmp_path / "db.sqlite"), str(n),
                          str(factor)], capture_output=True, text=True, timeout=60, check=True).stdout
    return out.split("EXEC", 1)[1].strip()


def test_explain_arguments_code_and_new_task(tmp_path: Path) -> None:
    first = _run(tmp_path, 2, 2.0)
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    reasons = {e.task: e.reasons for e in scheduler.explain(first) if e.task == "expwf.main"}
    assert reasons["expwf.main"][0].kind == "new_task"

    second = _run(tmp_path, 3, 2.0)
    explained = scheduler.explain(second)
    assert {e.task for e in explained} == {"expwf.main", "expwf.scale"}  # scale(0), scale(1) were reused
    main = next(e for e in explained if e.task == "expwf.main")
    assert [(r.kind, r.name, r.old, r.new) for r in main.reasons] == [("argument", "n", "2", "3")]
    assert str(main).splitlines()[1] == "  - argument `n`: 2 -> 3"

    third = _run(tmp_path, 3, 2.0, body="factor * x")
    explained = scheduler.explain(third)
    scales = [e for e in explained if e.task == "expwf.scale"]
    assert len(scales) == 3 and not any(e.task == "expwf.main" for e in explained)
    code = scales[0].reasons[0]
    assert code.kind == "code" and code.diff is not None
    assert "-    return x * factor" in code.diff and "+    return factor * x" in code.diff
    scheduler.close()

    cli_text = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "explain", third[:10]])
    assert cli_text.exit_code == 0, cli_text.output
    assert "code of expwf.scale changed" in cli_text.stdout
    cli_json = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "explain", third,
                                        "--format", "json"])
    assert {item["reasons"][0]["kind"] for item in json.loads(cli_json.stdout)} == {"code"}


def test_explain_cached_and_unknown(tmp_path: Path) -> None:
    _run(tmp_path, 2, 2.0)
    again = _run(tmp_path, 2, 2.0)
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    assert scheduler.explain(again) == []
    scheduler.close()
    runner = CliRunner()
    text = runner.invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "explain", again])
    assert "every job of this execution was reused" in text.stdout
    missing = runner.invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "explain", "abcdef12"])
    assert missing.exit_code == 2 and "no execution or job" in missing.stderr
