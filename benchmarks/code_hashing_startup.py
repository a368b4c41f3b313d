"""Start-up cost of transitive code hashing: a workflow of 200 tasks over 20 modules.

Generates the workflow in a temporary folder (each module: 10 tasks, helpers calling helpers, a class with
methods, module constants, a decorated helper, a closure, and imports of a shared helper module and of an
installed package), then, in a fresh interpreter, times: importing it; computing every task hash (own source
plus the transitive helpers, i.e. the code manifest); computing every task's environment fingerprint. Prints
the figures (and JSON with ``--json``).

    python benchmarks/code_hashing_startup.py [--tasks 200] [--modules 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SHARED = '''
import functools

FACTOR = 3


def timed(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)
    return wrapper


def clean(x, factor=FACTOR):
    return [v * factor for v in x if v is not None]


class Normalizer:
    def __init__(self, scale):
        self.scale = scale

    def apply(self, x):
        return [v / self.scale for v in clean(x)]
'''

MODULE = '''
import json
import click
from slothflow import task

import shared
from shared import Normalizer, clean, timed

OFFSET_{m} = {m}
NAMES_{m} = ("a", "b", "c")


def make_scaler(k):
    def scale(x):
        return [v * k for v in x]
    return scale


scaler_{m} = make_scaler({m} + 1)


@timed
def step_a(x, bias=OFFSET_{m}):
    return [v + bias for v in clean(x)]


def step_b(x):
    return step_a(x) + [len(NAMES_{m})]


def step_c(x):
    return shared.clean(step_b(x)) + scaler_{m}(x)

{tasks}
'''

TASK = '''

@task
def t{m}_{i}(x: list) -> list:
    data = step_c(x) if {i} % 2 else Normalizer({i} + 1).apply(x)
    return json.loads(json.dumps(data)) + [click.style("{i}")]
'''

MEASURE = '''
import json, sys, time
sys.path.insert(0, sys.argv[1])
n_modules = int(sys.argv[2])
t0 = time.perf_counter()
import slothflow
from slothflow import get_task_registry
t1 = time.perf_counter()
import importlib
mods = [importlib.import_module(f"wf{m}") for m in range(n_modules)]
t2 = time.perf_counter()
tasks = list(get_task_registry())
hashes = [t.hash for t in tasks]
t3 = time.perf_counter()
manifest_items = sum(len(t.code_manifest) for t in tasks)
t4 = time.perf_counter()
from slothflow.hashing._environment import task_environment
envs = [task_environment(t) for t in tasks]
t5 = time.perf_counter()
print(json.dumps({
    "tasks": len(tasks), "modules": n_modules, "manifest_items": manifest_items,
    "packages": sorted({p for e in envs for p in e.packages}),
    "import_slothflow_s": t1 - t0, "import_workflow_s": t2 - t1, "task_hashes_s": t3 - t2,
    "manifests_s": t4 - t3, "environments_s": t5 - t4,
}))
'''


def generate(root: Path, n_tasks: int, n_modules: int) -> None:
    (root / "shared.py").write_text(textwrap.dedent(SHARED))
    per = n_tasks // n_modules
    for m in range(n_modules):
        tasks = "".join(TASK.format(m=m, i=i) for i in range(per))
        (root / f"wf{m}.py").write_text(MODULE.format(m=m, tasks=tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--modules", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.tasks, args.modules)
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", MEASURE, str(root), str(args.modules)], check=True,
                                 capture_output=True, text=True, cwd=root).stdout
            runs.append(json.loads(out))
    best = {k: min(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k] for k in runs[0]}
    if args.json:
        print(json.dumps(best, indent=2))
        return
    print(f"{best['tasks']} tasks over {best['modules']} modules, {best['manifest_items']} manifest items in all, "
          f"packages found: {', '.join(best['packages']) or 'none'} (best of {args.repeat} fresh processes)")
    print(f"  import slothflow        {best['import_slothflow_s'] * 1000:8.1f} ms")
    print(f"  import the workflow     {best['import_workflow_s'] * 1000:8.1f} ms")
    print(f"  all task hashes         {best['task_hashes_s'] * 1000:8.1f} ms   (own source + transitive helpers)")
    print(f"  all code manifests      {best['manifests_s'] * 1000:8.1f} ms   (already computed with the hashes)")
    print(f"  all env fingerprints    {best['environments_s'] * 1000:8.1f} ms")
    added = best["task_hashes_s"] + best["manifests_s"] + best["environments_s"]
    print(f"  added to start-up       {added * 1000:8.1f} ms   (budget: 500 ms)")


if __name__ == "__main__":
    main()
