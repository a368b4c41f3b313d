"""Canonical hashing of values and code.

A value's hash must be equal for equal values in any process, under any ``PYTHONHASHSEED`` and on any
machine, because it is a cache key in a shared database. Pickle bytes are not canonical (dict insertion
order, set iteration order, the memo), so values are fed to SHA-256 through a type-dispatched encoder:
each value writes a type tag followed by canonical bytes; containers recurse; dict and set items are
sorted by their own digests. Objects may define ``__slothflow_hash__() -> str``; users may register an
encoder for a type they do not own with :func:`register_hasher`. Anything else is encoded through its
pickle reduction (class name plus canonically encoded state), and a value whose state cannot be
captured that way raises :class:`HashingError`.

Classes and functions met inside a value also carry the hash of their code, from :mod:`._code`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import pathlib
import pickle
import sys
import threading
import types
import uuid
from collections.abc import Callable
from typing import Any

from slothflow._errors import FileAccessError, HashingError, NestingError

HASH_ALGORITHM = "sha256"

Write = Callable[[bytes], Any]
Encoder = Callable[[Any, Write], None]


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_struct(*parts: str | bytes | int | None) -> str:
    """Hash a short tuple of primitive parts (used for derived keys such as eval hashes)."""
    out: list[bytes] = []
    for part in parts:
        if part is None:
            out.append(b"N")
        elif isinstance(part, str):
            data = part.encode()
            out.append(b"s%d:%s" % (len(data), data))
        elif isinstance(part, bytes):
            out.append(b"b%d:%s" % (len(part), part))
        else:
            out.append(b"i%d;" % part)
    return hashlib.sha256(b"".join(out)).hexdigest()


def hash_value(value: Any) -> str:
    """The canonical hash of any value; raises :class:`HashingError` when there is none."""
    flat = _flat_encoding(value)
    if flat is not None:
        return hashlib.sha256(flat).hexdigest()
    h = hashlib.sha256()
    outermost = not _active.stack
    try:
        _encode(value, h.update, 0)
    except RecursionError as exc:
        if not outermost:
            raise
        raise HashingError(
            f"cannot hash a value of type {_qualname(type(value))}: it is nested too deeply",
            value_type=_qualname(type(value)),
        ) from exc
    except HashingError as exc:
        if not outermost or exc.value_type in (None, _qualname(type(value))) or isinstance(exc, FileAccessError):
            raise
        outer = _qualname(type(value))
        raise HashingError(
            f"cannot hash a value of type {outer} because of a part of it: {exc}", value_type=outer
        ) from exc
    except NestingError:  # the walker met a cycle inside an expression: already typed and placed
        raise
    except Exception as exc:  # a user's hash hook or registered hasher failed
        if not outermost:
            raise
        raise HashingError(
            f"hashing a value of type {_qualname(type(value))} failed: {type(exc).__name__}: {exc}",
            value_type=_qualname(type(value)),
        ) from exc
    finally:
        if outermost:
            _active.stack.clear()
    return h.hexdigest()


def _flat_encoding(value: Any) -> bytes | None:
    """The encoding of an atom, or of a list, tuple or str-keyed dict of atoms (most arguments), written
    straight; the same bytes as :func:`_encode`, without its bookkeeping. None for anything else."""
    cls = type(value)
    simple = _SIMPLE.get(cls)
    parts: list[bytes] = []
    write = parts.append
    if simple is not None:
        simple(value, write)
        return b"".join(parts)
    if cls is tuple or cls is list:
        if len(value) > 64:
            return None
        write(b"%s%d[" % (b"t" if cls is tuple else b"l", len(value)))
        for item in value:
            enc = _SIMPLE.get(type(item))
            if enc is None:
                return None
            enc(item, write)
        write(b"]")
        return b"".join(parts)
    if cls is dict:
        if len(value) > 64:
            return None
        write(b"d%d{" % len(value))
        try:
            keys = sorted(value)
        except TypeError:
            return None
        for key in keys:
            enc = _SIMPLE.get(type(value[key]))
            if type(key) is not str or enc is None:
                return None
            _enc_str(key, write)
            enc(value[key], write)
        write(b"}")
        return b"".join(parts)
    return None


class _Active(threading.local):
    """The containers and objects being encoded right now, per thread (to detect self-reference)."""

    def __init__(self) -> None:
        self.stack: set[int] = set()
        self.tasks_by_name = False  # inside a code walk: a task in a constant counts by name, not code


_active = _Active()
_MAX_DEPTH = 500
_encoders: dict[type, Encoder] = {}


def register_hasher(type_: type, encoder: Callable[[Any], bytes | str]) -> None:
    """Teach slothflow to hash instances of ``type_`` (and its subclasses).

    ``encoder(value)`` must return bytes or a string that are equal for equal values, in any process.
    """

    def _enc(value: Any, write: Write) -> None:
        data = encoder(value)
        raw = data.encode() if isinstance(data, str) else bytes(data)
        name = _qualname(type(value)).encode()
        write(b"U%d:%s%d:" % (len(name), name, len(raw)))
        write(raw)

    _encoders[type_] = _enc
    _lookup_cache.clear()


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _tagged(tag: bytes, data: bytes, write: Write) -> None:
    write(b"%s%d:" % (tag, len(data)))
    write(data)


def _enc_none(value: Any, write: Write) -> None:
    write(b"N")


def _enc_bool(value: bool, write: Write) -> None:
    write(b"T" if value else b"F")


def _enc_int(value: int, write: Write) -> None:
    write(b"i%d;" % value)


def _enc_float(value: float, write: Write) -> None:
    if math.isnan(value):
        write(b"fnan;")
    else:
        write(b"f" + value.hex().encode() + b";")


def _enc_complex(value: complex, write: Write) -> None:
    write(b"c")
    _enc_float(value.real, write)
    _enc_float(value.imag, write)


def _enc_str(value: str, write: Write) -> None:
    _tagged(b"s", value.encode("utf-8", "surrogatepass"), write)


def _enc_bytes(value: bytes | bytearray | memoryview, write: Write) -> None:
    _tagged(b"b", bytes(value), write)


def _digest(value: Any, depth: int) -> bytes:
    h = hashlib.sha256()
    _encode(value, h.update, depth)
    return h.digest()


def _enc_seq(tag: bytes) -> Callable[[Any, Write, int], None]:
    def enc(value: Any, write: Write, depth: int) -> None:
        write(b"%s%d[" % (tag, len(value)))
        for item in value:
            _encode(item, write, depth)
        write(b"]")

    return enc


def _enc_dict(value: dict[Any, Any], write: Write, depth: int) -> None:
    write(b"d%d{" % len(value))
    if all(type(k) is str for k in value):
        for key in sorted(value):
            _enc_str(key, write)
            _encode(value[key], write, depth)
    else:
        items = sorted((_digest(k, depth), _digest(v, depth)) for k, v in value.items())
        for kd, vd in items:
            write(kd)
            write(vd)
    write(b"}")


def _enc_set(value: set[Any] | frozenset[Any], write: Write, depth: int) -> None:
    tag = b"S" if isinstance(value, set) else b"Z"
    write(b"%s%d{" % (tag, len(value)))
    for d in sorted(_digest(item, depth) for item in value):
        write(d)
    write(b"}")


def _enc_object_named(tag: bytes, name: str, write: Write) -> None:
    _tagged(tag, name.encode(), write)


_SIMPLE: dict[type, Callable[[Any, Write], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
    memoryview: _enc_bytes,
}

_CONTAINERS: dict[type, Callable[[Any, Write, int], None]] = {
    list: _enc_seq(b"l"),
    tuple: _enc_seq(b"t"),
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_set,
}

_lookup_cache: dict[type, Callable[[Any, Write, int], None]] = {}


def _encode(value: Any, write: Write, depth: int) -> None:
    cls = type(value)
    simple = _SIMPLE.get(cls)
    if simple is not None:
        simple(value, write)
        return
    if depth > _MAX_DEPTH:
        raise HashingError(
            f"cannot hash a value nested more than {_MAX_DEPTH} levels deep",
            value_type=_qualname(cls),
        )
    active = _active.stack
    key = id(value)
    if key in active:
        raise HashingError(
            f"cannot hash a self-referential value: a {_qualname(cls)} contains itself",
            value_type=_qualname(cls),
        )
    active.add(key)
    try:
        container = _CONTAINERS.get(cls)
        if container is not None:
            container(value, write, depth + 1)
            return
        enc = _lookup_cache.get(cls)
        if enc is None:
            enc = _find_encoder(cls)
            _lookup_cache[cls] = enc
        enc(value, write, depth + 1)
    finally:
        active.discard(key)


def _find_encoder(cls: type) -> Callable[[Any, Write, int], None]:
    if callable(getattr(cls, "__slothflow_hash__", None)):
        return _enc_hook
    for base in cls.__mro__:
        user = _encoders.get(base)
        if user is not None:
            return _user_encoder(user)
    if issubclass(cls, type):
        return _enc_class
    if issubclass(cls, enum.Enum):
        return _enc_enum
    if issubclass(cls, BaseException):
        return _enc_exception
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _enc_namedtuple
    if dataclasses.is_dataclass(cls):
        return _enc_dataclass
    callables = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools_partial())
    if issubclass(cls, callables):
        return _enc_callable
    if issubclass(cls, (datetime.datetime, datetime.date, datetime.time)):
        return lambda v, w, d: _tagged(b"D" + _qualname(cls).encode(), v.isoformat().encode(), w)
    if issubclass(cls, datetime.timedelta):
        return lambda v, w, d: _tagged(b"td", repr((v.days, v.seconds, v.microseconds)).encode(), w)
    if issubclass(cls, (decimal.Decimal, uuid.UUID, pathlib.PurePath)):
        return lambda v, w, d: _tagged(b"X" + _qualname(cls).encode(), str(v).encode(), w)
    if issubclass(cls, list):
        return _subclass_encoder(cls, _CONTAINERS[list])
    if issubclass(cls, dict):
        return _subclass_encoder(cls, _enc_dict)
    if issubclass(cls, (set, frozenset)):
        return _subclass_encoder(cls, _enc_set)
    if issubclass(cls, (str, int, float, bytes)):
        base = next(b for b in (bool, int, float, str, bytes) if issubclass(cls, b))
        simple = _SIMPLE[base]
        return _subclass_encoder(cls, lambda v, w, d: simple(base(v), w))
    numpy_enc = _numpy_encoder(cls)
    if numpy_enc is not None:
        return numpy_enc
    return _enc_reduce


def _user_encoder(user: Encoder) -> Callable[[Any, Write, int], None]:
    def enc(value: Any, write: Write, depth: int) -> None:
        user(value, write)

    return enc


def _subclass_encoder(
    cls: type, inner: Callable[[Any, Write, int], None]
) -> Callable[[Any, Write, int], None]:
    """A subclass of a builtin type: its class name, then the builtin's encoding of its data."""
    name = _qualname(cls)
    ordered = issubclass(cls, collections.OrderedDict)  # order is part of an OrderedDict's value

    def enc(value: Any, write: Write, depth: int) -> None:
        _enc_object_named(b"C", name, write)
        if ordered:
            _encode(list(value.items()), write, depth)
        else:
            inner(value, write, depth)
        factory = getattr(value, "default_factory", None)
        if factory is not None:
            _encode(factory, write, depth)
        state = getattr(value, "__dict__", None)
        if state:  # attributes a subclass adds are part of the value too
            _encode(dict(state), write, depth)

    return enc


