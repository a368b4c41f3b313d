"""How the CLI shows errors: the user's own frames, never slothflow's internals."""

from __future__ import annotations

import os
import traceback

import slothflow

_PACKAGE_DIR = os.path.dirname(os.path.abspath(slothflow.__file__))


def user_traceback(exc: BaseException) -> str:
    """A task error's traceback with slothflow's own frames removed (notes kept)."""
    remote = getattr(exc, "slothflow_traceback", None)
    if isinstance(remote, str) and remote and exc.__traceback__ is None:
        return remote
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)
