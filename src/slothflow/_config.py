"""Configuration: plain sections of keys, from a dict, a ``Config`` or the project's TOML file.

Section names may be dotted (``"executors.cluster"``), as in redun; ``Config`` keeps them flat and
``section()`` returns a copy of one. A project's configuration lives in ``.slothflow/slothflow.toml``, found
by walking up from the working directory like git does.

Every key is declared below (:data:`SECTIONS`, :data:`OPEN_SECTIONS`) or by its executor class
(``config_schema``); :func:`validate_config` checks a configuration against them, so that a typo or a bad
value is an error naming the key instead of being ignored or failing later deep inside a run.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ConfigKey:
    """One configuration key: the type of its value, its constraints and what it is for.

    ``kind`` is ``bool``, ``int``, ``float``, ``str``, ``dict`` or ``object`` (anything). Strings that spell
    a value of ``kind`` are converted (``"8"`` for an int, ``"true"`` for a bool, a JSON object for a dict),
    as redun's INI-style configurations hold only strings.
    """

    kind: type
    doc: str = ""
    default: Any = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
                 dict: "a mapping (a table, or a JSON object)", object: "any value"}
        text = names.get(self.kind, self.kind.__name__)
        return text + (f" >= {self.minimum:g}" if self.minimum is not None else "")

    def check(self, where: str, value: Any) -> Any:
        """``value`` converted to this key's type; a :class:`ConfigError` naming ``where`` if it is not one."""
        try:
            converted = _convert(self.kind, value)
        except (TypeError, ValueError):
            converted = None
        ok = converted is not None or self.kind is object
        if ok and self.minimum is not None and converted < self.minimum:
            ok = False
        if ok and self.choices and converted not in self.choices:
            ok = False
        if not ok:
            raise ConfigError(f"config {where} = {value!r} is not valid: expected {self.expected()}")
        return converted


def _convert(kind: type, value: Any) -> Any:
    """``value`` as ``kind``, or None when it is not one (bool is never taken for a number)."""
    if kind is object:
        return value
    if isinstance(value, bool) and kind is not bool:
        return None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if isinstance(value, kind):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if kind is bool:
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    if kind in (int, float):
        return kind(text)
    if kind is dict:
        parsed = json.loads(text)
        return parsed if isinstance(parsed, dict) else None
    return None


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

# Sections with a fixed set of keys.
SECTIONS: dict[str, dict[str, ConfigKey]] = {
    "backend": {
        "db_uri": ConfigKey(str, "the cache and provenance database (SQLite file or PostgreSQL URL)",
                            "sqlite:///slothflow.db"),
        "blob_uri": ConfigKey(str, "where large values are stored: an fsspec URL (s3://bucket/prefix) or a folder",
                              "next to a SQLite database; inside a PostgreSQL one"),
        "blob_dir": ConfigKey(str, "the older name of blob_uri", "next to a SQLite database; inside a PostgreSQL one"),
        "signing_key_env": ConfigKey(str, "the environment variable holding the key that signs stored values"),
        "busy_timeout": ConfigKey(float, "seconds a SQLite write waits for another process's lock", 30.0, 0),
    },
    "scheduler": {
        "fail_fast": ConfigKey(bool, "stop submitting new calls after the first failure", False),
        "env_policy": ConfigKey(str, "whether package versions count towards reuse: ignore, minor or exact",
                                "ignore"),
        "context": ConfigKey(dict, "the execution context read by get_context (also a JSON string)", {}),
        "ignore_warnings": ConfigKey(object, "redun's switch for its namespace warning; slothflow gives no such "
                                     "warning, so it changes nothing", ""),
    },
}
# Sections whose key names are the user's own; every value has the same type.
OPEN_SECTIONS: dict[str, ConfigKey] = {
    "limits": ConfigKey(int, "capacity of a named resource used by @task(limits=...)", minimum=1),
    "context": ConfigKey(object, "the execution context read by get_context"),
    "tags": ConfigKey(object, "tags put on every execution"),
}
# Every [executors.NAME] section has a type; the rest of its keys are the executor's own.
EXECUTOR_TYPE = ConfigKey(str, "the executor type (threads, processes, inline or a registered one)", "threads")
# redun's ``type = "local"`` (threads, or processes with ``mode = "process"``); other executor types declare
# their keys on their class (``Executor.config_schema``).
LOCAL_EXECUTOR_SCHEMA: dict[str, ConfigKey] = {
    "max_workers": ConfigKey(int, "how many jobs run at once", minimum=1),
    "start_method": ConfigKey(str, "how worker processes start", "spawn", choices=("spawn", "forkserver", "fork")),
    "mode": ConfigKey(str, "redun's local executor: threads or processes", "thread", choices=("thread", "process")),
    "memory": ConfigKey(float, "GB that jobs' memory requests share", "the machine's memory", 0),
    "gpus": ConfigKey(int, "GPUs that jobs' gpus requests share", 0, 0),
}


