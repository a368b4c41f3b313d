"""Canonical value hashing and normalized code hashing.

Cross-process determinism is checked against two long-lived worker processes started with different
``PYTHONHASHSEED`` values: every generated value is pickled to both and their hashes must equal the
parent's. The types used in generated values live at module level so that the workers can import them.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import importlib.util
import itertools
import math
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from slothflow import HashingError, ProxyValue, Value, hash_value, register_hasher
from slothflow.hashing._code import function_code_hash
from slothflow.hashing._source import normalize_source

TESTS_DIR = Path(__file__).parent

# ------------------------------------------------------------------------------ types in values


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


@dataclasses.dataclass
class Labelled:
    label: str
    tags: Any


Pair = collections.namedtuple("Pair", ["left", "right"])


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3


class Bag:
    """A plain user class: hashed through its pickle reduction."""

    def __init__(self, items: set[str], name: str) -> None:
        self.items = items
        self.name = name


class Keyed:
    """An object with a hash hook: only ``key`` counts, not ``noise``."""

    def __init__(self, key: str, noise: Any = None) -> None:
        self.key = key
        self.noise = noise

    def __slothflow_hash__(self) -> str:
        return self.key


class Locked:
    """Not picklable (holds a lock), so only hashable through a registered hasher."""

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.lock = threading.Lock()


class LockedChild(Locked):
    pass


register_hasher(Locked, lambda v: str(v.ident))


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees
        self.cache = threading.Lock()  # makes the default (pickle) path impossible


class CelsiusProxy(ProxyValue):
    type = Celsius

    def get_hash(self, data: bytes | None = None) -> str:
        return f"celsius:{self.instance.degrees!r}"


class Measurement(Value):
    def __init__(self, amount: float, unit: str, scratch: Any = None) -> None:
        self.amount = amount
        self.unit = unit
        self.scratch = scratch

    def get_hash(self, data: bytes | None = None) -> str:
        return f"{self.amount!r} {self.unit}"


# ------------------------------------------------------------------------------- strategies

hashable_atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
hashables = st.recursive(
    hashable_atoms,
    lambda children: st.tuples(children, children) | st.frozensets(hashable_atoms, max_size=3),
    max_leaves=5,
)
atoms = (
    hashable_atoms
    | st.floats(allow_nan=True)
    | st.sampled_from(list(Color))
    | st.builds(Bag, st.sets(st.text(max_size=5), max_size=5), st.text(max_size=5))
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(hashables, children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.builds(Point, children, children)
        | st.builds(Labelled, st.text(max_size=5), children)
        | st.builds(Pair, children, children)
    )


values = st.recursive(atoms, _containers, max_leaves=20)


def strict(v: Any) -> Any:
    """A structural identity: equal iff the two values are the same data of the same types."""
    t = type(v)
    if t is float:
        return ("float", "nan" if math.isnan(v) else v.hex())
    if t in (list, tuple):
        return (t.__name__, tuple(strict(x) for x in v))
    if t is dict:
        return ("dict", frozenset((strict(k), strict(x)) for k, x in v.items()))
    if t in (set, frozenset):
        return (t.__name__, frozenset(strict(x) for x in v))
    if t is Bag:
        return ("Bag", strict(v.items), v.name)
    if dataclasses.is_dataclass(v):
        return (t.__qualname__, tuple(strict(getattr(v, f.name)) for f in dataclasses.fields(v)))
    if t is Pair:
        return ("Pair", strict(v.left), strict(v.right))
    return (t.__qualname__, v)


# ------------------------------------------------------------------------------ hash workers

_WORKER = """
import pickle, struct, sys
sys.path.insert(0, sys.argv[1])
from slothflow import hash_value
import test_hashing  # noqa: F401  (the types of generated values)
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    header = inp.read(4)
    if len(header) < 4:
        break
    value = pickle.loads(inp.read(struct.unpack(">I", header)[0]))
    try:
        answer = hash_value(value)
    except Exception as exc:
        answer = "error " + type(exc).__name__
    data = answer.encode()
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()
"""


class HashWorker:
    def __init__(self, seed: str) -> None:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(TESTS_DIR)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )

    def hash(self, value: Any) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = pickle.dumps(value)
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        header = self.proc.stdout.read(4)
        assert len(header) == 4, "hash worker died"
        return self.proc.stdout.read(struct.unpack(">I", header)[0]).decode()

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[list[HashWorker]]:
    if __name__ != "test_hashing":
        pytest.skip("the hash workers import this module as 'test_hashing'")
    pool = [HashWorker("1"), HashWorker("4242")]
    yield pool
    for w in pool:
        w.close()


def test_module_is_importable_by_workers() -> None:
    # The cross-process property tests rely on this module's name; fail loudly if it changes.
    assert __name__ == "test_hashing"


# ------------------------------------------------------------------------ value properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_equal_values_hash_equally_in_other_processes_and_seeds(workers: list[HashWorker], value: Any) -> None:
    here = hash_value(value)
    assert len(here) == 64
    for worker in workers:
        assert worker.hash(value) == here


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_hash_equal_iff_structurally_equal(a: Any, b: Any) -> None:
    assert (hash_value(a) == hash_value(b)) == (strict(a) == strict(b))


@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_one_small_change_changes_the_hash(value: Any, data: st.DataObject) -> None:
    changed = data.draw(values)
    wrapped_a, wrapped_b = [value, 0], [value, changed]
    assume(strict(changed) != strict(0))
    assert hash_value(wrapped_a) != hash_value(wrapped_b)
    assert hash_value([value, 0]) == hash_value(wrapped_a)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(hashables, values, min_size=2, max_size=8))
def test_dict_insertion_order_does_not_matter(d: dict[Any, Any]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert list(reordered) != list(d)
    assert hash_value(reordered) == hash_value(d)
    assert hash_value(Labelled("x", reordered)) == hash_value(Labelled("x", d))


@settings(max_examples=100, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=6), min_size=2, max_size=12))
def test_set_iteration_order_does_not_matter(items: set[str]) -> None:
    ordered = sorted(items)
    rebuilt = set()
    for item in reversed(ordered):
        rebuilt.add(item)
    assert hash_value(rebuilt) == hash_value(items) == hash_value(set(ordered))
    assert hash_value(frozenset(items)) != hash_value(items)


def test_numbers_and_bools_of_equal_value_differ() -> None:
    distinct = [1, 1.0, True, 0, 0.0, -0.0, False, None, "1", b"1", "", b"", (), [], {}, set(), frozenset()]
    hashes = [hash_value(v) for v in distinct]
    assert len(set(hashes)) == len(distinct)


def test_sequences_and_mappings_keep_their_kind() -> None:
    assert hash_value([1, 2]) != hash_value((1, 2))
    assert hash_value({"a": 1}) != hash_value([("a", 1)])
    assert hash_value({1: 2}) != hash_value({2: 1})
    assert hash_value(Pair(1, 2)) != hash_value((1, 2))
    assert hash_value(Point(1, 2)) != hash_value(Pair(1, 2))
    assert hash_value(["ab"]) != hash_value(["a", "b"])
    assert hash_value([[1], 2]) != hash_value([1, [2]])


def test_float_specials_are_stable() -> None:
    assert hash_value(float("nan")) == hash_value(float("-nan")) == hash_value(math.nan)
    assert hash_value(math.inf) != hash_value(-math.inf)
    assert hash_value(0.1 + 0.2) != hash_value(0.3)


def test_enum_members_and_types() -> None:
    assert hash_value(Color.RED) != hash_value(Color.GREEN)
    assert hash_value(Color.RED) != hash_value(1)
    assert hash_value(int) != hash_value(float)


def test_common_library_types() -> None:
    import datetime
    import decimal
    import pathlib

    u = uuid.UUID(int=5)
    pairs = [
        (datetime.date(2024, 1, 2), datetime.date(2024, 1, 3)),
        (datetime.timedelta(seconds=1), datetime.timedelta(seconds=2)),
        (decimal.Decimal("1.10"), decimal.Decimal("1.1")),
        (pathlib.PurePosixPath("a/b"), pathlib.PurePosixPath("a/c")),
        (u, uuid.UUID(int=6)),
    ]
    for a, b in pairs:
        assert hash_value(a) == hash_value(pickle.loads(pickle.dumps(a)))
        assert hash_value(a) != hash_value(b)


# ------------------------------------------------------------------------------ custom types


def test_slothflow_hash_hook_decides() -> None:
    assert hash_value(Keyed("a", noise=1)) == hash_value(Keyed("a", noise=threading.Lock()))
    assert hash_value(Keyed("a")) != hash_value(Keyed("b"))
    assert hash_value(Keyed("a")) != hash_value("a")


def test_register_hasher_covers_type_and_subclasses() -> None:
    assert hash_value(Locked(1)) == hash_value(Locked(1))
    assert hash_value(Locked(1)) != hash_value(Locked(2))
    assert hash_value(LockedChild(1)) == hash_value(LockedChild(1))
    assert hash_value(LockedChild(1)) != hash_value(Locked(1))  # the concrete type is part of the hash
    assert hash_value([Locked(3), {"k": Locked(4)}]) == hash_value([Locked(3), {"k": Locked(4)}])


def test_register_hasher_replaces_the_pickle_fallback() -> None:
    class Opaque:
        def __init__(self, n: int) -> None:
            self.n = n
            self.lock = threading.Lock()

    with pytest.raises(HashingError):
        hash_value(Opaque(1))
    register_hasher(Opaque, lambda v: v.n.to_bytes(4, "big"))
    assert hash_value(Opaque(1)) == hash_value(Opaque(1))
    assert hash_value(Opaque(1)) != hash_value(Opaque(2))


def test_proxy_value_get_hash_is_used() -> None:
    assert hash_value(Celsius(20.0)) == hash_value(Celsius(20.0))
    assert hash_value(Celsius(20.0)) != hash_value(Celsius(21.0))


def test_value_subclass_get_hash_is_used() -> None:
    assert hash_value(Measurement(1.0, "m", scratch=[1])) == hash_value(Measurement(1.0, "m", scratch=[2]))
    assert hash_value(Measurement(1.0, "m")) != hash_value(Measurement(1.0, "km"))


def test_value_subclass_default_hash_follows_state() -> None:
    class Plain(Value):
        def __init__(self, items: set[str]) -> None:
            self.items = items

    assert hash_value(Plain({"a", "b"})) == hash_value(Plain({"b", "a"}))
    assert hash_value(Plain({"a"})) != hash_value(Plain({"b"}))


def test_pickle_reduction_fallback_is_canonical_across_seeds(workers: list[HashWorker]) -> None:
    words = {f"word{i}" for i in range(40)}
    bag = Bag(words, "bag")
    here = hash_value(bag)
    assert hash_value(Bag(set(sorted(words, reverse=True)), "bag")) == here
    assert hash_value(Bag(words, "other")) != here
    assert hash_value(Bag(words | {"extra"}, "bag")) != here
    for worker in workers:
        assert worker.hash(bag) == here
        assert worker.hash({"k": [bag, Labelled("l", words)]}) == hash_value({"k": [bag, Labelled("l", words)]})


# ------------------------------------------------------------------------------------ errors


def _gen() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    "make, type_name",
    [
        (threading.Lock, "lock"),
        (lambda: _gen(), "generator"),
        (lambda: open(__file__), "TextIOWrapper"),
        (lambda: [1, {"a": threading.Lock()}], "lock"),
        (lambda: Bag({"a"}, threading.RLock()), "Bag"),  # type: ignore[arg-type]
    ],
)
def test_values_without_a_deterministic_hash_raise(make: Any, type_name: str) -> None:
    value = make()
    try:
        with pytest.raises(HashingError) as info:
            hash_value(value)
        assert type_name in str(info.value)
        assert info.value.value_type
    finally:
        if hasattr(value, "close"):
            value.close()


def test_self_referential_values_raise_instead_of_recursing() -> None:
    lst: list[Any] = [1]
    lst.append(lst)
    d: dict[str, Any] = {}
    d["me"] = d
    nested: list[Any] = [[{"x": []}]]
    nested[0][0]["x"].append(nested)
    bag = Bag(set(), "b")
    bag.name = bag  # type: ignore[assignment]
    for value in (lst, d, nested, bag):
        with pytest.raises(HashingError, match="self-referential"):
            hash_value(value)
    # The same object twice is not a cycle.
    shared = [1, 2]
    assert hash_value([shared, shared]) == hash_value([[1, 2], [1, 2]])
    # A failed hash leaves no state behind.
    assert hash_value([1, [2]]) == hash_value([1, [2]])


def test_very_deep_values_raise_hashing_error_not_recursion_error() -> None:
    ok: list[Any] = []
    cur = ok
    for _ in range(200):
        cur.append([])
        cur = cur[0]
    hash_value(ok)
    deep: list[Any] = []
    cur = deep
    for _ in range(20000):
        cur.append([])
        cur = cur[0]
    with pytest.raises(HashingError):
        hash_value(deep)


# ----------------------------------------------------------------------------- code hashing

_counter = itertools.count()


def load_function(tmp_path: Path, source: str, name: str = "f") -> Any:
    """Write ``source`` to a fresh module file, import it and return ``name`` from it."""
    mod_name = f"_sf_codehash_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{mod_name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


BASE = """
import functools

