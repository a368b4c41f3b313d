"""How a job and its outcome travel to and from a worker in another process (or machine).

A job goes as one cloudpickle stream: the function to call (the called task object's body, with its
call-site options applied), its arguments, and the names the worker needs to report. The user's own
modules (not the standard library, slothflow or installed packages) travel **by value**: the worker
runs exactly the code the scheduler hashed at the start of the run, not whatever is on disk when the
worker imports it. Function and arguments share one stream, so a class from the user's module is one
class in the worker (``isinstance`` inside the body works), and cloudpickle maps it back to the
scheduler's own class when an instance comes back in a result.

Results and errors come back through the same format; an error that cannot be sent back is replaced by
a stand-in that keeps its type name and message.
"""

from __future__ import annotations

import contextlib
import functools
import io
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from slothflow._errors import ExecutorError, SerializationError
from slothflow.executors.base import JobSpec, Outcome, format_task_traceback

PROTOCOL = 5
_by_value_lock = threading.Lock()


def _is_user_module(name: str) -> bool:
    """The user's own module (the code hasher's rule), loaded here: one we send by value. ``__main__`` is sent
    by value by cloudpickle already."""
    if name in ("__main__", "__mp_main__") or name not in sys.modules:
        return False
    from slothflow.hashing._code import current_code_hasher

    return current_code_hasher().is_user_code(name)


def _modules_of(func: Callable[..., Any]) -> set[str]:
    names: set[str] = set()
    while isinstance(func, functools.partial):
        for arg in func.args:
            if callable(arg):
                names |= _modules_of(arg)
        func = func.func
    module = getattr(func, "__module__", None)
    if isinstance(module, str) and _is_user_module(module):
        names.add(module)
    return names


@contextlib.contextmanager
def _by_value(modules: set[str]) -> Iterator[None]:
    import cloudpickle

    with _by_value_lock:
        done: list[Any] = []
        try:
            for name in sorted(modules):
                module = sys.modules.get(name)
                if module is not None and name not in cloudpickle.list_registry_pickle_by_value():
                    cloudpickle.register_pickle_by_value(module)
                    done.append(module)
            yield
        finally:
            for module in done:
                cloudpickle.unregister_pickle_by_value(module)


@functools.lru_cache(maxsize=1)
def _pickler_class() -> type:
    """cloudpickle's pickler, keeping each function's file name: cloudpickle writes ``<dynamic-code>``,
    and a task's traceback from a worker would then show neither the file nor the failing line."""
    import collections
    import types

    import cloudpickle
    from cloudpickle import cloudpickle as impl

    def code_reduce(code: types.CodeType) -> Any:
        ctor, args = impl._code_reduce(code)
        return ctor, tuple(code.co_filename if isinstance(a, str) and a == "<dynamic-code>" else a for a in args)

    class Pickler(cloudpickle.Pickler):
        dispatch_table = collections.ChainMap({types.CodeType: code_reduce}, cloudpickle.Pickler.dispatch_table)

    return Pickler


def dumps(obj: Any) -> bytes:
    """cloudpickle, for values crossing to a worker of the same Python."""
    buf = io.BytesIO()
    _pickler_class()(buf, protocol=PROTOCOL).dump(obj)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def dump_job(spec: JobSpec) -> bytes:
    """Serialize a job for a worker. Raises :class:`SerializationError` naming the task when it cannot be.

    When the user's module holds something that cannot be pickled by value (a lock, an open connection
    in a module global), the module's objects go by reference instead: the worker imports them.
    """
    job = (spec.job_id, spec.task_name, spec.func, spec.args, spec.kwargs)
    try:
        with _by_value(_modules_of(spec.func)):
            return dumps(job)
    except Exception:
        pass
    try:
        return dumps(job)
    except Exception as exc:
        raise SerializationError(
            f"the arguments of task {spec.task_name} cannot be sent to a worker process: {exc}",
            task_name=spec.task_name,
        ) from exc


def run_wire_job(data: bytes) -> bytes:
    """In the worker: load a job, run it, and serialize its outcome (never raises)."""
    job_id, task_name = "?", "?"
    try:
        job_id, task_name, func, args, kwargs = loads(data)
        result = func(*args, **kwargs)
    except BaseException as exc:  # SystemExit too: the worker must report, not die
        return dumps(("error", job_id, _error_bytes(exc), format_task_traceback(exc)))
    try:
        return dumps(("ok", job_id, dumps(result), ""))
    except Exception as exc:
        err = SerializationError(
            f"the result of task {task_name} ({type(result).__qualname__}) cannot be sent back from a worker "
            f"process: {exc}. Return picklable data, or run the task with executor='threads'.",
            task_name=task_name,
        )
        return dumps(("error", job_id, dumps(err), ""))


def _error_bytes(exc: BaseException) -> bytes:
    """A task's exception, or a stand-in keeping its message when it cannot make the round trip (some
    exceptions pickle but cannot be unpickled: an ``__init__`` with other arguments than ``args``)."""
    try:
        data = dumps(exc)
        pickle.loads(data)
        return data
    except Exception as problem:
        stand_in = RuntimeError(
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc} (the original exception could not be "
            f"sent back from the worker process: {problem})"
        )
        return dumps(stand_in)


def load_outcome(data: bytes, spec: JobSpec) -> Outcome:
    """The scheduler's side of :func:`run_wire_job`."""
    try:
        kind, job_id, body, tb = loads(data)
        value = loads(body)
    except Exception as exc:
        return Outcome(spec.job_id, False, error=SerializationError(
            f"the result of task {spec.task_name} could not be loaded: {exc}", spec.task_name))
    if job_id != spec.job_id:
        return Outcome(spec.job_id, False, error=ExecutorError(
            f"a worker answered job {job_id} for {spec.job_id} ({spec.task_name})", spec.task_name))
    if kind == "ok":
        return Outcome(spec.job_id, True, value)
    return Outcome(spec.job_id, False, error=value, traceback=tb)
