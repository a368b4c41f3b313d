"""Remote files on a real S3-compatible server (moto_server through s3fs) and over HTTP: opaque version tokens,
changes made by someone else, validity of remote outputs, and errors from stores that refuse or vanish."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import s3_server as s3mod
from slothflow import ContentFile, Dir, File, FileSet, HashingError, Scheduler, hash_value, task
from slothflow._errors import FileAccessError, MissingFileError

RUNS: list[tuple[str, Any]] = []
_LOCK = threading.Lock()


def ran(name: str, arg: Any) -> None:
    with _LOCK:
        RUNS.append((name, arg))


def take_runs() -> list[tuple[str, Any]]:
    with _LOCK:
        out = sorted(RUNS)
        RUNS.clear()
        return out


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    take_runs()


@pytest.fixture
def s3(s3_server: s3mod.S3) -> s3mod.S3:
    return s3_server


@pytest.fixture
def sched(sqlite_uri: str) -> Iterator[Scheduler]:
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    yield s
    s.close()


# ---------------------------------------------------------------------------------- version tokens


def test_the_endpoint_reaches_s3fs_through_the_environment(s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    File(f"s3://{bucket}/hello.txt").write("written by slothflow")
    assert s3.get(bucket, "hello.txt") == b"written by slothflow"  # read back with boto3, on the server


def test_a_child_process_reaches_the_same_server(s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    s3.put(bucket, "k.txt", b"from boto3")
    code = "import sys; from slothflow import File; print(File(sys.argv[1]).read())"
    out = subprocess.run([sys.executable, "-c", code, f"s3://{bucket}/k.txt"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "from boto3"


def test_unversioned_bucket_etag_identical_rewrite_keeps_the_hash(s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    s3.put(bucket, "a.txt", b"one")
    f = File(f"s3://{bucket}/a.txt")
    h = hash_value(f)
    assert f._fingerprint().startswith("ETag:")  # type: ignore[union-attr]
    s3.put(bucket, "a.txt", b"one")
    assert hash_value(File(f.path)) == h
    s3.put(bucket, "a.txt", b"two")
    assert hash_value(File(f.path)) != h


def test_versioned_bucket_uses_the_version_id_as_an_opaque_token(s3: s3mod.S3) -> None:
    bucket = s3.new_bucket(versioned=True)
    s3.put(bucket, "a.txt", b"one")
    f = File(f"s3://{bucket}/a.txt")
    fp = f._fingerprint()
    assert fp is not None and fp.startswith("VersionId:")
    h = hash_value(f)
    ch = hash_value(ContentFile(f.path))
    s3.put(bucket, "a.txt", b"one")  # a new version with the same bytes
    assert hash_value(File(f.path)) != h  # opaque: a new version is a change
    assert hash_value(ContentFile(f.path)) == ch  # ContentFile looks at the bytes


def test_a_change_made_by_someone_else_is_seen_despite_listing_caches(s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    for name in ("a.txt", "b.txt"):
        s3.put(bucket, f"d/{name}", name.encode())
    d = Dir(f"s3://{bucket}/d")
    pattern = FileSet(f"s3://{bucket}/d/*.txt")
    dh, ph = hash_value(d), hash_value(pattern)
    f = File(f"s3://{bucket}/d/a.txt")
    fh = hash_value(f)
    assert [x.basename() for x in pattern] == ["a.txt", "b.txt"]
    # Another client changes the bucket: an edit, then a new object.
    s3.put(bucket, "d/a.txt", b"edited")
    assert hash_value(File(f.path)) != fh
    assert File(f.path).read() == "edited"
    assert File(f.path).size() == 6
    s3.put(bucket, "d/c.txt", b"c")
    assert hash_value(Dir(d.pattern)) != dh
    assert [x.basename() for x in FileSet(pattern.pattern)] == ["a.txt", "b.txt", "c.txt"]
    assert hash_value(FileSet(pattern.pattern)) != ph
    s3.delete(bucket, "d/b.txt")
    assert not File(f"s3://{bucket}/d/b.txt").exists()


# --------------------------------------------------------------------------- the scheduler and S3


@task
def s3_len(f: File) -> int:
    ran("s3_len", f.basename())
    return len(f.read("rb"))


@task
def s3_produce(url: str, text: str) -> File:
    ran("s3_produce", url.rsplit("/", 1)[-1])
    out = File(url)
    out.write(text)
    return out


@task
def s3_upper(f: File) -> str:
    ran("s3_upper", f.basename())
    return str(f.read()).upper()


def test_changing_an_s3_object_reruns_exactly_its_consumer(sched: Scheduler, s3: s3mod.S3) -> None:
    bucket = s3.new_bucket(versioned=True)
    for i in range(4):
        s3.put(bucket, f"in/{i}.txt", b"x" * (i + 1))
    wf = [s3_len(File(f"s3://{bucket}/in/{i}.txt")) for i in range(4)]
    assert sched.run(wf) == [1, 2, 3, 4]
    assert len(take_runs()) == 4
    assert sched.run(wf) == [1, 2, 3, 4]
    assert take_runs() == []
    s3.put(bucket, "in/2.txt", b"yyy")  # same size, new version
    assert sched.run(wf) == [1, 2, 3, 4]
    assert take_runs() == [("s3_len", "2.txt")]


def test_a_deleted_or_replaced_s3_output_reruns_exactly_its_producer(sched: Scheduler, s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    wf = [s3_upper(s3_produce(f"s3://{bucket}/out/{i}.txt", f"text {i}")) for i in range(3)]
    assert sched.run(wf) == ["TEXT 0", "TEXT 1", "TEXT 2"]
    assert len(take_runs()) == 6
    s3.delete(bucket, "out/1.txt")
    assert sched.run(wf) == ["TEXT 0", "TEXT 1", "TEXT 2"]
    assert take_runs() == [("s3_produce", "1.txt")]
    assert s3.get(bucket, "out/1.txt") == b"text 1"
    s3.put(bucket, "out/2.txt", b"replaced by someone")
    assert sched.run(wf) == ["TEXT 0", "TEXT 1", "TEXT 2"]
    assert take_runs() == [("s3_produce", "2.txt")]
    assert sched.run(wf) == ["TEXT 0", "TEXT 1", "TEXT 2"]
    assert take_runs() == []


# ------------------------------------------------------------------------------------- bad remotes


def _fails_naming(sched: Scheduler, expr: Any, *parts: str) -> BaseException:
    with pytest.raises(HashingError) as info:
        sched.run(expr)
    text = str(info.value)
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return info.value


def test_a_missing_object_and_a_missing_bucket_name_task_argument_and_path(sched: Scheduler, s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    for url in (f"s3://{bucket}/no/such/key.txt", "s3://slothflow-no-such-bucket-x/key.txt"):
        error = _fails_naming(sched, s3_len(File(url)), "s3_len", "'f'", url)
        assert isinstance(error, MissingFileError)
        assert (error.task_name, error.argument, error.path) == (s3_len.fullname, "f", url)
    assert take_runs() == []


def test_an_object_that_vanished_between_runs(sched: Scheduler, s3: s3mod.S3) -> None:
    bucket = s3.new_bucket()
    s3.put(bucket, "v.txt", b"here")
    url = f"s3://{bucket}/v.txt"
    assert sched.run(s3_len(File(url))) == 4
    s3.delete(bucket, "v.txt")
    assert isinstance(_fails_naming(sched, s3_len(File(url)), "s3_len", "'f'", url), MissingFileError)


REFUSED = textwrap.dedent(
    """
    import sys
    from slothflow import File, Scheduler, task
    from slothflow._errors import FileAccessError

    @task
    def load(source: File) -> int:
        return len(source.read())

    sched = Scheduler(config={"backend": {"db_uri": sys.argv[1]}})
    try:
        sched.run(load(File(sys.argv[2])))
    except FileAccessError as exc:
        assert (exc.task_name, exc.argument, exc.path) == ("refused.load", "source", sys.argv[2])
        print("ERROR", type(exc).__name__, exc)
    finally:
        sched.close()
    """
)


def _run_refused(tmp_path: Path, endpoint: str, url: str) -> str:
    script = tmp_path / "refused.py"
    script.write_text(REFUSED)
    env = {**os.environ, "FSSPEC_S3_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"}
    out = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'r.db'}", url], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR"), out.stdout + out.stderr
    assert "Traceback" not in out.stdout
    return out.stdout


def test_refused_credentials_name_task_argument_and_path(tmp_path: Path, s3: s3mod.S3) -> None:
    with s3mod.moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:  # checks credentials
        url = "s3://any-bucket/data.csv"
        text = _run_refused(tmp_path, strict, url)
    for part in ("load", "'source'", url, "PermissionError"):
        assert part in text, text


def test_an_unreachable_endpoint_fails_quickly_naming_the_path(tmp_path: Path, s3: s3mod.S3) -> None:
    closed = f"http://127.0.0.1:{s3mod.free_port()}"
    url = "s3://any-bucket/data.csv"
    text = _run_refused(tmp_path, closed, url)
    for part in ("load", "'source'", url):
        assert part in text, text


def test_file_access_errors_carry_the_path(s3: s3mod.S3) -> None:
    url = "s3://slothflow-no-such-bucket-y/k"
    assert not File(url).exists()
    with pytest.raises(FileAccessError) as info:
        File(url).__slothflow_hash__()
    assert info.value.path == url


# ---------------------------------------------------------------------------------------- http(s)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@task
def http_words(page: File) -> int:
    ran("http_words", page.basename())
    return len(page.read().split())


def test_http_files_are_read_only_inputs_hashed_by_content(sched: Scheduler, http_root: tuple[Path, str]) -> None:
    root, url = http_root
    (root / "page.txt").write_text("three little words")
    page = File(f"{url}/page.txt")
    assert page.exists() and page.read() == "three little words"
    assert sched.run(http_words(page)) == 3
    assert sched.run(http_words(File(page.path))) == 3
    assert take_runs() == [("http_words", "page.txt")]
    (root / "page.txt").write_text("now four little words")
    assert sched.run(http_words(File(page.path))) == 4
    assert take_runs() == [("http_words", "page.txt")]
    missing = f"{url}/absent.txt"
    _fails_naming(sched, http_words(File(missing)), "http_words", "'page'", missing)
