"""Hashing of code.

Code is hashed from its normalized source: the function's AST with decorators and the docstring
removed, printed by ``ast.unparse``, so comments and formatting do not count but any real change does.
A function's hash also covers the user code it reaches (helpers, classes, constants, closures), and a
class's hash the code of its methods, so that a value or a task changes key when that code changes.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import hashlib
import importlib.util
import inspect
import os
import pathlib
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from slothflow._errors import HashingError
from slothflow._util import preview
from slothflow.hashing._encode import _active, _digest, _qualname, functools_partial, hash_struct, hash_value
from slothflow.hashing._source import (
    _class_source,
    _code_source,
    _parse_source,
    _unwrap_method,
    normalize_source,
)

_class_code_cache: weakref.WeakKeyDictionary[type, bytes] = weakref.WeakKeyDictionary()


def class_code(cls: type) -> bytes:
    """For a class of the user's own code: a digest of its code, transitively (its source, its user-code bases,
    and the helpers and constants its methods use), so that an instance, or the class itself, passed as a
    value changes hash when that code changes; empty for other classes."""
    try:
        cached = _class_code_cache.get(cls)
    except TypeError:
        return b""
    if cached is not None:
        return cached
    module = getattr(cls, "__module__", None)
    if not _is_user_code(module) or (module or "").startswith("slothflow") or cls.__module__ == "builtins":
        digest = b""
    elif getattr(_walking, "classes", None):
        # Hashing a constant inside another class walk: the outer walk covers the code; avoid the recursion.
        facts = _class_facts(cls)
        digest = hash_struct("classcode", facts.own).encode() if facts is not None else b""
    else:
        digest = _class_walk(cls).encode()
    _class_code_cache[cls] = digest
    return digest


def _class_walk(cls: type) -> str:
    walk = _CodeWalk(cls, None)
    walk.seen.discard(id(cls))
    walk.todo.append(("class", "", cls))
    _walking.classes = True
    try:
        while walk.todo:
            walk._visit(*walk.todo.popleft())
    finally:
        _walking.classes = False
    parts = sorted(f"{e['kind']}:{walk._relative(e['name'])}={e['hash']}" for e in walk.entries.values())
    return hash_struct("classcode+", *parts) if parts else ""


# --------------------------------------------------------------------------------------------- code


# ------------------------------------------------------------------------------- transitive code
#
# A function's code hash covers its own normalized source and, beyond it, the user code it reaches: the plain
# functions, classes (with their methods), module constants, closure variables and default values it refers
# to, transitively, within the user's own modules. The walk is breadth-first over objects (so cycles and deep
# call chains cost nothing special) and the result is a *set* of items, each hashed from its own source or
# value: the same starting function gives the same hash whatever order the items are met in. Per-object
# facts (normalized source, referenced names) are computed once per process; only name resolution is redone.


@dataclasses.dataclass(frozen=True)
class CodeInfo:
    """What a function's code hash covers.

    ``own`` hashes the function's normalized source; ``manifest`` lists the user code beyond it that the hash
    covers, one dict per item: ``kind`` (function, class, constant, closure, default), ``name``, ``file``,
    ``line``, ``hash`` and ``source`` (the source text, or a short repr of a value). ``modules`` are the
    top-level names of installed (non-user, non-standard-library) modules the code refers to.
    """

    hash: str
    own: str
    manifest: tuple[dict[str, Any], ...]
    modules: frozenset[str]


# Per function object (code objects compare equal across functions that differ only in default values
# or annotations, so they cannot be the key), then per ``source`` override.
_code_info_cache: weakref.WeakKeyDictionary[Any, dict[str | None, CodeInfo]] = weakref.WeakKeyDictionary()
_walking = threading.local()


def forget_code_hashes() -> None:
    """Drop every computed code hash, so the next ones see the code and module values as they are now (a
    notebook cell may have redefined a helper or a constant since). Parsed sources stay cached."""
    global code_generation
    code_generation += 1
    _code_info_cache.clear()
    _class_code_cache.clear()


code_generation = 0


def function_code_hash(func: Callable[..., Any], source: str | None = None) -> str:
    """Hash of a function's code: its normalized source (or code object when there is no source), plus
    the user code it refers to, transitively (see :func:`code_info`)."""
    return code_info(func, source).hash


def code_info(func: Callable[..., Any], source: str | None = None) -> CodeInfo:
    """The code hash of ``func`` with the list of user code it covers (computed once per function)."""
    try:
        per_func = _code_info_cache.get(func)
    except TypeError:  # not weak-referenceable
        per_func = None
    if per_func is not None and source in per_func:
        return per_func[source]
    active: set[int] | None = getattr(_walking, "active", None)
    if active is None:
        active = _walking.active = set()
    # A walk started while another one runs (a function inside a constant's value) may be cut short by
    # the self-reference guards of value hashing: its result is not remembered.
    nested = bool(active)
    active.add(id(func))
    try:
        info = _CodeWalk(func, source).run()
    finally:
        active.discard(id(func))
    if not nested:
        try:
            _code_info_cache.setdefault(func, {})[source] = info
        except TypeError:
            pass
    return info


@dataclasses.dataclass
class _Facts:
    """What never changes for one function or class object: its own hash and the names its code uses."""

    own: str
    names: tuple[str, ...]  # global names the code loads
    chains: tuple[tuple[str, ...], ...] | None  # dotted references ``a.b.c`` (None: no source, use co_names)
    local_imports: tuple[tuple[str, str], ...]  # (alias, module) imported inside the body
    from_imports: tuple[tuple[str, str], ...]  # (module, name) imported inside the body with ``from``
    file: str | None
    line: int | None
    source: str | None


_facts_cache: weakref.WeakKeyDictionary[Any, dict[tuple[str | None, bool], _Facts]] = weakref.WeakKeyDictionary()
_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)
_MAX_CONTAINER_SCAN = 1000


def _code_names(code: types.CodeType) -> set[str]:
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


def _scan_nodes(nodes: list[ast.AST]) -> tuple[set[str], set[tuple[str, ...]], set[tuple[str, str]],
                                                 set[tuple[str, str]]]:
    names: set[str] = set()
    chains: set[tuple[str, ...]] = set()
    local_imports: set[tuple[str, str]] = set()
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
                        local_imports.add((alias.asname, alias.name))
                    else:
                        local_imports.add((alias.name.split(".")[0], alias.name.split(".")[0]))
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
    return _display_path(code.co_filename), code.co_firstlineno


def _display_path(path: str | None) -> str | None:
    """A file path as a user reads it: relative to the working directory when inside it."""
    if not path or path.startswith("<"):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _function_facts(func: Any, source: str | None, root: bool) -> _Facts:
    key = (source, root)
    try:
        per = _facts_cache.get(func)
    except TypeError:
        per = None
    if per is not None and key in per:
        return per[key]
    code: types.CodeType | None = getattr(func, "__code__", None)
    if source is not None:
        text: str | None = source
    elif code is not None:
        text = _code_source(code)
    else:
        text = None
    own = _compute_code_hash(func, text, keep_decorators=not root, given=source is not None)
    co_names = _code_names(code) if code is not None else set()
    tree = None
    if text is not None:
        try:
            tree = _parse_source(text)
        except SyntaxError:
            tree = None
    if tree is not None:
        names, chains, local_imports, from_imports = _scan_nodes([tree])
        used_names = co_names & names if code is not None else names
        if not root:
            # A helper's decorators are not in its code object, but they are part of what it does.
            decorators = [d for top in tree.body if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef)
                          for d in top.decorator_list]
            used_names |= _scan_nodes(list(decorators))[0]
        used = tuple(sorted(used_names))
        facts = _Facts(own, used, tuple(sorted(chains)), tuple(sorted(local_imports)), tuple(sorted(from_imports)),
                       *_location(code), text)
    else:
        facts = _Facts(own, tuple(sorted(co_names)), None, (), (), *_location(code), text)
    try:
        _facts_cache.setdefault(func, {})[key] = facts
    except TypeError:
        pass
    return facts


# (kind, qualified name) -> (object, digest, preview) of module values as first hashed in this process.
_pinned_values: dict[tuple[str, str], tuple[Any, str, str]] = {}


def _class_facts(cls: type) -> _Facts | None:
    try:
        per = _facts_cache.get(cls)
    except TypeError:
        per = None
    if per is not None and (None, False) in per:
        return per[(None, False)]
    found = _class_source(cls)
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
    names, chains, local_imports, from_imports = _scan_nodes(parts)
    facts = _Facts(own, tuple(sorted(names)), tuple(sorted(chains)), tuple(sorted(local_imports)),
                   tuple(sorted(from_imports)), _display_path(path), line, text)
    try:
        _facts_cache.setdefault(cls, {})[(None, False)] = facts
    except TypeError:
        pass
    return facts


def _short_preview(value: Any) -> str:
    return preview(value)


def _is_slothflow_object(value: Any) -> bool:
    module = getattr(type(value), "__module__", "") or ""
    return module == "slothflow" or module.startswith("slothflow.")


def _function_name(func: types.FunctionType) -> str:
    """Where a function's code is defined: ``functools.wraps`` copies the wrapped function's names onto a
    wrapper, but not its code object's."""
    module = func.__globals__.get("__name__") if isinstance(func.__globals__, dict) else None
    return f"{module or func.__module__}.{func.__code__.co_qualname}"


