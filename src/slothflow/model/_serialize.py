"""Turning values into bytes for the store (how jobs travel to workers is :mod:`slothflow.executors._wire`).

Stored values use the standard pickle at a fixed protocol. Expressions inside a value (a task body that
returned ``step(step(...))``) are written as a flat table of nodes, children first, so that deeply nested
expressions neither hit the recursion limit when stored nor when loaded.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from slothflow._errors import SerializationError
from slothflow.model._expression import Expression, expressions_children_first

PROTOCOL = 5


class _FlatPickler(pickle.Pickler):
    """Writes each expression node once; references to other nodes become their index in the table."""

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
    """Reads the node table in order; a reference is always to a node loaded before (children first)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.built: list[Any] = []

    def persistent_load(self, pid: Any) -> Any:
        index = int(pid)
        if not 0 <= index < len(self.built):
            raise SerializationError(f"corrupt expression table in a stored value (node {index})")
        return self.built[index]


def dumps(value: Any) -> bytes:
    """Serialize a value for the store.

    Expressions are written as a table of nodes, children before parents, each node pickled on its own
    (so no pickle recursion follows an expression chain), then the value itself. One pickler writes the
    whole stream and its memo is kept throughout: the unpickler's memo grows the same way, so shared
    objects resolve to the same object on load.
    """
    try:
        nodes = expressions_children_first(value)
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
    for _ in range(count):
        unpickler.built.append(unpickler.load())
    return unpickler.load()
