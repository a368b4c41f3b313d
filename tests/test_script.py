"""``script()``: shell commands as cached tasks, with inputs staged in and outputs staged out (locally, on
``memory://`` and on S3), failures reported with the exit status and the tail of stderr."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow import File, Scheduler, ScriptError, StagingFile, script, task


@pytest.fixture
def sched(sqlite_uri: str) -> Iterator[Scheduler]:
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    yield s
    s.close()


def runs(log: Path) -> int:
    """How many times a command that appends a line to ``log`` ran."""
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_stdout_is_returned_when_no_outputs_are_named(sched: Scheduler) -> None:
    assert sched.run(script("echo hello; echo world")) == "hello\nworld\n"
    assert sched.run(script(["printf", "%s-%s", "a b", "c"])) == "a b-c"  # a list is quoted for the shell


def test_bash_with_pipefail(sched: Scheduler) -> None:
    with pytest.raises(ScriptError) as info:
        sched.run(script("false | cat; echo not reached"))
    assert info.value.returncode == 1


def test_a_failing_command_reports_status_and_stderr_tail(sched: Scheduler) -> None:
    command = "for i in $(seq 1 50); do echo \"line $i\" >&2; done; echo 'the real problem' >&2; exit 3"
    with pytest.raises(ScriptError) as info:
        sched.run(script(command))
    error = info.value
    assert error.returncode == 3
    assert "status 3" in str(error)
    assert "the real problem" in str(error) and "line 50" in str(error)
    assert "line 1\n" not in str(error) + "\n"  # only the tail
    assert "the real problem" in error.stderr_tail
    # A failure is not cached: the next run tries again.
    with pytest.raises(ScriptError):
        sched.run(script(command))


def test_a_local_input_and_output(sched: Scheduler, tmp_path: Path) -> None:
    src, out, log = tmp_path / "in.txt", tmp_path / "out" / "result.txt", tmp_path / "log"
    src.write_text("b\na\nc\n")
    out.parent.mkdir()

    def wf() -> Any:
        return script(f"echo run >> {log}; sort {src} > {out}", inputs=[File(str(src))], outputs=File(str(out)))

    result = sched.run(wf())
    assert isinstance(result, File) and result.path == str(out)
    assert out.read_text() == "a\nb\nc\n"
    assert runs(log) == 1

    # Cached: neither a touch nor an identical rewrite of the input reruns it.
    sched.run(wf())
    os.utime(src)
    sched.run(wf())
    assert runs(log) == 1

    # An input edit reruns it.
    src.write_text("z\ny\n")
    assert sched.run(wf()).read() == "y\nz\n"
    assert runs(log) == 2

    # A deleted output reruns it; so does an output changed by hand.
    out.unlink()
    assert sched.run(wf()).read() == "y\nz\n"
    assert runs(log) == 3
    out.write_text("tampered")
    assert sched.run(wf()).read() == "y\nz\n"
    assert runs(log) == 4
    assert sched.run(wf()).read() == "y\nz\n"
    assert runs(log) == 4


def test_a_changed_command_reruns(sched: Scheduler, tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert sched.run(script(f"echo run >> {log}; echo 1")) == "1\n"
    assert sched.run(script(f"echo run >> {log}; echo 1")) == "1\n"
    assert runs(log) == 1
    assert sched.run(script(f"echo run >> {log}; echo 2")) == "2\n"
    assert runs(log) == 2


@pytest.fixture(params=["memory", "s3"])
def remote(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://slothflow-script/{uuid.uuid4().hex}"
    s3 = request.getfixturevalue("s3_server")
    return f"s3://{s3.new_bucket()}/work"


def test_remote_inputs_are_staged_in_and_outputs_staged_out(sched: Scheduler, tmp_path: Path, remote: str) -> None:
    reads, ref = File(f"{remote}/reads.txt"), File(f"{remote}/ref.txt")
    reads.write("ACGT\nTTGA\n")
    ref.write("REF\n")
    log = tmp_path / "log"
    out_url = f"{remote}/results/aligned.txt"

    def wf() -> Any:
        return script(
            f"echo run >> {log}; cat ref.fa reads.fq | tr A-Z a-z > out.txt; pwd > where.txt",
            inputs=[ref.stage("ref.fa"), reads.stage("reads.fq")],
            outputs={
                "aligned": File(out_url).stage("out.txt"),
                "where": File(f"{remote}/where.txt").stage("where.txt"),
            },
            tempdir=True,
        )

    result = sched.run(wf())
    assert isinstance(result["aligned"], File) and result["aligned"].path == out_url
    assert File(out_url).read() == "ref\nacgt\nttga\n"
    workdir = File(f"{remote}/where.txt").read().strip()
    assert workdir != str(tmp_path) and not os.path.exists(workdir)  # a fresh folder, removed afterwards
    assert not (tmp_path / "out.txt").exists()
    assert runs(log) == 1

    sched.run(wf())
    assert runs(log) == 1

    reads.write("GGGG\n")  # a remote input changed
    sched.run(wf())
    assert runs(log) == 2
    assert File(out_url).read() == "ref\ngggg\n"

    File(out_url).remove()  # a remote output deleted
    sched.run(wf())
    assert runs(log) == 3
    assert File(out_url).read() == "ref\ngggg\n"


def test_tempdir_false_runs_in_the_current_folder(sched: Scheduler, tmp_path: Path) -> None:
    assert sched.run(script("pwd")).strip() == str(tmp_path)
    assert sched.run(script("pwd", tempdir=True)).strip() != str(tmp_path)


def test_an_output_the_command_did_not_create_fails_naming_it(sched: Scheduler, tmp_path: Path) -> None:
    target = f"memory://slothflow-script/{uuid.uuid4().hex}/never.txt"
    with pytest.raises(Exception, match="never-made.txt"):
        sched.run(script("true", outputs=File(target).stage("never-made.txt"), tempdir=True))
    with pytest.raises(Exception, match="plain-missing.txt"):
        sched.run(script("true", outputs=File(str(tmp_path / "plain-missing.txt"))))


def test_a_missing_staged_input_names_the_path(sched: Scheduler) -> None:
    url = f"memory://slothflow-script/{uuid.uuid4().hex}/absent.fq"
    with pytest.raises(Exception, match="absent.fq"):
        sched.run(script("cat x.fq", inputs=[File(url).stage("x.fq")], tempdir=True))


@task
def make_input(folder: str, text: str) -> File:
    f = File(os.path.join(folder, "made.txt"))
    f.write(text)
    return f


@task
def word_count(f: File) -> Any:
    return script(f"wc -w < {f.path}", inputs=[f])


def test_scripts_inside_workflows(sched: Scheduler, tmp_path: Path) -> None:
    assert sched.run(word_count(make_input(str(tmp_path), "one two three"))).strip() == "3"
    assert sched.run(word_count(make_input(str(tmp_path), "one two"))).strip() == "2"


def test_staging_file_outputs_can_be_given_directly(sched: Scheduler, tmp_path: Path) -> None:
    dest = f"memory://slothflow-script/{uuid.uuid4().hex}/direct.txt"
    result = sched.run(script("echo direct > local.txt", outputs=[StagingFile("local.txt", dest)], tempdir=True))
    assert [f.path for f in result] == [dest]
    assert File(dest).read() == "direct\n"
