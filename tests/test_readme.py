"""The README's Python examples run as written (each in a fresh interpreter and folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# Complete programs start with their imports; the rest are fragments of the surrounding text. A block that
# needs a tool this machine may not have (bwa) is not run.
PROGRAMS = [b for b in BLOCKS if b.lstrip().startswith(("from slothflow", "# wf.py")) and "bwa " not in b]


def test_readme_has_runnable_examples() -> None:
    assert len(PROGRAMS) >= 6


@pytest.mark.parametrize("source", PROGRAMS, ids=[f"block{i}" for i in range(len(PROGRAMS))])
def test_readme_example_runs(source: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name, text in (("a.txt", "One two three"), ("b.txt", "Four five")):
        (tmp_path / "data" / name).write_text(text)
    script = tmp_path / "example.py"
    script.write_text(source)
    for attempt in ("first run", "cached rerun"):
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"{attempt}:\n{source}\n{proc.stderr}"
