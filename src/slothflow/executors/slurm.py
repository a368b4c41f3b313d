"""The Slurm executor: jobs go to a Slurm cluster with ``sbatch``, many small calls per job array.

A job is a payload file in ``work_dir`` (the wire format of :mod:`slothflow.executors._wire`: the called
task's body, user modules by value) and runs as one task of a job array through
:mod:`slothflow.executors._slurm_job`, which writes the outcome next to the payload. ``work_dir`` must
therefore be a folder every node sees under the same path (checked at start: it must be writable).

One background thread does the talking to Slurm, so no call ever blocks the scheduler:

- jobs with the same sbatch flags submitted within ``batch_wait`` seconds share one ``sbatch --array``
  (at most ``array_size`` tasks each), instead of one ``sbatch`` per call;
- state is read for every running array at once with one ``squeue`` per poll, every ``poll_interval``
  seconds, backing off to ``poll_max`` while nothing changes;
- cancel (Ctrl-C, a ``timeout``) runs ``scancel`` on the array task.

Task options map to sbatch flags: ``memory`` (GB) -> ``--mem``, ``vcpus`` -> ``--cpus-per-task``, ``gpus`` ->
``--gres=gpu:N``, ``timeout`` -> ``--time`` (whole minutes, rounded up), and ``partition``, ``account``,
``qos``, ``sbatch_args`` (declared in :attr:`SlurmExecutor.options`; config keys of the same names give
defaults). A job that ends without an outcome (killed, out of memory, node failure) fails with
:class:`~slothflow.WorkerLostError` naming the Slurm job and its state, with the tail of its output file;
a task's own exception reaches the caller as itself, with that tail added to its traceback.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from slothflow._config import ConfigKey
from slothflow._errors import ConfigError, ExecutorError, SerializationError, WorkerLostError
from slothflow.executors import _wire
from slothflow.executors.base import Done, Executor, JobSpec, Outcome, report_safely

ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
GRACE = 3.0  # seconds an ended job's outcome file may take to appear (a shared filesystem's caching)
TAIL_LINES = 25
COMMAND_TIMEOUT = 60.0


class _Job:
    __slots__ = ("spec", "done", "payload", "flags", "slurm_id", "log", "cancelled", "ended_at", "state", "node")

    def __init__(self, spec: JobSpec, done: Done, payload: Path, flags: tuple[str, ...]) -> None:
        self.spec, self.done, self.payload, self.flags = spec, done, payload, flags
        self.slurm_id: str | None = None
        self.log: Path | None = None
        self.cancelled = False
        self.ended_at: float | None = None  # when Slurm (or its absence) first said the job ended
        self.state = ""
        self.node = ""


def sbatch_flags(spec: JobSpec, defaults: dict[str, Any]) -> tuple[str, ...]:
    """The sbatch flags of a job: its resources, timeout and Slurm options (config values as defaults)."""
    opts = {**{k: defaults[k] for k in ("partition", "account", "qos", "sbatch_args") if defaults.get(k)},
            **spec.options}
    flags: list[str] = []
    res = spec.resources
    if res.get("memory"):
        flags.append(f"--mem={math.ceil(float(res['memory']) * 1024)}M")
    if res.get("vcpus"):
        flags.append(f"--cpus-per-task={math.ceil(float(res['vcpus']))}")
    if res.get("gpus"):
        flags.append(f"--gres=gpu:{math.ceil(float(res['gpus']))}")
    if spec.timeout:
        flags.append(f"--time={max(1, math.ceil(spec.timeout / 60))}")
    for key in ("partition", "account", "qos"):
        if opts.get(key):
            flags.append(f"--{key}={opts[key]}")
    extra = opts.get("sbatch_args")
    if extra:
        flags.extend(shlex.split(extra) if isinstance(extra, str) else [str(a) for a in extra])
    return tuple(flags)


class SlurmExecutor(Executor):
    """Runs jobs as Slurm job array tasks; see the module's documentation."""

    options: ClassVar[frozenset[str]] = frozenset({"partition", "account", "qos", "sbatch_args"})
    config_schema: ClassVar[dict[str, Any] | None] = {
        "work_dir": ConfigKey(str, "a folder every node sees: job payloads, outcomes, Slurm output files",
                              ".slothflow/slurm"),
        "array_size": ConfigKey(int, "most jobs in one sbatch job array", 200, 1),
        "batch_wait": ConfigKey(float, "seconds jobs are collected into one array before sbatch", 0.3, 0),
        "max_workers": ConfigKey(int, "jobs kept in Slurm's queue at once", 1000, 1),
        "poll_interval": ConfigKey(float, "first wait (seconds) between squeue polls", 0.5, 0.05),
        "poll_max": ConfigKey(float, "longest wait between squeue polls while nothing changes", 10.0, 0.1),
        "partition": ConfigKey(str, "default --partition"),
        "account": ConfigKey(str, "default --account"),
        "qos": ConfigKey(str, "default --qos"),
        "sbatch_args": ConfigKey(object, "extra sbatch arguments for every job (a list, or one string)"),
        "python": ConfigKey(str, "the Python the jobs run (the same environment on every node)", "this Python"),
        "memory": ConfigKey(float, "GB that running jobs' memory requests may add up to", "no limit", 0),
        "gpus": ConfigKey(int, "GPUs that running jobs' gpus requests may add up to", "no limit", 0),
    }
    remote: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.max_workers = int(self.config.get("max_workers", 1000))
        self.work_dir = Path(str(self.config.get("work_dir", ".slothflow/slurm"))).resolve()
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}  # slothflow job id -> job
        self._batches: dict[tuple[str, ...], list[_Job]] = collections.defaultdict(list)
        self._batch_due: dict[tuple[str, ...], float] = {}
        self._active: dict[str, _Job] = {}  # Slurm array task id (123_4) -> job
        self._stopped = threading.Event()  # the current loop thread's: set at shutdown
        self._stopped.set()
        #: sbatch invocations and squeue polls so far (what the batching saves can be measured)
        self.counts: collections.Counter[str] = collections.Counter()

    def resources(self) -> dict[str, float]:
        return {kind: float(self.config[kind]) if self.config.get(kind) else math.inf for kind in ("memory", "gpus")}

    # ------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        with self._cond:
            if not self._stopped.is_set():
                return
            self._check()
            self._stopped = threading.Event()
            threading.Thread(target=self._loop, args=(self._stopped,), daemon=True,
                             name=f"slothflow-{self.name}-slurm").start()

    def _check(self) -> None:
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise ExecutorError(f"Slurm executor {self.name!r}: sbatch/squeue are not on PATH", executor=self.name)
        try:
            (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
            probe = self.work_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_text("ok")
            ok = probe.read_text() == "ok"
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"[executors.{self.name}] work_dir = {str(self.work_dir)!r} cannot be written: {exc}; "
                              "it must be a folder every Slurm node sees (a shared filesystem)") from exc
        if not ok:
            raise ConfigError(f"[executors.{self.name}] work_dir = {str(self.work_dir)!r} does not read back")

    def shutdown(self, cancel: bool = False) -> None:
        with self._cond:
            self._stopped.set()
            self._cond.notify_all()
            dropped = [job for batch in self._batches.values() for job in batch]
            self._batches.clear()
            self._batch_due.clear()
            active = list(self._active)
            if cancel:
                for job in list(self._jobs.values()):
                    job.cancelled = True
                self._jobs.clear()
                self._active.clear()
        if cancel and active:
            self._scancel(active)
        for job in dropped if not cancel else ():
            job.done(Outcome(job.spec.job_id, False, error=ExecutorError(
                "the executor shut down before the job was submitted", job.spec.task_name, self.name)))

    # ------------------------------------------------------------------------------------ jobs
    def submit(self, spec: JobSpec, done: Done) -> None:
        try:
            self.start()
            data = _wire.dump_job(spec)
            folder = self.work_dir / "jobs"
            folder.mkdir(parents=True, exist_ok=True)
            payload = folder / f"{uuid.uuid4().hex}.in"
            payload.write_bytes(data)
        except (SerializationError, ExecutorError, ConfigError) as error:
            done(Outcome(spec.job_id, False, error=error))
            return
        except OSError as exc:
            done(Outcome(spec.job_id, False, error=ExecutorError(
                f"cannot write the job of {spec.task_name} to {self.work_dir}: {exc}", spec.task_name, self.name)))
            return
        job = _Job(spec, done, payload, sbatch_flags(spec, self.config))
        with self._cond:
            self._jobs[spec.job_id] = job
            batch = self._batches[job.flags]
            batch.append(job)
            self._batch_due.setdefault(job.flags, time.monotonic() + float(self.config.get("batch_wait", 0.3)))
            if len(batch) >= int(self.config.get("array_size", 200)):
                self._batch_due[job.flags] = 0.0
            self._cond.notify_all()

    def cancel(self, job_id: str) -> bool:
        with self._cond:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled = True
            batch = self._batches.get(job.flags)
            if batch is not None and job in batch:
                batch.remove(job)
                return True
            slurm_id = job.slurm_id
            if slurm_id is not None:
                self._active.pop(slurm_id, None)
        if slurm_id is not None:  # else being submitted now: the loop cancels it once it has an id
            self._scancel([slurm_id])
        return True

    # ------------------------------------------------------------------------------ the loop
    def _loop(self, stopped: threading.Event) -> None:
        interval = float(self.config.get("poll_interval", 0.5))
        most = float(self.config.get("poll_max", 10.0))
        delay, next_poll = interval, time.monotonic() + interval
        while True:
            with self._cond:
                if stopped.is_set():
                    return
                wait = min([next_poll, *self._batch_due.values()]) - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                if stopped.is_set():
                    return
                now = time.monotonic()
                ready = [flags for flags, t in self._batch_due.items() if t <= now]
                batches = [(flags, self._batches.pop(flags, [])) for flags in ready]
                for flags in ready:
                    del self._batch_due[flags]
                polling = bool(self._active) and now >= next_poll
            for flags, jobs in batches:
                if jobs:
                    self._sbatch(flags, jobs)
            if batches:
                delay, next_poll = interval, time.monotonic() + interval
            if polling:
                changed = self._poll()
                delay = interval if changed else min(most, delay * 1.5)
                next_poll = time.monotonic() + delay

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)

    def _sbatch(self, flags: tuple[str, ...], jobs: list[_Job]) -> None:
        size = int(self.config.get("array_size", 200))
        for start in range(0, len(jobs), size):
            self._sbatch_array(flags, jobs[start:start + size])

    def _sbatch_array(self, flags: tuple[str, ...], jobs: list[_Job]) -> None:
        listing = self.work_dir / "jobs" / f"{uuid.uuid4().hex}.list"
        listing.write_text("".join(f"{job.payload}\n" for job in jobs))
        python = str(self.config.get("python") or sys.executable)
        command = f"{shlex.quote(python)} -m slothflow.executors._slurm_job {shlex.quote(str(listing))}"
        name = jobs[0].spec.task_name.rsplit(".", 1)[-1]
        cmd = ["sbatch", "--parsable", f"--array=0-{len(jobs) - 1}", f"--job-name=slothflow-{name}",
               f"--output={self.work_dir / 'logs' / '%A_%a.out'}", f"--chdir={os.getcwd()}", *flags,
               "--wrap", command]
        self.counts["sbatch"] += 1
        try:
            proc = self._run(cmd)
            failure = proc.stderr.strip() or proc.stdout.strip() if proc.returncode else ""
            array_id = proc.stdout.strip().split(";")[0]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure, array_id = str(exc), ""
        if failure or not array_id:
            for job in jobs:
                self._report(job, lambda j=job: Outcome(j.spec.job_id, False, error=ExecutorError(
                    f"sbatch refused {j.spec.task_name} ({' '.join(flags) or 'no flags'}): {failure}",
                    j.spec.task_name, self.name)))
            return
        cancelled: list[str] = []
        with self._cond:
            for i, job in enumerate(jobs):
                job.slurm_id = f"{array_id}_{i}"
                job.log = self.work_dir / "logs" / f"{array_id}_{i}.out"
                if job.cancelled:
                    cancelled.append(job.slurm_id)
                else:
                    self._active[job.slurm_id] = job
        if cancelled:
            self._scancel(cancelled)

    def _scancel(self, slurm_ids: list[str]) -> None:
        self.counts["scancel"] += 1
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self._run(["scancel", *slurm_ids])

    def _states(self, arrays: list[str]) -> dict[str, tuple[str, str]]:
        """Array task id -> (state, node) for the given arrays, in one squeue call (ended jobs included)."""
        self.counts["squeue"] += 1
        fmt = ["-h", "-r", "--states=all", "-o", "%i %T %N"]
        proc = self._run(["squeue", "-j", ",".join(arrays), *fmt])
        if proc.returncode:  # an array Slurm already forgot makes the whole query fail: ask for ours by user
            import getpass

            proc = self._run(["squeue", "-u", getpass.getuser(), *fmt])
        found: dict[str, tuple[str, str]] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                found[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        return found

    def _poll(self) -> bool:
        """Report the jobs that ended; whether anything changed."""
        with self._cond:
            active = dict(self._active)
        arrays = sorted({sid.split("_")[0] for sid in active})
        try:
            states = self._states(arrays)
        except (OSError, subprocess.TimeoutExpired):
            return False
        changed = False
        now = time.monotonic()
        for sid, job in active.items():
            state, node = states.get(sid, ("", ""))
            job.node = node or job.node
            if state != job.state:
                changed, job.state = True, state
            result = job.payload.with_suffix(".out")
            if result.exists():
                self._finish(sid, job, lambda j=job, r=result: self._outcome(j, r))
                changed = True
            elif state in ENDED or not state:
                job.ended_at = job.ended_at or now
                if now - job.ended_at > GRACE:
                    self._finish(sid, job, lambda j=job: self._lost(j))
                    changed = True
        return changed

    def _finish(self, sid: str, job: _Job, make: Any) -> None:
        with self._cond:
            if self._active.pop(sid, None) is None or job.cancelled:
                return
            self._jobs.pop(job.spec.job_id, None)
        self._report(job, make)

    def _report(self, job: _Job, make: Any) -> None:
        with self._cond:
            self._jobs.pop(job.spec.job_id, None)
        report_safely(job.done, job.spec.job_id, make, f"Slurm executor {self.name!r} lost {job.spec.task_name}")

    def _outcome(self, job: _Job, result: Path) -> Outcome:
        outcome = _wire.load_outcome(result.read_bytes(), job.spec)
        for path in (result, job.payload):
            with contextlib.suppress(OSError):
                path.unlink()
        if not outcome.ok:
            outcome.traceback = (outcome.traceback + self._tail_note(job)).strip("\n") + "\n"
        return outcome

    def _lost(self, job: _Job) -> Outcome:
        state = job.state or "gone from squeue"
        where = f"Slurm job {job.slurm_id}" + (f" on {job.node}" if job.node else "")
        return Outcome(job.spec.job_id, False, error=WorkerLostError(
            f"{where} running {job.spec.task_name} ended ({state}) without a result{self._tail_note(job)}",
            job.spec.task_name, self.name, worker=job.slurm_id))

    def _tail_note(self, job: _Job) -> str:
        tail = _tail(job.log) if job.log is not None else ""
        return f"\n--- the last lines of {job.log} ---\n{tail}" if tail else ""


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
