"""Lazy expressions: what calling a task returns.

An expression describes a value the scheduler will compute; nothing runs when one is built. Operators,
item and attribute access and calls on an expression build further expressions (``SimpleExpression``).
``bool()`` is refused with advice, because Python would otherwise take the truth of the *description*
instead of the value.

Expressions may nest arbitrarily deep (``step(step(...step(0)))``); everything that walks them here
(hashing) is iterative, so no recursion limit is hit.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from slothflow._errors import ExpressionError
from slothflow._util import preview
from slothflow._walk import contains, iter_leaves, transform
from slothflow.hashing._encode import hash_struct, hash_value

if TYPE_CHECKING:
    from slothflow.model._task import Task

_OPERATORS: dict[str, Callable[..., Any]] = {
    "getitem": operator.getitem,
    "getattr": getattr,
    "call": lambda f, *a, **k: f(*a, **k),
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "and_": operator.and_,
    "or_": operator.or_,
    "neg": operator.neg,
    "radd": lambda a, b: b + a,
    "rsub": lambda a, b: b - a,
    "rmul": lambda a, b: b * a,
    "rtruediv": lambda a, b: b / a,
    "rfloordiv": lambda a, b: b // a,
    "rmod": lambda a, b: b % a,
    "rpow": lambda a, b: b**a,
    "xor": operator.xor,
    "rxor": lambda a, b: b ^ a,
    "invert": operator.invert,
    "rand_": lambda a, b: b & a,
    "ror_": lambda a, b: b | a,
}


def apply_operator(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return _OPERATORS[name](*args, **kwargs)


def _binary(name: str) -> Callable[[Expression, Any], SimpleExpression]:
    def method(self: Expression, other: Any) -> SimpleExpression:
        return SimpleExpression(name, (self, other))

    method.__name__ = f"__{name.rstrip('_')}__"
    return method


class Expression:
    """A lazy value computed by the scheduler."""

    __slots__ = ("_hash", "_length", "__weakref__")

    def __init__(self) -> None:
        self._hash: str | None = None
        self._length: int | None = None

    # Python protocols that must not become lazy --------------------------------------------------
    def __bool__(self) -> bool:
        raise ExpressionError(
            f"{self!r} is a lazy expression: its truth is not known until the scheduler computes it. "
            "Use slothflow.cond(pred, then, else_) to branch lazily, or pass the value to a task and "
            "branch inside it."
        )

    def __iter__(self) -> Iterator[Any]:
        if self._length is None:
            raise ExpressionError(
                f"{self!r} has no known length, so it cannot be iterated or unpacked. Declare the "
                "number of results with @task(nout=N) or a tuple[...] return annotation, or pass the "
                "list to another task (or slothflow.functools.map_)."
            )
        return (self[i] for i in range(self._length))

    def __len__(self) -> int:
        if self._length is None:
            raise ExpressionError(f"{self!r} has no known length; declare it with @task(nout=N).")
        return self._length

    __hash__ = object.__hash__

    # Lazy operations ---------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> SimpleExpression:
        return SimpleExpression("getitem", (self, key))

    def __getattr__(self, name: str) -> SimpleExpression:
        if name.startswith("_"):
            raise AttributeError(name)
        return SimpleExpression("getattr", (self, name))

    def __call__(self, *args: Any, **kwargs: Any) -> SimpleExpression:
        return SimpleExpression("call", (self, *args), kwargs)

    __eq__ = _binary("eq")  # type: ignore[assignment]
    __ne__ = _binary("ne")  # type: ignore[assignment]
    __lt__ = _binary("lt")
    __le__ = _binary("le")
    __gt__ = _binary("gt")
    __ge__ = _binary("ge")
    __add__ = _binary("add")
    __sub__ = _binary("sub")
    __mul__ = _binary("mul")
    __truediv__ = _binary("truediv")
    __floordiv__ = _binary("floordiv")
    __mod__ = _binary("mod")
    __pow__ = _binary("pow")
    __and__ = _binary("and_")
    __or__ = _binary("or_")
    __radd__ = _binary("radd")
    __rsub__ = _binary("rsub")
    __rmul__ = _binary("rmul")
    __rtruediv__ = _binary("rtruediv")
    __rfloordiv__ = _binary("rfloordiv")
    __rmod__ = _binary("rmod")
    __rpow__ = _binary("rpow")
    __xor__ = _binary("xor")
    __rxor__ = _binary("rxor")
    __rand__ = _binary("rand_")
    __ror__ = _binary("ror_")

    def __neg__(self) -> SimpleExpression:
        return SimpleExpression("neg", (self,))

    def __invert__(self) -> SimpleExpression:
        return SimpleExpression("invert", (self,))

    # Hashing -----------------------------------------------------------------------------------------
    def __slothflow_hash__(self) -> str:
        if self._hash is None:
            _hash_expressions(self)
        assert self._hash is not None
        return self._hash

    def _own_hash(self) -> str:  # children are hashed already when this runs
        raise NotImplementedError

    def _children(self) -> tuple[Any, ...]:
        raise NotImplementedError


class TaskExpression(Expression):
    """A task applied to (possibly lazy) arguments."""

    __slots__ = ("task", "args", "kwargs")

    def __init__(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self._length = task.nout

    def _children(self) -> tuple[Any, ...]:
        return (self.args, self.kwargs)

    def _own_hash(self) -> str:
        return hash_struct("TaskExpression", self.task.hash, hash_value(self.args), hash_value(self.kwargs))

    def __repr__(self) -> str:
        return f"{self.task.fullname}({_format_args(self.args, self.kwargs)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_task_expression, (self.task, self.args, self.kwargs))


def _rebuild_task_expression(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskExpression:
    return TaskExpression(task, args, kwargs)


class SimpleExpression(Expression):
    """A lazy Python operation (item, attribute, call, operator) on expressions."""

    __slots__ = ("func_name", "args", "kwargs")

    def __init__(self, func_name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.func_name = func_name
        self.args = args
        self.kwargs = kwargs or {}

    def _children(self) -> tuple[Any, ...]:
        return (self.args, self.kwargs)

    def _own_hash(self) -> str:
        return hash_struct("SimpleExpression", self.func_name, hash_value(self.args), hash_value(self.kwargs))

    def __repr__(self) -> str:
        target = self.args[0]
        if self.func_name == "getitem":
            return f"{target!r}[{self.args[1]!r}]"
        if self.func_name == "getattr":
            return f"{target!r}.{self.args[1]}"
        return f"{self.func_name}({_format_args(self.args, self.kwargs)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SimpleExpression, (self.func_name, self.args, self.kwargs))


class ValueExpression(Expression):
    """A concrete value wrapped as an expression."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def _children(self) -> tuple[Any, ...]:
        return (self.value,)

    def _own_hash(self) -> str:
        return hash_struct("ValueExpression", hash_value(self.value))

    def __repr__(self) -> str:
        return f"ValueExpression({self.value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ValueExpression, (self.value,))


