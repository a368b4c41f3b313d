"""Consoles for the CLI: wrapped to the terminal when there is one, never cut when piped or captured
(a path or a table row must survive ``grep`` and redirection whole)."""

from __future__ import annotations

import sys

from rich.console import Console

_UNWRAPPED_WIDTH = 100_000


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=_UNWRAPPED_WIDTH, soft_wrap=True)
