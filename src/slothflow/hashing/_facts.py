"""What one function's or class's code is, on its own: its hash and the names it uses.

These facts are computed from the object's normalized source (or its code object when there is no source)
and do not depend on anything else, so a code hasher can remember them while the object's code stays the
same; :mod:`._code` then resolves the names, per walk, to the user code they reach.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from slothflow._errors import HashingError
from slothflow.hashing._encode import _digest, hash_struct, hash_value
from slothflow.hashing._source import SourceIndex, _code_source, _parse_source, file_token, normalize_source


@dataclasses.dataclass(frozen=True)
class Facts:
    """What never changes for one function or class while its code does not."""

    own: str
    names: tuple[str, ...]  # global names the code loads
    chains: tuple[tuple[str, ...], ...] | None  # dotted references ``a.b.c`` (None: no source, use co_names)
    # ``import a.b`` / ``import a.b as z`` inside the code: (name bound, module imported, module bound to it)
    local_imports: tuple[tuple[str, str, str], ...]
    from_imports: tuple[tuple[str, str], ...]  # (module, name) imported inside the code with ``from``
    file: str | None
    line: int | None
    source: str | None
    # What the facts were computed from: a function's code object (compared by identity: autoreload swaps
    # it in place), or a class's source file and its (mtime_ns, size).
    code: Any = dataclasses.field(default=None, compare=False, repr=False)
    origin: str | None = None
    token: tuple[int, int] | None = None


_CodeRefs = tuple[set[str], set[tuple[str, ...]], set[tuple[str, str, str]], set[tuple[str, str]]]


def code_names(code: types.CodeType) -> set[str]:
    """Every name a code object (and the code objects nested in it) loads."""
    names: set[str] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        names.update(c.co_names)
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


def _dotted(node: ast.Attribute) -> tuple[str, ...] | None:
    parts: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        return (cur.id, *reversed(parts))
    return None


def scan_nodes(nodes: list[ast.AST]) -> _CodeRefs:
    """Names, dotted chains and imports anywhere in ``nodes`` (nested functions, lambdas and
    comprehensions included: they run as part of the code)."""
    names: set[str] = set()
    chains: set[tuple[str, ...]] = set()
    local_imports: set[tuple[str, str, str]] = set()
    from_imports: set[tuple[str, str]] = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                chain = _dotted(node)
                if chain is not None:
                    chains.add(chain)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        local_imports.add((alias.asname, alias.name, alias.name))
                    else:  # ``import a.b`` binds ``a``, after importing ``a.b``
                        head = alias.name.split(".")[0]
                        local_imports.add((head, alias.name, head))
            elif isinstance(node, ast.ImportFrom) and (node.level or node.module):
                # Relative imports keep their dots; they are resolved against the importing package.
                source = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name != "*":
                        from_imports.add((source, alias.name))
    return names, chains, local_imports, from_imports


def _location(code: types.CodeType | None) -> tuple[str | None, int | None]:
    if code is None:
        return None, None
    return display_path(code.co_filename), code.co_firstlineno


def display_path(path: str | None) -> str | None:
    """A file path as a user reads it: relative to the working directory when inside it."""
    if not path or path.startswith("<"):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def function_facts(func: Any, source: str | None, root: bool) -> Facts:
    """The facts of a function: of ``source`` when given (a task's ``source=``), else of its own source.
    A ``root`` (the task itself) is hashed without its decorators (they declare the task)."""
    code: types.CodeType | None = getattr(func, "__code__", None)
    if source is not None:
        text: str | None = source
    elif code is not None:
        text = _code_source(code)
    else:
        text = None
    own = compute_code_hash(func, text, keep_decorators=not root, given=source is not None)
    co_names = code_names(code) if code is not None else set()
    tree = None
    if text is not None:
        try:
            tree = _parse_source(text)
        except SyntaxError:
            tree = None
    if tree is None:
        return Facts(own, tuple(sorted(co_names)), None, (), (), *_location(code), text, code=code)
    names, chains, local_imports, from_imports = scan_nodes([tree])
    used_names = co_names & names if code is not None else names
    if not root:
        # A helper's decorators are not in its code object, but they are part of what it does.
        decorators = [d for top in tree.body if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef)
                      for d in top.decorator_list]
        used_names |= scan_nodes(list(decorators))[0]
    return Facts(own, tuple(sorted(used_names)), tuple(sorted(chains)), tuple(sorted(local_imports)),
                 tuple(sorted(from_imports)), *_location(code), text, code=code)


def class_facts(cls: type, sources: SourceIndex) -> Facts | None:
    """The facts of a class defined in a file (None without source): its whole text is its own hash; the
    names are those of the class body outside its methods (each method is walked as a function)."""
    found = sources.class_source(cls)
    if found is None:
        return None
    text, path, line = found
    try:
        tree = _parse_source(text)
        own = hash_struct("class", normalize_source(text, keep_decorators=True))
    except SyntaxError:
        return None
    # The class body outside its methods' bodies (decorators, bases, class attributes, default values):
    # the methods' own references are found from their code objects.
    parts: list[ast.AST] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ClassDef):
            parts.extend(node.decorator_list)
            parts.extend(node.bases)
            parts.extend(node.keywords)
            stack.extend(node.body)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.extend(node.decorator_list)
        else:
            parts.append(node)
    names, chains, local_imports, from_imports = scan_nodes(parts)
    return Facts(own, tuple(sorted(names)), tuple(sorted(chains)), tuple(sorted(local_imports)),
                 tuple(sorted(from_imports)), display_path(path), line, text, origin=path, token=file_token(path))


def compute_code_hash(func: Callable[..., Any], text: str | None, keep_decorators: bool = False,
                      given: bool = False) -> str:
    """The hash of a function's own code: its normalized source ``text`` (``given`` by the user, or found
    for it), or its code object when there is no source."""
    code = getattr(func, "__code__", None)
    if text is not None:
        lambda_code = code if not given and getattr(func, "__name__", "") == "<lambda>" else None
        try:
            normalized = normalize_source(text, keep_decorators)
        except SyntaxError:
            # A lambda inside a larger expression, for example: hash the raw text instead.
            normalized = None
        if lambda_code is not None:
            # The source of a lambda is the whole statement around it, which may hold several lambdas:
            # the code object tells them apart.
            return hash_struct("lambda", normalized or text.strip(), code_object_digest(lambda_code))
        if normalized is not None:
            return hash_struct("source", normalized)
        return hash_struct("text", text.strip())
    if code is None:
        raise HashingError(f"cannot hash the code of {func!r}: it has no source and no code object")
    # Without source, default values are not part of any text we hash: add them explicitly.
    defaults: list[str | None] = []
    for d in (getattr(func, "__defaults__", None), getattr(func, "__kwdefaults__", None)):
        if d:
            try:
                defaults.append(hash_value(d))
            except HashingError:
                defaults.append(repr(sorted(d) if isinstance(d, dict) else d))
        else:
            defaults.append(None)
    return hash_struct("code", code_object_digest(code), *defaults)


def code_object_digest(code: types.CodeType) -> bytes:
    """A digest of a code object, for functions defined without source (REPL, ``exec``).

    It covers the bytecode, constants (recursively), names and signature shape, so any change of the
    function changes it. Bytecode differs between Python versions, so such tasks are cached per
    interpreter version.
    """
    h = hashlib.sha256()
    h.update(sys.version.split()[0].encode())
    h.update(code.co_code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.update(code_object_digest(const))
        else:
            h.update(_digest(const, 0))
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_argcount,
                   code.co_kwonlyargcount, code.co_flags)).encode())
    return h.digest()
