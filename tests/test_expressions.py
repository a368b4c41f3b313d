"""Lazy expressions: operators, item/attribute access, calls, containers, and misuse errors."""

from __future__ import annotations

import dataclasses
import operator
from collections import namedtuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slothflow import (
    Expression,
    ExpressionError,
    Scheduler,
    SimpleExpression,
    ValueExpression,
    task,
)

Point = namedtuple("Point", ["x", "y"])


@dataclasses.dataclass(frozen=True)
class Box:
    label: str
    content: Any
    extra: Any = None


@dataclasses.dataclass
class Obj:
    value: int

    def times(self, k: int) -> int:
        return self.value * k


RAN: list[str] = []


@task
def ident(x: Any) -> Any:
    RAN.append("ident")
    return x


@task
def make_obj(v: int) -> Obj:
    return Obj(v)


@task
def make_fn(k: int) -> Any:
    return _Multiplier(k)


class _Multiplier:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return self.k * x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Multiplier) and other.k == self.k

    def __hash__(self) -> int:
        return hash(self.k)


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


BINARY = [
    ("add", operator.add),
    ("sub", operator.sub),
    ("mul", operator.mul),
    ("truediv", operator.truediv),
    ("floordiv", operator.floordiv),
    ("mod", operator.mod),
    ("pow", operator.pow),
    ("eq", operator.eq),
    ("ne", operator.ne),
    ("lt", operator.lt),
    ("le", operator.le),
    ("gt", operator.gt),
    ("ge", operator.ge),
    ("and_", operator.and_),
    ("or_", operator.or_),
    ("xor", operator.xor),
]


def test_operators_build_simple_expressions() -> None:
    e = ident(3)
    for name, op in BINARY:
        built = op(e, 2)
        assert isinstance(built, SimpleExpression), name
        assert built.func_name == name
        reflected = op(2, e)
        assert isinstance(reflected, SimpleExpression), name
    assert isinstance(-e, SimpleExpression)
    assert isinstance(~e, SimpleExpression)
    assert isinstance(e[0], SimpleExpression) and e[0].func_name == "getitem"
    assert isinstance(e.attr, SimpleExpression) and e.attr.func_name == "getattr"
    assert isinstance(e(1), SimpleExpression) and e(1).func_name == "call"
    assert RAN == []  # nothing ran


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(-50, 50), b=st.integers(1, 50))
def test_operators_evaluate_like_python(scheduler: Scheduler, a: int, b: int) -> None:
    ea = ident(a)
    exprs: list[Any] = [op(ea, b) for _, op in BINARY] + [-ea, ~ea]
    expected: list[Any] = [op(a, b) for _, op in BINARY] + [-a, ~a]
    for name, op in BINARY:
        if a == 0 and name in ("truediv", "floordiv", "mod"):
            continue  # b / 0
        exprs.append(op(b, ea))
        expected.append(op(b, a))
    assert scheduler.run(exprs) == expected


