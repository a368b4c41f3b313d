"""The stored value format: plain data round-trips exactly (types kept) without pickle; anything else is pickled."""

from __future__ import annotations

import dataclasses
import math
import pickle
import struct
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slothflow.store._codec import PLAIN, decode_plain, dumps, is_pickle, loads

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**300), max_value=2**300)
           | st.floats(allow_nan=True, allow_infinity=True) | st.complex_numbers(allow_nan=True)
           | st.text() | st.binary())
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
                         max_leaves=10)
plain = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=12) | st.lists(inner, max_size=6).map(tuple)
                   | st.dictionaries(hashables, inner, max_size=6) | st.sets(hashables, max_size=6)
                   | st.frozensets(hashables, max_size=6)
                   | st.lists(st.integers(-(2**63), 2**63 - 1), min_size=8, max_size=20)
                   | st.lists(st.floats(), min_size=8, max_size=20).map(tuple)),
    max_leaves=40,
)


def shape(value: Any) -> Any:
    """A structure that compares exactly: types at every level, float bits (NaN, -0.0), dict keys with types."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, complex):
        return ("complex", shape(value.real), shape(value.imag))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((repr(shape(k)), shape(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(shape(v)) for v in value))
    return (type(value).__name__, value)


@settings(max_examples=400, deadline=None)
@given(plain)
def test_plain_data_round_trips_exactly_without_pickle(value: Any) -> None:
    data = dumps(value)
    assert data[:1] == PLAIN and not is_pickle(data)
    assert shape(loads(data)) == shape(value)


@dataclasses.dataclass
class Point:
    x: int


class MyList(list[Any]):
    pass


class MyInt(int):
    pass


@settings(max_examples=100, deadline=None)
@given(plain, st.sampled_from([Point(1), MyList([1]), MyInt(3), OrderedDict(a=1), bytearray(b"x"), range(3)]))
def test_anything_else_inside_falls_back_to_pickle(value: Any, other: Any) -> None:
    data = dumps([value, {"k": other}])
    assert is_pickle(data)
    loaded = loads(data)
    assert type(loaded[1]["k"]) is type(other) and shape(loaded[0]) == shape(value)


def test_special_floats_and_key_types_are_kept() -> None:
    value = {1: "int", 1.5: "float", (1, 2): "tuple", frozenset({3}): "frozenset", b"b": "bytes", None: "none",
             "x": [-0.0, math.inf, -math.inf, math.nan, True, 0, 2**100, -(2**100), 1 + 2j]}
    back = loads(dumps(value))
    assert shape(back) == shape(value)
    assert [type(k) for k in back] == [type(k) for k in value]


def test_shared_containers_stay_shared_and_deep_nesting_is_fine() -> None:
    inner = [1, 2]
    back = loads(dumps({"a": inner, "b": inner, "c": (inner,)}))
    assert back["a"] is back["b"] is back["c"][0]
    deep: Any = "leaf"
    for _ in range(50_000):
        deep = [deep]
    data = dumps(deep)
    assert not is_pickle(data)
    back = loads(data)
    for _ in range(50_000):
        back = back[0]
    assert back == "leaf"


def test_old_pickled_rows_still_load() -> None:
    assert loads(b"P" + pickle.dumps({"a": (1, 2)}, protocol=5)) == {"a": (1, 2)}


@pytest.mark.parametrize("damaged", [b"D", b"Dl\x05N", b"Ds\x09abc", b"Dr\x00", b"DNN", b"D\x00",
                                     b"Dl\xff\xff\xff\xff\x7f"])
def test_damaged_plain_bytes_raise_and_never_build_anything_else(damaged: bytes) -> None:
    from slothflow._errors import SerializationError

    with pytest.raises(SerializationError):
        decode_plain(damaged)
