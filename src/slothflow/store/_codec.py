"""The bytes of a stored value: plain data in a format of our own, anything else pickled.

Unpickling runs code chosen by whoever wrote the bytes, so plain data (None, bools, ints, floats, complex
numbers, strings, bytes, and lists, tuples, dicts, sets and frozensets of them) is never pickled: it is
written in a small tagged format whose reader only ever builds those types. Exact types are kept (tuple vs
list, set vs frozenset, int vs float vs bool, the type of each dict key, ``-0.0``, NaN and infinities).
A container met twice is written once and referred to after (sharing is kept, as pickle keeps it); a
container that contains itself, and any other type (subclasses included), make the value not plain data:
it is pickled (:mod:`slothflow.model._serialize`).

Every stored value starts with a format byte: ``D`` plain data, ``P``/``X`` pickle (so rows written before
this format existed still load). Both walks are iterative: nesting depth never hits the recursion limit.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

from slothflow._errors import SerializationError
from slothflow.model import _serialize

PLAIN = b"D"
_PICKLED = (b"P", b"X")

# Item tags of the plain format.
_NONE, _TRUE, _FALSE = 0x4E, 0x54, 0x46  # N T F
_INT, _FLOAT, _COMPLEX, _STR, _BYTES = 0x69, 0x66, 0x63, 0x73, 0x62  # i f c s b
_LIST, _TUPLE, _DICT, _SET, _FROZENSET = 0x6C, 0x74, 0x64, 0x53, 0x7A  # l t d S z
_REF = 0x72  # r: a container written earlier, by its index in completion order
_INTS, _FLOATS = 0x49, 0x41  # I A: a list or tuple of int64s / floats, as one array (the next byte: l or t)
_CONTAINERS: dict[type, int] = {list: _LIST, tuple: _TUPLE, dict: _DICT, set: _SET, frozenset: _FROZENSET}
_MIN_ARRAY = 8  # shorter lists are written item by item
_I64 = (-(1 << 63), (1 << 63) - 1)


class _NotPlain(Exception):
    """The value holds something that is not plain data."""


def dumps(value: Any) -> bytes:
    """A value's stored bytes: the plain format when it is plain data, else pickle."""
    try:
        return encode_plain(value)
    except _NotPlain:
        return _serialize.dumps(value)


def loads(data: bytes) -> Any:
    """The value of stored bytes written by :func:`dumps` (or by an older slothflow: pickle)."""
    kind = data[:1]
    if kind == PLAIN:
        return decode_plain(data)
    if kind in _PICKLED:
        return _serialize.loads(data)
    raise SerializationError("unknown value format in the store")


def is_pickle(data: bytes) -> bool:
    """Whether loading these bytes would unpickle (and so may run code)."""
    return data[:1] != PLAIN


# ----------------------------------------------------------------------------------------- writing
def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _array(out: bytearray, items: list[Any] | tuple[Any, ...], tag: int) -> bool:
    """Write a long list or tuple of only ints (int64) or only floats as one array; False if it is not one."""
    first = type(items[0])
    if first is int:
        if not all(type(x) is int for x in items) or min(items) < _I64[0] or max(items) > _I64[1]:
            return False
        arr = array("q", items)
        out.append(_INTS)
    elif first is float:
        if not all(type(x) is float for x in items):
            return False
        arr = array("d", items)
        out.append(_FLOATS)
    else:
        return False
    if arr.itemsize != 8:  # pragma: no cover - every supported platform has 8-byte q and d
        return False
    out.append(tag)
    _varint(out, len(items))
    if _BIG_ENDIAN:  # pragma: no cover
        arr.byteswap()
    out += arr.tobytes()
    return True


