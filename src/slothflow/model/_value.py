"""Custom value types: how users teach slothflow to hash, store, validate and parse their own types.

``Value`` is a base class for types you own; ``ProxyValue`` (with ``type = SomeClass``) gives the same
hooks to a type you do not own. Both are redun compatible. The hooks are looked up by the hashing,
serialization and CLI layers; none of them does I/O here.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterator
from typing import Any, ClassVar

from slothflow._util import preview  # noqa: F401  (re-exported: its users import it from here)
from slothflow._walk import iter_leaves, parts
from slothflow.hashing._encode import hash_bytes, register_hasher
from slothflow.model._expression import Expression

_proxies: dict[type, type[ProxyValue]] = {}


class Value:
    """Base class for values with custom hashing, serialization and validity."""

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("type_name"):
            cls.type_name = f"{cls.__module__}.{cls.__qualname__}"

    def get_hash(self, data: bytes | None = None) -> str:
        """The value's hash; the default is canonical over the object's state."""
        from slothflow.hashing._encode import _enc_reduce, hashlib  # local: the default path is rare

        h = hashlib.sha256()
        _enc_reduce(self, h.update, 0)
        return h.hexdigest()

    def __slothflow_hash__(self) -> str:
        return self.get_hash()

    def serialize(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @classmethod
    def deserialize(cls, raw_type: Any, data: bytes) -> Any:
        return pickle.loads(data)

    def get_serialization_format(self) -> str:
        return "application/python-pickle"

    def is_valid(self) -> bool:
        """False when the value no longer describes the world (a file changed since it was recorded)."""
        return True

    def preprocess(self, preprocess_args: dict[str, Any] | None = None) -> Any:
        return self

    def postprocess(self, postprocess_args: dict[str, Any] | None = None) -> Any:
        return self

    @classmethod
    def parse_arg(cls, raw_type: type, arg: str) -> Any:
        """Parse a command-line string into a value of this type."""
        return raw_type(arg)

    def iter_subvalues(self) -> Iterator[Value]:
        return iter(())


class ProxyValue(Value):
    """Hooks for a type you do not own: subclass with ``type = TheirClass`` and override hooks."""

    type: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        raw = cls.__dict__.get("type")
        if raw is not None:
            _proxies[raw] = cls
            if "get_hash" in cls.__dict__:
                register_hasher(raw, functools.partial(_proxy_hash, cls))

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def get_hash(self, data: bytes | None = None) -> str:
        return hash_bytes(self.serialize())

    def serialize(self) -> bytes:
        return pickle.dumps(self.instance, protocol=5)

    def is_valid(self) -> bool:
        return True


def _proxy_hash(proxy: type[ProxyValue], value: Any) -> str:
    return proxy(value).get_hash()


def get_proxy(raw_type: type) -> type[ProxyValue] | None:
    """The ProxyValue registered for a type or one of its bases."""
    for base in getattr(raw_type, "__mro__", ()):
        proxy = _proxies.get(base)
        if proxy is not None:
            return proxy
    return None


def iter_values(value: Any) -> Iterator[Value]:
    """Every ``Value`` inside ``value``, as the one walker sees it (containers, dict keys, dataclasses, attrs,
    plain objects), then inside those Values (``iter_subvalues`` and, for your own classes, their attributes)
    and inside expressions (a body that returned ``consume(File(...))`` holds the file in its reduction).
    Each object is reported once."""
    seen: dict[int, Any] = {}  # id -> object, kept alive so that an id is never reused during the walk
    roots = [value]
    while roots:
        for leaf in iter_leaves(roots.pop(), (Value, Expression)):
            if id(leaf) in seen:
                continue
            seen[id(leaf)] = leaf
            if isinstance(leaf, Expression):
                roots.append(leaf._children())
            else:
                yield leaf
                roots.extend(leaf.iter_subvalues())
                roots.extend(parts(leaf))  # the state of a Value class of your own (not File, Dir ...)


def first_invalid(value: Any) -> Value | None:
    """The first ``Value`` inside ``value`` that reports itself invalid (a file changed since recorded)."""
    for v in iter_values(value):
        if not v.is_valid():
            return v
    return None


def is_valid_value(value: Any) -> bool:
    """False when any ``Value`` inside ``value`` reports itself invalid (a file changed since recorded)."""
    return first_invalid(value) is None
