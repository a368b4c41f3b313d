"""Reruns driven by data, each run in a fresh process (``slothflow run``) on one SQLite file: after changing
exactly one thing, exactly the calls that depend on it run again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

WORKFLOW = textwrap.dedent(
    """
    import os
    from slothflow import File, FileSet, task

    def note(what):
        # One line per body run, appended atomically (O_APPEND), read by the test.
        fd = os.open(os.environ["RUNLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (what + "\\n").encode())
        finally:
            os.close(fd)

    @task
    def process(f: File, out: str) -> File:
        note("process " + f.basename())
        result = File(out)
        result.write(f.read().upper())
        return result

    @task
    def total(outs: list) -> int:
        note("total")
        return sum(len(o.read()) for o in outs)

    @task
    def main(pattern: str, outdir: str) -> int:
        outs = [process(f, os.path.join(outdir, f.basename() + ".out")) for f in FileSet(pattern)]
        return total(outs)

    @task
    def measure(f: File) -> int:
        note("measure " + f.basename())
        return len(f.read())

    @task
    def remote(urls: str) -> list:
        return [measure(File(u)) for u in urls.split(",")]
    """
)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = f"sqlite:///{root / 'runs.db'}"
        self.workflow = root / "wf.py"
        self.workflow.write_text(WORKFLOW)
        self.log = root / "runs.log"
        subprocess.run([sys.executable, "-m", "slothflow.cli", "--db", self.db, "init"], cwd=root, check=True,
                       capture_output=True, timeout=120)

    def run(self, *args: str) -> tuple[Counter[str], str]:
        """Run ``slothflow run wf.py ARGS`` in a fresh process; the task bodies that ran, and stdout."""
        if self.log.exists():
            self.log.unlink()
        env = {**os.environ, "RUNLOG": str(self.log)}
        out = subprocess.run(
            [sys.executable, "-m", "slothflow.cli", "--db", self.db, "run", str(self.workflow), *args],
            capture_output=True, text=True, env=env, cwd=self.root, timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return Counter(lines), out.stdout


N = 200


def test_two_hundred_local_inputs(tmp_path: Path) -> None:
    project = Project(tmp_path)
    data, outs = tmp_path / "data", tmp_path / "outs"
    data.mkdir()
    for i in range(N):
        (data / f"s{i:03d}.txt").write_text(f"sample {i}\n" * (1 + i % 7))
    args = ("main", "--pattern", str(data / "*.txt"), "--outdir", str(outs))

    ran, _ = project.run(*args)
    assert ran["total"] == 1 and sum(ran.values()) == N + 1
    assert len(list(outs.iterdir())) == N

    ran, _ = project.run(*args)
    assert ran == Counter()  # nothing changed, nothing runs

    # Edit one input: exactly its consumer reruns (and total, whose input it changed).
    (data / "s042.txt").write_text("edited\n")
    ran, _ = project.run(*args)
    assert ran == Counter({"process s042.txt": 1, "total": 1})
    assert (outs / "s042.txt.out").read_text() == "EDITED\n"

    # Touch all of them: nothing reruns.
    for p in data.iterdir():
        os.utime(p)
    ran, _ = project.run(*args)
    assert ran == Counter()

    # Delete one output: exactly its producer reruns; it writes the same bytes, so total is reused.
    (outs / "s117.txt.out").unlink()
    ran, _ = project.run(*args)
    assert ran == Counter({"process s117.txt": 1})
    assert (outs / "s117.txt.out").read_text() == "SAMPLE 117\n" * (1 + 117 % 7)

    # An output edited by hand: its producer reruns and restores it.
    (outs / "s005.txt.out").write_text("tampered")
    ran, _ = project.run(*args)
    assert ran == Counter({"process s005.txt": 1})

    ran, _ = project.run(*args)
    assert ran == Counter()


def test_an_s3_object_change_reruns_exactly_its_consumer(tmp_path: Path, s3_server: Any) -> None:
    project = Project(tmp_path)
    bucket = s3_server.new_bucket(versioned=True)
    urls = []
    for i in range(5):
        s3_server.put(bucket, f"in/{i}.txt", b"v" * (i + 1))
        urls.append(f"s3://{bucket}/in/{i}.txt")
    args = ("remote", "--urls", ",".join(urls))

    ran, _ = project.run(*args)
    assert ran == Counter({f"measure {i}.txt": 1 for i in range(5)})
    ran, _ = project.run(*args)
    assert ran == Counter()
    s3_server.put(bucket, "in/3.txt", b"WXYZ")  # same size, a new version
    ran, _ = project.run(*args)
    assert ran == Counter({"measure 3.txt": 1})
    ran, _ = project.run(*args)
    assert ran == Counter()


def test_an_edit_with_restored_mtime_reruns_in_a_fresh_process(tmp_path: Path) -> None:
    project = Project(tmp_path)
    data = tmp_path / "d"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.txt").write_text(f"value {i}\n")
    args = ("main", "--pattern", str(data / "*.txt"), "--outdir", str(tmp_path / "o"))
    project.run(*args)
    target = data / "1.txt"
    st = target.stat()
    target.write_text("VALUE 1\n")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    ran, _ = project.run(*args)
    assert ran == Counter({"process 1.txt": 1})  # total: the output's bytes are the same (upper-cased)
