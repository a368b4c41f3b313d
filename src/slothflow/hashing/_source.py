"""Finding and normalizing the source of functions and classes, for code hashing."""

from __future__ import annotations

import ast
import inspect
import linecache
import os
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Any


def _parse_source(source: str) -> ast.Module:
    """Parse a (possibly indented) snippet of source, such as a method or a nested function."""
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        # dedent gives up when a multi-line string has lines less indented than the code around it;
        # wrapping the snippet in a block keeps the indentation legal without changing string contents.
        wrapped = ast.parse("if 1:\n" + source)
        block = wrapped.body[0]
        assert isinstance(block, ast.If)
        return ast.Module(body=block.body, type_ignores=[])


def _drop_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module) -> None:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:] or [ast.Pass()]


def normalize_source(source: str, keep_decorators: bool = False) -> str:
    """The canonical text of a function's source: no decorators, docstring, comments or formatting.

    Only the decorators of the outermost definition are dropped (they are how a task is declared), unless
    ``keep_decorators`` (a helper's decorators change what it does); the decorators of functions and classes
    defined inside the body are code like any other.
    """
    tree = _parse_source(source)
    for top in tree.body:
        if not keep_decorators and isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            top.decorator_list = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            _drop_docstring(node)
    return ast.unparse(tree)


def get_source(func: Callable[..., Any]) -> str | None:
    """The source text of a function, or None when Python cannot find it (REPL, exec)."""
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return None


def _code_source(code: types.CodeType) -> str | None:
    # From the code object, not the function: inspect.getsource(function) follows ``__wrapped__`` and would
    # give a decorator's wrapper the source of the function it wraps.
    try:
        return inspect.getsource(code)
    except (OSError, TypeError, IndexError):
        return None


def file_token(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a source file: what tells that it was edited since it was read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class SourceIndex:
    """Class sources, located through one parse per file (``inspect.getsource`` parses the whole file per
    class). A file's index is kept until the file's size or mtime changes, so that a long-lived process (a
    notebook, a test session) that reloads an edited module sees the new source."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int] | None, list[str], dict[str, list[tuple[int, int]]]]] = {}

    def class_source(self, cls: type) -> tuple[str, str, int] | None:
        """(source, file, first line) of a class defined in a file, decorators included."""
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None)
        if not path:
            return None
        token = file_token(path)
        cached = self._files.get(path)
        if cached is not None and cached[0] != token:
            linecache.checkcache(path)  # the lines linecache holds are the old ones too
        lines = linecache.getlines(path, getattr(module, "__dict__", None))
        if not lines:
            return None
        if cached is None or cached[0] != token or cached[1] is not lines:
            spans = _class_spans(lines)
            if spans is None:
                return None
            cached = self._files[path] = (token, lines, spans)
        candidates = cached[2].get(cls.__qualname__)
        if not candidates:
            return None
        span = _defining_span(cls, candidates)
        return "".join(lines[span[0] - 1:span[1]]), path, span[0]


def _class_spans(lines: list[str]) -> dict[str, list[tuple[int, int]]] | None:
    """Where each class of a file is defined, by qualified name (None when the file does not parse)."""
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return None
    spans: dict[str, list[tuple[int, int]]] = {}
    # Statements only (classes are defined by statements): expressions, the bulk of a file, are skipped.
    stack: list[tuple[list[Any], str]] = [(tree.body, "")]
    while stack:
        body, prefix = stack.pop()
        for child in body:
            if isinstance(child, ast.ClassDef):
                qual = prefix + child.name
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans.setdefault(qual, []).append((start, child.end_lineno or child.lineno))
                stack.append((child.body, qual + "."))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                stack.append((child.body, prefix + child.name + ".<locals>."))
            else:
                for attr in ("body", "orelse", "finalbody", "handlers", "cases"):
                    inner = getattr(child, attr, None)
                    if isinstance(inner, list):
                        stack.append((inner, prefix))
                        if attr in ("handlers", "cases"):
                            stack.extend((getattr(h, "body", []), prefix) for h in inner)
    return spans


def _defining_span(cls: type, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """Of several definitions of one class name (``try``/``except`` fallbacks, ``if``/``else`` variants), the one
    the class object came from: the span holding its methods' first lines (else the last one)."""
    if len(spans) == 1:
        return spans[0]
    for member in vars(cls).values():
        code = getattr(_unwrap_method(member), "__code__", None)
        if code is not None:
            line = code.co_firstlineno
            for span in spans:
                if span[0] <= line <= span[1]:
                    return span
    return max(spans)


def _unwrap_method(value: Any) -> Any:
    if isinstance(value, staticmethod | classmethod):
        return value.__func__
    return value
