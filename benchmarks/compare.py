#!/usr/bin/env python3
"""Side-by-side benchmark: redun 0.44.1 versus slothflow on the shared workloads.

The workloads and their driver live in the shared bench directory (``driver.py``,
``wl_*.py``); this script only orchestrates them and compares the results:

1. makes sure a private virtual environment with redun 0.44.1 exists
   (``~/.cache/slothflow-bench/redun-venv`` by default; created on demand),
2. runs ``driver.py`` once per engine, each under its own interpreter
   (redun: the venv's python; slothflow: the python running this script),
   and collects each run's raw samples through ``driver.py --json``,
3. prints one markdown table row per workload phase with the median
   ``run_s`` of both engines, the speed-up (redun / slothflow), ms per task and
   the correctness verdict of each engine.

Exit status: 1 if slothflow failed any correctness check (or could not be run),
2 on a usage or set-up error, 0 otherwise.

Examples::

    python benchmarks/compare.py --only fanout1000 --reps 3
    python benchmarks/compare.py --only fanout1000 --reps 3 \\
        --redun-json benchmarks/results/redun-fanout1000.json
    python benchmarks/compare.py --quick --reps 1

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DIR = REPO.parent / "shared" / "bench"
DEFAULT_VENV = Path.home() / ".cache" / "slothflow-bench" / "redun-venv"
REDUN_VERSION = "0.44.1"
# What the shared workloads use from the engine module (see benchlib.py in the bench dir).
ENGINE_API = ("task", "Scheduler", "File")
SIDES = ("redun", "slothflow")
NA = "n/a"  # table cell for a missing value


def say(msg: str) -> None:
    """Progress output of this script (prefixed so it stands out from the driver's)."""
    print(f"[compare] {msg}", flush=True)


class SetupError(Exception):
    """Something needed before benchmarking could not be prepared."""


# --------------------------------------------------------------------------------------
# Interpreters and engines
# --------------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def probe_module(
    python: str, module: str, env: dict[str, str] | None = None, require: Sequence[str] = ()
) -> tuple[bool, str]:
    """Import `module` under `python` and check it has the `require` attributes.

    Returns (ok, version) or (False, error text)."""
    code = (
        "import importlib, sys\n"
        f"m = importlib.import_module({module!r})\n"
        f"missing = [a for a in {list(require)!r} if not hasattr(m, a)]\n"
        "if missing:\n"
        "    where = getattr(m, '__file__', None) or list(getattr(m, '__path__', []))\n"
        "    sys.exit(f'module {m.__name__} ({where}) lacks: ' + ', '.join(missing))\n"
        "print(getattr(m, '__version__', getattr(m, 'version', '?')))\n"
    )
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit status {proc.returncode}"
    return True, proc.stdout.strip()


def run_checked(cmd: Sequence[str]) -> None:
    say("$ " + " ".join(cmd))
    proc = subprocess.run(list(cmd))
    if proc.returncode != 0:
        raise SetupError(f"command failed with exit status {proc.returncode}: {' '.join(cmd)}")


def ensure_redun_venv(venv: Path, base_python: str, version: str) -> str:
    """Return the python of a venv holding redun==`version`, creating/repairing it if needed."""
    py = venv_python(venv)
    if py.exists():
        ok, found = probe_module(str(py), "redun")
        if ok and found == version:
            say(f"redun {found} found in {venv}")
            return str(py)
        why = f"has redun {found}" if ok else "has no importable redun"
        say(f"venv {venv} exists but {why}; installing redun=={version} into it")
    else:
        say(f"creating virtual environment {venv} (base interpreter {base_python})")
        venv.parent.mkdir(parents=True, exist_ok=True)
        run_checked([base_python, "-m", "venv", str(venv)])
    run_checked([str(py), "-m", "pip", "install", "--quiet", f"redun=={version}"])
    ok, found = probe_module(str(py), "redun")
    if not ok or found != version:
        raise SetupError(f"redun=={version} still not importable from {py}: {found}")
    say(f"installed redun {found} into {venv}")
    return str(py)


# --------------------------------------------------------------------------------------
# Running the shared driver
# --------------------------------------------------------------------------------------


