"""Hashing of code, transitively.

Code is hashed from its normalized source: the function's AST with decorators and the docstring
removed, printed by ``ast.unparse``, so comments and formatting do not count but any real change does.
A function's hash also covers the user code it reaches (helpers, classes, constants, closures, and the
modules it imports, at module level or inside a function body), and a class's hash the code of its
methods, so that a value or a task changes key when that code changes.

Every memo lives in a :class:`CodeHasher`, whose owner decides its lifetime: a scheduler activates its
hasher with :func:`use_code_hasher` (and calls :meth:`CodeHasher.forget` at the start of each run); code
outside any scheduler uses the process's default one. The module functions (:func:`code_info`,
:func:`function_code_hash`, :func:`class_code`, :func:`forget_code_hashes`) act on the hasher in effect.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import importlib.util
import inspect
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from slothflow._util import preview
from slothflow.hashing._encode import _active, _qualname, functools_partial, hash_struct, hash_value
from slothflow.hashing._facts import (
    Facts,
    class_facts,
    code_names,
    code_object_digest,
    display_path,
    function_facts,
)
from slothflow.hashing._modules import UserModules
from slothflow.hashing._source import SourceIndex, _unwrap_method, file_token

__all__ = [
    "CodeHasher", "CodeInfo", "class_code", "code_info", "code_object_digest", "current_code_hasher",
    "default_code_hasher", "forget_code_hashes", "function_code_hash", "use_code_hasher",
]

_MAX_CONTAINER_SCAN = 1000
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class CodeInfo:
    """What a function's code hash covers.

    ``own`` hashes the function's normalized source; ``manifest`` lists the user code beyond it that the hash
    covers, one dict per item: ``kind`` (function, class, constant, closure, default, import), ``name``,
    ``file``, ``line``, ``hash`` and ``source`` (the source text, or a short repr of a value). ``modules`` are
    the top-level names of installed (non-user, non-standard-library) modules the code refers to.
    """

    hash: str
    own: str
    manifest: tuple[dict[str, Any], ...]
    modules: frozenset[str]


class CodeHasher:
    """Computes code hashes and owns every memo they need, each with its own lifetime:

    - code infos and class digests: until :meth:`forget` (a new run must see helpers or module constants a
      notebook redefined since the last one);
    - per-object facts (normalized source, names used): while the object lives and its code is the same
      (a function's code object, a class's source file by size and mtime);
    - module values as first hashed (pins): for the hasher's life, so that a memo filled in place by task
      bodies is state, not a code change, for every run of one owner;
    - the user-code rule per module name, and class sources per file (until the file changes).
    """

    def __init__(self) -> None:
        self.generation = object()  # replaced by forget(): what hashes computed from this hasher depend on
        self.modules = UserModules()
        self.sources = SourceIndex()
        # Per function object (code objects compare equal across functions that differ only in default values
        # or annotations, so they cannot be the key), then per ``source`` override.
        self._infos: weakref.WeakKeyDictionary[Any, dict[str | None, CodeInfo]] = weakref.WeakKeyDictionary()
        self._class_codes: weakref.WeakKeyDictionary[type, bytes] = weakref.WeakKeyDictionary()
        self._facts: weakref.WeakKeyDictionary[Any, dict[tuple[str | None, bool], Facts]] = \
            weakref.WeakKeyDictionary()
        # (kind, qualified name) -> (object, digest, preview) of module values as first hashed.
        self.pinned: dict[tuple[str, str], tuple[Any, str, str]] = {}
        self._local = threading.local()  # per thread: the walks in progress (recursion guards)

    def forget(self) -> None:
        """Drop every computed code hash, so the next ones see the code and module values as they are now.
        Parsed sources and facts stay (they are checked against the code they came from)."""
        self.generation = object()
        self._infos.clear()
        self._class_codes.clear()
        self.modules.forget_failures()

    def function_code_hash(self, func: Callable[..., Any], source: str | None = None) -> str:
        """Hash of a function's code: its normalized source (or code object when there is no source), plus
        the user code it refers to, transitively (see :meth:`code_info`)."""
        return self.code_info(func, source).hash

    def code_info(self, func: Callable[..., Any], source: str | None = None) -> CodeInfo:
        """The code hash of ``func`` with the list of user code it covers (computed once per generation)."""
        try:
            per_func = self._infos.get(func)
        except TypeError:  # not weak-referenceable
            per_func = None
        if per_func is not None and source in per_func:
            return per_func[source]
        active: set[int] | None = getattr(self._local, "active", None)
        if active is None:
            active = self._local.active = set()
        # A walk started while another one runs (a function inside a constant's value) may be cut short by
        # the self-reference guards of value hashing: its result is not remembered.
        nested = bool(active)
        active.add(id(func))
        try:
            info = _CodeWalk(self, func, source).run()
        finally:
            active.discard(id(func))
        if not nested:
            try:
                self._infos.setdefault(func, {})[source] = info
            except TypeError:
                pass
        return info

    def class_code(self, cls: type) -> bytes:
        """For a class of the user's own code: a digest of its code, transitively (its source, its user-code
        bases, and the helpers and constants its methods use), so that an instance, or the class itself,
        passed as a value changes hash when that code changes; empty for other classes."""
        try:
            cached = self._class_codes.get(cls)
        except TypeError:
            return b""
        if cached is not None:
            return cached
        module = getattr(cls, "__module__", None)
        if not self.is_user_code(module) or (module or "").startswith("slothflow") or cls.__module__ == "builtins":
            digest = b""
        elif getattr(self._local, "classes", False):
            # Hashing a constant inside another class walk: the outer walk covers the code; avoid the recursion.
            facts = self.class_facts(cls)
            digest = hash_struct("classcode", facts.own).encode() if facts is not None else b""
        else:
            digest = self._class_walk(cls).encode()
        self._class_codes[cls] = digest
        return digest

    def _class_walk(self, cls: type) -> str:
        walk = _CodeWalk(self, cls, None)
        walk.seen.discard(id(cls))
        walk.todo.append(("class", "", cls))
        self._local.classes = True
        try:
            while walk.todo:
                walk.visit(*walk.todo.popleft())
        finally:
            self._local.classes = False
        parts = sorted(f"{e['kind']}:{walk.relative(e['name'])}={e['hash']}" for e in walk.entries.values())
        return hash_struct("classcode+", *parts) if parts else ""

    def is_user_code(self, module_name: str | None) -> bool:
        """True for the user's own modules; false for slothflow, the standard library and installed packages."""
        return self.modules.is_user_code(module_name)

    def function_facts(self, func: Any, source: str | None, root: bool) -> Facts:
        key = (source, root)
        try:
            per = self._facts.get(func)
        except TypeError:
            per = None
        found = per.get(key) if per is not None else None
        if found is not None and found.code is getattr(func, "__code__", None):
            return found
        facts = function_facts(func, source, root)
        try:
            self._facts.setdefault(func, {})[key] = facts
        except TypeError:
            pass
        return facts

    def class_facts(self, cls: type) -> Facts | None:
        try:
            per = self._facts.get(cls)
        except TypeError:
            per = None
        found = per.get((None, False)) if per is not None else None
        if found is not None and found.origin is not None and file_token(found.origin) == found.token:
            return found
        facts = class_facts(cls, self.sources)
        if facts is not None:
            try:
                self._facts.setdefault(cls, {})[(None, False)] = facts
            except TypeError:
                pass
        return facts


