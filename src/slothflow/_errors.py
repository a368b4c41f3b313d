"""The one exception tree of slothflow.

Every error slothflow raises itself derives from :class:`SlothflowError` and carries its context as
attributes, so that callers (and the CLI) can say *which* task, argument or execution went wrong and what
to do about it::

    SlothflowError
    ├── TaskDefinitionError      a @task declaration is invalid (bad name, option, config_args ...)
    │   ├── InvalidTaskNameError a name or namespace that is not an identifier (also a ValueError)
    │   └── InvalidNoutError     nout that is not a whole number >= 0 (also a TypeError)
    ├── TaskLookupError          a task name is unknown (CLI, deserialized expression)
    ├── ExpressionError          misuse of a lazy expression (bool(), iteration without nout, bad call arguments)
    ├── NestingError             a value contains itself or is nested too deeply (names task and argument)
    ├── HashingError             a value cannot be hashed deterministically (names task and argument)
    │   └── FileAccessError      a file or remote object cannot be read (names the path)
    │       └── MissingFileError an input file, or a file a task returned, does not exist
    ├── SerializationError       a value cannot be stored or sent to another process
    ├── ExecutorError            an executor could not run a job (unknown executor, broken pool)
    │   └── WorkerLostError      the worker (process, Dask worker, Slurm job) running a job died (names it)
    ├── TaskTimeoutError         an attempt ran longer than its ``timeout`` option (also a TimeoutError)
    ├── StoreError               the database cannot be used
    │   ├── StoreVersionError    the database was written by a newer (or older) schema
    │   ├── StoreLockedError     the database file is locked or unreadable
    │   ├── StoreCorruptError    the database file is not a database or is damaged (found on opening)
    │   └── StoreReadOnlyError   the database or its folder cannot be written
    ├── ScriptError              a shell script task exited non-zero (status, stderr tail)
    ├── ConfigError              invalid configuration
    └── CLIError                 bad command-line input (unknown task or file, unparsable value)

A user's own exception raised inside a task is *not* wrapped: it reaches the caller of
``Scheduler.run`` as itself (same type and message), with a task-level traceback attached as
``exc.__notes__``.
"""

from __future__ import annotations


class SlothflowError(Exception):
    """Base class of every error raised by slothflow itself."""


class TaskDefinitionError(SlothflowError):
    """A ``@task`` declaration is invalid."""

    def __init__(self, message: str, task_name: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name


class InvalidTaskNameError(TaskDefinitionError, ValueError):
    """A task name or namespace that is not a (dotted) Python identifier (also a ``ValueError``, as in redun)."""


class InvalidNoutError(TaskDefinitionError, TypeError):
    """``nout`` that is not a whole number >= 0 (also a ``TypeError``, as in redun)."""


class TaskLookupError(SlothflowError, LookupError):
    """A task could not be found by name."""

    def __init__(self, message: str, task_name: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name


class ExpressionError(SlothflowError, TypeError):
    """A lazy expression was used as if it were a value."""


class HashingError(SlothflowError, TypeError):
    """A value cannot be hashed deterministically."""

    def __init__(
        self,
        message: str,
        task_name: str | None = None,
        argument: str | None = None,
        value_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.argument = argument
        self.value_type = value_type


class SerializationError(SlothflowError):
    """A value cannot be serialized (to the store or to a worker process)."""

    def __init__(self, message: str, task_name: str | None = None, argument: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.argument = argument


class ExecutorError(SlothflowError):
    """An executor could not run a job."""

    def __init__(self, message: str, task_name: str | None = None, executor: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.executor = executor


class StoreError(SlothflowError):
    """The store (database) cannot be used."""

    def __init__(self, message: str, db_uri: str | None = None) -> None:
        super().__init__(message)
        self.db_uri = db_uri


class StoreVersionError(StoreError):
    """The database schema is not the one this version of slothflow understands."""


class StoreLockedError(StoreError):
    """The database file is locked by another writer or cannot be read."""


class ConfigError(SlothflowError, ValueError):
    """The configuration is invalid."""


class CLIError(SlothflowError):
    """Bad input on the command line."""



class FileAccessError(HashingError):
    """A file or remote object cannot be read, listed or written (permissions, credentials, protocol)."""

    def __init__(
        self, message: str, path: str | None = None, task_name: str | None = None, argument: str | None = None
    ) -> None:
        super().__init__(message, task_name=task_name, argument=argument, value_type="File")
        self.path = path


class MissingFileError(FileAccessError):
    """A file that a task needs (an input, or an output it returned) does not exist."""


class ScriptError(SlothflowError):
    """A shell script task exited with a non-zero status."""

    def __init__(self, message: str, returncode: int, stderr_tail: str = "", command: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.command = command

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.returncode, self.stderr_tail, self.command))


class TaskTimeoutError(SlothflowError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout`` option allows; it was cancelled, never cached."""

    def __init__(self, message: str, task_name: str | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.task_name, self.timeout))


class NestingError(SlothflowError, ValueError):
    """A value contains itself (a cycle) or is nested deeper than slothflow walks; names where, and, when the
    scheduler knows them, the task and argument."""

    def __init__(
        self,
        message: str,
        path: str = "",
        kind: str = "cycle",
        task_name: str | None = None,
        argument: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind  # "cycle" or "depth"
        self.task_name = task_name
        self.argument = argument

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.path, self.kind, self.task_name, self.argument))


class StoreCorruptError(StoreError):
    """The database file is not a database, or is damaged (truncated, overwritten): found when it is opened."""


class StoreReadOnlyError(StoreError):
    """The database or blob folder cannot be written (a read-only folder, file or connection)."""


class WorkerLostError(ExecutorError):
    """The worker running a job died (killed, out of memory, the task ended its process): ``worker`` names it.

    Not the task's own error, so ``retries`` apply as for any failed attempt."""

    def __init__(self, message: str, task_name: str | None = None, executor: str | None = None,
                 worker: str | None = None) -> None:
        super().__init__(message, task_name, executor)
        self.worker = worker

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.task_name, self.executor, self.worker))
