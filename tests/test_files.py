"""The File family (File, Dir, FileSet, Staging*, Content*) on local paths, ``memory://`` and S3, and how the
scheduler reacts to the data behind them: change detection, validity of outputs, files inside structures,
remembered digests, and errors on bad input."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow import (
    ContentDir,
    ContentFile,
    Dir,
    File,
    FileSet,
    HashingError,
    Scheduler,
    StagingDir,
    StagingFile,
    hash_value,
    task,
)
from slothflow._errors import FileAccessError, MissingFileError
from slothflow.files._fs import RACY_WINDOW_NS, digests
from slothflow.store import Store

# ------------------------------------------------------------------------------------------- helpers

RUNS: list[tuple[str, Any]] = []
_RUNS_LOCK = threading.Lock()


def ran(name: str, arg: Any = None) -> None:
    with _RUNS_LOCK:
        RUNS.append((name, arg))


def take_runs() -> list[tuple[str, Any]]:
    with _RUNS_LOCK:
        out = list(RUNS)
        RUNS.clear()
        return out


def names(runs: list[tuple[str, Any]]) -> list[str]:
    return sorted(n for n, _ in runs)


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    take_runs()


def wait_out_racy_window() -> None:
    """Let the files just written become older than the racy window, so that their digests are remembered."""
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.05)


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Sets of random files, older than the racy window (one wait for the whole module), one set per test."""
    sets: dict[str, list[Path]] = {}
    root = tmp_path_factory.mktemp("aged")
    for name, folders, count in (("once", 1, 5), ("persist", 2, 4), ("bound", 1, 1), ("run", 1, 6), ("thread", 1, 3)):
        paths = []
        for k in range(folders):
            folder = root / name / f"d{k}"
            folder.mkdir(parents=True)
            for i in range(count):
                p = folder / f"{i}.bin"
                p.write_bytes(os.urandom(2048))
                paths.append(p)
        sets[name] = paths
    wait_out_racy_window()
    return sets


