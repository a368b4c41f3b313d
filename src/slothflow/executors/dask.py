"""The Dask executor: jobs run on a ``dask.distributed`` cluster (a ``LocalCluster``, or any scheduler by address).

Dask reaches further than one machine for us: dask-jobqueue (Slurm, PBS, SGE), dask-kubernetes and hosted
Dask all hand out a scheduler address. Jobs travel by :mod:`slothflow.executors._wire`, exactly as for the
processes executor: Dask runs :func:`~slothflow.executors._wire.run_wire_job` on the payload bytes, so the
called task's own body (user modules by value) runs on the worker, never a copy the worker imports from
its own disk. ``dask`` is imported on first use only.

What maps to what:

- capacity: the cluster's worker threads (or ``max_workers``), read again every few seconds as workers
  come and go;
- ``memory`` / ``gpus`` / ``vcpus``: Dask resource requests (``MEMORY`` in bytes, ``GPU``, ``CPU``) when
  the workers declare those resources; without a declared ``MEMORY``, memory requests count against the
  workers' memory limits;
- cancel (Ctrl-C, ``timeout``): ``future.cancel()``; a job already executing has its worker process ended
  (a thread cannot be stopped; its nanny starts a fresh one), other jobs lost with it are sent again;
- a worker that dies while running a job: :class:`~slothflow.WorkerLostError` naming the worker; the
  task's ``retries`` apply. The ``LocalCluster`` we start lets Dask retry nothing itself
  (``allowed-failures = 0``), so a crashing task is not run on four workers in turn;
- large values: an argument payload above ``scatter_bytes`` is scattered straight to a worker and a
  result is gathered straight from one (``direct_to_workers``), so neither passes through the Dask
  scheduler's memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from typing import Any, ClassVar

from slothflow._config import ConfigKey
from slothflow._errors import ExecutorError, SerializationError, WorkerLostError
from slothflow.executors import _wire
from slothflow.executors.base import Done, Executor, JobSpec, Outcome, report_safely

GB = 2**30
#: slothflow resource option -> the Dask worker resource names that satisfy it (first declared wins).
RESOURCE_NAMES = {"memory": ("MEMORY", "memory"), "gpus": ("GPU", "gpus", "gpu"), "vcpus": ("CPU", "vcpus", "cpus")}
INFO_TTL = 5.0  # seconds a snapshot of the cluster's workers is trusted


class _Entry:
    __slots__ = ("spec", "done", "payload", "requests", "future", "cancelled", "resubmitted")

    def __init__(self, spec: JobSpec, done: Done, payload: bytes, requests: dict[str, float]) -> None:
        self.spec, self.done, self.payload, self.requests = spec, done, payload, requests
        self.future: Any = None
        self.cancelled = False
        self.resubmitted = 0  # times sent again after a worker we ended to stop another job took it down


class DaskExecutor(Executor):
    """Runs jobs on a Dask cluster: the one at ``address``, or a ``LocalCluster`` started on first use and
    closed at shutdown."""

    config_schema: ClassVar[dict[str, Any] | None] = {
        "address": ConfigKey(str, "address of a running Dask scheduler (tcp://host:8786); none: a LocalCluster"),
        "n_workers": ConfigKey(int, "LocalCluster: worker count", "the number of cores", 1),
        "threads_per_worker": ConfigKey(int, "LocalCluster: threads per worker", 1, 1),
        "processes": ConfigKey(bool, "LocalCluster: workers are processes (false: threads of this process)", True),
        "resources": ConfigKey(dict, "LocalCluster: resources each worker declares, e.g. {GPU = 1}", {}),
        "memory_limit": ConfigKey(str, "LocalCluster: memory limit per worker ('4GiB', 'auto')", "auto"),
        "dashboard_address": ConfigKey(str, "LocalCluster: where the dashboard listens", "a free port"),
        "max_workers": ConfigKey(int, "how many jobs are submitted at once", "the cluster's worker threads", 1),
        "scatter_bytes": ConfigKey(int, "job payloads above this size are scattered to a worker", 1 << 20, 0),
        "direct_to_workers": ConfigKey(bool, "fetch results from workers, not via the scheduler",
                                       "true for a LocalCluster, Dask's default for an address"),
    }
    remote: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self._lock = threading.RLock()
        self._client: Any = None
        self._cluster: Any = None
        self._jobs: dict[str, _Entry] = {}  # job id -> entry
        self._info: dict[str, Any] = {}
        self._info_at = 0.0
        self._done_q: queue.SimpleQueue[tuple[_Entry, Any] | None] = queue.SimpleQueue()
        self._to_stop: list[Any] = []  # futures cancelled, waiting for the stopper thread
        self._stopper: threading.Thread | None = None
        self._restarted: dict[str, float] = {}  # worker address -> when we restarted it (to stop a cancelled job)

    # ------------------------------------------------------------------------------- lifecycle
    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (started on first use)."""
        self.start()
        return self._client

    def start(self) -> None:
        with self._lock:
            if self._client is not None:
                return
            from distributed import Client

            address = self.config.get("address")
            direct = self.config.get("direct_to_workers")
            if address:
                self._client = Client(address, set_as_default=False, direct_to_workers=direct)
            else:
                self._cluster = self._local_cluster()
                self._client = Client(self._cluster, set_as_default=False,
                                      direct_to_workers=True if direct is None else direct)
            self._info_at = 0.0
            self._done_q = queue.SimpleQueue()
            threading.Thread(target=self._collect, args=(self._client, self._done_q), daemon=True,
                             name=f"slothflow-{self.name}-results").start()

    def _local_cluster(self) -> Any:
        import dask
        from distributed import LocalCluster

        conf = self.config
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            return LocalCluster(
                n_workers=int(conf.get("n_workers") or os.cpu_count() or 1),
                threads_per_worker=int(conf.get("threads_per_worker", 1)),
                processes=bool(conf.get("processes", True)),
                resources=dict(conf.get("resources") or {}) or None,
                memory_limit=conf.get("memory_limit", "auto"),
                dashboard_address=conf.get("dashboard_address") or ":0",
                silence_logs=logging.ERROR,
            )

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            client, cluster = self._client, self._cluster
            entries = list(self._jobs.values())
            if cancel or cluster is not None:
                self._jobs.clear()
                for entry in entries:
                    entry.cancelled = True
            self._client = self._cluster = None
            self._done_q.put(None)
        if client is None:
            return
        if cancel and cluster is None and entries:
            # An external cluster keeps running: stop our jobs on it, in the background (never block).
            threading.Thread(target=self._stop, args=([e.future for e in entries], client, True), daemon=True,
                             name=f"slothflow-{self.name}-shutdown").start()
            return
        if not cancel and cluster is None:
            with contextlib.suppress(Exception):
                client.gather([e.future for e in entries], errors="skip")
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=5)

    # ------------------------------------------------------------------------- what it offers
    def _workers(self) -> dict[str, dict[str, Any]]:
        """The cluster's workers (address -> identity), refreshed every few seconds."""
        now = time.monotonic()
        if now - self._info_at > INFO_TTL or not self._info:
            with contextlib.suppress(Exception):
                self._info = dict(self.client.scheduler_info(n_workers=-1).get("workers", {}))
            self._info_at = now
        return self._info

    @property
    def capacity(self) -> int:
        if self.config.get("max_workers"):
            return max(1, int(self.config["max_workers"]))
        return max(1, sum(int(w.get("nthreads", 1)) for w in self._workers().values()))

    def resources(self) -> dict[str, float]:
        found: dict[str, float] = {}
        workers = self._workers().values()
        for kind in ("memory", "gpus"):
            name = self._declared(kind)
            if name is not None:
                total = sum(float((w.get("resources") or {}).get(name, 0)) for w in workers)
                found[kind] = total / GB if kind == "memory" else total
        if "memory" not in found:
            found["memory"] = sum(float(w.get("memory_limit") or 0) for w in workers) / GB
        return found

    def _declared(self, kind: str) -> str | None:
        """The Dask resource name the workers use for ``kind``, if any worker declares one."""
        declared = {name for w in self._workers().values() for name in (w.get("resources") or {})}
        return next((name for name in RESOURCE_NAMES[kind] if name in declared), None)

    def _requests(self, spec: JobSpec) -> dict[str, float]:
        """The job's Dask resource requests; an :class:`ExecutorError` when no single worker can take it."""
        wanted: dict[str, float] = {}
        for kind, amount in spec.resources.items():
            name = self._declared(kind) if amount and kind in RESOURCE_NAMES else None
            if name is not None:
                wanted[name] = float(amount) * (GB if name.lower() == "memory" else 1)
        workers = self._workers()
        if wanted and not any(all(float((w.get("resources") or {}).get(k, 0)) >= n for k, n in wanted.items())
                              for w in workers.values()):
            raise ExecutorError(f"task {spec.task_name} asks for {spec.resources}, more than any one worker of "
                                f"Dask executor {self.name!r} declares", spec.task_name, self.name)
        return wanted

    # ------------------------------------------------------------------------------------ jobs
    def submit(self, spec: JobSpec, done: Done) -> None:
        try:
            entry = _Entry(spec, done, _wire.dump_job(spec), self._requests(spec))
            self._send(entry)
        except (SerializationError, ExecutorError) as error:
            done(Outcome(spec.job_id, False, error=error))
            return
        except Exception as exc:
            done(Outcome(spec.job_id, False, error=ExecutorError(
                f"Dask executor {self.name!r} could not submit {spec.task_name}: {type(exc).__name__}: {exc}",
                spec.task_name, self.name)))
            return

    def _send(self, entry: _Entry) -> None:
        client = self.client
        arg: Any = entry.payload
        if len(arg) > int(self.config.get("scatter_bytes", 1 << 20)):
            arg = client.scatter(arg, hash=False)
        key = f"{entry.spec.task_name}-{uuid.uuid4().hex}"
        future = client.submit(_wire.run_wire_job, arg, key=key, pure=False, resources=entry.requests or None)
        with self._lock:
            entry.future = future
            self._jobs[entry.spec.job_id] = entry
        done_q = self._done_q
        future.add_done_callback(lambda f: done_q.put((entry, f)))

    def _collect(self, client: Any, done_q: queue.SimpleQueue[tuple[_Entry, Any] | None]) -> None:
        """Report finished jobs, fetching the results of all that finished meanwhile in one ``gather`` (a
        round trip per job would bound the throughput by the latency)."""
        while True:
            batch = [done_q.get()]
            while True:
                try:
                    batch.append(done_q.get_nowait())
                except queue.Empty:
                    break
            ready = [entry for item in batch if item is not None and (entry := self._take(*item)) is not None]
            fetched: dict[str, bytes] = {}
            finished = [e for e in ready if e.future.status == "finished"]
            if finished:
                with contextlib.suppress(Exception):
                    values = client.gather([e.future for e in finished])
                    fetched = {e.spec.job_id: v for e, v in zip(finished, values, strict=True)}
            for entry in ready:
                data = fetched.get(entry.spec.job_id)
                make = ((lambda d=data, e=entry: _wire.load_outcome(d, e.spec)) if data is not None
                        else (lambda e=entry: self._outcome(e)))
                report_safely(entry.done, entry.spec.job_id, make,
                              f"Dask executor {self.name!r} lost {entry.spec.task_name}")
            if any(item is None for item in batch):
                return

    def _take(self, entry: _Entry, future: Any) -> _Entry | None:
        """The entry of a finished future, if it is still to be reported (not cancelled, not sent again)."""
        with self._lock:
            if entry.cancelled or self._jobs.get(entry.spec.job_id) is not entry or entry.future is not future:
                return None
            del self._jobs[entry.spec.job_id]
        return None if self._collateral(entry) else entry

    def _collateral(self, entry: _Entry) -> bool:
        """A job lost with a worker we ended to stop another (cancelled) job: sent again (a few times at most)."""
        future = entry.future
        if entry.resubmitted >= 3 or future.status != "error":
            return False
        worker = getattr(getattr(future.exception(), "last_worker", None), "address", None)
        with self._lock:
            if worker is None or time.monotonic() - self._restarted.get(worker, -1e9) > 120:
                return False
        entry.resubmitted += 1
        try:
            self._send(entry)
        except Exception:
            return False
        return True

    def _outcome(self, entry: _Entry) -> Outcome:
        spec, future = entry.spec, entry.future
        if future.status == "finished":
            return _wire.load_outcome(future.result(), spec)
        if future.status == "cancelled":
            return Outcome(spec.job_id, False, error=ExecutorError(
                f"Dask cancelled {spec.task_name} (the cluster or the connection to it went away)",
                spec.task_name, self.name))
        exc = future.exception()
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            worker = getattr(exc.last_worker, "address", str(exc.last_worker))
            return Outcome(spec.job_id, False, error=WorkerLostError(
                f"the Dask worker {worker} died while running {spec.task_name} (out of memory, killed, or the "
                f"task ended the process)", spec.task_name, self.name, worker=worker))
        return Outcome(spec.job_id, False, error=ExecutorError(
            f"Dask executor {self.name!r} could not run {spec.task_name}: {type(exc).__name__}: {exc}",
            spec.task_name, self.name))

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            entry = self._jobs.pop(job_id, None)
            client = self._client
            if entry is None or client is None:
                return False
            entry.cancelled = True
            self._to_stop.append(entry.future)
            if self._stopper is None:
                # Not a daemon: after Ctrl-C the interpreter waits for it, so the workers are freed before exit.
                self._stopper = threading.Thread(target=self._stop_pending, args=(client,),
                                                 name=f"slothflow-{self.name}-cancel")
                self._stopper.start()
        return True

    def _stop_pending(self, client: Any) -> None:
        """Stop the futures cancelled meanwhile, many at a time (Ctrl-C cancels every running job at once)."""
        while True:
            with self._lock:
                futures, self._to_stop = self._to_stop, []
                if not futures:
                    self._stopper = None
                    return
            self._stop(futures, client)

    def _stop(self, futures: list[Any], client: Any, close: bool = False) -> None:
        """Cancel futures; end the workers already executing one of them (their nannies start fresh ones).

        A hard exit, not ``restart_workers``: a graceful restart waits for the running task first. Workers
        without a nanny are left alone (they would not come back); their job is abandoned."""
        keys = [f.key for f in futures]
        busy: list[str] = []
        with contextlib.suppress(Exception):
            busy = client.run_on_scheduler(_processing_on, keys)
        executing: list[str] = []
        if busy:
            with contextlib.suppress(Exception):
                found = client.run(_executing_any, keys, workers=busy, on_error="return")
                executing = [addr for addr, yes in found.items() if yes is True]
        with contextlib.suppress(Exception):
            client.cancel(futures)
        if executing:
            with self._lock:
                now = time.monotonic()
                self._restarted.update((addr, now) for addr in executing)
            with contextlib.suppress(Exception):
                client.run(_exit_worker, workers=executing, wait=False)
        if close:
            with contextlib.suppress(Exception):
                client.close(timeout=5)


def _processing_on(keys: list[str], dask_scheduler: Any = None) -> list[str]:
    """On the Dask scheduler: the workers (with a nanny) that ``keys`` are assigned to."""
    found = set()
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        ws = ts.processing_on if ts is not None and ts.state == "processing" else None
        if ws is not None and ws.nanny:
            found.add(ws.address)
    return sorted(found)


def _executing_any(keys: list[str], dask_worker: Any = None) -> bool:
    """On a worker: whether one of ``keys`` is running in one of its threads now."""
    for key in keys:
        ts = dask_worker.state.tasks.get(key)
        if ts is not None and (ts.state in ("executing", "long-running") or ts.previous == "executing"):
            return True
    return False


async def _exit_worker(dask_worker: Any = None) -> None:
    """On a worker: end its process at once (its nanny starts a fresh one); a coroutine, so that ``client.run``
    need not wait for an answer."""
    os._exit(1)