def functools_partial() -> type:
    import functools

    return functools.partial


_hook_prefixes: dict[type, bytes] = {}


def _enc_hook(value: Any, write: Write, depth: int) -> None:
    if _active.tasks_by_name and getattr(type(value), "__slothflow_task__", False):
        _enc_object_named(b"TN", str(value.fullname), write)
        return
    digest = str(value.__slothflow_hash__()).encode("utf-8", "surrogatepass")
    cls = type(value)
    prefix = _hook_prefixes.get(cls)
    if prefix is None:  # the same bytes as _enc_object_named(b"H", qualname), built once per class
        name = _qualname(cls).encode()
        prefix = _hook_prefixes[cls] = b"H%d:%s" % (len(name), name)
    write(prefix + b"s%d:" % len(digest) + digest)


def _enc_exception(value: BaseException, write: Write, depth: int) -> None:
    """An exception is its type and arguments: notes, tracebacks and other attributes the machinery
    attaches on the way (job ids, timings) must not change the hash of a ``catch`` recovery call."""
    _enc_object_named(b"EX", _qualname(type(value)), write)
    _encode(tuple(value.args), write, depth)


def _code() -> Any:
    """The code-hashing module, imported when first needed (it builds on this one)."""
    from slothflow.hashing import _code

    return _code


