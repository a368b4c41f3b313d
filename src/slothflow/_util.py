"""Small helpers every layer uses."""

from __future__ import annotations

from typing import Any


def preview(value: Any, limit: int = 200) -> str:
    """A short ``repr`` for logs and provenance records; never raises."""
    try:
        text = repr(value)
    except Exception:  # includes RecursionError from a very deep or self-referencing value
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
