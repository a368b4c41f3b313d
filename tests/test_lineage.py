"""File lineage: which call produced a file, with which task code and which inputs, recursively down to the
raw inputs; through the Python query and ``slothflow log --file`` (text and JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from slothflow import File, Scheduler, task
from slothflow.cli import cli
from slothflow.provenance.lineage import file_lineage
from slothflow.provenance.queries import NotFound
from slothflow.store import Store


@task
def clean(raw: File, out: str) -> File:
    cleaned = File(out)
    cleaned.write(raw.read().lower())
    return cleaned


@task
def count(f: File, out: str) -> File:
    result = File(out)
    result.write(f"{len(f.read().split())}\n")
    return result


@task
def merge(parts: list[File], out: str) -> File:
    merged = File(out)
    merged.write("".join(p.read() for p in parts))
    return merged


@task
def split(raw: File, folder: str) -> dict[str, File]:
    halves = {}
    lines = raw.read().splitlines(keepends=True)
    for name, chunk in (("head", lines[:1]), ("tail", lines[1:])):
        f = File(os.path.join(folder, f"{name}.txt"))
        f.write("".join(chunk))
        halves[name] = f
    return halves


@task
def pass_along(raw: File, folder: str) -> dict[str, File]:
    """Returns another call's result: the files in it were made by split, not by this call."""
    return split(raw, folder)


@task
def main(raw: File, folder: str) -> File:
    c = clean(raw, os.path.join(folder, "clean.txt"))
    return count(c, os.path.join(folder, "counts.txt"))


@pytest.fixture
def db(sqlite_uri: str) -> str:
    return sqlite_uri


@pytest.fixture
def sched(db: str) -> Iterator[Scheduler]:
    s = Scheduler(config={"backend": {"db_uri": db}})
    yield s
    s.close()


def lineage(db: str, path: str) -> dict[str, Any]:
    store = Store(db)
    try:
        return file_lineage(store.conn, path)
    finally:
        store.close()