@dataclass
class Side:
    """One column group of the comparison: an engine module run under one interpreter."""

    key: str  # "redun" or "slothflow"
    module: str  # module name handed to the driver as BENCH_ENGINE
    python: str = ""
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    doc: dict[str, Any] | None = None  # the driver's --json document
    json_path: Path | None = None
    reused: bool = False  # results loaded from an earlier run's JSON
    driver_rc: int | None = None

    @property
    def label(self) -> str:
        if self.key == self.module:
            return self.key
        return f"{self.key} [{self.module}]"


def driver_command(args: argparse.Namespace, side: Side, json_out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(args.bench_dir / "driver.py"),
        "--engine",
        side.module,
        "--python",
        side.python,
        "--reps",
        str(args.reps),
        "--json",
        str(json_out),
    ]
    if args.only:
        cmd += ["--only", args.only]
    if args.quick:
        cmd.append("--quick")
    if args.tmp:
        cmd += ["--tmp", args.tmp]
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    if args.keep:
        cmd.append("--keep")
    return cmd


def run_driver(args: argparse.Namespace, side: Side, workdir: Path) -> None:
    json_out = workdir / f"{side.key}.json"
    cmd = driver_command(args, side, json_out)
    say(f"running {side.label} with {side.python}")
    say("$ " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=side.env)
    side.driver_rc = proc.returncode
    say(f"{side.label}: driver finished in {time.perf_counter() - t0:.1f} s, exit status {proc.returncode}")
    if json_out.exists():
        side.doc = load_doc(json_out)
        side.json_path = json_out
    else:
        say(f"{side.label}: driver wrote no JSON ({json_out})")


def load_doc(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise SetupError(f"{path} is not a driver.py --json document (no 'rows' list)")
    return doc


# --------------------------------------------------------------------------------------
# Comparison table
# --------------------------------------------------------------------------------------


@dataclass
class Stat:
    median_s: float
    ms_per_task: float
    tasks: int
    ok: bool
    detail: str
    samples: int


def row_stat(row: dict[str, Any]) -> Stat:
    runs = [float(x) for x in row.get("run_s", []) if x is not None and not math.isnan(float(x))]
    med = statistics.median(runs) if runs else math.nan
    tasks = int(row.get("tasks") or 0)
    oks = row.get("ok") or []
    ok = bool(oks) and all(bool(x) for x in oks)
    detail = ";".join(str(d) for d in row.get("detail", []) if d)
    if not oks:
        detail = detail or "no samples"
    return Stat(med, 1000.0 * med / max(tasks, 1), tasks, ok, detail, len(runs))


def stats_by_name(doc: dict[str, Any] | None) -> dict[str, Stat]:
    if doc is None:
        return {}
    return {str(r["name"]): row_stat(r) for r in doc["rows"]}


def fmt_s(x: float | None) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.3f}"


def fmt_ms(x: float | None) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.2f}"


def fmt_check(st: Stat | None) -> str:
    if st is None:
        return NA
    return "OK" if st.ok else "FAIL"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return NA
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def speedup(base: Stat | None, cand: Stat | None) -> float | None:
    if base is None or cand is None:
        return None
    if math.isnan(base.median_s) or math.isnan(cand.median_s) or cand.median_s <= 0:
        return None
    return base.median_s / cand.median_s


def phase_names(
    base: dict[str, Stat], cand: dict[str, Stat], docs: Sequence[dict[str, Any] | None]
) -> list[str]:
    names: list[str] = []
    for doc in docs:
        for row in (doc or {}).get("rows", []):
            if row["name"] not in names:
                names.append(str(row["name"]))
    return [n for n in names if n in base or n in cand]


def workload_of(phase: str) -> str:
    """`fanout1000.cold` -> `fanout1000`; single-phase rows such as `fib18` are their own workload."""
    return phase.split(".", 1)[0]


def selected_stats(side: Side, only: str) -> dict[str, Stat]:
    """Per-phase stats of one side, restricted to the --only workloads (a reused JSON may hold more)."""
    stats = stats_by_name(side.doc)
    if not only:
        return stats
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    return {n: st for n, st in stats.items() if workload_of(n) in wanted}


