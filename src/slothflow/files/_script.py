"""Shell-script tasks: run a command with its input files staged in and its output files staged out.

``script(command, inputs=[...], outputs=...)`` is a cached task like any other: its key covers the
command and the fingerprints of its input files, so editing an input reruns it; its result holds the
output files, so deleting or changing one reruns it too. ``StagingFile(local, remote)`` pairs a local
path the command uses with the remote place the data comes from (inputs) or goes to (outputs).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from typing import Any

from slothflow._errors import MissingFileError
from slothflow._shell import run_command
from slothflow._walk import transform
from slothflow.files._file import Dir, File, StagingDir, StagingFile
from slothflow.hashing._encode import hash_struct
from slothflow.model._task import task
from slothflow.model._value import Value

_NO_OUTPUTS = "__slothflow_no_outputs__"


_FILE_LIKE = (StagingFile, StagingDir, File, Dir)


def _walk(value: Any, fn: Any, leaves: tuple[type, ...] = _FILE_LIKE) -> Any:
    """``value`` with ``fn`` applied to every ``leaves`` instance inside, found by the one walker."""
    return transform(value, fn, leaves)


class _Output(Value):
    """Where a script will write: hashed by its paths only, since the data does not exist yet."""

    def __init__(self, kind: str, local: str, remote: str | None = None) -> None:
        self.kind, self.local, self.remote = kind, local, remote

    def get_hash(self, data: bytes | None = None) -> str:
        return hash_struct("slothflow.ScriptOutput", self.kind, self.local, self.remote)

    def build(self) -> Any:
        cls: Any = {"File": File, "Dir": Dir, "StagingFile": StagingFile, "StagingDir": StagingDir}[self.kind]
        return cls(self.local) if self.remote is None else cls(self.local, self.remote)

    def __repr__(self) -> str:
        return f"{self.kind}({self.local!r}" + (f", {self.remote!r})" if self.remote else ")")


def _as_output(item: Any) -> Any:
    if isinstance(item, StagingFile | StagingDir):
        return _Output(type(item).__name__, item.local.path, item.remote.path)
    return _Output(type(item).__name__, item.path)


def _in_workdir(item: Any, workdir: str | None) -> Any:
    """Staging pairs whose local side is relative are placed inside the script's work folder."""
    if workdir is None or not isinstance(item, StagingFile | StagingDir):
        return item
    local = item.local.path
    if os.path.isabs(local) or "://" in local:
        return item
    if isinstance(item, StagingFile):
        return StagingFile(os.path.join(workdir, local), item.remote)
    return StagingDir(os.path.join(workdir, local), item.remote)


@task(namespace="slothflow", name="script", version="1")
def _script_task(command: str, inputs: Any = (), outputs: Any = _NO_OUTPUTS, tempdir: bool = False) -> Any:
    workdir = tempfile.mkdtemp(prefix="slothflow-script-") if tempdir else None
    try:
        staged_inputs = _walk(inputs, lambda item: _in_workdir(item, workdir))
        _walk(staged_inputs, lambda item: item.stage() if isinstance(item, StagingFile | StagingDir)
                      else item)
        built = _walk(outputs, lambda item: item.build(), (_Output,))
        staged_outputs = _walk(built, lambda item: _in_workdir(item, workdir))
        stdout = run_command(command, cwd=workdir)
        if isinstance(outputs, str) and outputs == _NO_OUTPUTS:
            return stdout

        def finish(item: Any) -> Any:
            if isinstance(item, StagingFile | StagingDir):
                if not item.local.exists():
                    raise MissingFileError(
                        f"the script did not create its output {item.local.path}", path=item.local.path
                    )
                return item.unstage()
            if isinstance(item, File | Dir):
                if not item.exists():
                    raise MissingFileError(f"the script did not create its output {item.path}", path=item.path)
                item.update_hash()
            return item

        return _walk(staged_outputs, finish)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def script(
    command: str | list[str],
    inputs: Any = (),
    outputs: Any = _NO_OUTPUTS,
    tempdir: bool = False,
    **task_options: Any,
) -> Any:
    """A lazy shell-script call; gives ``outputs`` (staging pairs replaced by their remote Files) or stdout.

    ``inputs`` lists the files the command reads (``StagingFile`` pairs are copied in first); ``outputs``
    is any structure of ``File``/``StagingFile`` the command writes. ``tempdir=True`` runs it in a fresh
    folder, where relative local staging paths live. Task options (``executor=``, ``limits=``, ...) apply.
    """
    if isinstance(command, list | tuple):
        command = shlex.join(str(c) for c in command)
    target = _script_task.options(**task_options) if task_options else _script_task
    if not (isinstance(outputs, str) and outputs == _NO_OUTPUTS):
        outputs = _walk(outputs, _as_output)
    return target(command, inputs, outputs, tempdir)

