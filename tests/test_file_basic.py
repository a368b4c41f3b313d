"""``File`` hashing by content digest: touching changes nothing, content edits always count."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slothflow import File, HashingError, hash_value


def _h(path: Path) -> str:
    return hash_value(File(str(path)))


def test_touch_does_not_change_the_hash(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_text("hello")
    before = _h(p)
    st_before = p.stat()
    time.sleep(0.01)
    os.utime(p, ns=(st_before.st_atime_ns + 5_000_000_000, st_before.st_mtime_ns + 5_000_000_000))
    assert p.stat().st_mtime_ns != st_before.st_mtime_ns
    assert _h(p) == before
    File(str(p)).touch()
    assert _h(p) == before


def test_identical_rewrite_does_not_change_the_hash(tmp_path: Path) -> None:
    p = tmp_path / "data.bin"
    p.write_bytes(b"\x00\x01payload")
    before = _h(p)
    p.unlink()
    p.write_bytes(b"\x00\x01payload")  # a new inode, new times, same bytes
    assert _h(p) == before


def test_content_change_changes_the_hash(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_text("version 1")
    v1 = _h(p)
    p.write_text("version 2")  # same size
    v2 = _h(p)
    p.write_text("version 1")
    assert v1 != v2
    assert _h(p) == v1


def test_edit_with_restored_mtime_is_still_detected(tmp_path: Path) -> None:
    p = tmp_path / "table.csv"
    p.write_text("a,b\n1,2\n")
    original = p.stat()
    before = _h(p)
    p.write_text("a,b\n1,3\n")  # same size
    os.utime(p, ns=(original.st_atime_ns, original.st_mtime_ns))  # as `cp -p` or `tar x` would
    assert p.stat().st_mtime_ns == original.st_mtime_ns and p.stat().st_size == original.st_size
    assert _h(p) != before


def test_rapid_same_size_rewrites_are_detected(tmp_path: Path) -> None:
    p = tmp_path / "fast.txt"
    seen = set()
    for i in range(50):
        with open(p, "w") as fh:  # truncate in place: same inode, same size
            fh.write(f"{i:04d}")
        seen.add(_h(p))
    assert len(seen) == 50


def test_missing_deleted_and_recreated_files(tmp_path: Path) -> None:
    p = tmp_path / "out.txt"
    with pytest.raises(HashingError, match="out.txt does not exist"):
        _h(p)  # as a value (an argument or a result) a file must exist
    missing = File(str(p)).get_hash()  # a File object itself may point at nothing yet
    p.write_text("x")
    present = _h(p)
    assert missing != File(str(p)).get_hash()
    recorded = File(str(p))
    recorded.update_hash()
    p.unlink()
    assert File(str(p)).get_hash() == missing
    assert not recorded.is_valid()
    p.write_text("x")
    assert _h(p) == present
    assert recorded.is_valid()


def test_path_is_part_of_the_identity(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same")
    b.write_text("same")
    assert _h(a) != _h(b)


def test_writing_through_file_updates_its_hash_and_validity(tmp_path: Path) -> None:
    f = File(str(tmp_path / "sub" / "w.txt"))
    f.write("one")
    h1 = f.hash
    recorded = File(str(tmp_path / "sub" / "w.txt"))
    recorded.get_hash()
    assert recorded.is_valid()
    with f.open("w") as fh:
        fh.write("two")
    assert f.hash != h1
    assert not recorded.is_valid()
    assert f.read() == "two"


def test_file_hash_is_equal_in_another_process(tmp_path: Path) -> None:
    p = tmp_path / "shared.txt"
    p.write_text("across processes\n" * 100)
    code = "import sys; from slothflow import File, HashingError, hash_value; print(hash_value(File(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "77"})
    assert out.stdout.strip() == _h(p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_hash_follows_content(tmp_path: Path, first: bytes, second: bytes) -> None:
    p = tmp_path / "prop.bin"
    p.write_bytes(first)
    h1 = _h(p)
    p.write_bytes(second)
    assert (_h(p) == h1) == (first == second)
