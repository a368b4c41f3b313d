"""Turning values into bytes: for the store (stable pickle) and for worker processes (cloudpickle).

Stored values use the standard pickle at a fixed protocol. Expressions inside a value (a task body that
returned ``step(step(...))``) are written as a flat table of nodes, children first, so that deeply nested
expressions neither hit the recursion limit when stored nor when loaded.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle

from ._errors import SerializationError
from ._expression import Expression, iter_expressions, substitute

PROTOCOL = 5


class _Ref:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _FlatPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, index: dict[int, int]) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._index = index
        self.own: int | None = None

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Expression):
            idx = self._index.get(id(obj))
            if idx is not None and idx != self.own:
                return idx
        return None


class _FlatUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return _Ref(int(pid))


def _expression_nodes(value: Any) -> list[Expression]:
    """All expressions reachable from value, children before parents, without recursion."""
    order: list[Expression] = []
    seen: set[int] = set()
    stack: list[tuple[Expression, bool]] = [(e, False) for e in iter_expressions(value)]
    while stack:
        expr, done = stack.pop()
        if done:
            order.append(expr)
            continue
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        stack.append((expr, True))
        stack.extend((c, False) for c in iter_expressions(expr._children()) if id(c) not in seen)
    return order


def dumps(value: Any) -> bytes:
    """Serialize a value for the store."""
    try:
        nodes = _expression_nodes(value)
        if not nodes:
            return b"P" + pickle.dumps(value, protocol=PROTOCOL)
        index = {id(e): i for i, e in enumerate(nodes)}
        buf = io.BytesIO()
        buf.write(b"X")
        pickler = _FlatPickler(buf, index)
        pickler.dump(len(nodes))
        for i, node in enumerate(nodes):
            pickler.own = i
            pickler.dump(node)
            pickler.clear_memo()
        pickler.own = None
        pickler.dump(value)
        return buf.getvalue()
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise SerializationError(f"cannot serialize a value of type {type(value).__qualname__}: {exc}") from exc


def loads(data: bytes) -> Any:
    """Load a value written by :func:`dumps`."""
    kind, body = data[:1], data[1:]
    if kind == b"P":
        return pickle.loads(body)
    if kind != b"X":
        raise SerializationError("unknown value format in the store")
    unpickler = _FlatUnpickler(io.BytesIO(body))
    count = unpickler.load()
    built: list[Any] = []
    for _ in range(count):
        node = unpickler.load()
        _resolve_refs(node, built)
        built.append(node)
    root = unpickler.load()
    return _replace_refs(root, built)


def _replace_refs(value: Any, built: list[Any]) -> Any:
    if isinstance(value, _Ref):
        return built[value.index]
    refs = {id(r): built[r.index] for r in _iter_refs(value)}
    return substitute_refs(value, refs) if refs else value


def _iter_refs(value: Any) -> list[_Ref]:
    found: list[_Ref] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Ref):
            found.append(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif hasattr(v, "__dataclass_fields__") and not isinstance(v, type):
            stack.extend(getattr(v, f) for f in v.__dataclass_fields__)
    return found


def substitute_refs(value: Any, refs: dict[int, Any]) -> Any:
    return substitute(value, refs, leaf=_Ref)


def _resolve_refs(node: Expression, built: list[Any]) -> None:
    for attr in ("args", "kwargs", "value"):
        if hasattr(node, attr):
            current = getattr(node, attr)
            replaced = _replace_refs(current, built)
            if replaced is not current:
                object.__setattr__(node, attr, replaced)


def wire_dumps(obj: Any) -> bytes:
    """Serialize for another process of the same Python: functions from __main__ travel by value."""
    return cloudpickle.dumps(obj, protocol=PROTOCOL)


def wire_loads(data: bytes) -> Any:
    return pickle.loads(data)