def _did_you_mean(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate_config(config: Config | dict[str, Any], executor_types: Mapping[str, type] | None = None) -> Config:
    """``config`` with every value checked against its declared type and converted to it.

    Raises :class:`ConfigError` naming ``section.key``, the value and what was expected; an unknown section or
    key is an error too, with the nearest valid name. ``executor_types`` (type name -> executor class) makes
    executor types and their keys checked: a class declares its keys as ``config_schema`` (a dict of key name
    to :class:`ConfigKey` or plain type; None when it leaves its keys unchecked).
    """
    if not isinstance(config, Config):
        config = Config(config)
    out = Config(config_dir=config.config_dir)
    for name in config.sections():
        section = config.section(name)
        if name.startswith("executors."):
            out._sections[name] = _check_executor(name, section, executor_types)
        elif name in SECTIONS:
            keys = SECTIONS[name]
            out._sections[name] = {key: _known(keys, name, key).check(f"{name}.{key}", v)
                                   for key, v in section.items()}
        elif name in OPEN_SECTIONS:
            rule = OPEN_SECTIONS[name]
            out._sections[name] = {str(key): rule.check(f"{name}.{key}", v) for key, v in section.items()}
        else:
            valid = [*SECTIONS, *OPEN_SECTIONS, "executors.NAME"]
            hint = _did_you_mean(name, [*SECTIONS, *OPEN_SECTIONS])
            if name == "executors":
                hint = "; executors are configured in [executors.NAME] sections"
            raise ConfigError(f"unknown config section [{name}]{hint} (sections: {', '.join(valid)})")
    return out


def _known(keys: Mapping[str, ConfigKey], section: str, key: str) -> ConfigKey:
    rule = keys.get(key)
    if rule is None:
        valid = sorted(keys)
        raise ConfigError(f"unknown config key {section}.{key}{_did_you_mean(key, valid)} "
                          f"(keys of [{section}]: {', '.join(valid) or 'none'})")
    return rule


def _check_executor(name: str, section: dict[str, Any], executor_types: Mapping[str, type] | None) -> dict[str, Any]:
    executor = name.split(".", 1)[1]
    type_name = section.get("type")
    if type_name is None:
        if executor == "default" or executor_types is None:
            type_name = "threads" if executor == "default" else executor
        elif executor in executor_types:
            type_name = executor
        else:
            raise ConfigError(f"config {name}.type is missing: say which executor type "
                              f"({', '.join(sorted(executor_types))})")
    type_name = EXECUTOR_TYPE.check(f"{name}.type", type_name)
    out = {"type": type_name}
    if executor_types is None:
        return {**section, **out}
    cls = executor_types.get(type_name)
    if cls is None:
        known = sorted(executor_types)
        raise ConfigError(f"config {name}.type = {type_name!r} is not an executor type"
                          f"{_did_you_mean(type_name, known)} (types: {', '.join(known)})")
    schema = executor_schema(type_name, cls)
    for key, value in section.items():
        if key == "type":
            continue
        if schema is None:  # a user's executor that does not declare its keys: they are its business
            out[key] = value
            continue
        out[key] = _known(schema, name, key).check(f"{name}.{key}", value)
    return out


def executor_schema(type_name: str, cls: type) -> dict[str, ConfigKey] | None:
    """The config keys an executor class accepts (besides ``type``), or None when it does not say."""
    if type_name == "local":
        return LOCAL_EXECUTOR_SCHEMA
    declared = getattr(cls, "config_schema", None)
    if declared is None:
        return None
    return {k: v if isinstance(v, ConfigKey) else ConfigKey(v) for k, v in dict(declared).items()}


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
# Large values on an object store (any fsspec URL): blob_uri = "s3://bucket/prefix"
# Sign stored values with the key held by an environment variable: signing_key_env = "SLOTHFLOW_SIGNING_KEY"

[executors.default]
type = "threads"
max_workers = 8

[limits]
# name = capacity, used by @task(limits=["name"])
"""