def deco(f):
    return f

def f(a, b=2):
    total = a + b
    for i in range(3):
        total += i * 2
    return {"total": total, "items": [a, b]}
"""

SAME_AS_BASE = [
    # comments and blank lines
    """
    import functools

    def deco(f):
        return f

    # a comment above
    def f(a, b=2):  # trailing

        total = a + b   # why not
        for i in range(3):
            # loop
            total += i * 2
        return {"total": total, "items": [a, b]}
    """,
    # a docstring
    '''
    import functools

    def deco(f):
        return f

    def f(a, b=2):
        """Add things up.

        With a long explanation.
        """
        total = a + b
        for i in range(3):
            total += i * 2
        return {"total": total, "items": [a, b]}
    ''',
    # decorators
    """
    import functools

    def deco(f):
        return f

    @deco
    @functools.partial(deco)
    def f(a, b=2):
        total = a + b
        for i in range(3):
            total += i * 2
        return {"total": total, "items": [a, b]}
    """,
    # formatting: spacing, parentheses, line continuations, trailing commas, quotes
    """
    import functools

    def deco(f):
        return f

    def f(
        a,
        b = 2,
    ):
        total = (a +
                 b)
        for i in range( 3 ):
            total += i*2
        return {
            'total': total,
            'items': [a, b,],
        }
    """,
]

DIFFERENT_FROM_BASE = [
    ("constant", "total += i * 2", "total += i * 3"),
    ("operator", "total = a + b", "total = a - b"),
    ("default", "def f(a, b=2):", "def f(a, b=3):"),
    ("name", '"total": total', '"sum": total'),
    ("argument name", "def f(a, b=2):", "def f(x, b=2):\n    a = x"),
    ("range", "range(3)", "range(4)"),
    ("statement order", "total = a + b\n    for", "total = b + a\n    for"),
    ("annotation", "def f(a, b=2):", "def f(a: int, b=2):"),
    ("extra statement", "return {", "total = -total\n    return {"),
]


def test_comments_docstrings_decorators_and_formatting_do_not_count(tmp_path: Path) -> None:
    base = function_code_hash(load_function(tmp_path, BASE))
    for variant in SAME_AS_BASE:
        assert function_code_hash(load_function(tmp_path, variant)) == base, variant


@pytest.mark.parametrize("what, old, new", DIFFERENT_FROM_BASE, ids=[d[0] for d in DIFFERENT_FROM_BASE])
def test_real_code_changes_count(tmp_path: Path, what: str, old: str, new: str) -> None:
    assert old in BASE
    base = function_code_hash(load_function(tmp_path, BASE))
    changed = function_code_hash(load_function(tmp_path, BASE.replace(old, new)))
    assert changed != base


def test_same_bytecode_different_defaults_in_two_modules(tmp_path: Path) -> None:
    # Code objects of these two functions compare equal; their hashes must not.
    f1 = load_function(tmp_path, "def g(x=1):\n    return x\n", "g")
    f2 = load_function(tmp_path, "def g(x=2):\n    return x\n", "g")
    assert f1.__code__ == f2.__code__
    assert function_code_hash(f1) != function_code_hash(f2)


def test_decorators_of_nested_functions_count(tmp_path: Path) -> None:
    src = """
    import functools

    def f(xs):
        @functools.lru_cache(maxsize=None)
        def inner(x):
            return x + 1
        return [inner(x) for x in xs]
    """
    a = function_code_hash(load_function(tmp_path, src))
    b = function_code_hash(load_function(tmp_path, src.replace("@functools.lru_cache(maxsize=None)\n        ", "")))
    c = function_code_hash(load_function(tmp_path, src.replace("maxsize=None", "maxsize=1")))
    assert len({a, b, c}) == 3


def test_methods_with_unindented_string_lines_still_ignore_comments(tmp_path: Path) -> None:
    src = '''
class K:
    def m(self):
        text = """
