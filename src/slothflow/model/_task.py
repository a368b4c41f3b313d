"""Tasks: Python functions registered with ``@task``, called lazily.

A task's identity is its full name (``namespace.name``) and its **task hash**, which covers the
normalized source of its function (or ``version=`` when given), ``hash_includes`` and any call-time
``.options(...)`` overrides. Options given to ``@task(...)`` itself are not part of the hash: changing
``memory=`` must not invalidate a cache.

Tasks defined in ``__main__``, a notebook, a REPL or through ``exec`` work: when Python cannot find the
source, the code object is hashed instead. A task's default namespace is its module's name.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import json
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from slothflow._errors import InvalidNoutError, InvalidTaskNameError, TaskDefinitionError, TaskLookupError
from slothflow.hashing._code import CodeInfo, current_code_hasher
from slothflow.hashing._encode import hash_struct, hash_value
from slothflow.hashing._environment import ENV_POLICIES
from slothflow.hashing._source import get_source
from slothflow.model._context import apply_context, merge_contexts
from slothflow.model._expression import TaskExpression, contains_expression

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
_NAMESPACE_RE = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*)?$")

CACHE_SCOPES = ("NONE", "CSE", "BACKEND")
CHECK_VALID = ("full", "shallow")


class CacheScope(enum.StrEnum):
    """redun's names for ``cache_scope``: how far a call's cached result may be looked for."""

    NONE = "NONE"  # nowhere: the body always runs
    CSE = "CSE"  # within the same execution only
    BACKEND = "BACKEND"  # in every earlier execution too (the default)


class CacheCheckValid(enum.StrEnum):
    """redun's names for ``check_valid``: how a cached result is checked before reuse."""

    FULL = "full"
    SHALLOW = "shallow"


# Options the scheduler understands; any other keyword is passed through to executors.
_SCHEDULER_OPTIONS = {
    "cache",
    "cache_scope",
    "check_valid",
    "config_args",
    "env_policy",
    "executor",
    "limits",
    "nout",
    "prov",
    "script",
    "tags",
}

# Options that say where, when or whether a call runs (or is reused), never what it computes.
_SCHEDULING_OPTIONS = frozenset({
    "executor", "limits", "cache", "cache_scope", "check_valid", "prov", "tags", "env_policy", "memory",
    "vcpus", "gpus", "timeout", "retries", "queue", "priority",
})

_current_namespace: str | None = None


def namespace(_namespace: str | None = None) -> None:
    """Set the default namespace for tasks defined after this call (``None`` resets it)."""
    global _current_namespace
    if _namespace is not None and not _NAMESPACE_RE.match(_namespace):
        raise InvalidTaskNameError(f"invalid namespace {_namespace!r}: use dotted Python identifiers")
    _current_namespace = _namespace


def get_current_namespace() -> str | None:
    return _current_namespace