def _write_class_code(cls: type, write: Write) -> None:
    code = _code().class_code(cls)
    if code:
        write(b"cc" + code)


def _enc_class(value: type, write: Write, depth: int) -> None:
    _enc_object_named(b"K", _qualname(value), write)
    _write_class_code(value, write)


def _enc_enum(value: enum.Enum, write: Write, depth: int) -> None:
    _enc_object_named(b"E", _qualname(type(value)), write)
    _enc_str(value.name, write)


def _enc_namedtuple(value: Any, write: Write, depth: int) -> None:
    _enc_object_named(b"nt", _qualname(type(value)), write)
    write(b"%d[" % len(value))
    for name, item in zip(value._fields, value):
        _enc_str(name, write)
        _encode(item, write, depth)
    write(b"]")


def _enc_dataclass(value: Any, write: Write, depth: int) -> None:
    _enc_object_named(b"dc", _qualname(type(value)), write)
    _write_class_code(type(value), write)
    fields = dataclasses.fields(value)
    write(b"%d[" % len(fields))
    for f in fields:
        _enc_str(f.name, write)
        _encode(getattr(value, f.name), write, depth)
    write(b"]")


def _enc_callable(value: Any, write: Write, depth: int) -> None:
    import functools

    if isinstance(value, functools.partial):
        _enc_object_named(b"P", "functools.partial", write)
        _encode(value.func, write, depth)
        _encode(value.args, write, depth)
        _encode(value.keywords, write, depth)
        return
    if isinstance(value, types.MethodType):
        _enc_object_named(b"M", _qualname(value.__func__), write)
        _encode(value.__self__, write, depth)
        _encode(value.__func__, write, depth)
        return
    if isinstance(value, types.BuiltinFunctionType):
        _enc_object_named(b"B", f"{value.__module__}.{value.__qualname__}", write)
        return
    _enc_object_named(b"fn", _qualname(value), write)
    _enc_str(_code().function_code_hash(value), write)
    if value.__defaults__:
        _encode(value.__defaults__, write, depth)
    if value.__kwdefaults__:
        _encode(value.__kwdefaults__, write, depth)
    if value.__closure__:
        try:
            cells = tuple(c.cell_contents for c in value.__closure__)
        except ValueError:  # an empty cell: the function refers to a name not yet bound
            cells = ()
        _encode(cells, write, depth)