not indented"""
        return text  # COMMENT
'''
    k1 = load_function(tmp_path, src, "K")
    k2 = load_function(tmp_path, src.replace("# COMMENT", "# another comment"), "K")
    k3 = load_function(tmp_path, src.replace("not indented", "changed"), "K")
    assert function_code_hash(k1.m) == function_code_hash(k2.m)
    assert function_code_hash(k1.m) != function_code_hash(k3.m)


def test_lambdas_on_one_line_are_told_apart(tmp_path: Path) -> None:
    src = "fs = [lambda x: x + 1, lambda x: x + 2, lambda x: x + 1]\n"
    fs = load_function(tmp_path, src, "fs")
    assert function_code_hash(fs[0]) != function_code_hash(fs[1])
    assert hash_value(fs[0]) != hash_value(fs[1])
    assert hash_value(fs[0]) == hash_value(fs[2])


def _exec_function(code: str, name: str = "f") -> Any:
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace[name]


def test_functions_without_source_hash_by_code() -> None:
    f1 = _exec_function("def f(x):\n    return x + 1\n")
    f1_again = _exec_function("def f(x):\n    # comment\n    return x + 1\n")
    f2 = _exec_function("def f(x):\n    return x + 2\n")
    f3 = _exec_function("def f(x, y=1):\n    return x + y\n")
    f4 = _exec_function("def f(x, y=2):\n    return x + y\n")
    f5 = _exec_function("def f(x, *, y=2):\n    return x + y\n")
    f6 = _exec_function("def f(x):\n    return [x, lambda: x + 1]\n")
    f7 = _exec_function("def f(x):\n    return [x, lambda: x + 2]\n")
    import inspect

    with pytest.raises(OSError):
        inspect.getsource(f1)
    assert function_code_hash(f1) == function_code_hash(f1_again)
    hashes = [function_code_hash(f) for f in (f1, f2, f3, f4, f5, f6, f7)]
    assert len(set(hashes)) == len(hashes)


# A tiny language of straight-line functions, rendered with random formatting: two renderings must hash
# equally exactly when they are the same program.
_ops = st.sampled_from(["+", "-", "*", "//", "%", "<<", "&"])
_stmt = st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd"), _ops, st.integers(0, 9))
_program = st.lists(_stmt, min_size=1, max_size=5)


def _render(program: list[tuple[str, str, str, int]], style: st.DataObject) -> str:
    lines = ["def f(a, b=1, c=2, d=3):"]
    if style.draw(st.booleans(), label="docstring"):
        lines.append('    """' + style.draw(st.text("xyz ", max_size=10), label="doc") + '"""')
    for target, source, op, const in program:
        if style.draw(st.booleans(), label="comment"):
            lines.append("    # " + style.draw(st.text("xyz ", max_size=10), label="comment text"))
        pad = " " * style.draw(st.integers(0, 2), label="pad")
        if style.draw(st.booleans(), label="parens"):
            lines.append(f"    {target}{pad}={pad}({source}{pad}{op}\n        {const})")
        else:
            lines.append(f"    {target} = {source}{pad}{op}{pad}{const}")
        if style.draw(st.booleans(), label="blank"):
            lines.append("")
    lines.append("    return (a, b, c, d)")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_program, _program, st.data())
def test_code_hash_follows_the_program_not_its_text(
    tmp_path: Path, p1: list[Any], p2: list[Any], style: st.DataObject
) -> None:
    f1 = load_function(tmp_path, _render(p1, style))
    f1b = load_function(tmp_path, _render(p1, style))
    f2 = load_function(tmp_path, _render(p2, style))
    assert function_code_hash(f1) == function_code_hash(f1b)
    assert (function_code_hash(f1) == function_code_hash(f2)) == (p1 == p2)


def test_normalize_source_keeps_semantics_visible() -> None:
    text = normalize_source('def f():\n    """doc"""\n    return "doc"\n')
    assert '"doc"' not in text.split("return")[0]
    assert "return 'doc'" in text


# ------------------------------------------------------------------- helpers in the code hash

HELPER_BASE = """
import math
import os.path
from slothflow import task