class TaskRegistry:
    """All tasks defined in this process, by full name."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> None:
        self._tasks[task.fullname] = task

    def get(self, task_name: str | None = None, hash: str | None = None) -> Task | None:
        if task_name is not None:
            return self._tasks.get(task_name)
        if hash is not None:
            return next((t for t in self._tasks.values() if t.hash == hash), None)
        return None

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def rename(self, old_fullname: str, new_namespace: str, new_name: str | None = None) -> Task:
        """Move a registered task to another name (``wraps_task`` hides the task it wraps this way)."""
        task = self._tasks.pop(old_fullname)
        task.namespace = new_namespace
        task.name = new_name or task.name
        task.fullname = f"{new_namespace}.{task.name}" if new_namespace else task.name
        task._hash = None  # the full name is part of the hash
        self.add(task)
        return task


_registry = TaskRegistry()


def get_task_registry() -> TaskRegistry:
    return _registry


def _module_namespace(func: Callable[..., Any]) -> str:
    module_name = getattr(func, "__module__", None) or ""
    module = sys.modules.get(module_name)
    explicit = getattr(module, "slothflow_namespace", None) or getattr(module, "redun_namespace", None)
    if explicit is not None:
        return str(explicit)
    if _current_namespace is not None:
        return _current_namespace
    if module_name == "__main__":
        path = getattr(module, "__file__", None)
        if path:
            stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            return stem if _NAME_RE.match(stem) else ""
        return ""
    return module_name if _NAMESPACE_RE.match(module_name) else ""


def _infer_nout(func: Callable[..., Any]) -> int | None:
    annotation = inspect.signature(func).return_annotation
    if annotation is inspect.Signature.empty:
        return None
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(func).get("return", annotation)
        except Exception:
            return None
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if args and Ellipsis not in args and args != ((),):
            return len(args)
        return None
    fields = getattr(annotation, "_fields", None)  # NamedTuple
    if isinstance(annotation, type) and issubclass(annotation, tuple) and fields is not None:
        return len(fields)
    return None


class Task:
    """A registered task. Calling it returns a :class:`TaskExpression`; nothing runs until scheduled."""

    __slothflow_task__ = True  # a task inside a module constant counts by name in code hashes

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        namespace: str | None = None,
        version: str | None = None,
        hash_includes: list[Any] | None = None,
        source: str | None = None,
        options: dict[str, Any] | None = None,
        options_override: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        export: dict[str, Any] | None = None,
        signature: inspect.Signature | None = None,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        if not _NAME_RE.match(self.name):
            raise InvalidTaskNameError(f"invalid task name {self.name!r}: use a Python identifier", self.name)
        self.namespace = _module_namespace(func) if namespace is None else namespace
        if not _NAMESPACE_RE.match(self.namespace):
            raise InvalidTaskNameError(
                f"invalid namespace {self.namespace!r} for task {self.name!r}: use dotted identifiers",
                self.name,
            )
        self.fullname = f"{self.namespace}.{self.name}" if self.namespace else self.name
        self.version = None if version is None else str(version)
        self.hash_includes = list(hash_includes or [])
        self._source = source
        self._options = dict(options or {})
        self._options_override = dict(options_override or {})
        # Options exported to this call and every call below it (``export_options``).
        self._export: dict[str, Any] = dict(export or {})
        self._hash: str | None = None
        self._hash_generation: object = None  # the generation of the code hasher the hash was computed by
        self.wrapped_task: Task | None = None  # the task this one wraps (``wraps_task``)
        # The parameters calls are bound to: the function's, or the wrapped task's (``wraps_task``).
        self._base_signature = signature if signature is not None else inspect.signature(func)
        self.signature = self._base_signature
        # A context override (``update_context``): merged over the context the call runs in.
        self._context: dict[str, Any] = dict(context or {})
        if self._context:
            self.signature = _signature_in_context(self.signature, self._context)
        self.nout: int | None = self.get_task_option("nout")
        if self.nout is None:
            self.nout = _infer_nout(func)
        self._validate()
        self.__doc__ = func.__doc__
        self.__name__ = self.name
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__module__ = getattr(func, "__module__", "")
        self.__wrapped__ = func

    def _validate(self) -> None:
        opts = self.get_task_options()
        scope = opts.get("cache_scope")
        if scope is not None and str(getattr(scope, "name", scope)).upper() not in CACHE_SCOPES:
            raise TaskDefinitionError(
                f"task {self.fullname}: cache_scope must be one of {CACHE_SCOPES}, not {scope!r}", self.fullname
            )
        check = opts.get("check_valid")
        if check is not None and str(getattr(check, "value", check)).lower() not in CHECK_VALID:
            raise TaskDefinitionError(
                f"task {self.fullname}: check_valid must be 'full' or 'shallow', not {check!r}", self.fullname
            )
        params = self.signature.parameters
        for arg in opts.get("config_args") or []:
            if arg not in params:
                raise TaskDefinitionError(
                    f"task {self.fullname}: config_args names {arg!r}, which is not a parameter "
                    f"(parameters: {', '.join(params) or 'none'})",
                    self.fullname,
                )
        policy = opts.get("env_policy")
        if policy is not None and policy not in ENV_POLICIES:
            raise TaskDefinitionError(
                f"task {self.fullname}: env_policy must be one of {ENV_POLICIES}, not {policy!r}", self.fullname
            )
        nout = opts.get("nout")
        if nout is not None and (isinstance(nout, bool) or not isinstance(nout, int) or nout < 0):
            raise InvalidNoutError(f"task {self.fullname}: nout must be a whole number >= 0, not {nout!r}",
                                   self.fullname)

    # ---------------------------------------------------------------------------------- identity
    @property
    def source(self) -> str:
        if self._source is not None:
            return self._source
        return get_source(self.func) or f"# source not available for {self.fullname}\n"

    @property
    def hash(self) -> str:
        """Remembered until the code hasher in effect forgets its code hashes (a new run) or another
        hasher is in effect."""
        generation = current_code_hasher().generation
        if self._hash is None or self._hash_generation is not generation:
            self._hash = self._compute_hash()
            self._hash_generation = generation
        return self._hash

    @property
    def code_info(self) -> CodeInfo:
        """The task's code hash with the user code it covers and the installed modules it refers to."""
        return current_code_hasher().code_info(self.func, self._source)

    @property
    def code_manifest(self) -> list[dict[str, Any]]:
        """The user code the task hash covers beyond the task's own source: helper functions, classes,
        module constants, closure variables and default values, transitively, one dict each (``kind``,
        ``name``, ``file``, ``line``, ``hash``, ``source``). Empty when ``version=`` replaces the code."""
        if self.version is not None:
            return []
        return [dict(entry) for entry in self.code_info.manifest]

    @property
    def code_manifest_json(self) -> str:
        return json.dumps(self.code_manifest, sort_keys=True)

    def _compute_hash(self) -> str:
        if self.version is not None:
            code = ("version", self.version)
        else:
            code = ("source", self.code_info.hash)
        includes = sorted(hash_value(x) for x in self.hash_includes)
        # Overrides count when they can change what a call computes; where or how it runs does not.
        relevant = {k: v for k, v in self._options_override.items() if k not in _SCHEDULING_OPTIONS}
        overrides = hash_value(relevant) if relevant else None
        # A script task runs what its function returns: that is a different computation.
        kind = "script" if self.get_task_option("script") else None
        # A context override changes the defaults and the calls the body returns: a different computation.
        context = [hash_value(self._context)] if self._context else []
        # Exported options travel with the calls the body returns, inside its recorded reduction: whole.
        export = ["export", hash_value(self._export)] if self._export else []
        return hash_struct("Task", self.fullname, *code, *includes, overrides, kind, *context, *export)

    def get_hash(self) -> str:
        return self.hash

    def __slothflow_hash__(self) -> str:
        return self.hash

    def is_valid(self) -> bool:
        """True when this task object's hash is the hash of the code currently defined for it."""
        current = _registry.get(self.fullname)
        if current is None:
            return False
        if self._options_override:
            current = current.options(**self._options_override)
        if self._context or self._export:
            current = current._copy(context=self._context, export=self._export)
        return current.hash == self.hash

    # ----------------------------------------------------------------------------------- options
    def get_task_option(self, name: str, default: Any = None) -> Any:
        for source in (self._options_override, self._export):
            if name in source:
                return source[name]
        return self._options.get(name, default)

    def get_task_options(self) -> dict[str, Any]:
        """The options in effect: ``@task(...)``, under exported ones, under ``.options(...)`` overrides."""
        return {**self._options, **self._export, **self._options_override}

    def has_task_option(self, name: str) -> bool:
        return name in self._options_override or name in self._export or name in self._options

    def options(self, **overrides: Any) -> Task:
        """A copy of this task with option overrides; the overrides are part of its hash."""
        return self._derive({**self._options_override, **overrides}, self._context, self._export)

    def _derive(self, overrides: dict[str, Any], context: dict[str, Any], export: dict[str, Any]) -> Task:
        """A copy with other overrides, context or exported options; a wrapper's signature, module and
        wrapped task stay (``wraps_task``)."""
        copy = Task(
            self.func,
            name=self.name,
            namespace=self.namespace,
            version=self.version,
            hash_includes=self.hash_includes,
            source=self._source,
            options=self._options,
            options_override=overrides,
            context=context,
            export=export,
            signature=self._base_signature,
        )
        if copy.get_task_option("nout") is None:
            copy.nout = self.nout
        copy.__module__ = self.__module__
        copy.wrapped_task = self.wrapped_task
        return copy

    def export_options(self, **options: Any) -> Task:
        """A copy of this task whose options include ``options``, and so do the options of every call its
        body returns, down the whole sub-workflow (a call's own ``.options(...)`` still win, its ``@task``
        options do not)."""
        return self._copy(export={**self._export, **options})

    def get_export_options(self) -> dict[str, Any]:
        return dict(self._export)

    # ----------------------------------------------------------------------------------- context
    @property
    def context(self) -> dict[str, Any]:
        """This task's context override (empty unless made by :meth:`update_context`)."""
        return dict(self._context)

    def update_context(self, context: dict[str, Any] | None = None, **kwargs: Any) -> Task:
        """A copy of this task whose calls run with ``context`` (and ``kwargs``) merged over the context
        they run in, nested dicts key by key: ``get_context`` in its defaults, and in every call its body
        returns, reads the merged values. ``update_context`` again merges over this override."""
        return self._with_context(merge_contexts(self._context, {**(context or {}), **kwargs}))

    def inherit(self, context: Mapping[str, Any], export: Mapping[str, Any]) -> Task:
        """This task called under a parent's context and exported options: its own win over inherited ones."""
        return self._copy(context=merge_contexts(context, self._context), export={**export, **self._export})

    def _with_context(self, context: dict[str, Any]) -> Task:
        return self._copy(context=context)

    def _copy(self, context: dict[str, Any] | None = None, export: dict[str, Any] | None = None) -> Task:
        context = self._context if context is None else context
        export = self._export if export is None else export
        if context == self._context and export == self._export:
            return self
        return self._derive(self._options_override, context, export)

    def partial(self, *args: Any, **kwargs: Any) -> PartialTask:
        return PartialTask(self, args, kwargs)

    @property
    def run_func(self) -> Callable[..., Any]:
        """What an executor calls: the function itself, or for ``script=True`` a runner of the command the
        function returns (stdout is the result)."""
        func = self.func
        if self.get_task_option("script"):
            func = functools.partial(_run_script_body, self.func)
        if self._context or self._export:
            runner = _run_in_context_async if inspect.iscoroutinefunction(self.func) else _run_in_context
            func = functools.partial(runner, func, self._context, self._export)
        return func

    # ------------------------------------------------------------------------------------ calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return TaskExpression(self, args, kwargs)

    def __repr__(self) -> str:
        return f"Task(fullname={self.fullname!r}, hash={self.hash[:8]})"

    def __reduce__(self) -> tuple[Any, ...]:
        args: tuple[Any, ...] = (self.fullname, self.hash, self._options_override, self.__module__)
        if self._context or self._export:
            args = (*args, self._context, self._export)
        return (_load_task, args)


