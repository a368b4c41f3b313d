"""Which modules are the user's own code, and finding the modules that code imports.

Code hashing follows user code only: the standard library, installed packages and slothflow itself are
represented by their versions (see :mod:`._environment`), never walked. A module a function imports inside
its body may not be imported yet when task hashes are computed (before any body runs, in a fresh process):
user modules are then imported here, since the body will import them anyway; others are only classified,
from their import spec, without executing them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import sysconfig
import types

from slothflow.hashing._encode import hash_bytes, hash_struct
from slothflow.hashing._source import normalize_source


def _library_roots() -> tuple[pathlib.Path, ...]:
    roots = []
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        prefix = sysconfig.get_paths().get(key)
        if prefix:
            roots.append(pathlib.Path(prefix).resolve())
    return tuple(roots)


class UserModules:
    """The user-code rule, remembered per module name for the owner's lifetime (a code hasher's)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}
        self._roots: tuple[pathlib.Path, ...] | None = None
        self._failed: set[str] = set()  # user modules whose import failed (tried again after forget_failures)

    def forget_failures(self) -> None:
        """Try again the imports that failed (a new run: the module may have been fixed)."""
        self._failed.clear()

    def is_user_code(self, module_name: str | None) -> bool:
        """True for the user's own modules (scripts, notebooks, their packages); false for slothflow, the
        standard library and installed packages. A module Python cannot locate counts as user code (code
        defined through ``exec`` under a made-up module name)."""
        if not module_name:
            return True
        known = self._known.get(module_name)
        if known is not None:
            return known
        top = module_name.split(".")[0]
        if top == "slothflow" or top in sys.builtin_module_names or top in sys.stdlib_module_names:
            result: bool | None = False
        else:
            result = self._classify(module_name, top)
        if result is None:  # not findable now: may become so (not remembered)
            return True
        self._known[module_name] = result
        return result

    def _classify(self, module_name: str, top: str) -> bool | None:
        module = sys.modules.get(module_name)
        if module is not None:
            paths = _module_paths(module)
        else:
            # Not imported: its top-level package's spec tells where it lives, without executing anything.
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                return None
            if spec.origin in ("built-in", "frozen"):
                return False
            paths = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
        if not paths:
            return True
        return not all(self._is_library_path(p) for p in paths)

    def _is_library_path(self, path: str) -> bool:
        real = pathlib.Path(path).resolve()
        if "site-packages" in real.parts or "dist-packages" in real.parts:
            return True
        if self._roots is None:
            self._roots = _library_roots()
        return any(real.is_relative_to(root) for root in self._roots)

    def load(self, name: str) -> types.ModuleType | None:
        """The module ``name`` if it is user code: from ``sys.modules``, or imported now; None for other
        modules and for user modules that cannot be imported here."""
        module = sys.modules.get(name)
        if module is not None:
            return module
        if name in self._failed or not self.is_user_code(name):
            return None
        try:
            return importlib.import_module(name)
        except (Exception, SystemExit):  # the body would fail the same way when it runs
            self._failed.add(name)
            return None

    def unresolved(self, name: str) -> tuple[str, str | None, str]:
        """(digest, file, description) standing for an imported user module that cannot be loaded here: its
        whole source when it can be found (an edit still counts), else its name alone."""
        try:
            spec = importlib.util.find_spec(name)
        except (Exception, SystemExit):
            spec = None
        origin = spec.origin if spec is not None else None
        if origin and origin.endswith(".py"):
            try:
                text = pathlib.Path(origin).read_text()
            except (OSError, UnicodeDecodeError):
                text = None
            if text is not None:
                try:
                    digest = hash_struct("import-source", normalize_source(text, keep_decorators=True))
                except SyntaxError:
                    digest = hash_struct("import-text", hash_bytes(text.encode()))
                return digest, origin, f"not importable here (source {digest[:12]})"
        return hash_struct("import-missing", name), None, "not found"


def _module_paths(module: types.ModuleType) -> list[str]:
    path = getattr(module, "__file__", None)
    if path:
        return [path]
    return [str(p) for p in getattr(module, "__path__", None) or []]