def test_reflected_operators_put_operands_in_order(scheduler: Scheduler) -> None:
    e = ident(4)
    assert scheduler.run([10 - e, 10 / e, 10 // e, 10 % e, 3 * e, 1 + e, 6 & e, 1 | e]) == [
        6, 2.5, 2, 2, 12, 5, 4, 5,
    ]
    assert scheduler.run(ident("ab") + "c") == "abc"
    assert scheduler.run("c" + ident("ab")) == "cab"


def test_getitem_getattr_and_call(scheduler: Scheduler) -> None:
    data = ident({"a": [1, 2, {"b": 3}]})
    assert scheduler.run(data["a"][2]["b"]) == 3
    assert scheduler.run(data["a"][1:]) == [2, {"b": 3}]
    obj = make_obj(7)
    assert scheduler.run(obj.value) == 7
    assert scheduler.run(obj.times(3)) == 21  # lazy method call
    assert scheduler.run(make_fn(5)(ident(4))) == 20  # lazy call with lazy argument


def test_lazy_errors_are_raised_when_evaluated(scheduler: Scheduler) -> None:
    with pytest.raises(KeyError):
        scheduler.run(ident({"a": 1})["b"])
    with pytest.raises(ZeroDivisionError):
        scheduler.run(ident(1) / 0)
    with pytest.raises(AttributeError):
        scheduler.run(make_obj(1).missing)


def test_bool_is_refused_with_advice() -> None:
    e = ident(1)
    with pytest.raises(ExpressionError, match="cond"):
        bool(e)
    with pytest.raises(ExpressionError):
        if e == 1:  # the classic mistake
            pass
    with pytest.raises(ExpressionError):
        _ = e and 1
    with pytest.raises(ExpressionError):
        _ = not e


def test_iteration_needs_nout() -> None:
    e = ident([1, 2])
    with pytest.raises(ExpressionError, match="nout"):
        iter(e)
    with pytest.raises(ExpressionError, match="nout"):
        a, b = e
    with pytest.raises(ExpressionError, match="nout"):
        len(e)
    assert issubclass(ExpressionError, TypeError)


def test_nout_unpacks_into_getitems(scheduler: Scheduler) -> None:
    pair = ident.options(nout=2)((1, "x"))
    assert len(pair) == 2
    a, b = pair
    assert isinstance(a, SimpleExpression) and isinstance(b, SimpleExpression)
    assert scheduler.run((b, a)) == ("x", 1)
    assert list(iter(ident.options(nout=0)(()))) == []


def test_private_attributes_are_not_lazy() -> None:
    e = ident(1)
    with pytest.raises(AttributeError):
        e._private  # noqa: B018
    with pytest.raises(AttributeError):
        e.__array__  # noqa: B018
    assert not hasattr(e, "_anything")


def test_expressions_are_hashable_by_identity() -> None:
    a, b = ident(1), ident(1)
    assert len({a, b}) == 2
    assert isinstance(a == b, SimpleExpression)  # lazy equality, not identity


def test_containers_are_evaluated_element_wise(scheduler: Scheduler) -> None:
    value = {
        "list": [ident(1), 2, [ident(3)]],
        "tuple": (ident(4), 5),
        "set": {ident(6), 7},
        "frozenset": frozenset({ident(8)}),
        ident("lazy-key"): "v",
        "nt": Point(ident(9), 10),
        "dc": Box("b", ident(11), extra=[ident(12)]),
        "plain": "text",
    }
    result = scheduler.run(value)
    assert result == {
        "list": [1, 2, [3]],
        "tuple": (4, 5),
        "set": {6, 7},
        "frozenset": frozenset({8}),
        "lazy-key": "v",
        "nt": Point(9, 10),
        "dc": Box("b", 11, extra=[12]),
        "plain": "text",
    }
    assert type(result["nt"]) is Point
    assert type(result["dc"]) is Box
    assert type(result["frozenset"]) is frozenset


def test_task_results_containing_expressions_are_evaluated(scheduler: Scheduler) -> None:
    @task
    def builder(n: int) -> Any:
        return {"items": [ident(i) for i in range(n)], "point": Point(ident(n), None), "box": Box("x", ident(0))}

    assert scheduler.run(builder(3)) == {"items": [0, 1, 2], "point": Point(3, None), "box": Box("x", 0)}


def test_plain_values_run_as_themselves(scheduler: Scheduler) -> None:
    assert scheduler.run(5) == 5
    assert scheduler.run([1, {"a": (2,)}]) == [1, {"a": (2,)}]
    assert scheduler.run(ValueExpression([ident(3)])) == [3]


def test_shared_subexpression_is_evaluated_once(scheduler: Scheduler) -> None:
    shared = ident(41)
    assert scheduler.run([shared + 1, shared + 1, shared]) == [42, 42, 41]
    assert RAN == ["ident"]


def test_unreturned_expression_is_never_evaluated(scheduler: Scheduler) -> None:
    ran: list[str] = []

    @task
    def never(x: int) -> int:
        ran.append("never")
        return x

    @task
    def parent(x: int) -> int:
        never(x)  # built, dropped
        unused = never(x + 1) + 1  # noqa: F841
        return x * 2

    assert scheduler.run(parent(3)) == 6
    assert ran == []


def test_expression_repr_is_short_and_readable() -> None:
    e = ident(1)
    assert "ident" in repr(e)
    assert repr(e["k"]).endswith("['k']")
    assert repr(e.field).endswith(".field")
    deep: Expression = ident(0)
    for _ in range(5000):
        deep = ident(deep)
    assert len(repr(deep)) < 200  # no recursion through the whole chain


def test_expression_hash_is_structural_and_iterative() -> None:
    from slothflow import hash_value

    assert hash_value(ident(1) + 1) == hash_value(ident(1) + 1)
    assert hash_value(ident(1) + 1) != hash_value(ident(1) + 2)
    assert hash_value(ident(1)) != hash_value(ident(2))
    deep: Expression = ident(0)
    for _ in range(5000):
        deep = ident(deep)
    assert len(hash_value(deep)) == 64


# --------------------------------------------------------------------------- storing expressions

_leaves = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(), st.booleans())
_plain = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.tuples(st.text(max_size=2), st.integers(0, 3)), inner, max_size=3),
        st.frozensets(st.text(max_size=3), max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def _expression_values(draw: st.DrawFn) -> Any:
    """A structure of expressions whose arguments share plain objects (memo references)."""
    shared = [draw(_plain) for _ in range(draw(st.integers(1, 3)))]
    exprs: list[Any] = []
    for _ in range(draw(st.integers(1, 6))):
        args = [draw(st.sampled_from(shared))]
        if exprs and draw(st.booleans()):
            args.append(draw(st.sampled_from(exprs)))
        e: Any = ident(args)
        if draw(st.booleans()):
            e = e[draw(st.integers(0, 1))]
        exprs.append(e)
    return {"exprs": exprs, "shared": shared, ("k", 1): Box("b", exprs[-1])}


@settings(max_examples=60, deadline=None)
@given(value=_expression_values())
def test_stored_expressions_round_trip(value: Any) -> None:
    from slothflow import hash_value
    from slothflow.model._serialize import dumps, loads

    loaded = loads(dumps(value))
    assert hash_value(loaded) == hash_value(value)
    assert loaded["shared"] == value["shared"]


def test_stored_deep_expression_round_trips_without_recursion() -> None:
    import sys

    from slothflow import hash_value
    from slothflow.model._serialize import dumps, loads

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        deep: Any = ident(0)
        for i in range(5000):
            deep = ident(deep) + i
        assert hash_value(loads(dumps([deep]))) == hash_value([deep])
    finally:
        sys.setrecursionlimit(limit)


def test_replayed_reduction_with_shared_structures(scheduler: Scheduler) -> None:
    ran: list[str] = []

    @task
    def consume(xs: Any, mapping: Any) -> int:
        ran.append("consume")
        return len(xs) + len(mapping)

    @task
    def parent() -> Any:
        ran.append("parent")
        words = ["a", "b", "c"]
        mapping = {(w, i): {"w": w} for i, w in enumerate(words)}
        return [consume(words, mapping), consume(words[:2], mapping), ident(mapping)]

    first = scheduler.run(parent())
    assert scheduler.run(parent()) == first
    assert ran == ["parent", "consume", "consume"]
