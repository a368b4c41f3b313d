"""The processes executor: a pool of worker processes, for CPU-bound Python tasks.

Workers are started with ``spawn`` (safe in a multi-threaded scheduler). A task whose module can be
imported by name is sent as a reference; one defined in ``__main__``, a notebook or ``exec`` travels by
value through cloudpickle. Arguments go by cloudpickle; a result is pickled in the worker, so a result that
cannot cross processes fails the job with a :class:`~slothflow.SerializationError` naming the task.
"""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._errors import ExecutorError, SerializationError
from .._serialize import wire_dumps, wire_loads
from .base import Done, Executor, JobSpec, Outcome, format_task_traceback


def _resolve(payload: bytes) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    kind, target, args, kwargs = wire_loads(payload)
    if kind == "ref":
        module_name, task_name = target
        importlib.import_module(module_name)
        from .._task import get_task_registry

        task = get_task_registry().get(task_name)
        if task is None:
            raise ExecutorError(f"task {task_name} not found after importing {module_name} in a worker process")
        return task.func, args, kwargs
    return target, args, kwargs


def _work(job_id: str, task_name: str, payload: bytes) -> tuple[str, bool, bytes, str]:
    """Runs in the worker: returns (job_id, ok, pickled result or error, traceback text)."""
    try:
        func, args, kwargs = _resolve(payload)
        result = func(*args, **kwargs)
    except Exception as exc:
        tb = format_task_traceback(exc)
        try:
            return job_id, False, wire_dumps(exc), tb
        except Exception:
            return job_id, False, wire_dumps(RuntimeError(f"{type(exc).__name__}: {exc}")), tb
    try:
        return job_id, True, wire_dumps(result), ""
    except Exception as exc:
        err = SerializationError(
            f"the result of task {task_name} ({type(result).__qualname__}) cannot be sent back from a worker "
            f"process: {exc}. Return picklable data, or run the task with executor='threads'.",
            task_name=task_name,
        )
        return job_id, False, wire_dumps(err), ""


class ProcessExecutor(Executor):
    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", multiprocessing.cpu_count() or 2))
        self.start_method = str(self.config.get("start_method", "spawn"))
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            ctx = multiprocessing.get_context(self.start_method)
            self._pool = ProcessPoolExecutor(self.max_workers, mp_context=ctx)

    def submit(self, spec: JobSpec, done: Done) -> None:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        try:
            payload = self._payload(spec)
        except Exception as exc:
            error = SerializationError(
                f"the arguments of task {spec.task_name} cannot be sent to a worker process: {exc}",
                task_name=spec.task_name,
            )
            done(Outcome(spec.job_id, False, error=error))
            return
        try:
            future = self._pool.submit(_work, spec.job_id, spec.task_name, payload)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._pool = None
            done(Outcome(spec.job_id, False, error=ExecutorError(str(exc), spec.task_name, self.name)))
            return

        def _report(fut: Future[tuple[str, bool, bytes, str]]) -> None:
            try:
                job_id, ok, data, tb = fut.result()
                value = wire_loads(data)
            except BrokenProcessPool as exc:
                done(Outcome(spec.job_id, False, error=ExecutorError(
                    f"a worker process died while running {spec.task_name}: {exc}", spec.task_name, self.name)))
                return
            except Exception as exc:
                done(Outcome(spec.job_id, False, error=SerializationError(
                    f"the result of task {spec.task_name} could not be loaded: {exc}", spec.task_name)))
                return
            if ok:
                done(Outcome(job_id, True, value))
            else:
                done(Outcome(job_id, False, error=value, traceback=tb))

        future.add_done_callback(_report)

    @staticmethod
    def _payload(spec: JobSpec) -> bytes:
        module = spec.task_module
        if module and module != "__main__" and module in sys.modules:
            try:
                return wire_dumps(("ref", (module, spec.task_name), spec.args, spec.kwargs))
            except pickle.PicklingError:
                pass
        return wire_dumps(("func", spec.func, spec.args, spec.kwargs))

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
