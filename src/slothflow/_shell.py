"""Running a shell command as a task body: bash, failing on the first error, stderr's tail in the error."""

from __future__ import annotations

import shutil
import subprocess

from slothflow._errors import ScriptError

STDERR_TAIL_LINES = 20


def run_command(command: str, cwd: str | None = None) -> str:
    """Run a shell command (bash, failing on the first error); return its stdout."""
    shell = shutil.which("bash") or "/bin/sh"
    prelude = "set -eo pipefail\n" if shell.endswith("bash") else "set -e\n"
    proc = subprocess.run([shell, "-c", prelude + command], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
        first = command.strip().splitlines()[0] if command.strip() else ""
        raise ScriptError(
            f"script exited with status {proc.returncode}: {first[:120]}" + (f"\n{tail}" if tail else ""),
            proc.returncode,
            tail,
            command,
        )
    return proc.stdout