_default_hasher = CodeHasher()
_current_hasher: contextvars.ContextVar[CodeHasher | None] = contextvars.ContextVar("slothflow_code_hasher",
                                                                                    default=None)


def default_code_hasher() -> CodeHasher:
    """The process's own hasher: in effect wherever no other one was activated."""
    return _default_hasher


def current_code_hasher() -> CodeHasher:
    """The hasher in effect here: the one activated by :func:`use_code_hasher`, else the default one."""
    return _current_hasher.get() or _default_hasher


@contextlib.contextmanager
def use_code_hasher(hasher: CodeHasher) -> Iterator[CodeHasher]:
    """Make ``hasher`` the one in effect (in this thread or task context) for the duration of the block."""
    token = _current_hasher.set(hasher)
    try:
        yield hasher
    finally:
        _current_hasher.reset(token)


def forget_code_hashes() -> None:
    """Drop the code hashes of the hasher in effect (see :meth:`CodeHasher.forget`)."""
    current_code_hasher().forget()


def function_code_hash(func: Callable[..., Any], source: str | None = None) -> str:
    """:meth:`CodeHasher.function_code_hash` of the hasher in effect."""
    return current_code_hasher().function_code_hash(func, source)


def code_info(func: Callable[..., Any], source: str | None = None) -> CodeInfo:
    """:meth:`CodeHasher.code_info` of the hasher in effect."""
    return current_code_hasher().code_info(func, source)


