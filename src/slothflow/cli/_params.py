"""Command-line parameters typed from a task's annotations (``slothflow run wf.py main --n 3``).

A ``list[...]`` parameter takes its values as ``--xs a b c`` (several after one flag, as redun's CLI does),
``--xs a --xs b`` or ``--xs '["a", "b"]'``; each element is converted and checked against the element type.
"""

from __future__ import annotations

import datetime
import enum
import inspect
import json
import types
import typing
from typing import Any

import click

from slothflow.files._file import File
from slothflow.model._task import Task
from slothflow.model._value import Value, get_proxy


class _Parsed(click.ParamType):
    """A click type that converts with a function, reporting bad input as a usage error."""

    def __init__(self, name: str, convert: Any) -> None:
        self.name = name
        self._convert = convert

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._convert(value)
        except Exception as exc:
            self.fail(f"{value!r} is not a valid {self.name}: {exc}", param, ctx)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on", "t"):
        return True
    if lowered in ("0", "false", "no", "n", "off", "f"):
        return False
    raise ValueError("use true or false")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object ({{...}}), got a JSON {type(value).__name__}")
    return value


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, multiple) for an annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _click_type(members[0]) if len(members) == 1 else (click.STRING, False)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        inner = typing.get_args(annotation)
        item = inner[0] if inner and inner[0] is not Ellipsis else str
        return _click_type(item)[0], True
    if origin is dict or annotation is dict:
        return _Parsed("JSON object", _json_object), False
    if annotation is bool:
        return _Parsed("boolean", _bool), False
    if annotation is int:
        return click.INT, False
    if annotation is float:
        return click.FLOAT, False
    if annotation is datetime.datetime:
        return _Parsed("datetime", datetime.datetime.fromisoformat), False
    if annotation is datetime.date:
        return _Parsed("date", datetime.date.fromisoformat), False
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            cls = annotation
            return _Parsed(f"{cls.__name__} ({'|'.join(cls.__members__)})", lambda t: cls[t]), False
        if issubclass(annotation, File):
            return _Parsed("file path", annotation), False
        if issubclass(annotation, Value):
            cls2 = annotation
            return _Parsed(cls2.__name__, lambda t: cls2.parse_arg(cls2, t)), False
        proxy = get_proxy(annotation)
        if proxy is not None:
            raw = annotation
            return _Parsed(raw.__name__, lambda t: proxy.parse_arg(raw, t)), False
    return click.STRING, False


def _help(annotation: Any, multiple: bool) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    shown = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
    return f"({shown})" + (" one or more values, or a JSON list" if multiple else "")


def task_command(task: Task) -> click.Command:
    """A click command whose options are the task's parameters."""
    try:
        hints = typing.get_type_hints(task.func)
    except Exception:
        hints = {}
    params: list[click.Parameter] = []
    for name, param in task.signature.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(name, param.annotation)
        if annotation is inspect.Parameter.empty and param.default not in (inspect.Parameter.empty, None):
            annotation = type(param.default)
        ctype, multiple = _click_type(annotation)
        required = param.default is inspect.Parameter.empty
        opts = [f"--{name}", name]
        if "_" in name:
            opts.insert(1, f"--{name.replace('_', '-')}")
        extra: dict[str, Any] = {}
        if not required and param.default is not None:
            extra["default"] = param.default
        params.append(
            click.Option(
                opts,
                type=ctype,
                multiple=multiple,
                required=required,
                show_default=not required,
                help=_help(annotation, multiple),
                **extra,
            )
        )
    doc = (task.func.__doc__ or "").strip()
    return click.Command(task.fullname, params=params, help=doc, add_help_option=True)


def _expand_lists(cmd: click.Command, args: list[str]) -> list[str]:
    """``--xs a b`` and ``--xs '["a", "b"]'`` as ``--xs a --xs b``, which click understands.

    The values of a list option run until the next word that starts with ``--``.
    """
    multiple = {opt for p in cmd.params if isinstance(p, click.Option) and p.multiple for opt in p.opts}
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        flag, eq, inline = word.partition("=")
        i += 1
        if flag not in multiple:
            out.append(word)
            continue
        values = [inline] if eq else []
        while i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        if not values:
            out.append(flag)  # click reports the missing value
        for value in values:
            for item in _json_items(value):
                out += [flag, item]
    return out


def _json_items(value: str) -> list[str]:
    """The elements of a JSON list as words (strings as themselves), or ``[value]`` when it is not one."""
    if not value.lstrip().startswith("["):
        return [value]
    try:
        items = json.loads(value)
    except ValueError:
        return [value]
    if not isinstance(items, list):
        return [value]
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


def _collection(annotation: Any) -> type:
    """The container a multiple option's values go in: the annotation's own (list, tuple, set, frozenset)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(candidate) or candidate
        if origin in (list, tuple, set, frozenset):
            return origin
    return list


def parse_task_args(task: Task, args: list[str]) -> dict[str, Any]:
    """Parse ``--name value`` words into the task's keyword arguments (raises click errors)."""
    cmd = task_command(task)
    ctx = cmd.make_context(f"slothflow run ... {task.name}", _expand_lists(cmd, list(args)))
    values = dict(ctx.params)
    try:
        hints = typing.get_type_hints(task.func)
    except Exception:
        hints = {}
    out: dict[str, Any] = {}
    for name, param in task.signature.parameters.items():
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, tuple):
            if not value and param.default is not inspect.Parameter.empty:
                continue
            annotation = hints.get(name, param.annotation)
            if annotation is inspect.Parameter.empty:
                annotation = type(param.default)
            value = _collection(annotation)(value)
        if value is None and param.default is not inspect.Parameter.empty:
            continue
        out[name] = value
    return out