def render(redun: Side, cand: Side, only: str = "") -> str:
    base = selected_stats(redun, only)
    other = selected_stats(cand, only)
    names = phase_names(base, other, [redun.doc, cand.doc])
    if not names:
        return "(no workload phases to compare" + (f" for --only {only})\n" if only else ")\n")
    rl, cl = redun.label, cand.label
    lines = [
        f"| phase | tasks | {rl} run_s | {cl} run_s | speed-up ({rl}/{cl}) "
        f"| {rl} ms/task | {cl} ms/task | {rl} check | {cl} check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    ratios: list[float] = []
    for name in names:
        b, c = base.get(name), other.get(name)
        tasks = max(st.tasks for st in (b, c) if st is not None)
        ratio = speedup(b, c)
        if ratio is not None:
            ratios.append(ratio)
        lines.append(
            f"| {name} | {tasks} | {fmt_s(b.median_s if b else None)} | {fmt_s(c.median_s if c else None)} "
            f"| {fmt_ratio(ratio)} "
            f"| {fmt_ms(b.ms_per_task if b else None)} | {fmt_ms(c.ms_per_task if c else None)} "
            f"| {fmt_check(b)} | {fmt_check(c)} |"
        )
    out = "\n".join(lines) + "\n"
    if len(ratios) > 1:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        out += f"\nGeometric mean speed-up over {len(ratios)} phases: {fmt_ratio(geo)}\n"
    failures = [
        f"- {side.label} {name}: {st.detail or 'FAIL'}"
        for side, stats in ((redun, base), (cand, other))
        for name, st in stats.items()
        if not st.ok
    ]
    if failures:
        out += "\nFailed checks:\n" + "\n".join(failures) + "\n"
    return out


def describe(side: Side) -> str:
    if side.doc is None:
        return f"- {side.label}: not run"
    doc = side.doc
    versions = sorted({str(r.get("engine_version")) for r in doc["rows"] if r.get("engine_version")})
    src = f" (reused from `{side.json_path}`)" if side.reused else ""
    return (
        f"- {side.label}: engine module `{doc.get('engine')}` {', '.join(versions) or '?'}, "
        f"python `{doc.get('python')}`, {doc.get('reps')} rep(s){src}"
    )


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Run the shared redun-API benchmark for redun and slothflow and compare them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--bench-dir",
        type=Path,
        default=DEFAULT_BENCH_DIR,
        help="directory holding driver.py and the wl_*.py workloads",
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions per workload (median is reported)")
    ap.add_argument("--only", default="", help="comma list of workloads, e.g. fanout1000,chain500")
    ap.add_argument("--quick", action="store_true", help="tiny workload sizes (smoke test)")
    ap.add_argument(
        "--tmp",
        default="",
        help="driver scratch dir for DBs/data, e.g. /dev/shm/bench (driver default: /tmp/bench-runs)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the driver's temp dirs and per-phase stderr logs"
    )
    ap.add_argument("--timeout", type=int, default=0, help="per-phase timeout in s (0: driver default)")
    ap.add_argument(
        "--engines",
        default="",
        help="comma list of sides to run: redun,slothflow (default: every side whose "
        "results are not given by --redun-json / --slothflow-json)",
    )
    ap.add_argument(
        "--redun-json", type=Path, help="reuse this earlier redun driver JSON (redun is not rerun)"
    )
    ap.add_argument("--slothflow-json", type=Path, help="reuse this earlier slothflow driver JSON")
    ap.add_argument("--save-redun-json", type=Path, help="copy the fresh redun driver JSON here")
    ap.add_argument("--save-slothflow-json", type=Path, help="copy the fresh slothflow driver JSON here")
    ap.add_argument("--markdown", type=Path, help="also write the comparison table to this file")
    ap.add_argument("--redun-venv", type=Path, default=DEFAULT_VENV, help="virtual environment for redun")
    ap.add_argument("--redun-version", default=REDUN_VERSION, help="redun version installed into the venv")
    ap.add_argument("--base-python", default=sys.executable, help="interpreter used to create the redun venv")
    ap.add_argument(
        "--slothflow-python",
        default=sys.executable,
        help="interpreter for the slothflow side (must import the engine module)",
    )
    ap.add_argument(
        "--slothflow-module",
        default="slothflow",
        help="engine module of the slothflow side; e.g. 'redun' together with "
        "--slothflow-python <redun venv python> to test the plumbing",
    )
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    args.bench_dir = args.bench_dir.resolve()
    given = {"redun": args.redun_json, "slothflow": args.slothflow_json}
    if args.engines:
        run = [e.strip() for e in args.engines.split(",") if e.strip()]
        bad = [e for e in run if e not in SIDES]
        if bad:
            ap.error(f"--engines: unknown side(s) {', '.join(bad)} (choose from {', '.join(SIDES)})")
        clash = [e for e in run if given[e] is not None]
        if clash:
            ap.error(f"--engines lists {', '.join(clash)} but --{clash[0]}-json is given too")
    else:
        run = [e for e in SIDES if given[e] is None]
    args.run = run
    return args


def slothflow_env(args: argparse.Namespace) -> dict[str, str]:
    """Environment for the slothflow side. If the module is not importable as installed but the
    repository's src/ holds it (no `pip install -e .` yet), fall back to putting src/ on PYTHONPATH."""
    env = dict(os.environ)
    ok, found = probe_module(args.slothflow_python, args.slothflow_module, env, ENGINE_API)
    if ok:
        say(f"{args.slothflow_module} {found} importable from {args.slothflow_python}")
        return env
    src = REPO / "src"
    if args.slothflow_module == "slothflow" and (src / "slothflow").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
        ok2, found2 = probe_module(args.slothflow_python, args.slothflow_module, env, ENGINE_API)
        if ok2:
            say(f"slothflow is not installed; using {src} via PYTHONPATH (version {found2})")
            return env
        found = found2
    raise SetupError(f"cannot import {args.slothflow_module!r} with {args.slothflow_python}: {found}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    driver = args.bench_dir / "driver.py"
    if args.run and not driver.is_file():
        say(f"error: no driver.py in {args.bench_dir} (use --bench-dir)")
        return 2

    redun = Side("redun", "redun")
    cand = Side("slothflow", args.slothflow_module, python=args.slothflow_python)
    try:
        if args.redun_json is not None:
            redun.doc, redun.json_path, redun.reused = load_doc(args.redun_json), args.redun_json, True
            say(f"reusing redun results from {args.redun_json}")
            if redun.doc.get("engine") != "redun":
                say(f"warning: {args.redun_json} holds results of engine {redun.doc.get('engine')!r}")
        if args.slothflow_json is not None:
            cand.doc, cand.json_path, cand.reused = load_doc(args.slothflow_json), args.slothflow_json, True
            cand.module = str(cand.doc.get("engine") or cand.module)
            say(f"reusing {cand.label} results from {args.slothflow_json}")
    except (SetupError, OSError, json.JSONDecodeError) as exc:
        say(f"error: {exc}")
        return 2
    if "slothflow" in args.run:
        # Checked first so that a broken candidate fails fast, before the slow redun runs.
        try:
            cand.env = slothflow_env(args)
        except SetupError as exc:
            say(f"error: {exc}")
            return 1
    try:
        if "redun" in args.run:
            redun.python = ensure_redun_venv(args.redun_venv, args.base_python, args.redun_version)
    except (SetupError, OSError) as exc:
        say(f"error: {exc}")
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="slothflow-compare-"))
    try:
        # redun first: a failure of the candidate side should not cost the (slow) baseline.
        if "redun" in args.run:
            run_driver(args, redun, workdir)
            copy_out(redun, args.save_redun_json)
        if "slothflow" in args.run:
            run_driver(args, cand, workdir)
            copy_out(cand, args.save_slothflow_json)

        table = render(redun, cand, args.only)
        header = "\n".join(
            [
                f"## redun vs {cand.label} (median run_s; speed-up = redun / {cand.label})",
                "",
                describe(redun),
                describe(cand),
                "",
            ]
        )
        print()
        print(header)
        print(table, flush=True)
        if args.markdown:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(header + "\n" + table)
            say(f"wrote {args.markdown}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if redun.doc is not None and not all(s.ok for s in selected_stats(redun, args.only).values()):
        say("warning: redun failed some correctness checks (see above)")
    if "slothflow" in args.run or args.slothflow_json is not None:
        if cand.doc is None:
            say(f"{cand.label}: no results, counting as failure")
            return 1
        cand_stats = selected_stats(cand, args.only)
        if not cand_stats:
            say(f"{cand.label}: no results for the selected workloads, counting as failure")
            return 1
        if not all(s.ok for s in cand_stats.values()):
            say(f"{cand.label} failed correctness checks")
            return 1
    return 0


def copy_out(side: Side, dest: Path | None) -> None:
    """Keep the raw driver JSON of a fresh run (the work dir is deleted at exit)."""
    if dest is None or side.json_path is None:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(side.json_path, dest)
    say(f"saved {side.label} raw results to {dest}")


if __name__ == "__main__":
    sys.exit(main())
