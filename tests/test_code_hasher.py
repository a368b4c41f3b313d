"""The code hasher's memos and their lifetimes: no global reset is needed to see an edit.

A :class:`CodeHasher` keeps code hashes until it forgets them (a scheduler does at the start of each run),
facts per object while its code is the same, and class sources per file until the file changes; hashers
are independent of each other, and a scheduler run uses the one in effect.
"""

from __future__ import annotations

import importlib
import os
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from slothflow import Scheduler
from slothflow.hashing._code import CodeHasher, current_code_hasher, default_code_hasher, use_code_hasher


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> tuple[ModuleType, Path]:
    name = f"_sf_hasher_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name), path


def rewrite(path: Path, old: str, new: str) -> None:
    """Edit a file so that its size and mtime both change (as an editor saving it would)."""
    stat = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_an_edited_source_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A class patched in place (as IPython's autoreload does) keeps its object: its source file, edited
    since, must be read again rather than taken from a per-file index kept for the process."""
    mod, path = write_module(tmp_path, monkeypatch, '''
        class Model:
            def predict(self, x):
                return x + 1
    ''')
    hasher = CodeHasher()
    before = hasher.class_code(mod.Model)
    assert hasher.class_code(mod.Model) == before
    rewrite(path, "x + 1", "x + 1000")
    hasher.forget()
    assert hasher.class_code(mod.Model) != before


def test_a_function_whose_code_was_swapped_is_hashed_again(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    mod, _ = write_module(tmp_path, monkeypatch, '''
        def helper(x):
            return x + 1


        def step(x):
            return helper(x)
    ''')
    edited, _ = write_module(tmp_path, monkeypatch, '''
        def helper(x):
            return x + 5
    ''')
    hasher = CodeHasher()
    before = hasher.function_code_hash(mod.step)
    mod.helper.__code__ = edited.helper.__code__  # autoreload updates functions in place like this
    hasher.forget()
    assert hasher.function_code_hash(mod.step) != before


def test_hashers_are_independent_and_a_task_hash_follows_the_one_in_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod, _ = write_module(tmp_path, monkeypatch, '''
        from slothflow import task


        def helper(x):
            return x + 1


        @task
        def compute(x: int) -> int:
            return helper(x)
    ''')
    assert current_code_hasher() is default_code_hasher()
    before = mod.compute.hash
    exec("def helper(x):\n    return x + 2\n", mod.__dict__)  # a notebook cell redefines the helper
    assert mod.compute.hash == before  # the default hasher remembers until it forgets (at a run's start)
    fresh = CodeHasher()
    with use_code_hasher(fresh) as active:
        assert active is fresh and current_code_hasher() is fresh
        after = mod.compute.hash
    assert after != before
    assert current_code_hasher() is default_code_hasher() and mod.compute.hash == before


def test_a_run_forgets_the_code_hashes_of_the_hasher_in_effect(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """How a scheduler owns its hasher: activate it around the run; the run starts a new generation of it
    and leaves the default hasher alone."""
    mod, _ = write_module(tmp_path, monkeypatch, '''
        from slothflow import task

        K = 1


        @task
        def compute(x: int) -> int:
            return x + K
    ''')
    default_generation = default_code_hasher().generation
    own = CodeHasher()
    scheduler = Scheduler(config={"backend": {"db_uri": f"sqlite:///{tmp_path / 'db.sqlite'}"}})
    try:
        with use_code_hasher(own):
            generation = own.generation
            assert scheduler.run(mod.compute(1)) == 2
            assert own.generation is not generation
            mod.K = 10
            assert scheduler.run(mod.compute(1)) == 11
    finally:
        scheduler.close()
    assert default_code_hasher().generation is default_generation


def test_module_values_are_pinned_per_hasher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A memo that bodies fill in place is state for the hasher that first saw it, across its runs."""
    mod, _ = write_module(tmp_path, monkeypatch, '''
        MEMO = {}


        def step(x):
            return MEMO.get(x, x)
    ''')
    hasher = CodeHasher()
    before = hasher.function_code_hash(mod.step)
    mod.MEMO[1] = 2
    hasher.forget()
    assert hasher.function_code_hash(mod.step) == before
    assert CodeHasher().function_code_hash(mod.step) != before  # another owner sees the value as it is now