def cli_log(db: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db", db, "log", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_lineage_of_a_chain_down_to_the_raw_input(sched: Scheduler, db: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("Hello Big World\n")
    out = sched.run(main(File(str(raw)), str(tmp_path)))
    assert Path(out.path).read_text() == "3\n"

    tree = lineage(db, str(tmp_path / "counts.txt"))
    assert tree["path"] == str(tmp_path / "counts.txt")
    assert tree["exists"] and not tree["changed_since_recorded"] and not tree["raw_input"]
    producer = tree["producer"]
    assert producer["task"] == count.fullname  # the call that made it, not main which passed it on
    assert "result.write" in producer["source"]
    assert producer["job_id"] and producer["execution_id"] == sched.last_execution_id
    args = {a["name"]: a for a in producer["arguments"]}
    assert [f["path"] for f in args["f"]["files"]] == [str(tmp_path / "clean.txt")]
    upstream = args["f"]["upstream"]
    assert upstream["task"] == clean.fullname
    up_args = {a["name"]: a for a in upstream["arguments"]}
    assert [f["path"] for f in up_args["raw"]["files"]] == [str(raw)]
    assert up_args["raw"]["upstream"] is None  # a raw input
    assert args["out"]["files"] == [] and args["out"]["upstream"] is None

    # The raw input itself: no call produced it; the consumers are named.
    raw_tree = lineage(db, str(raw))
    assert raw_tree["raw_input"] and raw_tree["producer"] is None
    assert sorted(c["task"] for c in raw_tree["consumers"]) == sorted([clean.fullname, main.fullname])

    # A relative path is resolved like the recorded (absolute) ones.
    os.chdir(tmp_path)
    assert lineage(db, "counts.txt")["producer"]["call_hash"] == producer["call_hash"]


def test_a_changed_or_deleted_file_is_flagged(sched: Scheduler, db: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("a b\n")
    sched.run(main(File(str(raw)), str(tmp_path)))
    (tmp_path / "counts.txt").write_text("99\n")
    tree = lineage(db, str(tmp_path / "counts.txt"))
    assert tree["changed_since_recorded"] and tree["producer"]["task"] == count.fullname
    os.remove(tmp_path / "counts.txt")
    assert not lineage(db, str(tmp_path / "counts.txt"))["exists"]


def test_files_inside_lists_and_dicts_lead_to_their_makers(sched: Scheduler, db: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("first line\nsecond line\n")
    halves = pass_along(File(str(raw)), str(tmp_path / "halves"))
    merged = merge([halves["tail"], halves["head"]], str(tmp_path / "merged.txt"))
    sched.run(merged)
    assert (tmp_path / "merged.txt").read_text() == "second line\nfirst line\n"

    tree = lineage(db, str(tmp_path / "merged.txt"))
    assert tree["producer"]["task"] == merge.fullname
    parts = tree["producer"]["arguments"][0]
    assert parts["name"] == "parts"
    assert sorted(os.path.basename(f["path"]) for f in parts["files"]) == ["head.txt", "tail.txt"]
    assert parts["upstream"]["task"] == split.fullname

    head = lineage(db, str(tmp_path / "halves" / "head.txt"))
    assert head["producer"]["task"] == split.fullname  # not pass_along, whose result merely holds it


def test_unknown_file_is_not_found(sched: Scheduler, db: str, tmp_path: Path) -> None:
    sched.run([])  # the database exists, with an execution but no files
    with pytest.raises(NotFound, match="nothing-like-this"):
        lineage(db, str(tmp_path / "nothing-like-this.txt"))
    result = CliRunner().invoke(cli, ["--db", db, "log", "--file", str(tmp_path / "nothing-like-this.txt")])
    assert result.exit_code != 0
    assert "nothing-like-this" in result.output
    assert "Traceback" not in result.output


def test_cli_log_file_text_and_json(sched: Scheduler, db: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("One Two\n")
    sched.run(main(File(str(raw)), str(tmp_path)))
    counts = str(tmp_path / "counts.txt")

    text = cli_log(db, "--file", counts)
    lines = text.splitlines()
    assert lines[0].strip() == counts
    assert any(f"produced by {count.fullname}" in line for line in lines)
    assert any(f"produced by {clean.fullname}" in line for line in lines)
    assert any("raw" in line and "input file" in line for line in lines)
    # The tree is nested: clean appears below count.
    count_line = next(i for i, line in enumerate(lines) if f"produced by {count.fullname}" in line)
    clean_line = next(i for i, line in enumerate(lines) if f"produced by {clean.fullname}" in line)
    assert clean_line > count_line
    indent = len(lines[clean_line]) - len(lines[clean_line].lstrip("│├└─ "))
    assert indent > len(lines[count_line]) - len(lines[count_line].lstrip("│├└─ "))

    data = json.loads(cli_log(db, "--file", counts, "--format", "json"))
    assert data["producer"]["task"] == count.fullname
    f_arg = next(a for a in data["producer"]["arguments"] if a["name"] == "f")
    assert f_arg["upstream"]["task"] == clean.fullname
    assert data == json.loads(json.dumps(lineage(db, counts)))

    raw_text = cli_log(db, "--file", str(raw))
    assert "raw input" in raw_text and clean.fullname in raw_text


@task
def s3_clean(raw: File, out: str) -> File:
    cleaned = File(out)
    cleaned.write(raw.read().strip().upper())
    return cleaned


def test_lineage_of_s3_objects(sched: Scheduler, db: str, s3_server: Any) -> None:
    bucket = s3_server.new_bucket()
    s3_server.put(bucket, "raw/in.txt", b"  shout  ")
    raw_url, out_url = f"s3://{bucket}/raw/in.txt", f"s3://{bucket}/clean/out.txt"
    sched.run(s3_clean(File(raw_url), out_url))
    assert s3_server.get(bucket, "clean/out.txt") == b"SHOUT"

    tree = lineage(db, out_url)
    assert tree["path"] == out_url and tree["exists"] and not tree["changed_since_recorded"]
    assert tree["producer"]["task"] == s3_clean.fullname
    raw_arg = next(a for a in tree["producer"]["arguments"] if a["name"] == "raw")
    assert [f["path"] for f in raw_arg["files"]] == [raw_url]

    data = json.loads(cli_log(db, "--file", out_url, "--format", "json"))
    assert data["producer"]["task"] == s3_clean.fullname
    assert out_url in cli_log(db, "--file", out_url)

    s3_server.put(bucket, "clean/out.txt", b"changed by hand")
    assert lineage(db, out_url)["changed_since_recorded"]


def test_lineage_of_a_script_output(sched: Scheduler, db: str, tmp_path: Path) -> None:
    from slothflow import script

    src = tmp_path / "names.txt"
    src.write_text("b\na\n")
    out = str(tmp_path / "sorted.txt")
    sched.run(script(f"sort {src} > {out}", inputs=[File(str(src))], outputs=File(out)))
    tree = lineage(db, out)
    assert tree["producer"]["task"] == "slothflow.script"
    args = {a["name"]: a for a in tree["producer"]["arguments"]}
    assert "sort" in args["command"]["preview"]
    assert [f["path"] for f in args["inputs"]["files"]] == [str(src)]


@task
def lower_one(raw: File, out: str) -> File:
    made = File(out)
    made.write(raw.read().lower())
    return made


def test_every_file_of_a_list_argument_leads_to_its_own_maker(sched: Scheduler, db: str, tmp_path: Path) -> None:
    raws = []
    for name in ("a", "b", "c"):
        raw = tmp_path / f"{name}.txt"
        raw.write_text(f"{name.upper()}\n")
        raws.append(raw)
    parts = [lower_one(File(str(r)), str(tmp_path / f"low-{r.name}")) for r in raws]
    sched.run(merge(parts, str(tmp_path / "all.txt")))
    assert (tmp_path / "all.txt").read_text() == "a\nb\nc\n"

    tree = lineage(db, str(tmp_path / "all.txt"))
    arg = tree["producer"]["arguments"][0]
    assert arg["name"] == "parts"
    assert [u["task"] for u in arg["upstreams"]] == [lower_one.fullname] * 3
    made_from = sorted(u["arguments"][0]["files"][0]["path"] for u in arg["upstreams"])
    assert made_from == sorted(str(r) for r in raws)
    assert arg["upstream"] == arg["upstreams"][0]
    text = cli_log(db, "--file", str(tmp_path / "all.txt"))
    assert text.count(f"produced by {lower_one.fullname}") == 3
    for r in raws:
        assert r.name in text


@task
def prepare(n: int) -> int:
    return n * 2


@task
def write_number(n: int, out: str) -> File:
    made = File(out)
    made.write(f"{n}\n")
    return made


@task
def report(n: int, out: str) -> File:
    """Passes its argument (made by prepare) down to write_number, as a plain value."""
    return write_number(n, out)


def test_lineage_goes_through_plain_values_by_origin(sched: Scheduler, db: str, tmp_path: Path) -> None:
    out = str(tmp_path / "number.txt")
    sched.run(report(prepare(21), out))
    assert Path(out).read_text() == "42\n"
    tree = lineage(db, out)
    assert tree["producer"]["task"] == write_number.fullname
    n_arg = next(a for a in tree["producer"]["arguments"] if a["name"] == "n")
    assert n_arg["files"] == [] and n_arg["upstream"] is not None
    assert n_arg["upstream"]["task"] == prepare.fullname  # through report, which passed it down
    assert "prepare" in cli_log(db, "--file", out)

    # the same value typed by the user has no producer: never linked by an equal value
    other = str(tmp_path / "typed.txt")
    sched.run(report(42, other))
    typed = next(a for a in lineage(db, other)["producer"]["arguments"] if a["name"] == "n")
    assert typed["upstream"] is None and typed["upstreams"] == []