@pytest.fixture(params=["local", "memory", "s3"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh folder: a local path, a ``memory://`` prefix, or a bucket on the S3 server."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "memory":
        return f"memory://slothflow-tests/{uuid.uuid4().hex}"
    s3 = request.getfixturevalue("s3_server")
    return f"s3://{s3.new_bucket()}/data"


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# ------------------------------------------------------------------------------------ the File API


def test_file_api(base: str) -> None:
    f = File(join(base, "sub", "a.txt"))
    assert not f.exists()
    missing_hash = f.get_hash()
    f.write("hello\nworld\n")
    assert f.exists() and f.isfile() and not f.isdir()
    assert File(join(base, "sub")).isdir()
    assert f.read() == "hello\nworld\n"
    assert f.read("rb") == b"hello\nworld\n"
    assert f.readlines() == ["hello\n", "world\n"]
    assert f.size() == 12
    assert f.basename() == "a.txt"
    assert f.dirname() == join(base, "sub")
    assert f.hash != missing_hash
    assert f.hash == File(f.path).get_hash()

    # Writing through the File (write, or open and close) updates its hash; a recorded copy sees the change.
    recorded = File(f.path)
    recorded.get_hash()
    before = f.hash
    with f.open("w") as fh:
        fh.write("changed\n")
    assert f.hash != before
    assert f.hash == File(f.path).get_hash()
    assert not recorded.is_valid()
    assert f.is_valid()
    f.write(b"\x00\x01bytes")
    assert f.read("rb") == b"\x00\x01bytes"

    # copy_to another place (and to another file system), skip_if_exists.
    g = f.copy_to(join(base, "copy.bin"))
    assert isinstance(g, File) and g.read("rb") == b"\x00\x01bytes"
    f.write(b"newer")
    kept = f.copy_to(g, skip_if_exists=True)
    assert kept.read("rb") == b"\x00\x01bytes"
    assert f.copy_to(g).read("rb") == b"newer"

    # stage() pairs the file with a local path.
    staged = f.stage("local-name.bin")
    assert isinstance(staged, StagingFile)
    assert staged.local.path == "local-name.bin" and staged.remote.path == f.path
    assert f.stage().local.path == "a.txt"

    # touch creates; remove deletes and the hash follows.
    t = File(join(base, "touched"))
    t.touch()
    assert t.exists() and t.size() == 0
    t.remove()
    assert not t.exists()
    assert t.hash == File(t.path).get_hash()
    assert not recorded.is_valid()


def test_a_missing_file_as_a_value_is_an_error_naming_the_path(base: str) -> None:
    path = join(base, "nothing-here.txt")
    with pytest.raises(MissingFileError, match="nothing-here.txt") as info:
        File(path).__slothflow_hash__()
    assert info.value.path == path
    with pytest.raises(HashingError, match="nothing-here.txt"):
        hash_value([File(path)])


def test_the_path_is_part_of_the_identity(base: str) -> None:
    a, b = File(join(base, "a")), File(join(base, "b"))
    a.write("same")
    b.write("same")
    assert hash_value(a) != hash_value(b)
    assert a.content_key() == b.content_key()  # the data alone: the same


def test_dir_api(base: str) -> None:
    d = Dir(join(base, "tree"))
    assert not d.exists()
    assert d.files() == []
    d.mkdir()
    d.file("b.txt").write("B")
    d.file("a/x.txt").write("X")
    d.file("a/y.txt").write("Y")
    assert d.exists()
    rels = [d.rel_path(f.path) for f in d]
    assert rels == ["a/x.txt", "a/y.txt", "b.txt"]
    assert [d.rel_path(f.path) for f in d.files()] == rels
    assert all(isinstance(f, File) and not isinstance(f, ContentFile) for f in d)
    assert d.file("a/x.txt").read() == "X"

    h = hash_value(d)
    copied = d.copy_to(join(base, "copy"))
    assert isinstance(copied, Dir)
    assert [copied.rel_path(f.path) for f in copied] == rels
    assert copied.file("a/y.txt").read() == "Y"
    assert hash_value(d) == h  # copying out does not change the source

    staged = d.stage("local-tree")
    assert isinstance(staged, StagingDir) and staged.local.path == "local-tree" and staged.remote.pattern == d.pattern

    recorded = Dir(d.pattern)
    recorded.get_hash()
    d.file("a/x.txt").write("X2")
    assert hash_value(d) != h
    assert not recorded.is_valid()
    d.file("a/x.txt").write("X")
    assert hash_value(d) == h
    assert recorded.is_valid()

    d.file("c.txt").write("new file")
    assert hash_value(d) != h
    d.file("c.txt").remove()
    assert hash_value(d) == h

    if "://" not in base:
        with pytest.raises(OSError):
            d.rmdir()  # not empty
    d.rmdir(recursive=True)
    assert not d.exists()
    assert not recorded.is_valid()
    with pytest.raises(HashingError, match="tree"):
        hash_value(Dir(d.pattern))


def test_dir_hash_is_its_sorted_relative_paths_and_file_hashes(base: str) -> None:
    one, two = Dir(join(base, "one")), Dir(join(base, "two"))
    for name in ("z.txt", "m/n.txt", "a.txt"):
        one.file(name).write(name.upper())
    for name in ("a.txt", "z.txt", "m/n.txt"):  # another creation order, same tree
        two.file(name).write(name.upper())
    assert one._listing() == two._listing()
    assert [rel for rel, _ in one._listing()] == ["a.txt", "m/n.txt", "z.txt"]
    # A rename is a change even when the set of contents is the same.
    two.file("z.txt").remove()
    two.file("y.txt").write("Z.TXT")
    assert one._listing() != two._listing()
    assert hash_value(one) != hash_value(Dir(one.pattern + "/m"))


def test_fileset(base: str) -> None:
    root = join(base, "fs")
    for name in ("a.csv", "b.csv", "notes.txt", "deep/c.csv"):
        File(join(root, name)).write(name)
    top = FileSet(join(root, "*.csv"))
    deep = FileSet(join(root, "**", "*.csv"))
    assert [f.basename() for f in top] == ["a.csv", "b.csv"]
    assert sorted(f.basename() for f in deep) == ["a.csv", "b.csv", "c.csv"]
    h = hash_value(top)
    recorded = FileSet(top.pattern)
    recorded.get_hash()
    File(join(root, "other.txt")).write("not matched")
    assert hash_value(top) == h and recorded.is_valid()
    File(join(root, "d.csv")).write("matched")
    assert hash_value(top) != h and not recorded.is_valid()
    File(join(root, "d.csv")).remove()
    assert hash_value(top) == h and recorded.is_valid()
    File(join(root, "a.csv")).write("edited")
    assert not recorded.is_valid()


def test_content_file_and_dir(base: str) -> None:
    f = ContentFile(join(base, "c.txt"))
    f.write("content")
    h = hash_value(f)
    f.write("content")  # identical rewrite: a new version token remotely, the same content
    assert hash_value(ContentFile(f.path)) == h
    f.write("other!!")
    assert hash_value(ContentFile(f.path)) != h
    d = ContentDir(join(base, "cd"))
    d.file("x").write("1")
    assert all(isinstance(x, ContentFile) for x in d)
    dh = hash_value(d)
    d.file("x").write("1")
    assert hash_value(ContentDir(d.pattern)) == dh
    d.file("x").write("2")
    assert hash_value(ContentDir(d.pattern)) != dh


def test_staging_file_and_dir(base: str, tmp_path: Path) -> None:
    remote = File(join(base, "r.txt"))
    remote.write("remote data")
    pair = StagingFile(str(tmp_path / "local" / "r.txt"), remote)
    local = pair.stage()
    assert isinstance(local, File) and Path(local.path).read_text() == "remote data"
    Path(local.path).write_text("made locally")
    back = pair.unstage()
    assert back.path == remote.path and remote.read() == "made locally"

    rdir = Dir(join(base, "rd"))
    rdir.file("p/q.txt").write("Q")
    dpair = StagingDir(str(tmp_path / "ld"), rdir)
    ldir = dpair.stage()
    assert (tmp_path / "ld" / "p" / "q.txt").read_text() == "Q"
    (tmp_path / "ld" / "new.txt").write_text("N")
    dpair.unstage()
    assert sorted(rdir.rel_path(f.path) for f in rdir) == ["new.txt", "p/q.txt"]
    assert isinstance(ldir, Dir)


def test_staging_hash_follows_the_remote_data(base: str) -> None:
    remote = File(join(base, "in.txt"))
    remote.write("v1")
    h1 = hash_value(StagingFile("in.txt", remote.path))
    assert hash_value(StagingFile("in.txt", remote.path)) == h1
    assert hash_value(StagingFile("other.txt", remote.path)) != h1
    remote.write("v2")
    assert hash_value(StagingFile("in.txt", remote.path)) != h1
    with pytest.raises(HashingError, match="absent"):
        hash_value(StagingFile("x", join(base, "absent")))


# ------------------------------------------------------------------ the scheduler reacting to data


@pytest.fixture
def sched(sqlite_uri: str) -> Iterator[Scheduler]:
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    yield s
    s.close()


@task
def count_chars(f: File) -> int:
    ran("count_chars", f.path)
    return len(f.read())


@task
def sum_counts(fs: list[File]) -> int:
    ran("sum_counts")
    return sum(len(f.read()) for f in fs)


@task
def count_dir(d: Dir) -> int:
    ran("count_dir", d.path)
    return sum(len(f.read()) for f in d)


def test_touch_and_identical_rewrite_rerun_nothing_content_edits_do(sched: Scheduler, tmp_path: Path) -> None:
    paths = [tmp_path / f"in{i}.txt" for i in range(3)]
    for i, p in enumerate(paths):
        p.write_text(f"data {i}")
    wf = [count_chars(File(str(p))) for p in paths]
    assert sched.run(wf) == [6, 6, 6]
    assert len(take_runs()) == 3

    File(str(paths[0])).touch()
    paths[1].unlink()
    paths[1].write_text("data 1")  # identical rewrite: new inode, new times
    assert sched.run(wf) == [6, 6, 6]
    assert take_runs() == []

    paths[2].write_text("data 2 longer")
    assert sched.run(wf) == [6, 6, 13]
    assert take_runs() == [("count_chars", str(paths[2]))]

    # An edit of the same size whose mtime is then restored (cp -p, tar x) is still seen: ctime moved.
    st = paths[0].stat()
    paths[0].write_text("DATA 0")
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sched.run(wf) == [6, 6, 13]
    assert take_runs() == [("count_chars", str(paths[0]))]


def test_memory_object_change_reruns_its_consumer(sched: Scheduler) -> None:
    root = f"memory://slothflow-tests/{uuid.uuid4().hex}"
    files = [File(f"{root}/{i}.txt") for i in range(3)]
    for f in files:
        f.write("abc")
    wf = [count_chars(f) for f in files]
    assert sched.run(wf) == [3, 3, 3]
    take_runs()
    assert sched.run(wf) == [3, 3, 3]
    assert take_runs() == []
    File(files[1].path).write("abcd")
    assert sched.run(wf) == [3, 4, 3]
    assert take_runs() == [("count_chars", files[1].path)]


def test_dir_argument_reruns_on_any_change_below_it(sched: Scheduler, tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("aa")
    (d / "sub" / "b.txt").write_text("bbb")
    assert sched.run(count_dir(Dir(str(d)))) == 5
    assert len(take_runs()) == 1
    os.utime(d / "a.txt")
    assert sched.run(count_dir(Dir(str(d)))) == 5
    assert take_runs() == []
    (d / "sub" / "c.txt").write_text("c")
    assert sched.run(count_dir(Dir(str(d)))) == 6
    assert len(take_runs()) == 1
    (d / "sub" / "c.txt").rename(d / "sub" / "d.txt")
    assert sched.run(count_dir(Dir(str(d)))) == 6
    assert len(take_runs()) == 1


@dataclasses.dataclass
class Bundle:
    name: str
    files: list[File]
    extra: dict[str, File]


@task
def write_bundle(folder: str, n: int) -> Bundle:
    ran("write_bundle")
    files = []
    for i in range(n):
        f = File(os.path.join(folder, f"part{i}.txt"))
        f.write(f"part {i}\n")
        files.append(f)
    index = File(os.path.join(folder, "index.txt"))
    index.write("".join(os.path.basename(f.path) + "\n" for f in files))
    return Bundle("b", files, {"index": index})


@task
def read_bundle(b: Bundle) -> str:
    ran("read_bundle")
    return b.extra["index"].read() + "".join(f.read() for f in b.files)


@task
def nested_files(folder: str) -> dict[str, Any]:
    ran("nested_files")
    a, b = File(os.path.join(folder, "n_a.txt")), File(os.path.join(folder, "n_b.txt"))
    a.write("A")
    b.write("B")
    return {"pair": (a, [b]), "count": 2}


def test_files_inside_structures_in_arguments_and_results(sched: Scheduler, tmp_path: Path) -> None:
    folder = str(tmp_path / "bundle")
    wf = read_bundle(write_bundle(folder, 3))
    text = sched.run(wf)
    assert text.startswith("part0.txt\npart1.txt\npart2.txt\n")
    assert names(take_runs()) == ["read_bundle", "write_bundle"]
    assert sched.run(wf) == text
    assert take_runs() == []

    # An output inside a dataclass's list was deleted: its producer reruns; it writes the same data
    # again, so the consumer's argument is unchanged and it is reused (early cutoff).
    os.remove(os.path.join(folder, "part1.txt"))
    assert sched.run(wf) == text
    assert names(take_runs()) == ["write_bundle"]

    # An output inside a dict inside the dataclass was edited by hand: the producer reruns and restores it.
    Path(folder, "index.txt").write_text("tampered\n")
    assert sched.run(wf) == text
    assert names(take_runs()) == ["write_bundle"]
    assert Path(folder, "index.txt").read_text().startswith("part0.txt")

    out = sched.run(nested_files(folder))
    assert out["pair"][0].read() == "A" and out["pair"][1][0].read() == "B"
    take_runs()
    os.remove(os.path.join(folder, "n_b.txt"))
    sched.run(nested_files(folder))
    assert names(take_runs()) == ["nested_files"]


# ------------------------------------------------------------------------------ validity of outputs


@task
def produce(folder: str, i: int, text: str) -> File:
    ran("produce", i)
    out = File(os.path.join(folder, f"out{i}.txt"))
    out.write(text)
    return out


@task
def consume(f: File) -> str:
    ran("consume", os.path.basename(f.path))
    return f.read().upper()


@task
def pipeline(folder: str, n: int) -> list[str]:
    return [consume(produce(folder, i, f"text {i}")) for i in range(n)]


@task(check_valid="shallow")
def shallow_producer(folder: str, i: int) -> File:
    return produce(folder, i, f"text {i}")


@task(check_valid="shallow")
def shallow_pipeline(folder: str, n: int) -> list[str]:
    return [consume(produce(folder, i, f"text {i}")) for i in range(n)]


def test_deleted_or_changed_output_reruns_exactly_its_producer(sched: Scheduler, tmp_path: Path) -> None:
    folder = str(tmp_path / "outs")
    expected = [f"TEXT {i}" for i in range(4)]
    assert sched.run(pipeline(folder, 4)) == expected
    assert len(take_runs()) == 8
    assert sched.run(pipeline(folder, 4)) == expected
    assert take_runs() == []

    os.remove(os.path.join(folder, "out2.txt"))
    assert sched.run(pipeline(folder, 4)) == expected
    assert take_runs() == [("produce", 2)]  # the consumer's argument is the same file with the same data
    assert Path(folder, "out2.txt").read_text() == "text 2"

    Path(folder, "out1.txt").write_text("edited by hand")
    assert sched.run(pipeline(folder, 4)) == expected
    assert take_runs() == [("produce", 1)]
    assert sched.run(pipeline(folder, 4)) == expected
    assert take_runs() == []


def test_shallow_reuse_checks_the_files_in_its_final_value(sched: Scheduler, tmp_path: Path) -> None:
    folder = str(tmp_path / "shallow")
    out = sched.run(shallow_producer(folder, 3))
    assert out.read() == "text 3"
    take_runs()
    assert sched.run(shallow_producer(folder, 3)).read() == "text 3"
    assert take_runs() == []
    os.remove(out.path)
    assert sched.run(shallow_producer(folder, 3)).read() == "text 3"
    assert take_runs() == [("produce", 3)]
    # A subtree whose calls take files is never trusted by a shallow lookup: an intermediate file (not in
    # the final value) that vanished makes exactly its producer rerun, as under the full rule.
    assert sched.run(shallow_pipeline(folder, 2)) == ["TEXT 0", "TEXT 1"]
    take_runs()
    os.remove(os.path.join(folder, "out0.txt"))
    assert sched.run(shallow_pipeline(folder, 2)) == ["TEXT 0", "TEXT 1"]
    assert take_runs() == [("produce", 0)]


@task
def produce_counter(folder: str, i: int) -> File:
    """Writes different data each time it runs, so that its consumer must rerun too."""
    ran("produce_counter", i)
    out = File(os.path.join(folder, f"c{i}.txt"))
    out.write(f"{i} written at {time.time_ns()}")
    return out


def test_a_rerun_producer_with_new_output_reruns_only_its_dependents(sched: Scheduler, tmp_path: Path) -> None:
    folder = str(tmp_path / "c")
    wf = [consume(produce_counter(folder, i)) for i in range(3)]
    sched.run(wf)
    take_runs()
    os.remove(os.path.join(folder, "c0.txt"))
    sched.run(wf)
    assert take_runs() == [("produce_counter", 0), ("consume", "c0.txt")]


def test_a_cached_result_whose_output_vanished_is_reported_as_the_reason(sched: Scheduler, tmp_path: Path) -> None:
    folder = str(tmp_path / "r")
    sched.run(produce(folder, 7, "x"))
    os.remove(os.path.join(folder, "out7.txt"))
    plan = sched.run(produce(folder, 7, "x"), dryrun=True)
    assert len(plan.would_run) == 1
    assert "out7.txt" in plan.would_run[0].reason and "missing" in plan.would_run[0].reason


# ---------------------------------------------------------------------------------- digests


def test_an_unchanged_file_is_read_once_in_a_process(aged: dict[str, list[Path]]) -> None:
    paths = aged["once"]
    reads = digests.reads
    first = [hash_value(File(str(p))) for p in paths]
    assert digests.reads - reads == 5
    assert [hash_value(File(str(p))) for p in paths] == first
    os.utime(paths[0])  # touched: a new stat token, so it is read again, and the digest is the same
    assert [hash_value(File(str(p))) for p in paths] == first
    assert digests.reads - reads == 6


def test_a_freshly_written_file_is_not_trusted_by_its_stat_token(tmp_path: Path) -> None:
    """Two writes within one clock tick keep size, times and inode: a digest is only remembered once the
    file is older than the racy window, so a rewrite right after a read is still seen."""
    p = tmp_path / "racy.txt"
    p.write_text("AAAA")
    st = p.stat()
    h1 = hash_value(File(str(p)))
    with open(p, "r+") as fh:
        fh.write("BBBB")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hash_value(File(str(p))) != h1


DIGEST_CHILD = textwrap.dedent(
    """
    import json, sys
    from slothflow import File, hash_value
    from slothflow.files._fs import digests
    from slothflow.store import Store
    store = Store(sys.argv[1])
    digests.bind(store)
    hashes = [hash_value(File(p)) for p in sys.argv[2:]]
    store.flush()
    digests.bind(None)
    store.close()
    print(json.dumps({"reads": digests.reads, "hashes": hashes}))
    """
)


def _hash_in_fresh_process(db: str, paths: list[Path]) -> dict[str, Any]:
    import json

    out = subprocess.run([sys.executable, "-c", DIGEST_CHILD, db, *map(str, paths)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_digests_persist_in_the_store_across_processes(aged: dict[str, list[Path]], sqlite_uri: str) -> None:
    paths = aged["persist"]  # in two folders
    first = _hash_in_fresh_process(sqlite_uri, paths)
    assert first["reads"] == 8
    second = _hash_in_fresh_process(sqlite_uri, paths)
    assert second == {"reads": 0, "hashes": first["hashes"]}

    os.utime(paths[0])  # touch: one read, same hash
    data = bytearray(paths[5].read_bytes())
    data[0] ^= 0xFF
    st = paths[5].stat()
    paths[5].write_bytes(bytes(data))  # an edit with its mtime restored
    os.utime(paths[5], ns=(st.st_atime_ns, st.st_mtime_ns))
    third = _hash_in_fresh_process(sqlite_uri, paths)
    assert third["reads"] == 2
    changed = [i for i, (a, b) in enumerate(zip(first["hashes"], third["hashes"], strict=True)) if a != b]
    assert changed == [5]


def test_digests_bound_to_a_store_in_this_process(aged: dict[str, list[Path]], sqlite_uri: str) -> None:
    p = aged["bound"][0]
    store = Store(sqlite_uri)
    try:
        digests.bind(store)
        hash_value(File(str(p)))
        store.flush()
        rows = store.load_file_digests(str(p.parent))
        assert list(rows) == [str(p)]
        token, digest = rows[str(p)]
        assert digest.startswith("sha256:") and len(digest) == 71
        st = p.stat()
        assert token.startswith(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:")
    finally:
        digests.bind(None)
        store.close()


def test_digests_computed_in_another_thread_reach_the_store(aged: dict[str, list[Path]], sqlite_uri: str) -> None:
    """A task body (a worker thread) hashing a file remembers its digest in memory; the store, used only from
    the scheduler's thread, gets it when that thread meets the file, so that a new process need not read it."""
    paths = aged["thread"]
    store = Store(sqlite_uri)
    try:
        digests.bind(store)
        worker = threading.Thread(target=lambda: [hash_value(File(str(p))) for p in paths])
        worker.start()
        worker.join()
        store.flush()
        assert store.load_file_digests(str(paths[0].parent)) == {}
        reads = digests.reads
        hashes = [hash_value(File(str(p))) for p in paths]
        assert digests.reads == reads  # from memory
        store.flush()
        assert sorted(store.load_file_digests(str(paths[0].parent))) == sorted(map(str, paths))
    finally:
        digests.bind(None)
        store.close()
    assert _hash_in_fresh_process(sqlite_uri, paths) == {"reads": 0, "hashes": hashes}


WF_READS = textwrap.dedent(
    """
    import json, sys
    from slothflow import File, Scheduler, task
    from slothflow.files._fs import digests

    @task
    def size_of(f: File) -> int:
        return len(f.read("rb"))

    sched = Scheduler(config={"backend": {"db_uri": sys.argv[1]}})
    result = sched.run([size_of(File(p)) for p in sys.argv[2:]])
    sched.close()
    print(json.dumps({"reads": digests.reads, "result": result}))
    """
)


def test_a_rerun_in_a_fresh_process_reads_no_unchanged_input(
    aged: dict[str, list[Path]], tmp_path: Path, sqlite_uri: str
) -> None:
    import json

    paths = [str(p) for p in aged["run"]]
    wf = tmp_path / "reads_wf.py"
    wf.write_text(WF_READS)

    def run() -> dict[str, Any]:
        out = subprocess.run([sys.executable, str(wf), sqlite_uri, *paths], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    assert run()["reads"] == 6
    assert run() == {"reads": 0, "result": [2048] * 6}


# ----------------------------------------------------------------------------------------- bad input


@task
def needs_file(data: File) -> int:
    ran("needs_file")
    return data.size()


@task
def needs_dir(folder: Dir) -> int:
    return len(folder.files())


def _failure(sched: Scheduler, expr: Any) -> BaseException:
    with pytest.raises(HashingError) as info:
        sched.run(expr)
    return info.value


def _names_all(error: BaseException, *parts: str) -> None:
    text = str(error)
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    assert len(text) < 2000


@pytest.mark.parametrize("kind", ["missing", "directory", "broken-symlink", "unknown-protocol", "missing-memory"])
def test_bad_input_names_task_argument_and_path(sched: Scheduler, tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        path = str(tmp_path / "no-such-input.txt")
    elif kind == "directory":
        path = str(tmp_path / "a-directory")
        os.mkdir(path)
    elif kind == "broken-symlink":
        path = str(tmp_path / "dangling")
        os.symlink(tmp_path / "gone", path)
    elif kind == "unknown-protocol":
        path = "nosuchproto://bucket/key.txt"
    else:
        path = f"memory://slothflow-tests/{uuid.uuid4().hex}/absent.txt"
    error = _failure(sched, needs_file(File(path)))
    _names_all(error, "needs_file", "data", path)
    assert take_runs() == []
    assert isinstance(error, MissingFileError if kind.startswith("missing") or kind == "broken-symlink"
                      else FileAccessError)
    assert (error.task_name, error.argument, error.path) == (needs_file.fullname, "data", path)  # type: ignore


def test_a_missing_directory_names_task_argument_and_path(sched: Scheduler, tmp_path: Path) -> None:
    path = str(tmp_path / "no-such-dir")
    _names_all(_failure(sched, needs_dir(Dir(path))), "needs_dir", "folder", path)


def test_a_missing_file_nested_in_an_argument_names_the_path(sched: Scheduler, tmp_path: Path) -> None:
    ok = tmp_path / "ok.txt"
    ok.write_text("fine")
    path = str(tmp_path / "lost.txt")
    _names_all(_failure(sched, sum_counts([File(str(ok)), File(path)])), "sum_counts", "fs", path)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_bad_input_is_a_file_error_subclass(sched: Scheduler, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x"
    if kind == "directory":
        path.mkdir()
    error = _failure(sched, needs_file(File(str(path))))
    expected = MissingFileError if kind == "missing" else FileAccessError
    assert isinstance(error, expected)
    assert error.path == str(path)  # type: ignore[attr-defined]


@task
def returns_missing(path: str) -> File:
    return File(path)


def test_a_task_returning_a_missing_file_fails_naming_the_task_and_path(sched: Scheduler, tmp_path: Path) -> None:
    path = str(tmp_path / "never-written.txt")
    error = _failure(sched, returns_missing(path))
    _names_all(error, "returns_missing", path)


def test_a_bad_input_fails_only_its_branch(sched: Scheduler, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("12345")
    with pytest.raises(HashingError):
        sched.run([count_chars(File(str(good))), needs_file(File(str(tmp_path / "bad.txt")))])
    assert take_runs() == [("count_chars", str(good))]
    assert sched.run(count_chars(File(str(good)))) == 5
    assert take_runs() == []  # the good branch's result was recorded


def test_a_missing_file_is_not_an_error_for_the_file_object_itself(tmp_path: Path) -> None:
    f = File(str(tmp_path / "later.txt"))
    assert f.exists() is False
    assert isinstance(f.hash, str)
    assert f.is_valid()  # recorded as missing, still missing
    f.write("now")
    assert f.is_valid()  # written through the File: its hash follows
    stale = File(f.path)
    stale.get_hash()
    os.remove(f.path)
    assert not stale.is_valid()


def test_unknown_protocol_is_a_file_access_error_naming_the_protocol() -> None:
    with pytest.raises(FileAccessError, match="nosuchproto"):
        File("nosuchproto://x/y").exists()


def test_a_file_passed_to_a_returned_call_is_rechecked(scheduler: Scheduler, tmp_path: Path) -> None:
    """The body writes a file and returns ``consume(File(...))``: the file sits in the recorded reduction, so a
    later change of it must make the producer rerun (found by review: it was served stale)."""
    out = tmp_path / "made.txt"

    @task
    def consume_made(f: File) -> str:
        ran("consume_made")
        return f.read()

    @task
    def produce_made(n: int) -> Any:
        ran("produce_made")
        target = File(str(out))
        target.write("made " * n)
        return consume_made(target)

    assert scheduler.run(produce_made(2)) == "made made "
    assert sorted(names(take_runs())) == ["consume_made", "produce_made"]
    assert scheduler.run(produce_made(2)) == "made made "
    assert take_runs() == []
    out.write_text("TAMPERED")
    assert scheduler.run(produce_made(2)) == "made made "  # never the stale "TAMPERED"
    assert names(take_runs()) == ["produce_made"]  # it rewrote the same bytes: consume_made is reused
    out.unlink()
    assert scheduler.run(produce_made(2)) == "made made "
    assert "produce_made" in names(take_runs())


def test_dir_follows_symlinked_folders_without_looping(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("1")
    os.symlink(tmp_path / "other", tmp_path / "data" / "sub")
    os.symlink(tmp_path, tmp_path / "data" / "zloop")  # a loop back up
    d = Dir(str(tmp_path / "data"))
    assert [d.rel_path(f.path) for f in d.files()] == ["sub/a.txt"]
    before = d.get_hash()
    (tmp_path / "other" / "a.txt").write_text("2")
    assert Dir(str(tmp_path / "data")).get_hash() != before


def test_shallow_reuse_rechecks_files_read_below(scheduler: Scheduler, tmp_path: Path) -> None:
    """check_valid="shallow" trusts a final value only while no task below changed; a file a call below took
    as an argument may have changed too, so it falls back to the full rule (found by review)."""
    src = tmp_path / "words.txt"
    src.write_text("one")

    @task
    def first_word(f: File) -> str:
        ran("first_word")
        return f.read().split()[0]

    @task(check_valid="shallow")
    def top_word(path: str) -> Any:
        ran("top_word")
        return first_word(File(path))

    assert scheduler.run(top_word(str(src))) == "one"
    take_runs()
    src.write_text("two")
    assert scheduler.run(top_word(str(src))) == "two"  # never the stale "one"
    assert sorted(names(take_runs())) == ["first_word", "top_word"]


class _Wrapped:
    """A plain object (not a dataclass) carrying a file into a call."""

    def __init__(self, file: File) -> None:
        self.file = file


@task
def consume_wrapped(box: _Wrapped) -> str:
    ran("consume_wrapped", os.path.basename(box.file.path))
    return box.file.read().upper()


@task(check_valid="shallow")
def shallow_over_wrapped(path: str) -> str:
    return consume_wrapped(_Wrapped(File(path)))


def test_shallow_reuse_sees_a_file_inside_a_plain_object_below(sched: Scheduler, tmp_path: Path) -> None:
    """A call below took a file inside a plain object: a shallow lookup above must not trust the subtree."""
    path = tmp_path / "input.txt"
    path.write_text("first")
    assert sched.run(shallow_over_wrapped(str(path))) == "FIRST"
    take_runs()
    assert sched.run(shallow_over_wrapped(str(path))) == "FIRST"
    assert take_runs() == []
    path.write_text("second, longer")
    assert sched.run(shallow_over_wrapped(str(path))) == "SECOND, LONGER"
    assert take_runs() == [("consume_wrapped", "input.txt")]