def encode_plain(value: Any) -> bytes:
    """``value`` in the plain format; raises :class:`_NotPlain` when it is not plain data."""
    out = bytearray(PLAIN)
    done: dict[int, int] = {}  # id of a written container -> its index (completion order)
    open_: set[int] = set()  # containers being written: meeting one again is a cycle
    # Work items: a value to write, or the end of a container's items.
    stack: list[Any] = [value]
    closing = _Closing
    while stack:
        item = stack.pop()
        cls = type(item)
        if cls is closing:
            open_.discard(item.key)
            done[item.key] = len(done)
            continue
        if cls is str:
            raw = item.encode("utf-8", "surrogatepass")
            n = len(raw)
            if n < 0x80:
                out.append(_STR)
                out.append(n)
            else:
                out.append(_STR)
                _varint(out, n)
            out += raw
        elif cls is int:
            raw = item.to_bytes((item.bit_length() + 8) // 8, "little", signed=True)
            out.append(_INT)
            _varint(out, len(raw))
            out += raw
        elif cls is float:
            out.append(_FLOAT)
            out += struct.pack("<d", item)
        elif item is None:
            out.append(_NONE)
        elif cls is bool:
            out.append(_TRUE if item else _FALSE)
        elif cls is bytes:
            out.append(_BYTES)
            _varint(out, len(item))
            out += item
        elif cls is complex:
            out.append(_COMPLEX)
            out += struct.pack("<dd", item.real, item.imag)
        elif cls in _CONTAINERS:
            key = id(item)
            if key in done:
                out.append(_REF)
                _varint(out, done[key])
                continue
            if key in open_:
                raise _NotPlain
            tag = _CONTAINERS[cls]
            if cls in (list, tuple) and len(item) >= _MIN_ARRAY and _array(out, item, tag):
                done[key] = len(done)
                continue
            open_.add(key)
            out.append(tag)
            _varint(out, len(item))
            stack.append(_Closing(key))
            if cls is dict:
                children: list[Any] = []
                for k, v in item.items():
                    children.append(k)
                    children.append(v)
            else:
                children = list(item)
            children.reverse()
            stack.extend(children)
        else:
            raise _NotPlain
    return bytes(out)


class _Closing:
    """Marks the end of a container's items on the encoder's stack."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


# ----------------------------------------------------------------------------------------- reading
def _corrupt(what: str) -> SerializationError:
    return SerializationError(f"corrupt plain value in the store ({what})")


def decode_plain(data: bytes) -> Any:
    """The value of bytes written by :func:`encode_plain`; builds nothing but plain data.

    One flat loop with the reader's state in locals (this runs on every cache hit of a large value).
    """
    data = bytes(data)
    end = len(data)
    pos = 1
    built: list[Any] = []  # containers, in completion order (for references)
    # The innermost open container is kept in locals (tag, items still to read, items read); the ones
    # around it wait on ``outer``.
    outer: list[tuple[int, int, list[Any]]] = []
    ctag, left = -1, 0
    items: list[Any] = []
    unpack_d = _D.unpack_from
    while True:
        if pos >= end:
            raise _corrupt("truncated")
        tag = data[pos]
        pos += 1
        if tag in _SIZED:
            n = data[pos] if pos < end else 0x80
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint_at(data, pos)
            if pos + n > end:
                raise _corrupt("truncated")
            if tag == _STR:
                value: Any = data[pos : pos + n].decode("utf-8", "surrogatepass")
            elif tag == _INT:
                value = int.from_bytes(data[pos : pos + n], "little", signed=True)
            else:
                value = data[pos : pos + n]
            pos += n
        elif tag == _FLOAT:
            if pos + 8 > end:
                raise _corrupt("truncated")
            value = unpack_d(data, pos)[0]
            pos += 8
        elif tag in _CONTAINER_TAGS:
            n, pos = _varint_at(data, pos)
            if n > end - pos:  # each item takes at least a byte: a bogus count is caught here
                raise _corrupt("count")
            if n:
                if ctag >= 0:
                    outer.append((ctag, left, items))
                ctag, left, items = tag, n * 2 if tag == _DICT else n, []
                continue
            value = {} if tag == _DICT else _FINISH[tag]()
            built.append(value)
        else:
            value, pos = _other(data, pos, tag, built)
        # Hand the value to the open container, closing every container it completes.
        while ctag >= 0:
            items.append(value)
            left -= 1
            if left:
                break
            value = dict(zip(items[::2], items[1::2], strict=True)) if ctag == _DICT else _FINISH[ctag](items)
            built.append(value)
            ctag, left, items = outer.pop() if outer else (-1, 0, [])
        else:
            if pos != end:
                raise _corrupt("trailing bytes")
            return value


_D = struct.Struct("<d")
_SIZED = frozenset((_STR, _INT, _BYTES))
_CONTAINER_TAGS = frozenset((_LIST, _TUPLE, _DICT, _SET, _FROZENSET))
_FINISH = {_LIST: list, _TUPLE: tuple, _SET: set, _FROZENSET: frozenset}


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    end = len(data)
    while True:
        if pos >= end or shift > 63:
            raise _corrupt("length")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def _other(data: bytes, pos: int, tag: int, built: list[Any]) -> tuple[Any, int]:
    """The rarer items: constants, complex numbers, references and arrays."""
    if tag == _NONE:
        return None, pos
    if tag == _TRUE:
        return True, pos
    if tag == _FALSE:
        return False, pos
    if tag == _COMPLEX:
        if pos + 16 > len(data):
            raise _corrupt("truncated")
        re_, im = struct.unpack_from("<dd", data, pos)
        return complex(re_, im), pos + 16
    if tag == _REF:
        index, pos = _varint_at(data, pos)
        if index >= len(built):
            raise _corrupt("reference")
        return built[index], pos
    if tag in (_INTS, _FLOATS):
        if pos >= len(data) or data[pos] not in (_LIST, _TUPLE):
            raise _corrupt("array")
        kind = data[pos]
        n, pos = _varint_at(data, pos + 1)
        if pos + n * 8 > len(data):
            raise _corrupt("truncated")
        arr = array("q" if tag == _INTS else "d")
        arr.frombytes(data[pos : pos + n * 8])
        if _BIG_ENDIAN:  # pragma: no cover
            arr.byteswap()
        value = arr.tolist() if kind == _LIST else tuple(arr)
        built.append(value)
        return value, pos + n * 8
    raise _corrupt(f"tag {tag}")


_BIG_ENDIAN = struct.pack("=h", 1) != struct.pack("<h", 1)