def class_code(cls: type) -> bytes:
    """:meth:`CodeHasher.class_code` of the hasher in effect."""
    return current_code_hasher().class_code(cls)


# ------------------------------------------------------------------------------- transitive code
#
# A function's code hash covers its own normalized source and, beyond it, the user code it reaches: the plain
# functions, classes (with their methods), module constants, closure variables and default values it refers
# to, and the user modules it imports (at module level or in its body), transitively, within the user's own
# modules. The walk is breadth-first over objects (so cycles and deep call chains cost nothing special) and
# the result is a *set* of items, each hashed from its own source or value: the same starting function gives
# the same hash whatever order the items are met in. Per-object facts (normalized source, referenced names)
# are kept by the hasher; name resolution is redone per walk.


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

    def __init__(self, hasher: CodeHasher, root: Any, source: str | None) -> None:
        self.hasher = hasher
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
        facts = self.hasher.function_facts(self.root, self.source, root=True)
        self._function_refs(self.root, facts, root=True)
        todo = self.todo
        while todo:
            self.visit(*todo.popleft())
        manifest = tuple(self.entries[k] for k in sorted(self.entries))
        if manifest:
            # File and line never count: moving code around is not a change.
            parts = sorted(f"{e['kind']}:{self.relative(e['name'])}={e['hash']}" for e in manifest)
            combined = hash_struct("code+", facts.own, *parts)
        else:
            combined = facts.own
        return CodeInfo(combined, facts.own, manifest, frozenset(self.modules))

    def relative(self, name: str) -> str:
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
        if not self.hasher.is_user_code(module_name):
            self.modules.add(top)

    def _import(self, name: str) -> types.ModuleType | None:
        """The module an ``import`` in user code names, if it is user code (imported now when needed: the
        code will import it anyway). Other modules are noted for the environment; a user module that
        cannot be imported here counts by its source file, or by its name when there is none."""
        modules = self.hasher.modules
        if not modules.is_user_code(name):
            self._note_module(name)
            return None
        module = modules.load(name)
        if module is not None or name.split(".")[0] == "__main__":
            return module
        digest, path, shown = modules.unresolved(name)
        self._add("import", name, digest, display_path(path), None, shown)
        return None

    def _function_refs(self, func: Any, facts: Facts, root: bool = False) -> None:
        todo = self.todo
        glb = getattr(func, "__globals__", None)
        if not isinstance(glb, dict):
            glb = {}
        module_name = str(glb.get("__name__") or getattr(func, "__module__", "") or "")
        for name in facts.names:
            if name in glb:
                todo.append(("constant", f"{module_name}.{name}", glb[name]))
        package = str(glb.get("__package__") or module_name.rpartition(".")[0])
        imports: dict[str, types.ModuleType] = {}
        for alias, imported, bound in facts.local_imports:
            module = self._import(imported)
            bound_module = module if bound == imported else sys.modules.get(bound)
            if module is not None and bound_module is not None:
                imports[alias] = bound_module
        if facts.chains is not None:
            for chain in facts.chains:
                head = chain[0]
                target: Any = imports.get(head)
                if target is None and head in glb and head in facts.names:
                    target = glb[head]
                if isinstance(target, types.ModuleType):
                    self._follow(target, chain[1:])
        else:  # no source: any attribute name the code uses may be taken from a module it refers to
            code = getattr(func, "__code__", None)
            attrs = sorted(code_names(code)) if code is not None else []
            for name in facts.names:
                target = glb.get(name)
                if isinstance(target, types.ModuleType):
                    for attr in attrs:
                        self._follow(target, (attr,))
        for module_ref, attr in facts.from_imports:
            self._from_import(module_ref, attr, package, facts)
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

    def _from_import(self, module_ref: str, attr: str, package: str, facts: Facts) -> None:
        """``from module_ref import attr``: only ``attr`` counts (and, if it is a module, what the code
        takes from it), not the rest of the module."""
        module_name = module_ref
        if module_ref.startswith("."):
            try:
                module_name = importlib.util.resolve_name(module_ref, package)
            except (ImportError, ValueError):
                self._add("import", f"{module_ref}.{attr}", hash_struct("import-missing", module_ref, attr),
                          None, None, "not found")
                return
        target = self._import(module_name)
        if target is None:
            return
        self._follow(target, (attr,))
        imported = getattr(target, attr, None)
        if isinstance(imported, types.ModuleType) and facts.chains is not None:
            # ``from . import helpers`` then ``helpers.compute(x)``: follow the attribute chains too.
            for chain in facts.chains:
                if chain[0] == attr:
                    self._follow(imported, chain[1:])

    def _follow(self, module: types.ModuleType, attrs: tuple[str, ...]) -> None:
        """Resolve ``module.a.b``: through user modules, to the first object that is not a module."""
        for attr in attrs:
            name = getattr(module, "__name__", "")
            if not self.hasher.is_user_code(name):
                self._note_module(name)
                return
            value = getattr(module, attr, _MISSING)
            if value is _MISSING and hasattr(module, "__path__"):
                # A submodule of a user package that nothing imported yet (``from . import helpers``).
                value = self.hasher.modules.load(f"{name}.{attr}") or _MISSING
            if value is _MISSING:
                return
            if not isinstance(value, types.ModuleType):
                self.todo.append(("constant", f"{name}.{attr}", value))
                return
            module = value
        self._note_module(getattr(module, "__name__", ""))

    def visit(self, kind: str, name: str, value: Any) -> None:
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
        user_type = self.hasher.is_user_code(getattr(cls, "__module__", None)) and cls.__module__ != "builtins"
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
        self._visit_value(kind, name, value)

    def _visit_value(self, kind: str, name: str, value: Any) -> None:
        key = id(value)
        if (key, name) in self.seen_values:
            return
        self.seen_values.add((key, name))
        self.keep.append(value)
        pinned = self.hasher.pinned.get((kind, name))
        if pinned is not None and pinned[0] is value:
            # The same object as when first hashed by this hasher: a memo or list that task bodies filled
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
        shown = preview(value)
        self.hasher.pinned[(kind, name)] = (value, digest, shown)
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
        if not self.hasher.is_user_code(func.__module__):
            self._note_module(func.__module__)
            return
        facts = self.hasher.function_facts(func, None, root=False)
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
        if not self.hasher.is_user_code(cls.__module__) or cls.__module__ == "builtins":
            self._note_module(cls.__module__)
            return
        facts = self.hasher.class_facts(cls)
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
                    part_facts = self.hasher.function_facts(part, None, root=False)
                    self._function_refs(part, part_facts)
                    if facts is None:
                        self._add("function", _qualname(part), part_facts.own, None, None, None)
                elif isinstance(part, types.FunctionType):
                    self.todo.append(("function", "", part))
