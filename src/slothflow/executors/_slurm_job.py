"""What one Slurm array task runs: ``python -m slothflow.executors._slurm_job LIST_FILE``.

The list file names one job payload per line (written by :func:`slothflow.executors._wire.dump_job`); the task
runs line ``SLURM_ARRAY_TASK_ID`` and writes the outcome next to the payload (``.out``, atomically, so the
scheduler never reads half a file). A task's error is also printed to stderr, so that the Slurm output file
shows it to someone reading it without slothflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from slothflow.executors import _wire


def run(list_file: str, index: int) -> int:
    payload = Path(Path(list_file).read_text().splitlines()[index])
    data = _wire.run_wire_job(payload.read_bytes())
    kind, _, _, tb = _wire.loads(data)
    if kind == "error":
        print(tb or "the job failed (see the scheduler's error)", file=sys.stderr, flush=True)
    tmp = payload.with_suffix(f".out.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, payload.with_suffix(".out"))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))))
