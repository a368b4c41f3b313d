"""The one walker over nested values (slothflow._walk): what it walks, what it leaves alone, how it rebuilds,
and that cycles and excessive depth fail at once with a NestingError instead of hanging or recursing."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import functools
import pathlib
import re
import threading
import time
import types
from typing import Any, NamedTuple

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slothflow import NestingError
from slothflow._walk import MAX_DEPTH, check_nesting, contains, iter_leaves, parts, transform


class Leaf:
    """What the tests plant: found by identity, replaced by a marked copy."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return type(other) is Leaf and other.n == self.n

    def __hash__(self) -> int:
        return hash(("Leaf", self.n))

    def __repr__(self) -> str:
        return f"Leaf({self.n})"


class Pair(NamedTuple):
    first: Any
    second: Any


@dataclasses.dataclass
class DC:
    a: Any
    b: Any = None


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: Any


@dataclasses.dataclass
class Later:
    a: Any
    computed: Any = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.calls = getattr(self, "calls", 0) + 1


@attrs.define
class AttrsBox:
    a: Any
    b: Any = None


@attrs.frozen
class AttrsFrozen:
    a: Any


class Plain:
    def __init__(self, a: Any, b: Any = None) -> None:
        self.a = a
        self.b = b

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("a", "__hidden")

    def __init__(self, a: Any, hidden: Any) -> None:
        self.a = a
        self.__hidden = hidden

    @property
    def hidden(self) -> Any:
        return self.__hidden

    def __eq__(self, other: object) -> bool:
        return type(other) is Slotted and other.a == self.a and other.hidden == self.hidden

    __hash__ = None  # type: ignore[assignment]


class MyList(list):  # type: ignore[type-arg]
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


def _found(value: Any) -> list[int]:
    return sorted(x.n for x in iter_leaves(value, Leaf))


# ------------------------------------------------------------------------------------ what is walked
def test_every_kind_of_container_is_walked_including_dict_keys_and_objects() -> None:
    dd: collections.defaultdict[Any, list[Any]] = collections.defaultdict(list)
    dd[Leaf(5)].append(Leaf(6))
    value = [
        Leaf(0),
        (Leaf(1), Pair(Leaf(2), 1)),
        {Leaf(3): "key", "value": Leaf(4)},
        dd,
        collections.OrderedDict(x=Leaf(7)),
        {Leaf(8)},
        frozenset({Leaf(9)}),
        DC(Leaf(10), [Leaf(11)]),
        Frozen(Leaf(12)),
        AttrsBox(Leaf(13)),
        AttrsFrozen(Leaf(14)),
        Plain(Leaf(15), {"k": Leaf(16)}),
        Slotted(Leaf(17), Leaf(18)),
        MyList([Leaf(19)]),
        MyDict(k=Leaf(20)),
        collections.Counter({Leaf(21): 2}),
    ]
    assert _found(value) == list(range(22))
    assert contains(value, Leaf)
    assert not contains([1, "a", {2: (3.0, None)}], Leaf)


def test_classes_functions_and_foreign_objects_are_atoms() -> None:
    # A class (even a dataclass type), a function, an exception and objects of the standard library or
    # installed packages are never taken apart, even when a leaf hides inside them.
    class Holder:
        hidden = Leaf(1)

    foreign = [DC, Holder, len, functools.partial(_found, Leaf(2)), ValueError(Leaf(3)), pathlib.Path("/x"),
               datetime.date(2020, 1, 1), decimal.Decimal("1.5"), re.compile("a"), threading.Lock(), collections,
               types.SimpleNamespace(x=1)]
    assert _found(foreign) == []
    assert transform(foreign, lambda v: v, Leaf) is foreign
    assert list(iter_leaves(foreign, type)) == [DC, Holder]
    np = pytest.importorskip("numpy")
    arr = np.array([Leaf(4)], dtype=object)
    assert _found([arr]) == []


def test_shared_object_walked_once_is_not_a_cycle() -> None:
    shared = [Leaf(1)]
    value = [shared, shared, {"again": shared}]
    assert _found(value) == [1]
    out = transform(value, lambda x: Leaf(x.n + 100), Leaf)
    assert out[0] is out[1] is out[2]["again"]  # sharing is kept
    assert out[0] == [Leaf(101)]


# ------------------------------------------------------------------------------------- rebuilding
def test_transform_rebuilds_only_what_changed_and_keeps_types() -> None:
    untouched = {"a": [1, 2], "b": DC(1)}
    dd: collections.defaultdict[str, Any] = collections.defaultdict(list, k=Leaf(1))
    value = [untouched, dd, Pair(Leaf(2), 3), Frozen(Leaf(3)), Slotted(Leaf(4), Leaf(5)), Plain(Leaf(6)),
             AttrsFrozen(Leaf(7)), MyDict(x=Leaf(8)), collections.OrderedDict([("z", Leaf(9)), ("a", 1)])]
    out = transform(value, lambda x: x.n * 10, Leaf)
    assert out[0] is untouched
    assert type(out[1]) is collections.defaultdict and out[1].default_factory is list and out[1]["k"] == 10
    assert out[1]["missing"] == []  # the factory still works
    assert type(out[2]) is Pair and out[2] == Pair(20, 3)
    assert out[3] == Frozen(30)
    assert type(out[4]) is Slotted and (out[4].a, out[4].hidden) == (40, 50)
    assert out[5] == Plain(60)
    assert out[6] == AttrsFrozen(70)
    assert type(out[7]) is MyDict and out[7] == {"x": 80}
    assert list(out[8].items()) == [("z", 90), ("a", 1)]
    # The originals are untouched.
    assert value[2].first == Leaf(2) and value[4].a == Leaf(4) and dd["k"] == Leaf(1)


