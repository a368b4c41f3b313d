"""Configuration: plain sections of keys, from a dict, a ``Config`` or the project's TOML file.

Section names may be dotted (``"executors.cluster"``), as in redun; ``Config`` keeps them flat and
``section()`` returns a copy of one. A project's configuration lives in ``.slothflow/slothflow.toml``, found
by walking up from the working directory like git does.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from slothflow._errors import ConfigError

PROJECT_DIRNAME = ".slothflow"
CONFIG_FILENAME = "slothflow.toml"
DB_FILENAME = "slothflow.db"


class Config:
    """Configuration sections, e.g. ``Config({"backend": {"db_uri": "sqlite:///x.db"}})``."""

    def __init__(self, config_dict: dict[str, Any] | None = None, config_dir: str | os.PathLike[str] | None = None):
        self._sections: dict[str, dict[str, Any]] = {}
        self.config_dir = Path(config_dir) if config_dir is not None else None
        if config_dict:
            self.read_dict(config_dict)

    def read_dict(self, config_dict: dict[str, Any]) -> None:
        for name, section in _flatten_sections(config_dict):
            self._sections.setdefault(name, {}).update(section)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self._sections.get(name, {}))

    def sections(self) -> list[str]:
        return list(self._sections)

    def get(self, name: str, default: Any = None) -> Any:
        return self._sections.get(name, default)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._sections[name]

    def __contains__(self, name: object) -> bool:
        return name in self._sections

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._sections.items()}

    def __repr__(self) -> str:
        return f"Config({self.to_dict()!r})"


# Sections whose values are mappings by nature (kept whole), and keys of other sections that are.
_MAPPING_SECTIONS = ("limits", "tags", "context")
_MAPPING_KEYS: dict[str, tuple[str, ...]] = {"scheduler": ("context",)}


def _flatten_sections(data: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """``{"executors": {"a": {...}}}`` and ``{"executors.a": {...}}`` both give section ``executors.a``."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"config section {prefix + key!r} must be a mapping of keys to values, not {value!r}")
        name = prefix + key
        keep = _MAPPING_KEYS.get(name, ())
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict) or k in keep}
        nested = {k: v for k, v in value.items() if isinstance(v, dict) and k not in keep}
        # A nested mapping is a sub-section, except inside sections whose values are mappings by nature.
        if name in _MAPPING_SECTIONS or not nested:
            out.append((name, dict(value)))
            continue
        if scalars:
            out.append((name, scalars))
        out.extend(_flatten_sections(nested, name + "."))
    return out


def find_project_dir(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``.slothflow`` folder at or above ``start`` (the working directory by default)."""
    env = os.environ.get("SLOTHFLOW_PROJECT_DIR")
    if env:
        return Path(env)
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_DIRNAME
        if candidate.is_dir():
            return candidate
    return None


def load_project_config(project_dir: Path | None = None, create: bool = True) -> Config:
    """The configuration of the current project, creating ``./.slothflow`` when there is none."""
    folder = project_dir or find_project_dir()
    if folder is None:
        if not create:
            raise ConfigError("no .slothflow project folder here or above: run `slothflow init`")
        folder = Path.cwd() / PROJECT_DIRNAME
        folder.mkdir(parents=True, exist_ok=True)
    config = Config(config_dir=folder)
    path = folder / CONFIG_FILENAME
    if path.exists():
        try:
            config.read_dict(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return config


DEFAULT_CONFIG_TOML = """\
# slothflow project configuration.
[backend]
# The cache and provenance database. The default is SQLite in this folder.
# For a team cache on PostgreSQL: db_uri = "postgresql+psycopg://user@host/dbname"
db_uri = "sqlite:///slothflow.db"

[executors.default]
type = "threads"
max_workers = 8

[limits]
# name = capacity, used by @task(limits=["name"])
"""
