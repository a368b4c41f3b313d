"""Canonical hashing of values and code.

A value's hash must be equal for equal values in any process, under any ``PYTHONHASHSEED`` and on any
machine, because it is a cache key in a shared database. Pickle bytes are not canonical (dict insertion
order, set iteration order, the memo), so values are fed to SHA-256 through a type-dispatched encoder:
each value writes a type tag followed by canonical bytes; containers recurse; dict and set items are
sorted by their own digests. Objects may define ``__slothflow_hash__() -> str``; users may register an
encoder for a type they do not own with :func:`register_hasher`. Anything else is encoded through its
pickle reduction (class name plus canonically encoded state), and a value whose state cannot be
captured that way raises :class:`HashingError`.

Code is hashed from its normalized source: the function's AST with decorators and the docstring
removed, printed by ``ast.unparse``, so comments and formatting do not count but any real change does.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import math
import pathlib
import pickle
import sys
import textwrap
import threading
import types
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from ._errors import HashingError

HASH_ALGORITHM = "sha256"

Write = Callable[[bytes], Any]
Encoder = Callable[[Any, Write], None]


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_struct(*parts: str | bytes | int | None) -> str:
    """Hash a short tuple of primitive parts (used for derived keys such as eval hashes)."""
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"N")
        elif isinstance(part, str):
            data = part.encode()
            h.update(b"s%d:" % len(data))
            h.update(data)
        elif isinstance(part, bytes):
            h.update(b"b%d:" % len(part))
            h.update(part)
        else:
            h.update(b"i%d;" % part)
    return h.hexdigest()


def hash_value(value: Any) -> str:
    """The canonical hash of any value; raises :class:`HashingError` when there is none."""
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
        if not outermost or exc.value_type in (None, _qualname(type(value))):
            raise
        outer = _qualname(type(value))
        raise HashingError(
            f"cannot hash a value of type {outer} because of a part of it: {exc}", value_type=outer
        ) from exc
    finally:
        if outermost:
            _active.stack.clear()
    return h.hexdigest()


class _Active(threading.local):
    """The containers and objects being encoded right now, per thread (to detect self-reference)."""

    def __init__(self) -> None:
        self.stack: set[int] = set()


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

    def enc(value: Any, write: Write, depth: int) -> None:
        _enc_object_named(b"C", name, write)
        inner(value, write, depth)

    return enc


def functools_partial() -> type:
    import functools

    return functools.partial


def _enc_hook(value: Any, write: Write, depth: int) -> None:
    digest = value.__slothflow_hash__()
    _enc_object_named(b"H", _qualname(type(value)), write)
    _enc_str(str(digest), write)


def _enc_exception(value: BaseException, write: Write, depth: int) -> None:
    """An exception is its type and arguments: notes, tracebacks and other attributes the machinery
    attaches on the way (job ids, timings) must not change the hash of a ``catch`` recovery call."""
    _enc_object_named(b"EX", _qualname(type(value)), write)
    _encode(tuple(value.args), write, depth)


def _enc_class(value: type, write: Write, depth: int) -> None:
    _enc_object_named(b"K", _qualname(value), write)


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
    _enc_str(function_code_hash(value), write)
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


# --------------------------------------------------------------------------------------------- code


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


def normalize_source(source: str) -> str:
    """The canonical text of a function's source: no decorators, docstring, comments or formatting.

    Only the decorators of the outermost definition are dropped (they are how a task is declared); the
    decorators of functions and classes defined inside the body are code like any other.
    """
    tree = _parse_source(source)
    for top in tree.body:
        if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
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


# Per function object (code objects compare equal across functions that differ only in default values
# or annotations, so they cannot be the key).
_code_hash_cache: weakref.WeakKeyDictionary[Any, dict[str | None, str]] = weakref.WeakKeyDictionary()


def function_code_hash(func: Callable[..., Any], source: str | None = None) -> str:
    """Hash of a function's code: its normalized source (or code object when there is no source), plus
    the user-code helpers it refers to, transitively (see :func:`helper_hashes`)."""
    try:
        per_func = _code_hash_cache.get(func)
    except TypeError:  # not weak-referenceable
        per_func = None
    if per_func is not None and source in per_func:
        return per_func[source]
    own = _compute_code_hash(func, source)
    cycles_before = getattr(_visiting, "cycles", 0)
    helpers = helper_hashes(func)
    result = hash_struct("with-helpers", own, *helpers) if helpers else own
    if getattr(_visiting, "cycles", 0) != cycles_before:
        # Mutually recursive helpers: this result depends on where the walk started; do not remember it,
        # so that every process computes the same hash for the same starting function.
        return result
    try:
        _code_hash_cache.setdefault(func, {})[source] = result
    except TypeError:
        pass
    return result


_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)
_visiting = threading.local()


def helper_hashes(func: Callable[..., Any]) -> list[str]:
    """``name=hash`` for each global the function's code refers to that is part of the user's own code.

    Counted: plain functions and classes defined in the user's modules (their code, transitively) and
    module constants holding plain data. Not counted: tasks and other slothflow objects (a called task is
    cached on its own), modules, and anything from the standard library or installed packages.
    """
    code = getattr(func, "__code__", None)
    glb = getattr(func, "__globals__", None)
    if code is None or not isinstance(glb, dict):
        return []
    stack: set[int] = getattr(_visiting, "stack", None) or set()
    _visiting.stack = stack
    if id(func) in stack:
        return []
    stack.add(id(func))
    try:
        out = []
        for name in sorted(_global_names(code)):
            if name not in glb:
                continue
            part = _helper_part(glb[name])
            if part is not None:
                out.append(f"{name}={part}")
        return out
    finally:
        stack.discard(id(func))


def _global_names(code: types.CodeType) -> set[str]:
    names: set[str] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        names.update(c.co_names)
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


def _helper_part(value: Any) -> str | None:
    if isinstance(value, types.ModuleType):
        return None
    if isinstance(value, types.FunctionType):
        if not _is_user_code(value.__module__):
            return None
        if id(value) in getattr(_visiting, "stack", set()):
            _visiting.cycles = getattr(_visiting, "cycles", 0) + 1
            return "recursive:" + value.__qualname__
        return "fn:" + function_code_hash(value)
    if isinstance(value, type):
        if not _is_user_code(value.__module__):
            return None
        source = get_source(value)
        if source is None:
            return None
        try:
            return "class:" + hash_struct(normalize_source(source))
        except SyntaxError:
            return "class:" + hash_struct(source)
    if isinstance(value, _CONSTANT_TYPES) or isinstance(value, enum.Enum):
        try:
            return "const:" + hash_value(value)
        except HashingError:
            return None
    return None


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
            for key in ("stdlib", "platstdlib", "purelib", "platlib"):
                prefix = sysconfig.get_paths().get(key)
                if prefix and real.startswith(str(pathlib.Path(prefix).resolve())):
                    result = False
                    break
    _user_code_cache[module_name] = result
    return result


def _compute_code_hash(func: Callable[..., Any], source: str | None) -> str:
    code = getattr(func, "__code__", None)
    text = source if source is not None else get_source(func)
    if text is not None:
        lambda_code = code if source is None and getattr(func, "__name__", "") == "<lambda>" else None
        try:
            normalized = normalize_source(text)
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