def test_transform_does_not_run_init_again() -> None:
    obj = Later(Leaf(1))
    obj.computed = "kept"
    out = transform(obj, lambda x: "new", Leaf)
    assert (out.a, out.computed, out.calls) == ("new", "kept", 1)


def test_transform_replaces_dict_keys() -> None:
    assert transform({Leaf(1): Leaf(2)}, lambda x: x.n, Leaf) == {1: 2}


# ------------------------------------------------------------------------ generated nested values
_LEAF_ID = iter(range(10**9))


def _leaves() -> st.SearchStrategy[Any]:
    return st.builds(lambda: Leaf(next(_LEAF_ID)))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.floats(allow_nan=False))


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=3), st.integers(), _leaves())
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.lists(children, max_size=4).map(MyList),
        st.dictionaries(keys, children, max_size=4),
        st.dictionaries(keys, children, max_size=3).map(lambda d: collections.defaultdict(list, d)),
        st.dictionaries(keys, children, max_size=3).map(collections.OrderedDict),
        st.frozensets(st.one_of(_scalars, _leaves()), max_size=3),
        st.sets(st.one_of(_scalars, _leaves()), max_size=3),
        st.builds(Pair, children, children),
        st.builds(DC, children, children),
        st.builds(Frozen, children),
        st.builds(AttrsBox, children, children),
        st.builds(Plain, children, children),
        st.builds(Slotted, children, children),
    )


values = st.recursive(st.one_of(_scalars, _leaves()), _nested, max_leaves=30)


def _planted(value: Any) -> list[int]:
    """The leaves in a value, found independently of the walker (recursively: generated values are shallow)."""
    if isinstance(value, Leaf):
        return [value.n]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _planted(k) + _planted(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [n for v in value for n in _planted(v)]
    if isinstance(value, Slotted):
        return _planted(value.a) + _planted(value.hidden)
    if dataclasses.is_dataclass(value) or isinstance(value, AttrsBox | Plain):
        return _planted(value.a) + _planted(value.b if hasattr(value, "b") else None)
    return []


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return getattr(a, "default_factory", None) is getattr(b, "default_factory", None) and all(
            _same_types(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Slotted):
        return _same_types(a.a, b.a) and _same_types(a.hidden, b.hidden)
    if hasattr(a, "a"):
        return _same_types(a.a, b.a) and _same_types(getattr(a, "b", None), getattr(b, "b", None))
    return True


@settings(max_examples=100, deadline=None)
@given(values)
def test_iter_leaves_finds_every_planted_leaf(value: Any) -> None:
    assert _found(value) == sorted(set(_planted(value)))


@settings(max_examples=100, deadline=None)
@given(values)
def test_identity_transform_returns_the_value_itself(value: Any) -> None:
    assert transform(value, lambda x: x, Leaf) is value


@settings(max_examples=100, deadline=None)
@given(values)
def test_copying_transform_returns_an_equal_value_of_the_same_types(value: Any) -> None:
    out = transform(value, lambda x: Leaf(x.n), Leaf)  # equal, but a new object: every container is rebuilt
    assert out == value
    assert _same_types(out, value)
    if _planted(value):
        assert out is not value


# -------------------------------------------------------------------------------- cycles and depth
def _cycles() -> list[Any]:
    lst: list[Any] = [1]
    lst.append(lst)
    d: dict[str, Any] = {}
    d["me"] = [d]
    obj = Plain(None)
    obj.b = {"back": obj}
    dc = DC(None)
    dc.a = (dc,)
    slotted = Slotted(None, None)
    slotted.a = [slotted]
    return [lst, d, obj, dc, slotted]


@pytest.mark.parametrize("value", _cycles(), ids=["list", "dict", "object", "dataclass", "slots"])
def test_a_cycle_raises_at_once(value: Any) -> None:
    start = time.monotonic()
    for walk in (lambda: check_nesting(value, root="arg"), lambda: list(iter_leaves(value, Leaf, root="arg")),
                 lambda: transform(value, lambda x: x, Leaf, root="arg")):
        with pytest.raises(NestingError, match="arg contains itself") as info:
            walk()
        assert info.value.kind == "cycle" and info.value.path.startswith("arg")
    assert time.monotonic() - start < 5


def test_cycle_message_names_the_path() -> None:
    lst: list[Any] = [0, {"k": []}]
    lst[1]["k"].append(lst)
    with pytest.raises(NestingError) as info:
        check_nesting(lst, root="xs")
    assert info.value.path == "xs[1]['k'][0]"
    assert "xs[1]['k'][0] is xs again" in str(info.value)


def test_depth_beyond_the_limit_raises_without_recursion_error() -> None:
    deep: list[Any] = []
    cur = deep
    for _ in range(10_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    for walk in (lambda: check_nesting(deep, root="arg"), lambda: transform(deep, lambda x: x, Leaf, root="arg")):
        with pytest.raises(NestingError, match=f"more than {MAX_DEPTH} levels") as info:
            walk()
        assert info.value.kind == "depth"
        assert len(info.value.path) < 200  # a long path keeps its ends only
    # Just under the limit is fine, and walked without recursion.
    ok: list[Any] = [Leaf(1)]
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    assert _found(ok) == [1]
    assert transform(ok, lambda x: x, Leaf) is ok


def test_parts_are_the_direct_parts_the_walker_visits() -> None:
    assert parts([1, Leaf(2)]) == [1, Leaf(2)]
    assert parts({"k": Leaf(1)}) == ["k", Leaf(1)]
    assert parts(Plain(1, 2)) == [1, 2]
    assert parts(Slotted(1, 2)) == [1, 2]
    assert parts(DC(1)) == [1, None]
    assert parts(pathlib.Path("/x")) == [] and parts(DC) == [] and parts(3) == []
