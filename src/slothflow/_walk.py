"""The one walker over nested values: hashing, substitution, validity, file collection, lineage and staging
all see the same parts of a value.

Walked: lists, tuples, named tuples, dicts (keys and values, subclasses such as ``defaultdict`` and
``OrderedDict``), sets and frozensets, dataclasses and attrs classes (from anywhere), and plain objects
(``__dict__`` and ``__slots__``) of the user's own classes. Everything else is an atom: classes themselves,
functions, modules, enums, exceptions and instances of classes from the standard library or installed
packages (numpy arrays, paths, dates, locks ...), whose insides are not ours to take apart.

The walk is iterative, so depth costs no recursion. A value that contains itself, or that is nested more than
``MAX_DEPTH`` levels deep, raises :class:`~slothflow._errors.NestingError` at once, naming where. An object
reached twice through different paths (shared, not a cycle) is walked once.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import pathlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, cast

from slothflow._errors import NestingError

MAX_DEPTH = 5000

Leaf = type | tuple[type, ...] | Callable[[Any], bool]

_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, memoryview, range})

# Kinds of containers.
_LIST, _TUPLE, _DICT, _SET, _FROZENSET = 1, 2, 3, 4, 5
_LIST_SUB, _TUPLE_SUB, _NAMEDTUPLE, _DICT_SUB, _SET_SUB, _FROZENSET_SUB = 6, 7, 8, 9, 10, 11
_DATACLASS, _ATTRS, _OBJECT = 12, 13, 14
_EXACT = {list: _LIST, tuple: _TUPLE, dict: _DICT, set: _SET, frozenset: _FROZENSET}
_SEQUENCES = frozenset({_LIST, _TUPLE, _LIST_SUB, _TUPLE_SUB, _NAMEDTUPLE})
_MAPPINGS = frozenset({_DICT, _DICT_SUB})
_SETS = frozenset({_SET, _FROZENSET, _SET_SUB, _FROZENSET_SUB})
_NEVER_WALKED = (
    type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, functools.partial,
    enum.Enum, BaseException, str, bytes, bytearray, int, float, complex,
)


# --------------------------------------------------------------------------------------- public API
def iter_leaves(value: Any, is_leaf: Leaf, root: str = "value", max_depth: int = MAX_DEPTH) -> Iterator[Any]:
    """Every part of ``value`` for which ``is_leaf`` holds (a type, tuple of types or predicate), in order.

    A leaf is not walked into; the caller decides what its insides are (an expression's arguments, a Dir's
    files). ``root`` names the value in a :class:`NestingError` message."""
    if type(value) in _ATOMS or (max_depth >= 2 and _flat(value)):
        return
    leaf, exact = _leaf_test(is_leaf)
    atoms = _ATOMS
    stack: list[Any] = [value]
    chain: list[Any] = []  # the containers being walked: the path from the root to here
    active: set[int] = set()
    done: set[int] = set()
    while stack:
        obj = stack.pop()
        cls: Any = type(obj)
        if cls in atoms:
            continue
        if obj is _EXIT:
            oid = id(chain.pop())
            active.discard(oid)
            done.add(oid)
            continue
        kind = exact.get(cls)
        if kind is None:
            if leaf(obj):
                yield obj
                continue
            kind = _kind(cls)
            if kind is None:
                continue
        oid = id(obj)
        if oid in done:
            continue
        if oid in active or len(chain) >= max_depth:
            _fail(obj, chain, root, max_depth)
        chain.append(obj)
        active.add(oid)
        stack.append(_EXIT)
        if kind in _SEQUENCES:
            stack.extend(reversed(obj))
        elif kind in _MAPPINGS:
            for k, v in reversed(obj.items()):
                stack.append(v)
                stack.append(k)
        elif kind in _SETS:
            stack.extend(obj)
        else:
            stack.extend(reversed(_attributes(obj, kind)[1]))


def _flat(value: Any) -> bool:
    """Whether ``value`` is a plain list, tuple or dict of atoms, or of such containers of atoms (a call's
    arguments, mostly): nothing inside is a leaf (atoms never are) or can be a cycle, so no walk is needed."""
    cls = type(value)
    if cls is dict:
        items: Any = value.values()
        for k in value:
            if type(k) not in _ATOMS:
                return False
    elif cls is tuple or cls is list:
        items = value
    else:
        return False
    atoms = _ATOMS
    for item in items:
        c = type(item)
        if c in atoms:
            continue
        if c is dict:
            for k, v in item.items():
                if type(k) not in atoms or type(v) not in atoms:
                    return False
        elif c is tuple or c is list:
            for x in item:
                if type(x) not in atoms:
                    return False
        else:
            return False
    return True


def contains(value: Any, is_leaf: Leaf) -> bool:
    """Whether any part of ``value`` is a leaf."""
    return next(iter_leaves(value, is_leaf), _EXIT) is not _EXIT


def check_nesting(value: Any, root: str = "value", max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`NestingError` when ``value`` contains itself or is nested more than ``max_depth`` deep."""
    for _ in iter_leaves(value, _never, root, max_depth):
        pass


