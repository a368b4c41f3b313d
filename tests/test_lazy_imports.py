"""``import slothflow`` and ``slothflow --help`` stay light: the database, remote-file and serialization stacks
load where they are first needed, not at import time (checked in fresh interpreters)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = {"sqlalchemy", "fsspec", "cloudpickle", "psycopg", "alembic", "s3fs"}


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parent.parent / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), src])}


def test_import_slothflow_loads_no_heavy_stack() -> None:
    code = ("import slothflow, sys; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY | {'rich'})!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_help_loads_no_database_or_serialization_stack() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "slothflow.cli", "--help"],
                         capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "run" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "slothflow" in imported
    assert imported & HEAVY == set()
