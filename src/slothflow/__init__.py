"""slothflow: a Python workflow engine with lazy task expressions, automatic parallelism,
incremental reruns from a central cache, and full provenance.

    from slothflow import Scheduler, task

    @task
    def add(a: int, b: int) -> int:
        return a + b

    print(Scheduler().run(add(1, add(2, 3))))
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from slothflow._config import Config
from slothflow._errors import (
    CLIError,
    ConfigError,
    ExecutorError,
    ExpressionError,
    FileAccessError,
    HashingError,
    MissingFileError,
    NestingError,
    ScriptError,
    SerializationError,
    SlothflowError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreVersionError,
    TaskDefinitionError,
    TaskLookupError,
    TaskTimeoutError,
    WorkerLostError,
)
from slothflow._version import __version__
from slothflow.files._file import ContentDir, ContentFile, Dir, File, FileSet, StagingDir, StagingFile
from slothflow.files._script import script
from slothflow.hashing._encode import hash_value, register_hasher
from slothflow.model._builtins import apply_tags, catch, catch_all, cond, get_context, throw
from slothflow.model._expression import (
    Expression,
    SchedulerExpression,
    SimpleExpression,
    TaskExpression,
    ValueExpression,
)
from slothflow.model._value import ProxyValue, Value
from slothflow.scheduler import Plan, PlannedCall, Scheduler, run

# Imported before the name ``task`` is bound to the decorator below: loading the module ``slothflow.task``
# sets the package attribute ``task`` to the module, and the import that follows rebinds it to the decorator.
from slothflow.task import PartialTask, Task, get_current_namespace, get_task_registry, namespace, task  # noqa: I001

if _TYPE_CHECKING:
    from slothflow.provenance.explain import Explanation, Reason

# Names whose modules load the database stack: imported when first used, so `import slothflow` stays light.
_LAZY = {"Explanation": "slothflow.provenance.explain", "Reason": "slothflow.provenance.explain"}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slothflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


version = __version__

__all__ = [
    "CLIError",
    "Config",
    "ConfigError",
    "ContentDir",
    "ContentFile",
    "Dir",
    "ExecutorError",
    "Explanation",
    "Expression",
    "ExpressionError",
    "File",
    "FileAccessError",
    "FileSet",
    "HashingError",
    "MissingFileError",
    "NestingError",
    "PartialTask",
    "Plan",
    "PlannedCall",
    "ProxyValue",
    "Reason",
    "Scheduler",
    "SchedulerExpression",
    "ScriptError",
    "SerializationError",
    "SimpleExpression",
    "SlothflowError",
    "StagingDir",
    "StagingFile",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "Task",
    "TaskDefinitionError",
    "TaskExpression",
    "TaskLookupError",
    "TaskTimeoutError",
    "Value",
    "ValueExpression",
    "WorkerLostError",
    "__version__",
    "apply_tags",
    "catch",
    "catch_all",
    "cond",
    "get_context",
    "get_current_namespace",
    "get_task_registry",
    "hash_value",
    "namespace",
    "register_hasher",
    "run",
    "script",
    "task",
    "throw",
    "version",
]
