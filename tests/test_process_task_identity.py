"""Defect 4: a worker process runs the task object that was called (its call-site options) and the code
that was hashed at the start of the run, not whatever is on disk when the worker imports the module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

MODULE = textwrap.dedent('''
    import pathlib
    from slothflow import task

    HERE = pathlib.Path(__file__)

    def helper(x):
        return x + 1

    @task(namespace="ident", executor="procs")
    def step(x):
        return ("original", helper(x))

    @task(namespace="ident")
    def rewrite_module():
        """Edits this module on disk while the run goes on (a user saving a file mid-run)."""
        text = HERE.read_text()
        HERE.write_text(text.replace('"original"', '"edited"').replace("x + 1", "x + 100"))
        return "rewritten"

    @task(namespace="ident")
    def after(token, x):
        return step(x)

    @task(namespace="ident")
    def shout(word):
        return f"echo {word}"
''')

DRIVER = textwrap.dedent('''
    import json, sys
    from slothflow import Scheduler
    import wfmod

    if __name__ == "__main__":
        sched = Scheduler(config={"backend": {"db_uri": sys.argv[1]},
                                  "executors.procs": {"type": "processes", "max_workers": 2}})
        try:
            edited = sched.run(wfmod.after(wfmod.rewrite_module(), 1))
            script = sched.run(wfmod.shout.options(script=True, executor="procs")("hello"))
            print(json.dumps({"edited": edited, "script": script.decode() if isinstance(script, bytes) else script}))
        finally:
            sched.close()
''')


def test_worker_runs_the_called_task_with_the_hashed_code(tmp_path: Path) -> None:
    (tmp_path / "wfmod.py").write_text(MODULE)
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "driver.py", f"sqlite:///{tmp_path / 'db.sqlite'}"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # The module was edited on disk before step() ran in a worker: the worker still ran the hashed code.
    assert out["edited"] == ["original", 2]
    # options(script=True) given at the call site reached the worker: the command ran, its stdout came back.
    assert out["script"].strip() == "hello"
    # A fresh run sees the edit: new code hash, new result.
    proc = subprocess.run([sys.executable, "-c", "import wfmod, slothflow as s; print(s.Scheduler(config={"
                           "'backend': {'db_uri': 'sqlite:///db.sqlite'}, 'executors.procs': {'type': "
                           "'processes'}}).run(wfmod.step(1)))"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "('edited', 101)"
