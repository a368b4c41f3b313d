"""Environment fingerprints: the Python version and the installed distributions a task's code imports.

The code walk of :mod:`._code` notes the top-level names of the installed modules a task and its helpers
refer to (``numpy`` for ``np.mean``, ``pandas`` for a ``DataFrame``); here they are mapped to the distributions
that provide them and their versions. Each job records its task's fingerprint (``job.environment``) so that
``slothflow explain`` can say "package numpy 1.26.4 -> 2.1.0".

Whether a change invalidates the cache is a policy, per task (``@task(env_policy=...)``) or for the whole
project (``[scheduler] env_policy``): ``"ignore"`` (the default: versions are recorded, never compared),
``"minor"`` (a change of major.minor of Python or of a package counts) or ``"exact"`` (any version change
counts). The policy-relevant part is folded into the call's eval hash by the scheduler.

An :class:`EnvironmentCache` remembers the module-to-distribution map (built lazily), versions and each task's
fingerprint; the module functions use the process's default one.
"""

from __future__ import annotations

import json
import platform
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from slothflow.hashing._encode import hash_struct

ENV_POLICIES = ("ignore", "minor", "exact")
DEFAULT_POLICY = "ignore"


@dataclass(frozen=True)
class Environment:
    """The Python version and ``{distribution: version}`` of the installed packages a task's code uses."""

    python: str
    packages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "packages": dict(sorted(self.packages.items()))}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def key(self, policy: str) -> str | None:
        """The part of this environment that a cache key depends on under ``policy`` (None for "ignore")."""
        if policy == "ignore":
            return None
        if policy == "minor":
            parts = [f"python={_major_minor(self.python)}"]
            parts += [f"{name}={_major_minor(v)}" for name, v in sorted(self.packages.items())]
        elif policy == "exact":
            parts = [f"python={self.python}"] + [f"{name}={v}" for name, v in sorted(self.packages.items())]
        else:
            raise ValueError(f"env_policy must be one of {ENV_POLICIES}, not {policy!r}")
        return hash_struct("Env", policy, *parts)


def _major_minor(version: str) -> str:
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?", version)
    if match is None:
        return version
    return f"{match.group(1)}.{match.group(2) or 0}"


def check_policy(policy: Any, where: str) -> str:
    value = str(policy).lower()
    if value not in ENV_POLICIES:
        from slothflow._errors import ConfigError

        raise ConfigError(f"{where}: env_policy must be one of {', '.join(ENV_POLICIES)}, not {policy!r}")
    return value


def _provides(dist: Any, top: str) -> bool:
    """True when the distribution installs the top-level module ``top``."""
    try:
        top_level = dist.read_text("top_level.txt")
    except Exception:
        top_level = None
    if top_level:
        return top in top_level.split()
    try:
        files = dist.files or []
    except Exception:
        return False
    for f in files:
        first = f.parts[0] if f.parts else ""
        if first == top or (first.split(".")[0] == top and not first.endswith((".dist-info", ".egg-info"))):
            return True
    return False


class EnvironmentCache:
    """Which distributions provide which modules, their versions, and each task's fingerprint, remembered
    for the owner's lifetime (installing a package in a notebook is seen by a new cache, not by this one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module_dists: dict[str, tuple[str, ...]] = {}
        self._all_module_dists: dict[str, list[str]] | None = None
        self._versions: dict[str, str | None] = {}
        self._task_envs: dict[tuple[str, str], Environment] = {}
        self._task_env_json: dict[tuple[str, str], str] = {}

    def distributions_of(self, top: str) -> tuple[str, ...]:
        """The installed distributions providing the top-level module ``top`` (usually one; none for user
        code)."""
        found = self._module_dists.get(top)
        if found is not None:
            return found
        import importlib.metadata as md

        # Fast path: most distributions are named like their module; the full map (which reads the file list
        # of every installed distribution, ~0.1 s) is built only for the others (yaml -> PyYAML, sklearn -> ...).
        names: tuple[str, ...] = ()
        try:
            dist = md.distribution(top)
        except md.PackageNotFoundError:
            dist = None
        if dist is not None and _provides(dist, top):
            names = (dist.metadata["Name"] or top,)
        else:
            with self._lock:
                if self._all_module_dists is None:
                    self._all_module_dists = {k: list(v) for k, v in md.packages_distributions().items()}
                names = tuple(sorted(set(self._all_module_dists.get(top, []))))
        self._module_dists[top] = names
        return names

    def distribution_version(self, name: str) -> str | None:
        if name not in self._versions:
            import importlib.metadata as md

            try:
                self._versions[name] = md.version(name)
            except md.PackageNotFoundError:
                self._versions[name] = None
        return self._versions[name]

    def environment_of_modules(self, modules: frozenset[str] | set[str]) -> Environment:
        packages: dict[str, str] = {}
        for top in sorted(modules):
            for dist in self.distributions_of(top):
                version = self.distribution_version(dist)
                if version is not None:
                    packages[dist] = version
        return Environment(platform.python_version(), packages)

    def task_environment(self, task: Any) -> Environment:
        """The environment fingerprint of a task: computed once per task hash."""
        key = (task.fullname, task.hash)
        env = self._task_envs.get(key)
        if env is None:
            try:
                modules = task.code_info.modules
            except Exception:  # no code to walk (an undefined task stand-in)
                modules = frozenset()
            env = self._task_envs[key] = self.environment_of_modules(modules)
        return env

    def task_environment_json(self, task: Any) -> str:
        """:meth:`task_environment` as the JSON text recorded on each job (serialized once per task)."""
        key = (task.fullname, task.hash)
        text = self._task_env_json.get(key)
        if text is None:
            text = self._task_env_json[key] = self.task_environment(task).to_json()
        return text


_default_cache = EnvironmentCache()


def default_environment_cache() -> EnvironmentCache:
    """The process's own environment cache, used by the functions below."""
    return _default_cache


def distributions_of(top: str) -> tuple[str, ...]:
    return _default_cache.distributions_of(top)


def distribution_version(name: str) -> str | None:
    return _default_cache.distribution_version(name)


def environment_of_modules(modules: frozenset[str] | set[str]) -> Environment:
    return _default_cache.environment_of_modules(modules)


def task_environment(task: Any) -> Environment:
    """:meth:`EnvironmentCache.task_environment` of the default cache."""
    return _default_cache.task_environment(task)


def task_environment_json(task: Any) -> str:
    """:meth:`EnvironmentCache.task_environment_json` of the default cache."""
    return _default_cache.task_environment_json(task)
