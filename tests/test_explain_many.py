"""`explain` and dry runs stay right for a task with many earlier calls, say that a rerun follows a failure,
and `slothflow explain` gives each distinct reason once per task, with a count."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from slothflow import Scheduler
from slothflow.cli import cli
from slothflow.provenance.explain import ReasonKind, group_explanations

WF = """
import os, sys
from slothflow import Scheduler, task

@task
def inc(x: int) -> int:
    return x + 1

@task
def fragile(x: int) -> int:
    if os.environ.get("FAIL"):
        raise ValueError("asked to fail")
    return x * 10

@task
def main(n: int) -> list:
    return [inc(i) for i in range(n)]

@task
def once(x: int) -> int:
    return fragile(x)

if __name__ == "__main__":
    s = Scheduler(config={"backend": {"db_uri": "sqlite:///" + sys.argv[1]},
                          "executors.default": {"type": "threads", "max_workers": 8}})
    expr = (main if sys.argv[2] == "main" else once)(int(sys.argv[3]))
    dry = len(sys.argv) > 4
    try:
        result = s.run(expr, dryrun=dry)
        if dry:
            for c in result.would_run:
                print("PLAN", c.task, ",".join(r.kind for r in c.reasons))
        else:
            print(result)
    except ValueError as exc:
        print("FAILED", exc)
    print("EXEC", s.last_execution_id)
"""


def _run(tmp_path: Path, name: str, n: int, body: str = "x + 1", dry: bool = False, fail: bool = False) -> str:
    (tmp_path / "wf.py").write_text(textwrap.dedent(WF).replace("x + 1", body))
    env = {k: v for k, v in os.environ.items() if k != "FAIL"}
    if fail:
        env["FAIL"] = "1"
    out = subprocess.run([sys.executable, str(tmp_path / "wf.py"), str(tmp_path / "db.sqlite"), name, str(n)]
                         + (["dry"] if dry else []), capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _execution(stdout: str) -> str:
    return stdout.split("EXEC", 1)[1].strip()


def test_many_earlier_calls_code_change_is_the_only_reason(tmp_path: Path) -> None:
    n = 70
    _run(tmp_path, "main", n)
    plan = _run(tmp_path, "main", n, body="1 + x", dry=True)
    planned = [line.split()[1:] for line in plan.splitlines() if line.startswith("PLAN")]
    assert sorted(kinds for task, kinds in planned if task == "wf.inc") == ["code"] * n

    second = _execution(_run(tmp_path, "main", n, body="1 + x"))
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    try:
        explained = [e for e in scheduler.explain(second) if e.task == "wf.inc"]
    finally:
        scheduler.close()
    assert len(explained) == n
    assert {tuple(e.kinds) for e in explained} == {("code",)}
    groups = {g.task: g for g in group_explanations(explained)}
    assert groups["wf.inc"].calls == n
    assert [(r.kind, count) for r, count in groups["wf.inc"].reasons] == [(ReasonKind.CODE, n)]

    text = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "explain", second[:10]])
    assert text.exit_code == 0, text.output
    assert text.stdout.count("code of wf.inc changed") == 1
    assert f"({n} of {n} calls)" in text.stdout
    assert text.stdout.count("-    return x + 1") == 1  # the diff, once


def test_rerun_after_a_failure_is_explained_as_such(tmp_path: Path) -> None:
    _run(tmp_path, "once", 1)
    failed = _run(tmp_path, "once", 2, fail=True)
    assert "FAILED asked to fail" in failed
    plan = _run(tmp_path, "once", 2, dry=True)
    assert "PLAN wf.fragile previous_failed" in plan
    third = _execution(_run(tmp_path, "once", 2))
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    try:
        explained = {e.task: e for e in scheduler.explain(third)}
        first_failure = {e.task: e for e in scheduler.explain(_execution(failed))}
    finally:
        scheduler.close()
    fragile = explained["wf.fragile"]
    assert fragile.kinds == ["previous_failed"]
    assert "ValueError: asked to fail" in fragile.reasons[0].message
    assert fragile.reasons[0].task == "wf.fragile"
    # the failed attempt itself differed from the earlier call by its argument
    assert [(r.kind, r.old, r.new) for r in first_failure["wf.fragile"].reasons] == [("argument", "1", "2")]