class SchedulerExpression(Expression):
    """A built-in whose arguments the scheduler evaluates itself, lazily (cond, catch, seq, ...)."""

    __slots__ = ("name", "args", "kwargs")

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.name = name
        self.args = args
        self.kwargs = kwargs or {}

    def _children(self) -> tuple[Any, ...]:
        return (self.args, self.kwargs)

    def _own_hash(self) -> str:
        return hash_struct("SchedulerExpression", self.name, hash_value(self.args), hash_value(self.kwargs))

    def __repr__(self) -> str:
        return f"{self.name}({_format_args(self.args, self.kwargs)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SchedulerExpression, (self.name, self.args, self.kwargs))


def _format_args(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int = 80) -> str:
    parts = [_short_repr(a) for a in args] + [f"{k}={_short_repr(v)}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value: Any) -> str:
    if isinstance(value, Expression):
        return "<expr>" if not isinstance(value, TaskExpression) else f"{value.task.name}(...)"
    return preview(value, 40)  # never raises, even for a value nested too deeply for repr()


# ------------------------------------------------------------------------------------------ walking

def iter_expressions(value: Any, root: str = "value") -> Iterator[Expression]:
    """The expressions directly inside a structure (not inside other expressions), found by the one walker:
    containers, dict keys, dataclasses, attrs and plain objects. Raises ``NestingError`` for a cycle."""
    return iter_leaves(value, Expression, root)


def contains_expression(value: Any) -> bool:
    return contains(value, Expression)


def substitute(value: Any, results: dict[int, Any], leaf: type = Expression) -> Any:
    """Rebuild a structure with each ``leaf`` object ``e`` (an expression) replaced by ``results[id(e)]``;
    containers keep their types (a ``defaultdict`` its factory, a plain object its class)."""
    return transform(value, lambda e: results[id(e)], leaf)


def _hash_expressions(root: Expression) -> None:
    """Hash an expression graph bottom-up without recursion, memoizing each node's hash."""
    stack: list[tuple[Expression, bool]] = [(root, False)]
    while stack:
        expr, children_done = stack.pop()
        if expr._hash is not None:
            continue
        if children_done:
            expr._hash = expr._own_hash()
            continue
        stack.append((expr, True))
        for child in iter_expressions(expr._children()):
            if child._hash is None:
                stack.append((child, False))


def expressions_children_first(value: Any) -> list[Expression]:
    """Every expression reachable from ``value``, each once, children before their parents, without recursion
    (what storing a value and rewriting an expression tree both need)."""
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