class _CodeWalk:
    """One breadth-first walk from a function over the user code it reaches."""

    def __init__(self, root: Callable[..., Any], source: str | None) -> None:
        self.root = root
        self.source = source
        module = getattr(root, "__module__", None) or ""
        # Names are hashed relative to the root's module (and its package), so that the same code imported
        # under another name (``wf`` or ``pkg.wf``, a copy of the project) hashes the same.
        self.prefixes = tuple(p + "." for p in (module, module.rpartition(".")[0]) if p)
        self.entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.modules: set[str] = set()
        self.seen: set[int] = {id(root)}
        self.seen_values: set[tuple[int, str]] = set()
        self.keep: list[Any] = [root]  # visited objects stay alive, so their ids stay unique during the walk
        self.todo: collections.deque[tuple[str, str, Any]] = collections.deque()

    def run(self) -> CodeInfo:
        facts = _function_facts(self.root, self.source, root=True)
        self._function_refs(self.root, facts, root=True)
        todo = self.todo
        while todo:
            self._visit(*todo.popleft())
        manifest = tuple(self.entries[k] for k in sorted(self.entries))
        if manifest:
            # File and line never count: moving code around is not a change.
            parts = sorted(f"{e['kind']}:{self._relative(e['name'])}={e['hash']}" for e in manifest)
            combined = hash_struct("code+", facts.own, *parts)
        else:
            combined = facts.own
        return CodeInfo(combined, facts.own, manifest, frozenset(self.modules))

    def _relative(self, name: str) -> str:
        for prefix in self.prefixes:
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def _add(self, kind: str, name: str, digest: str, file: str | None, line: int | None, source: str | None) -> None:
        self.entries.setdefault((name, kind, digest), {
            "kind": kind, "name": name, "file": file, "line": line, "hash": digest, "source": source,
        })

    def _note_module(self, module_name: str | None) -> None:
        if not module_name:
            return
        top = module_name.split(".")[0]
        if top == "slothflow" or top in sys.builtin_module_names or top in sys.stdlib_module_names:
            return
        if not _is_user_code(module_name):
            self.modules.add(top)

    def _function_refs(self, func: Any, facts: _Facts, root: bool = False) -> None:
        todo = self.todo
        glb = getattr(func, "__globals__", None)
        if not isinstance(glb, dict):
            glb = {}
        module_name = str(glb.get("__name__") or getattr(func, "__module__", "") or "")
        for name in facts.names:
            if name in glb:
                todo.append(("constant", f"{module_name}.{name}", glb[name]))
        imports = dict(facts.local_imports)
        for module in imports.values():
            self._note_module(module)
        if facts.chains is not None:
            for chain in facts.chains:
                head = chain[0]
                if head in imports:
                    target = sys.modules.get(imports[head])
                elif head in glb and head in facts.names:
                    target = glb[head]
                else:
                    continue
                if isinstance(target, types.ModuleType):
                    self._follow(target, chain[1:])
        else:  # no source: any attribute name the code uses may be taken from a module it refers to
            code = getattr(func, "__code__", None)
            attrs = sorted(_code_names(code)) if code is not None else []
            for name in facts.names:
                target = glb.get(name)
                if isinstance(target, types.ModuleType):
                    for attr in attrs:
                        self._follow(target, (attr,))
        package = str(glb.get("__package__") or module_name.rpartition(".")[0])
        for module, attr in facts.from_imports:
            if module.startswith("."):
                try:
                    module = importlib.util.resolve_name(module, package)
                except (ImportError, ValueError):
                    continue
            self._note_module(module)
            target = sys.modules.get(module)
            if target is not None:
                self._follow(target, (attr,))
                imported = getattr(target, attr, None)
                if isinstance(imported, types.ModuleType) and facts.chains is not None:
                    # ``from . import helpers`` then ``helpers.compute(x)``: follow the attribute chains too.
                    for chain in facts.chains:
                        if chain[0] == attr:
                            self._follow(imported, chain[1:])
        owner = _qualname(func)
        code = getattr(func, "__code__", None)
        closure = getattr(func, "__closure__", None)
        if code is not None and closure:
            for var, cell in zip(code.co_freevars, closure):
                try:
                    todo.append(("closure", f"{owner}::{var}", cell.cell_contents))
                except ValueError:  # an empty cell: a name not bound yet
                    continue
        if root or code is None:
            return  # a task's default values are part of its arguments, hashed with each call
        defaults = getattr(func, "__defaults__", None) or ()
        if defaults:
            params = code.co_varnames[:code.co_argcount][-len(defaults):]
            for param, value in zip(params, defaults):
                todo.append(("default", f"{owner}::{param}", value))
        kwdefaults = getattr(func, "__kwdefaults__", None) or {}
        for param in sorted(kwdefaults):
            todo.append(("default", f"{owner}::{param}", kwdefaults[param]))

    def _follow(self, module: types.ModuleType, attrs: tuple[str, ...]) -> None:
        """Resolve ``module.a.b``: through user modules, to the first object that is not a module."""
        for attr in attrs:
            name = getattr(module, "__name__", "")
            if not _is_user_code(name):
                self._note_module(name)
                return
            value = getattr(module, attr, _MISSING)
            if value is _MISSING:
                return
            if not isinstance(value, types.ModuleType):
                self.todo.append(("constant", f"{name}.{attr}", value))
                return
            module = value
        self._note_module(getattr(module, "__name__", ""))

    def _visit(self, kind: str, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType):
            self._note_module(value.__name__)
            return
        if _is_slothflow_object(value):
            return  # tasks are cached on their own; the engine's objects are not user code
        if isinstance(value, types.MethodType):
            self.todo.append((kind, name, value.__func__))
            self.todo.append((kind, name, value.__self__))
            return
        if isinstance(value, types.FunctionType):
            self._visit_function(value)
            return
        if isinstance(value, type):
            self._visit_class(value)
            return
        if isinstance(value, staticmethod | classmethod | property):
            for part in (getattr(value, a, None) for a in ("__func__", "fget", "fset", "fdel")):
                if part is not None:
                    self.todo.append((kind, name, part))
            return
        cls = type(value)
        user_type = _is_user_code(getattr(cls, "__module__", None)) and cls.__module__ != "builtins"
        if user_type:
            self.todo.append(("class", "", cls))
        else:
            self._note_module(getattr(cls, "__module__", None))
        if callable(value) and not user_type and not isinstance(value, functools_partial()):
            try:
                wrapped = inspect.unwrap(value)
            except Exception:
                wrapped = value
            if isinstance(wrapped, types.FunctionType):  # functools.lru_cache and other C-level wrappers
                self._visit_function(wrapped)
            return  # a library's callable (a ufunc, a builtin): its package version is what can change
        key = id(value)
        if (key, name) in self.seen_values:
            return
        self.seen_values.add((key, name))
        self.keep.append(value)
        pinned = _pinned_values.get((kind, name))
        if pinned is not None and pinned[0] is value:
            # The same object as when first hashed in this process: a memo or list that task bodies filled
            # in place since is state, not code. A name bound to another object (a notebook cell re-run,
            # ``K = 500``) is hashed anew.
            self._add(kind, name, pinned[1], None, None, pinned[2])
            return
        # Tasks held in a constant (a table of steps) are cached on their own: the constant names them, and
        # an edit of one must not rerun every task that consults the table.
        _active.tasks_by_name = True
        try:
            digest = hash_value(value)
        except Exception:  # no deterministic hash (a lock, a connection): nothing to compare it by
            return
        finally:
            _active.tasks_by_name = False
        shown = _short_preview(value)
        _pinned_values[(kind, name)] = (value, digest, shown)
        self._add(kind, name, digest, None, None, shown)
        if isinstance(value, list | tuple | set | frozenset | dict):
            # Classes inside a constant (a registry of types) are hashed by name in its value: add their code.
            items = list(value.values()) if isinstance(value, dict) else list(value)
            for item in items[:_MAX_CONTAINER_SCAN]:
                if isinstance(item, type):
                    self.todo.append(("class", "", item))

    def _visit_function(self, func: types.FunctionType) -> None:
        if id(func) in self.seen:
            return
        self.seen.add(id(func))
        self.keep.append(func)
        if not _is_user_code(func.__module__):
            self._note_module(func.__module__)
            return
        facts = _function_facts(func, None, root=False)
        self._add("function", _function_name(func), facts.own, facts.file, facts.line, facts.source)
        self._function_refs(func, facts)
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            self.todo.append(("function", "", wrapped))

    def _visit_class(self, cls: type) -> None:
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        self.keep.append(cls)
        if not _is_user_code(cls.__module__) or cls.__module__ == "builtins":
            self._note_module(cls.__module__)
            return
        facts = _class_facts(cls)
        module = sys.modules.get(cls.__module__)
        if facts is None:
            # No source (defined through exec, or by type()): its methods' code is all there is.
            self._add("class", _qualname(cls), hash_struct("class-nosource", _qualname(cls)), None, None, None)
        else:
            self._add("class", _qualname(cls), facts.own, facts.file, facts.line, facts.source)
            glb = getattr(module, "__dict__", {})
            holder = types.SimpleNamespace(__globals__=glb, __module__=cls.__module__, __qualname__=cls.__qualname__)
            self._function_refs(holder, facts, root=True)
        for base in cls.__bases__:
            self.todo.append(("class", "", base))
        own_prefix = cls.__qualname__ + "."
        for attr in sorted(vars(cls)):
            member = _unwrap_method(vars(cls)[attr])
            parts = [getattr(member, a, None) for a in ("fget", "fset", "fdel")] if isinstance(member, property) \
                else [member]
            for part in parts:
                if isinstance(part, types.FunctionType) and part.__qualname__.startswith(own_prefix):
                    if id(part) in self.seen:
                        continue
                    self.seen.add(id(part))
                    # The method's text is part of the class's; only what it refers to is added.
                    self._function_refs(part, _function_facts(part, None, root=False))
                    if facts is None:
                        self._add("function", _qualname(part), _function_facts(part, None, root=False).own,
                                  None, None, None)
                elif isinstance(part, types.FunctionType):
                    self.todo.append(("function", "", part))


_MISSING = object()


_user_code_cache: dict[str, bool] = {}


def _is_user_code(module_name: str | None) -> bool:
    """True for the user's own modules (scripts, notebooks, their package), false for slothflow, the
    standard library and installed packages."""
    if not module_name:
        return True
    known = _user_code_cache.get(module_name)
    if known is not None:
        return known
    result = True
    top = module_name.split(".")[0]
    if top == "slothflow" or top in sys.builtin_module_names or top in sys.stdlib_module_names:
        result = False
    else:
        module = sys.modules.get(module_name)
        path = getattr(module, "__file__", None)
        if path:
            import sysconfig

            real = str(pathlib.Path(path).resolve())
            parts = pathlib.Path(real).parts
            if "site-packages" in parts or "dist-packages" in parts:
                result = False
            for key in ("stdlib", "platstdlib", "purelib", "platlib"):
                prefix = sysconfig.get_paths().get(key)
                if prefix and real.startswith(str(pathlib.Path(prefix).resolve())):
                    result = False
                    break
    _user_code_cache[module_name] = result
    return result


def _compute_code_hash(func: Callable[..., Any], text: str | None, keep_decorators: bool = False,
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
