"""redun's ``redun.task`` import path: the task decorator, task objects, namespaces and the registry.

``slothflow/__init__`` imports this module before it binds the name ``task`` to the decorator, so that
``slothflow.task`` stays the decorator after ``import slothflow.task``.
"""

from slothflow._errors import InvalidNoutError, InvalidTaskNameError
from slothflow.model._task import (
    CacheCheckValid,
    CacheScope,
    PartialTask,
    Task,
    TaskRegistry,
    get_current_namespace,
    get_task_registry,
    namespace,
    task,
)
from slothflow.model._wraps import wraps_task

__all__ = [
    "CacheCheckValid",
    "CacheScope",
    "InvalidNoutError",
    "InvalidTaskNameError",
    "PartialTask",
    "Task",
    "TaskRegistry",
    "get_current_namespace",
    "get_task_registry",
    "namespace",
    "task",
    "wraps_task",
]