def _signature_in_context(signature: inspect.Signature, context: dict[str, Any]) -> inspect.Signature:
    """``signature`` with the ``get_context`` expressions of its defaults read under ``context``."""
    params = [
        p.replace(default=apply_context(p.default, context))
        if p.default is not p.empty and contains_expression(p.default) else p
        for p in signature.parameters.values()
    ]
    return signature.replace(parameters=params)


def _run_in_context(func: Callable[..., Any], context: dict[str, Any], export: dict[str, Any], *args: Any,
                    **kwargs: Any) -> Any:
    """Run a body whose task has a context override or exported options: the calls it returns inherit them."""
    return apply_context(func(*args, **kwargs), context, export)


async def _run_in_context_async(func: Callable[..., Any], context: dict[str, Any], export: dict[str, Any],
                                *args: Any, **kwargs: Any) -> Any:
    return apply_context(await func(*args, **kwargs), context, export)


def _run_script_body(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    from slothflow._shell import run_command

    command = func(*args, **kwargs)
    if not isinstance(command, str):
        raise TypeError(
            f"a script task must return its shell command as a string, not {type(command).__name__}"
        )
    return run_command(command)


def _load_task(
    fullname: str, recorded_hash: str, options_override: dict[str, Any], module: str | None = None,
    context: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
) -> Task:
    """Resolve a pickled task reference to the task *currently* defined under that name.

    Binding to the current code (not the recorded hash) is what makes a replayed reduction rerun a child
    task whose code changed, instead of reusing its stale result. A task whose module is not imported yet
    (a body imported it lazily) is imported from there, so that its parent's reduction can be replayed.
    """
    task = _registry.get(fullname)
    if task is None and module and module not in ("__main__", "__mp_main__") and module not in sys.modules:
        try:
            importlib.import_module(module)
        except Exception:  # not importable here: the reduction is not replayed, the parent reruns
            pass
        task = _registry.get(fullname)
    if task is None:
        return _UndefinedTask(fullname, recorded_hash)
    if options_override:
        task = task.options(**options_override)
    return task._copy(context=context or {}, export=export or {}) if context or export else task


class _UndefinedTask(Task):
    """Stand-in for a recorded task whose code is not loaded; calling it is an error."""

    def __init__(self, fullname: str, recorded_hash: str) -> None:
        def undefined(*args: Any, **kwargs: Any) -> Any:
            raise TaskLookupError(
                f"task {fullname} is not defined in this process: import the module that defines it",
                fullname,
            )

        namespace, _, name = fullname.rpartition(".")
        self._recorded_hash = recorded_hash
        super().__init__(undefined, name=name, namespace=namespace, version="undefined")

    def _compute_hash(self) -> str:
        return self._recorded_hash

    def is_valid(self) -> bool:
        return False


class PartialTask:
    """A task with some arguments bound; calling it with the rest gives a TaskExpression."""

    def __init__(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def fullname(self) -> str:
        return self.task.fullname

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return TaskExpression(self.task, self.args + args, {**self.kwargs, **kwargs})

    def partial(self, *args: Any, **kwargs: Any) -> PartialTask:
        return PartialTask(self.task, self.args + args, {**self.kwargs, **kwargs})

    def options(self, **overrides: Any) -> PartialTask:
        return PartialTask(self.task.options(**overrides), self.args, self.kwargs)

    def get_task_option(self, name: str, default: Any = None) -> Any:
        return self.task.get_task_option(name, default)

    def get_task_options(self) -> dict[str, Any]:
        """The options of the task this partial call applies (redun's ``PartialTask.get_task_options``)."""
        return self.task.get_task_options()

    def update_context(self, context: dict[str, Any] | None = None, **kwargs: Any) -> PartialTask:
        """As :meth:`Task.update_context`, keeping the bound arguments."""
        return PartialTask(self.task.update_context(context, **kwargs), self.args, self.kwargs)

    def export_options(self, **options: Any) -> PartialTask:
        return PartialTask(self.task.export_options(**options), self.args, self.kwargs)

    def inherit(self, context: Mapping[str, Any], export: Mapping[str, Any]) -> PartialTask:
        return PartialTask(self.task.inherit(context, export), self.args, self.kwargs)

    def __slothflow_hash__(self) -> str:
        return hash_struct("PartialTask", self.task.hash, hash_value(self.args), hash_value(self.kwargs))

    def is_valid(self) -> bool:
        return self.task.is_valid()

    def __repr__(self) -> str:
        return f"PartialTask({self.task.fullname}, args={self.args!r}, kwargs={self.kwargs!r})"


def task(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    namespace: str | None = None,
    version: str | None = None,
    compat: list[str] | None = None,
    script: bool = False,
    hash_includes: list[Any] | None = None,
    source: str | None = None,
    **task_options: Any,
) -> Any:
    """Register a function as a task: ``@task`` or ``@task(name=..., version=..., cache=False, ...)``."""

    def deco(f: Callable[..., Any]) -> Task:
        if isinstance(f, Task):
            raise TaskDefinitionError(f"{f.fullname} is already a task", f.fullname)
        options = dict(task_options)
        if script:
            options["script"] = True
        t = Task(
            f,
            name=name,
            namespace=namespace,
            version=version,
            hash_includes=hash_includes,
            source=source,
            options=options,
        )
        _registry.add(t)
        return t

    if func is not None:
        return deco(func)
    return deco
