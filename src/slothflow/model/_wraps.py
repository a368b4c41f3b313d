"""``wraps_task``: decorators that wrap a task in another task, as ``functools.wraps`` does for functions.

The wrapped task moves into a hidden namespace (``<namespace>.<wrapper name>``) and the wrapper takes its
name, its signature and its module. The wrapper's hash includes the wrapped task's, so editing either reruns
the calls (the wrapper may call the inner function directly, out of the scheduler's sight).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slothflow.model._task import Task, get_task_registry, task


def wraps_task(
    wrapper_name: str | None = None,
    wrapper_hash_includes: list[Any] | None = None,
    use_wrapper_signature: bool = False,
    **wrapper_task_options: Any,
) -> Callable[[Callable[[Task], Callable[..., Any]]], Callable[[Any], Task]]:
    """Turn ``wrapper(inner_task) -> body`` into a decorator that wraps a task (or a plain function, which
    becomes a task first) in a task running ``body(*args, **kwargs)``.

    ``wrapper_name`` (default: the wrapper function's name) names the hidden namespace;
    ``wrapper_hash_includes`` adds values the body depends on (a wrapper's own arguments) to the hash;
    the wrapper keeps the inner task's signature unless ``use_wrapper_signature``; other keywords are task
    options of the wrapper. Wrappers stack: each layer hides the one below it.
    """

    def transform(wrapper: Callable[[Task], Callable[..., Any]]) -> Callable[[Any], Task]:
        def create(inner: Any) -> Task:
            inner_task: Task = inner if isinstance(inner, Task) else task(inner)
            name = wrapper_name or wrapper.__name__
            visible_name, visible_namespace = inner_task.name, inner_task.namespace
            _hide(inner_task, name)
            body = wrapper(inner_task)
            outer = Task(
                body,
                name=visible_name,
                namespace=visible_namespace,
                hash_includes=[*(wrapper_hash_includes or []), inner_task],
                options=dict(wrapper_task_options),
                signature=None if use_wrapper_signature else inner_task.signature,
            )
            if not use_wrapper_signature and outer.get_task_option("nout") is None:
                outer.nout = inner_task.nout
            outer.__module__ = inner_task.__module__  # where a worker process finds both tasks
            outer.__doc__ = inner_task.__doc__
            outer.wrapped_task = inner_task
            get_task_registry().add(outer)
            return outer

        return create

    return transform


def _hide(inner: Task, suffix: str) -> None:
    """Move ``inner`` (and, first, every task it wraps in turn) into the namespace ``<namespace>.<suffix>``."""
    chain = []
    node: Task | None = inner
    while node is not None:
        chain.append(node)
        node = node.wrapped_task
    registry = get_task_registry()
    for layer in reversed(chain):  # innermost first, making room for the layers above it
        namespace = f"{layer.namespace}.{suffix}" if layer.namespace else suffix
        if registry.get(layer.fullname) is layer:
            registry.rename(layer.fullname, namespace)
        else:
            layer.namespace = namespace
            layer.fullname = f"{namespace}.{layer.name}"
            layer._hash = None