def transform(
    value: Any, fn: Callable[[Any], Any], is_leaf: Leaf, root: str = "value", max_depth: int = MAX_DEPTH
) -> Any:
    """``value`` with every leaf ``x`` replaced by ``fn(x)``.

    Containers are rebuilt only where something inside changed, with their own type: a ``defaultdict`` keeps
    its factory, a named tuple its class, a dataclass, attrs or plain object is copied and given the new
    attribute values (its ``__init__`` is not called again). An object shared by two paths stays shared."""
    leaf, exact = _leaf_test(is_leaf)
    atoms = _ATOMS
    memo: dict[int, Any] = {}  # container id -> its result (the container itself when nothing changed)
    active: set[int] = set()
    chain: list[Any] = []
    frames: list[_Frame] = []
    obj = value
    while True:
        # Settle ``obj`` now, or open a frame for it.
        cls: Any = type(obj)
        if cls in atoms:
            result = obj
        else:
            kind = exact.get(cls)
            if kind is None:
                if leaf(obj):
                    kind, result = 0, fn(obj)
                else:
                    kind = _kind(cls)
                    result = obj
            if kind:
                oid = id(obj)
                if oid in memo:
                    result = memo[oid]
                else:
                    if oid in active or len(chain) >= max_depth:
                        _fail(obj, chain, root, max_depth)
                    frames.append(_Frame(obj, kind))
                    chain.append(obj)
                    active.add(oid)
                    result = _OPENED
        # Hand results up until a frame has another child to settle.
        while True:
            if not frames:
                return result
            frame = frames[-1]
            items = frame.items
            if frame.next >= 0:
                frame.out.append(result)
                if result is not items[frame.next]:
                    frame.changed = True
            frame.next += 1
            if frame.next < len(items):
                obj = items[frame.next]
                break
            frames.pop()
            chain.pop()
            active.discard(id(frame.obj))
            result = _rebuild(frame) if frame.changed else frame.obj
            memo[id(frame.obj)] = result


def parts(value: Any) -> list[Any]:
    """The direct parts of ``value`` that the walker would visit ([] for an atom): for a caller that treats
    an object as a leaf and still wants to look inside it."""
    kind = _kind(cast(Any, type(value)))
    if kind is None:
        return []
    if kind in _SEQUENCES or kind in _SETS:
        return list(value)
    if kind in _MAPPINGS:
        return [x for item in value.items() for x in item]
    return _attributes(value, kind)[1]


def format_path(steps: list[str], root: str = "value", limit: int = 12) -> str:
    """A readable path such as ``value[0]['k'].name``; a long one keeps its ends."""
    if len(steps) > limit:
        head, tail = limit // 2, limit // 4
        steps = steps[:head] + [f"...({len(steps) - head - tail} more)..."] + steps[-tail:]
    return root + "".join(steps)


