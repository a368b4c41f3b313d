#!/usr/bin/env python3
"""Scale check (issue 8): is the scheduler's cost per call flat and small from 1,000 to 100,000 calls?

The shared ``fanout`` workload, ``total([inc(i) for i in range(n)])``, at several sizes: a cold run on an
empty database, then a fully cached rerun in a new process, against ``dask.delayed`` with the threaded
scheduler (when dask is importable), on SQLite and, with ``--pg``, on a fresh PostgreSQL database made for
each size (and dropped after). Each phase runs in its own process, so peak memory is that phase's own.

    PYTHONPATH=src python benchmarks/scale.py --ns 1000,10000,30000 [--pg] [--no-dask] [--json out.json]

Columns: ms per call (wall time of ``Scheduler.run``, expression building included, as for dask), CPU ms per
call (less sensitive to other load on a shared machine), database KB per call after the cold run (above
the empty schema), peak RSS, and the extra peak memory per call above the smallest size. The targets of
the issue are printed under the table as ratios. No task body may run in the cached rerun: checked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import slothflow

PREFIX = "SCALE_RESULT "
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
_bodies = 0
_lock = threading.Lock()


def _ran() -> None:
    global _bodies
    with _lock:
        _bodies += 1


# ------------------------------------------------------------------------------------- one phase
@slothflow.task(namespace="bench")
def inc(i: int) -> int:
    _ran()
    return i + 1


@slothflow.task(namespace="bench")
def total(xs: list[int]) -> int:
    _ran()
    return sum(xs)


@slothflow.task(namespace="bench")
def fanout(n: int) -> Any:
    _ran()
    return total([inc(i) for i in range(n)])


def _phase_slothflow(n: int, uri: str, blob_dir: str, profile: str | None) -> dict[str, Any]:
    config = {"backend": {"db_uri": uri, "blob_dir": blob_dir}}
    scheduler = slothflow.Scheduler(config=config)
    scheduler.load()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    if prof is not None:
        prof.enable()
    value = scheduler.run(fanout(n))
    if prof is not None:
        prof.disable()
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    scheduler.close()
    if prof is not None and profile:
        prof.dump_stats(profile)
    return {"run_s": run_s, "cpu_s": cpu_s, "ok": value == n * (n + 1) // 2, "bodies": _bodies}


def _phase_dask(n: int) -> dict[str, Any]:
    from dask import delayed

    def dinc(i: int) -> int:
        _ran()
        return i + 1

    def dtotal(xs: list[int]) -> int:
        _ran()
        return sum(xs)

    c0, t0 = time.process_time(), time.perf_counter()
    value = delayed(dtotal)([delayed(dinc)(i) for i in range(n)]).compute(scheduler="threads")
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {"run_s": run_s, "cpu_s": cpu_s, "ok": value == n * (n + 1) // 2, "bodies": _bodies}


def worker(args: argparse.Namespace) -> None:
    if args.engine == "dask":
        out = _phase_dask(args.n)
    else:
        out = _phase_slothflow(args.n, args.uri, args.blob_dir, args.profile)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(PREFIX + json.dumps(out), flush=True)


def run_phase(argv: list[str]) -> dict[str, Any]:
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", *argv], capture_output=True,
                       text=True, timeout=7200)
    for line in p.stdout.splitlines():
        if line.startswith(PREFIX):
            return dict(json.loads(line[len(PREFIX):]))
    raise SystemExit(f"no result from phase {argv}:\n{p.stderr[-3000:]}")


# ------------------------------------------------------------------------------------- databases
class Database:
    """A fresh database for one size: a SQLite file in a temporary folder, or a new PostgreSQL database."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix="scale-")
        self.blob_dir = os.path.join(self.tmp, "blobs")
        if kind == "sqlite":
            self.uri = f"sqlite:///{self.tmp}/s.db"
            self.name = ""
        else:
            self.name = "bench_" + os.urandom(6).hex()
            self._admin(f"CREATE DATABASE {self.name}")
            self.uri = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"
        self.empty = 0
        self._schema()
        self.empty = self.size()

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql)

    def _schema(self) -> None:
        from slothflow.store import Store

        Store(self.uri, blob_dir=self.blob_dir).close()

    def size(self) -> int:
        """Bytes used now (database, WAL, blobs), above the empty schema."""
        if self.kind == "sqlite":
            total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(self.tmp) for f in fs)
        else:
            import psycopg

            with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                total = int(row[0]) if row else 0
            total += sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(self.tmp) for f in fs)
        return total - self.empty

    def drop(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.kind == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def measure(n: int, kind: str, profile_dir: str | None) -> dict[str, Any]:
    db = Database(kind)
    try:
        def argv(phase: str) -> list[str]:
            out = ["--engine", "slothflow", "--n", str(n), "--uri", db.uri, "--blob-dir", db.blob_dir]
            if profile_dir:
                out += ["--profile", os.path.join(profile_dir, f"{kind}-{n}-{phase}.pstats")]
            return out

        cold = run_phase(argv("cold"))
        size = db.size()
        warm = run_phase(argv("cached"))
    finally:
        db.drop()
    return {"n": n, "db": kind, "cold": cold, "cached": warm, "db_kb": size / 1024 / n,
            "ok": cold["ok"] and warm["ok"] and warm["bodies"] == 0}


# ------------------------------------------------------------------------------------------ table
def ms(phase: dict[str, Any], n: int, key: str = "run_s") -> float:
    return 1000 * float(phase[key]) / n


def table(rows: list[dict[str, Any]], dask: dict[int, dict[str, Any]]) -> str:
    lines = ["| db | calls | cold ms/call | cold CPU ms/call | cached ms/call | cached CPU ms/call | dask ms/call |"
             " cold/dask | cached/dask | DB KB/call | RSS MB cold / cached | extra KB/call cold / cached | ok |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    first: dict[str, dict[str, Any]] = {}
    for r in rows:
        n, base = r["n"], first.setdefault(r["db"], r)
        d = dask.get(n)
        dms = ms(d, n) if d else float("nan")
        extra = ["-", "-"]
        if r is not base:
            extra = [f"{(r[p]['rss_mb'] - base[p]['rss_mb']) * 1024 / (n - base['n']):.2f}" for p in ("cold", "cached")]
        lines.append(
            f"| {r['db']} | {n:,} | {ms(r['cold'], n):.3f} | {ms(r['cold'], n, 'cpu_s'):.3f} | "
            f"{ms(r['cached'], n):.3f} | {ms(r['cached'], n, 'cpu_s'):.3f} | {dms:.3f} | "
            f"{ms(r['cold'], n) / dms:.2f} | {ms(r['cached'], n) / dms:.3f} | {r['db_kb']:.2f} | "
            f"{r['cold']['rss_mb']:.0f} / {r['cached']['rss_mb']:.0f} | {extra[0]} / {extra[1]} | "
            f"{'OK' if r['ok'] else 'FAIL'} |")
    lines.append("")
    for kind, base in first.items():
        last = [r for r in rows if r["db"] == kind][-1]
        if last is not base:
            flat = [ms(last[p], last["n"]) / ms(base[p], base["n"]) for p in ("cold", "cached")]
            lines.append(f"- {kind} flatness, ms/call at {last['n']:,} over {base['n']:,}: cold {flat[0]:.2f}x, "
                         f"cached {flat[1]:.2f}x (target <= 1.2x)")
    by = {(r["db"], r["n"]): r for r in rows}
    for (kind, n), r in by.items():
        lite = by.get(("sqlite", n))
        if kind == "postgresql" and lite:
            lines.append(f"- PostgreSQL / SQLite at {n:,}: cold {r['cold']['run_s'] / lite['cold']['run_s']:.2f}x, "
                         f"cached {r['cached']['run_s'] / lite['cached']['run_s']:.2f}x (target <= 2x)")
    lines.append("- targets: cold/dask <= 0.5, cached/dask <= 0.08, DB <= 2 KB/call, extra memory <= 2 KB/call")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default="1000,10000,100000", help="comma list of sizes (calls)")
    ap.add_argument("--pg", action="store_true", help="also on PostgreSQL (127.0.0.1:5432, user postgres)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip SQLite (with --pg)")
    ap.add_argument("--no-dask", action="store_true", help="skip the dask.delayed comparison")
    ap.add_argument("--dask-max", type=int, default=50_000,
                    help="largest size run on dask (it grows superlinearly on this shape; default 50,000)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--profile-dir", help="write a cProfile of each slothflow phase here")
    # Internal: one phase in this process.
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    ap.add_argument("--blob-dir", help=argparse.SUPPRESS)
    ap.add_argument("--profile", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    if a.profile_dir:
        os.makedirs(a.profile_dir, exist_ok=True)
    ns = [int(x.replace("_", "")) for x in a.ns.split(",")]
    kinds = ([] if a.no_sqlite else ["sqlite"]) + (["postgresql"] if a.pg else [])
    probe = subprocess.run([sys.executable, "-c", "import dask"], capture_output=True)
    dask_ok = not a.no_dask and probe.returncode == 0
    rows: list[dict[str, Any]] = []
    dask: dict[int, dict[str, Any]] = {}
    for n in ns:  # size-major: the engines of one size are measured within minutes of each other
        if dask_ok and n <= a.dask_max:
            dask[n] = run_phase(["--engine", "dask", "--n", str(n)])
            print(f"dask threaded {n}: {ms(dask[n], n):.3f} ms/call, {dask[n]['rss_mb']:.0f} MB", flush=True)
        for kind in kinds:
            r = measure(n, kind, a.profile_dir)
            rows.append(r)
            print(f"{kind} {n}: cold {ms(r['cold'], n):.3f} ms/call, cached {ms(r['cached'], n):.3f} ms/call, "
                  f"{r['db_kb']:.2f} KB/call, RSS {r['cold']['rss_mb']:.0f}/{r['cached']['rss_mb']:.0f} MB, "
                  f"{'OK' if r['ok'] else 'FAIL'}", flush=True)
    print()
    print(table(rows, dask))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "dask": dask, "ns": ns}, fh, indent=1)
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