OFFSET = 3
NAMES = ("a", "b")

def _scale(x):
    return x * 2 + _shift(x)

def _shift(x):
    return x + OFFSET

class Point:
    def norm(self):
        return 1

def _even(n):
    return n == 0 or _odd(n - 1)

def _odd(n):
    return n != 0 and _even(n - 1)

@task
def other(x):
    return x + 1

def f(x):
    return [_scale(x), Point(), NAMES, math.sqrt(x), os.path.join("a", "b"), other(x), _even(x)]
"""

HELPER_CHANGES = [
    ("direct helper", "return x * 2 + _shift(x)", "return x * 3 + _shift(x)"),
    ("helper of a helper", "return x + OFFSET", "return x - OFFSET"),
    ("constant used by a helper", "OFFSET = 3", "OFFSET = 4"),
    ("constant used directly", 'NAMES = ("a", "b")', 'NAMES = ("a", "c")'),
    ("class", "return 1", "return 2"),
    ("mutually recursive helper", "return n != 0 and _even(n - 1)", "return n != 0 and not _even(n - 1)"),
]

HELPER_NON_CHANGES = [
    ("another task's body", "return x + 1\n", "return x + 2\n"),
    ("an unused constant", "OFFSET = 3", "OFFSET = 3\nUNUSED = 5"),
    ("a comment in a helper", "def _shift(x):", "def _shift(x):  # shift it"),
]


@pytest.mark.parametrize("what, old, new", HELPER_CHANGES, ids=[c[0] for c in HELPER_CHANGES])
def test_helpers_and_constants_are_part_of_the_code_hash(tmp_path: Path, what: str, old: str, new: str) -> None:
    assert old in HELPER_BASE
    base = function_code_hash(load_function(tmp_path, HELPER_BASE))
    assert function_code_hash(load_function(tmp_path, HELPER_BASE)) == base  # another module, same code
    assert function_code_hash(load_function(tmp_path, HELPER_BASE.replace(old, new))) != base


@pytest.mark.parametrize("what, old, new", HELPER_NON_CHANGES, ids=[c[0] for c in HELPER_NON_CHANGES])
def test_what_is_not_part_of_the_code_hash(tmp_path: Path, what: str, old: str, new: str) -> None:
    assert old in HELPER_BASE
    base = function_code_hash(load_function(tmp_path, HELPER_BASE))
    assert function_code_hash(load_function(tmp_path, HELPER_BASE.replace(old, new))) == base


def test_mutually_recursive_helpers_hash_the_same_in_any_order(tmp_path: Path) -> None:
    even_first = load_function(tmp_path, HELPER_BASE, "_even")
    h_even = function_code_hash(even_first)
    h_odd = function_code_hash(load_function(tmp_path, HELPER_BASE, "_odd"))
    odd_first_module = load_function(tmp_path, HELPER_BASE, "_odd")
    assert function_code_hash(odd_first_module) == h_odd
    assert function_code_hash(odd_first_module.__globals__["_even"]) == h_even
    assert h_even != h_odd


def test_a_failing_user_hasher_is_a_hashing_error_naming_the_task(tmp_path: Path) -> None:
    from slothflow import Scheduler, register_hasher, task

    class Fragile:
        def __slothflow_hash__(self) -> str:
            raise RuntimeError("hook exploded")

    class Other:
        pass

    register_hasher(Other, lambda v: 1 / 0)  # type: ignore[arg-type,return-value]

    @task
    def use(x: object) -> int:
        return 1

    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'h.db'}"}})
    for value, words in ((Fragile(), "hook exploded"), (Other(), "ZeroDivisionError")):
        with pytest.raises(HashingError) as info:
            scheduler.run(use(value))
        assert words in str(info.value) and "argument 'x'" in str(info.value) and "use" in str(info.value)
    assert scheduler.run(use(3)) == 1  # the scheduler is still usable
    scheduler.close()


def test_instances_and_classes_of_user_code_hash_with_the_class_code(tmp_path: Path) -> None:
    """A model object passed between tasks: editing a method of its class must change its hash (found by
    review: the old result was reused), and the hash must still not depend on PYTHONHASHSEED."""
    src = textwrap.dedent('''
        import dataclasses
        from slothflow import hash_value

        class Model:
            def __init__(self, k):
                self.k = k

            def predict(self, x):
                return x * self.k

        @dataclasses.dataclass
        class Cfg:
            n: int

            def twice(self):
                return self.n * 2

        print(hash_value(Model(2)), hash_value(Model), hash_value(Cfg(1)))
    ''')
    script = tmp_path / "models.py"

    def hashes(text: str, seed: str) -> list[str]:
        script.write_text(text)
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
        return out.stdout.split()

    base = hashes(src, "1")
    assert hashes(src, "2") == base
    edited = hashes(src.replace("x * self.k", "x * self.k + 1").replace("self.n * 2", "self.n * 3"), "1")
    assert all(a != b for a, b in zip(base, edited, strict=True))
    assert hashes(src.replace("# nothing", "") + "\n# a comment\n", "1") == base


def test_a_class_defined_twice_is_hashed_from_the_definition_in_use(tmp_path: Path) -> None:
    """``try: ... except ImportError:`` fallbacks define a class name twice: the class object in use decides
    which source counts (found by review: the other definition was hashed, so an edit went unseen)."""
    src = textwrap.dedent('''
        from slothflow import hash_value

        try:
            import not_a_module_xyz  # noqa: F401

            class Engine:
                def run(self):
                    return "fast"
        except ImportError:
            class Engine:
                def run(self):
                    return "slow"

        print(hash_value(Engine()))
    ''')
    script = tmp_path / "engine.py"

    def digest(text: str) -> str:
        script.write_text(text)
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout

    base = digest(src)
    assert digest(src.replace('return "slow"', 'return "slower"')) != base  # the definition in use
    assert digest(src.replace('return "fast"', 'return "faster"')) == base  # the one never executed


def test_instance_hash_follows_helpers_and_constants_its_methods_use(tmp_path: Path) -> None:
    src = textwrap.dedent('''
        from slothflow import hash_value

        SCALE = 2


        def helper(x):
            return x * SCALE


        class Model:
            def __init__(self, k):
                self.k = k

            def predict(self, x):
                return helper(x) + self.k

        print(hash_value(Model(2)))
    ''')
    script = tmp_path / "model2.py"

    def digest(text: str, seed: str = "0") -> str:
        script.write_text(text)
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                              check=True).stdout

    base = digest(src)
    assert digest(src, "5") == base
    assert digest(src.replace("x * SCALE", "x * SCALE + 1")) != base
    assert digest(src.replace("SCALE = 2", "SCALE = 3")) != base
    assert digest(src + "\n# a comment\n") == base
