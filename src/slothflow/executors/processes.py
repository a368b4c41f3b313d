"""The processes executor: a pool of worker processes, for CPU-bound Python tasks.

Workers are started with ``spawn`` (safe in a multi-threaded scheduler). A task whose module can be
imported by name is sent as a reference; one defined in ``__main__``, a notebook or ``exec`` travels by
value through cloudpickle. Arguments go by cloudpickle; a result is pickled in the worker, so a result that
cannot cross processes fails the job with a :class:`~slothflow.SerializationError` naming the task.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import os
import pickle
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from slothflow._errors import ExecutorError, SerializationError
from slothflow.executors.base import Done, Executor, JobSpec, Outcome, format_task_traceback, report_safely
from slothflow.model._serialize import wire_dumps, wire_loads


def _import_task_module(module_name: str, module_file: str | None) -> None:
    """Import the module that defines a task, by name, or from its file when the name is not importable."""
    if module_name in sys.modules:
        return
    try:
        importlib.import_module(module_name)
        return
    except ModuleNotFoundError:
        if not module_file:
            raise
    spec = importlib.util.spec_from_file_location(module_name, module_file)
    if spec is None or spec.loader is None:
        raise ExecutorError(f"cannot load module {module_name} from {module_file} in a worker process")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def _resolve(payload: bytes) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    kind, target, args, kwargs = wire_loads(payload)
    if kind == "ref":
        module_name, task_name, module_file = target
        _import_task_module(module_name, module_file)
        from slothflow.model._task import get_task_registry

        task = get_task_registry().get(task_name)
        if task is None:
            raise ExecutorError(f"task {task_name} not found after importing {module_name} in a worker process")
        return task.run_func, args, kwargs
    return target, args, kwargs


def _dump_error(exc: BaseException) -> bytes:
    """Pickle a task's exception so that the scheduler can load it, or a stand-in that keeps its message.

    Some exceptions pickle but cannot be unpickled (an ``__init__`` with other arguments than ``args``);
    they are checked here, where the failure can still be explained.
    """
    try:
        data = wire_dumps(exc)
        pickle.loads(data)
        return data
    except Exception as problem:
        stand_in = RuntimeError(
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc} (the original exception could not be "
            f"sent back from the worker process: {problem})"
        )
        return wire_dumps(stand_in)


def _work(job_id: str, task_name: str, payload: bytes) -> tuple[str, bool, bytes, str]:
    """Runs in the worker: returns (job_id, ok, pickled result or error, traceback text)."""
    try:
        func, args, kwargs = _resolve(payload)
        result = func(*args, **kwargs)
    except BaseException as exc:  # SystemExit too: the worker must report, not die
        return job_id, False, _dump_error(exc), format_task_traceback(exc)
    try:
        return job_id, True, wire_dumps(result), ""
    except Exception as exc:
        err = SerializationError(
            f"the result of task {task_name} ({type(result).__qualname__}) cannot be sent back from a worker "
            f"process: {exc}. Return picklable data, or run the task with executor='threads'.",
            task_name=task_name,
        )
        return job_id, False, wire_dumps(err), ""


@contextlib.contextmanager
def _main_without_missing_file() -> Iterator[None]:
    """``spawn`` re-runs the parent's main script in each new worker; for ``python -`` or ``exec`` there is no
    such file, and the worker would die. Tasks from there travel by value anyway, so hide the bogus path."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class ProcessExecutor(Executor):
    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", multiprocessing.cpu_count() or 2))
        self.start_method = str(self.config.get("start_method", "spawn"))
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False

    def start(self) -> None:
        if self._pool is None:
            ctx = multiprocessing.get_context(self.start_method)
            self._pool = ProcessPoolExecutor(self.max_workers, mp_context=ctx)

    def submit(self, spec: JobSpec, done: Done) -> None:
        try:
            payload = self._payload(spec)
        except Exception as exc:
            error = SerializationError(
                f"the arguments of task {spec.task_name} cannot be sent to a worker process: {exc}",
                task_name=spec.task_name,
            )
            done(Outcome(spec.job_id, False, error=error))
            return
        future: Future[tuple[str, bool, bytes, str]] | None = None
        for attempt in range(2):
            if self._pool is None or self._broken:
                self._restart()
            assert self._pool is not None
            try:
                with _main_without_missing_file():
                    future = self._pool.submit(_work, spec.job_id, spec.task_name, payload)
                break
            except (BrokenProcessPool, RuntimeError) as exc:
                # A worker died earlier (os._exit, out of memory): the pool is unusable; start a new one.
                self._broken = True
                if attempt == 1:
                    done(Outcome(spec.job_id, False, error=ExecutorError(
                        f"cannot start {spec.task_name} in a worker process: {exc}", spec.task_name, self.name)))
                    return
        assert future is not None

        def _outcome(fut: Future[tuple[str, bool, bytes, str]]) -> Outcome:
            try:
                job_id, ok, data, tb = fut.result()
            except BrokenProcessPool as exc:
                self._broken = True
                return Outcome(spec.job_id, False, error=ExecutorError(
                    f"a worker process died while running {spec.task_name}: {exc}", spec.task_name, self.name))
            try:
                value = wire_loads(data)
            except Exception as exc:
                return Outcome(spec.job_id, False, error=SerializationError(
                    f"the result of task {spec.task_name} could not be loaded: {exc}", spec.task_name))
            if ok:
                return Outcome(job_id, True, value)
            return Outcome(job_id, False, error=value, traceback=tb)

        what = f"process executor {self.name!r} lost {spec.task_name}"
        future.add_done_callback(lambda fut: report_safely(done, spec.job_id, lambda: _outcome(fut), what))

    def _restart(self) -> None:
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._broken = False
        self.start()

    @staticmethod
    def _payload(spec: JobSpec) -> bytes:
        module = spec.task_module
        qualname = getattr(spec.func, "__qualname__", "")
        if module and module != "__main__" and module in sys.modules and "<locals>" not in qualname:
            # A task defined at module level: the worker imports its module and finds it by name.
            module_file = getattr(sys.modules[module], "__file__", None)
            try:
                return wire_dumps(("ref", (module, spec.task_name, module_file), spec.args, spec.kwargs))
            except pickle.PicklingError:
                pass
        # Defined in __main__, a notebook, exec or inside a function: the function travels by value.
        return wire_dumps(("func", spec.func, spec.args, spec.kwargs))

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