def _numpy_encoder(cls: type) -> Callable[[Any, Write, int], None] | None:
    mod = cls.__module__.split(".")[0]
    if mod == "numpy" and "numpy" in sys.modules:
        np = sys.modules["numpy"]
        if issubclass(cls, np.ndarray):

            def enc_array(v: Any, w: Write, d: int) -> None:
                if v.dtype.hasobject:
                    _enc_object_named(b"npo", str(v.shape), w)
                    _encode(v.tolist(), w, d)
                    return
                _enc_object_named(b"np", f"{v.dtype.str}{v.shape}", w)
                _enc_bytes(np.ascontiguousarray(v).tobytes(), w)

            return enc_array
        if issubclass(cls, np.generic):
            return lambda v, w, d: _tagged(b"ng" + v.dtype.str.encode(), v.tobytes(), w)
    if mod == "pandas" and "pandas" in sys.modules:
        pd = sys.modules["pandas"]
        if issubclass(cls, (pd.DataFrame, pd.Series, pd.Index)):

            def enc_pandas(v: Any, w: Write, d: int) -> None:
                hashed = pd.util.hash_pandas_object(v, index=True).to_numpy()
                _enc_object_named(b"pd", _qualname(cls), w)
                _encode([str(x) for x in getattr(v, "dtypes", [v.dtype])], w, d)
                if isinstance(v, pd.DataFrame):
                    _encode([str(c) for c in v.columns], w, d)
                _enc_bytes(hashed.tobytes(), w)

            return enc_pandas
    return None


def _enc_reduce(value: Any, write: Write, depth: int) -> None:
    """Encode an arbitrary object through its pickle reduction, canonically."""
    cls = type(value)
    try:
        reduced = value.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
    except Exception as exc:
        raise HashingError(
            f"cannot hash a value of type {_qualname(cls)}: it cannot be pickled ({exc}). "
            "Pass something serializable, give the class a __slothflow_hash__() method, "
            "or register a hasher with slothflow.register_hasher().",
            value_type=_qualname(cls),
        ) from exc
    if isinstance(reduced, str):  # a global singleton, pickled by name
        _enc_object_named(b"G", f"{cls.__module__}.{reduced}", write)
        return
    _enc_object_named(b"R", _qualname(cls), write)
    _write_class_code(cls, write)
    func, args, *rest = reduced
    state = rest[0] if rest else None
    listitems = rest[1] if len(rest) > 1 else None
    dictitems = rest[2] if len(rest) > 2 else None
    if getattr(func, "__name__", "") in ("__newobj__", "__newobj_ex__"):
        args = args[1:]  # the class itself, already tagged
    elif isinstance(func, type) or callable(func):
        _enc_object_named(b"rf", _qualname(func), write)
    _encode(args, write, depth)
    _encode(state, write, depth)
    if listitems is not None:
        _encode(list(listitems), write, depth)
    if dictitems is not None:
        _encode(dict(dictitems), write, depth)