# ---------------------------------------------------------------------------------------- internals
class _Frame:
    __slots__ = ("obj", "kind", "names", "items", "next", "out", "changed")

    def __init__(self, obj: Any, kind: int) -> None:
        self.obj, self.kind = obj, kind
        self.names: list[Any] | None = None
        if kind in _SEQUENCES or kind in _SETS:
            self.items = list(obj)
        elif kind in _MAPPINGS:
            self.items = [x for item in obj.items() for x in item]  # key, value, key, value ...
        else:
            self.names, self.items = _attributes(obj, kind)
        self.next = -1  # index of the child being settled; -1 before the first
        self.out: list[Any] = []
        self.changed = False


_EXIT = object()
_OPENED = object()  # a frame was just opened: move to its first child


def _never(value: Any) -> bool:
    return False


def _leaf_test(is_leaf: Leaf) -> tuple[Callable[[Any], bool], dict[type, int]]:
    """The leaf predicate, and the exact builtin containers that are never leaves (walked without asking)."""
    if isinstance(is_leaf, type | tuple):
        return _type_leaf_test(is_leaf)
    return is_leaf, {}


@functools.lru_cache(maxsize=256)  # walks run per call on the hot path: build each type test once
def _type_leaf_test(types_: type | tuple[type, ...]) -> tuple[Callable[[Any], bool], dict[type, int]]:
    exact = {c: k for c, k in _EXACT.items() if not issubclass(c, types_)}
    return (lambda v: isinstance(v, types_)), exact


@functools.lru_cache(maxsize=4096)  # a class's kind never changes; bounded, so redefined classes age out
def _kind(cls: Any) -> int | None:
    exact = _EXACT.get(cls)
    if exact is not None:
        return exact
    if issubclass(cls, _NEVER_WALKED):
        return None
    if issubclass(cls, tuple):
        return _NAMEDTUPLE if hasattr(cls, "_fields") and hasattr(cls, "_make") else _TUPLE_SUB
    if issubclass(cls, list):
        return _LIST_SUB
    if issubclass(cls, dict):
        return _DICT_SUB
    if issubclass(cls, set):
        return _SET_SUB
    if issubclass(cls, frozenset):
        return _FROZENSET_SUB
    if dataclasses.is_dataclass(cls):
        return _DATACLASS
    if hasattr(cls, "__attrs_attrs__"):
        return _ATTRS
    if cls is types.SimpleNamespace or (_is_user_module(cls.__module__) and _has_state(cls)):
        return _OBJECT
    return None


def _has_state(cls: type) -> bool:
    return any("__dict__" in vars(c) or vars(c).get("__slots__") for c in cls.__mro__ if c is not object)


@functools.lru_cache(maxsize=1024)
def _is_user_module(module_name: str | None) -> bool:
    """The user's own code: not slothflow, the standard library or an installed package."""
    if not module_name:
        return False
    top = module_name.split(".")[0]
    if top == "slothflow" or top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return module is not None  # __main__ of an interactive session, a notebook
    import sysconfig

    real = pathlib.Path(path).resolve()
    if "site-packages" in real.parts or "dist-packages" in real.parts:
        return False
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        prefix = sysconfig.get_paths().get(key)
        if prefix and str(real).startswith(str(pathlib.Path(prefix).resolve())):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _slot_names(cls: Any) -> tuple[str, ...]:
    names: list[str] = []
    for c in cls.__mro__:
        slots = vars(c).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{c.__name__.lstrip('_')}{name}"
            if name not in names:
                names.append(name)
    return tuple(names)


_MISSING = object()


def _attributes(obj: Any, kind: int) -> tuple[list[str], list[Any]]:
    """The names and values of a dataclass's fields, an attrs class's attributes or a plain object's state."""
    if kind == _DATACLASS:
        names: Any = [f.name for f in dataclasses.fields(obj)]
    elif kind == _ATTRS:
        names = [a.name for a in type(obj).__attrs_attrs__]
    else:  # the instance's own state, read directly (a property of the same name does not hide it)
        state = getattr(obj, "__dict__", None)
        found = list(state) if isinstance(state, dict) else []
        values = list(state.values()) if isinstance(state, dict) else []
        names = _slot_names(cast(Any, type(obj)))
        for name in names:
            v = getattr(obj, name, _MISSING)
            if v is not _MISSING:  # an unset slot
                found.append(name)
                values.append(v)
        return found, values
    found, values = [], []
    for name in names:
        v = getattr(obj, name, _MISSING)
        if v is not _MISSING:  # a field without a value yet (init=False, no default)
            found.append(name)
            values.append(v)
    return found, values


def _rebuild(frame: _Frame) -> Any:
    obj, kind, out = frame.obj, frame.kind, frame.out
    if kind == _LIST:
        return out
    if kind == _TUPLE:
        return tuple(out)
    if kind == _DICT:
        return dict(zip(out[0::2], out[1::2], strict=True))
    if kind == _SET:
        return set(out)
    if kind == _FROZENSET:
        return frozenset(out)
    cls = type(obj)
    if kind == _NAMEDTUPLE:
        return cls._make(out)
    if kind == _TUPLE_SUB:
        new = tuple.__new__(cls, out)
        if getattr(obj, "__dict__", None):
            new.__dict__.update(obj.__dict__)
        return new
    if kind == _FROZENSET_SUB:
        return cls(out)
    new = _shallow_copy(obj)
    if kind == _LIST_SUB:
        new.clear()
        new.extend(out)
    elif kind == _DICT_SUB:  # a copy keeps a defaultdict's factory, an OrderedDict's order, added attributes
        new.clear()
        for k, v in zip(out[0::2], out[1::2], strict=True):
            new[k] = v
    elif kind == _SET_SUB:
        new.clear()
        new.update(out)
    else:
        state = getattr(new, "__dict__", None)
        assert frame.names is not None
        for name, old, v in zip(frame.names, frame.items, out, strict=True):
            if v is old:
                continue
            if isinstance(state, dict) and name in state:
                state[name] = v
            else:  # a slot, or a frozen dataclass / attrs field
                object.__setattr__(new, name, v)
    return new


def _shallow_copy(obj: Any) -> Any:
    """A copy to change instead of ``obj``; never ``obj`` itself, even when its ``__copy__`` says so."""
    try:
        new = copy.copy(obj)
    except Exception:
        new = obj
    if new is obj:
        cls: Any = type(obj)
        new = cls.__new__(cls)
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            new.__dict__.update(state)
        for name in _slot_names(cls):
            v = getattr(obj, name, _MISSING)
            if v is not _MISSING:
                object.__setattr__(new, name, v)
    return new


def _step(parent: Any, child: Any) -> str:
    """How ``child`` is reached from ``parent``, found by identity (only on the way to an error)."""
    kind = _kind(cast(Any, type(parent)))
    if kind in _SEQUENCES:
        return next((f"[{i}]" for i, c in enumerate(parent) if c is child), "[?]")
    if kind in _MAPPINGS:
        for k, v in parent.items():
            if v is child:
                return f"[{_short(k)}]"
            if k is child:
                return f"{{key {_short(k)}}}"
        return "[?]"
    if kind in _SETS:
        return "{member}"
    if kind is not None:
        names, values = _attributes(parent, kind)
        return next((f".{n}" for n, v in zip(names, values, strict=True) if v is child), ".?")
    return "?"


def _short(key: Any) -> str:
    try:
        text = repr(key)
    except Exception:
        text = f"<{type(key).__qualname__}>"
    return text if len(text) <= 30 else text[:27] + "..."


def _fail(obj: Any, chain: list[Any], root: str, max_depth: int) -> None:
    path = chain + [obj]
    steps = [_step(path[i], path[i + 1]) for i in range(len(path) - 1)]
    here = format_path(steps, root)
    at = next((i for i, c in enumerate(chain) if c is obj), None)
    if at is None:
        raise NestingError(
            f"{root} is nested more than {max_depth} levels deep (at {here}), deeper than slothflow "
            "walks values: flatten it, or write it to a File and pass that",
            path=here, kind="depth",
        )
    raise NestingError(
        f"{root} contains itself: {here} is {format_path(steps[:at], root)} again (a "
        f"{type(obj).__qualname__} inside itself), and a value with a cycle has no hash: break the cycle",
        path=here, kind="cycle",
    )
