"""Configuration: plain sections of keys, from a dict, a ``Config`` or the project's configuration file.

Section names may be dotted (``"executors.cluster"``), as in redun; ``Config`` keeps them flat and
``section()`` returns a copy of one. A project's configuration lives in its project folder, found by walking
up from the working directory like git does: ``.slothflow/slothflow.toml``, or an existing redun project's
``.redun/redun.ini`` (INI, read as redun reads it: see :mod:`slothflow._config_files`).

Every key is declared below (:data:`SECTIONS`, :data:`OPEN_SECTIONS`) or by its executor class
(``config_schema``); :func:`validate_config` checks a configuration against them, so that a typo or a bad
value is an error naming the key instead of being ignored or failing later deep inside a run.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slothflow._config_files import format_of, parse_config_text
from slothflow._errors import ConfigError

PROJECT_DIRNAME = ".slothflow"
CONFIG_FILENAME = "slothflow.toml"
DB_FILENAME = "slothflow.db"
REDUN_DIRNAME = ".redun"
REDUN_CONFIG_FILENAME = "redun.ini"
# Project folders, nearest first; in one folder, .slothflow wins over .redun.
PROJECT_DIRNAMES = (PROJECT_DIRNAME, REDUN_DIRNAME)
# The configuration file a project folder may hold (one of them).
CONFIG_FILENAMES = (CONFIG_FILENAME, "slothflow.ini", REDUN_CONFIG_FILENAME)
# Environment variables naming the project folder, in order of precedence.
CONFIG_ENV_VARS = ("SLOTHFLOW_CONFIG", "SLOTHFLOW_PROJECT_DIR", "REDUN_CONFIG")
# redun's own database in its project folder: slothflow cannot share it and keeps its own next to it.
_REDUN_DEFAULT_DB_URIS = ("sqlite:///redun.db", "sqlite:///.redun/redun.db")


class Config:
    """Configuration sections, e.g. ``Config({"backend": {"db_uri": "sqlite:///x.db"}})``.

    As redun's ``Config``: ``read_string`` / ``read_path`` read INI or TOML text, ``config["executors"]``
    gives the dotted sections under a prefix as nested dicts, ``get_config_dict()`` the flat sections.
    """

    def __init__(self, config_dict: dict[str, Any] | None = None, config_dir: str | os.PathLike[str] | None = None,
                 configdir: str | os.PathLike[str] | None = None):
        self._sections: dict[str, dict[str, Any]] = {}
        folder = config_dir if config_dir is not None else configdir  # ``configdir``: redun's spelling
        self.config_dir = Path(folder) if folder is not None else None
        if config_dict:
            self.read_dict(config_dict)

    @property
    def configdir(self) -> str:
        """redun's name: the configuration folder (the working directory when there is none)."""
        return str(self.config_dir) if self.config_dir is not None else os.getcwd()

    def read_dict(self, config_dict: dict[str, Any]) -> None:
        for name, section in _flatten_sections(config_dict):
            self._sections.setdefault(name, {}).update(section)

    def read_string(self, text: str, format: str = "auto") -> None:
        """Read configuration text, TOML or INI (``format="auto"``: TOML when it parses as TOML)."""
        self.read_dict(parse_config_text(text, "<string>", format))

    def read_path(self, path: str | os.PathLike[str]) -> None:
        """Read a configuration file (``.toml``, or INI such as ``redun.ini``); its folder becomes the config
        folder, which relative paths in it (``db_uri``, ``context_file``) are relative to."""
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {file}: {exc.strerror or exc}") from exc
        data = parse_config_text(text, str(file), format_of(file.name))
        if file.name == REDUN_CONFIG_FILENAME:
            _keep_off_redun_database(data)
        self.config_dir = file.resolve().parent
        self.read_dict(data)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self._sections.get(name, {}))

    def sections(self) -> list[str]:
        return list(self._sections)

    def get(self, name: str, default: Any = None) -> Any:
        """A section (the dict itself), or the sections under a dotted prefix as nested dicts."""
        if name in self._sections:
            return self._sections[name]
        nested = self._nested(name)
        return nested if nested else default

    def __getitem__(self, name: str) -> dict[str, Any]:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __setitem__(self, name: str, section: dict[str, Any]) -> None:
        """Replace a section (or, for a mapping of sub-sections, the sections under ``name.``)."""
        for old in [n for n in self._sections if n == name or n.startswith(name + ".")]:
            del self._sections[old]
        self.read_dict({name: dict(section)})

    def __contains__(self, name: object) -> bool:
        return name in self._sections or (isinstance(name, str) and bool(self._nested(name)))

    def keys(self) -> list[str]:
        """The top-level names, as redun's nested view has them (``executors`` for ``executors.default``)."""
        return list(dict.fromkeys(name.split(".", 1)[0] for name in self._sections))

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return [(key, self[key]) for key in self.keys()]

    def _nested(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        start = prefix + "."
        for name, values in self._sections.items():
            if not name.startswith(start):
                continue
            node = out
            *parents, last = name[len(start):].split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, {}).update(values)
        return out

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._sections.items()}

    def get_config_dict(self, replace_config_dir: str | None = None) -> dict[str, dict[str, Any]]:
        """The flat sections (``{"executors.default": {...}}``), from which ``Config(...)`` rebuilds this
        configuration; ``replace_config_dir`` replaces this config folder inside string values."""
        out = self.to_dict()
        if replace_config_dir is None or self.config_dir is None:
            return out
        local = str(self.config_dir)
        return {name: {k: v.replace(local, replace_config_dir) if isinstance(v, str) else v
                       for k, v in values.items()}
                for name, values in out.items()}

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
        "automigrate": ConfigKey(bool, "migrate the schema when a run opens the database: unset, a new database "
                                 "and an older SQLite one; true, an older PostgreSQL one too; false, never "
                                 "(`slothflow db upgrade` does)", "unset"),
    },
    "scheduler": {
        "fail_fast": ConfigKey(bool, "stop submitting new calls after the first failure", False),
        "env_policy": ConfigKey(str, "whether package versions count towards reuse: ignore, minor or exact",
                                "ignore"),
        "context": ConfigKey(dict, "the execution context read by get_context (also a JSON string)", {}),
        "context_file": ConfigKey(str, "a JSON file holding the execution context (relative to the config "
                                  "folder), instead of context"),
        "job_status_interval": ConfigKey(float, "redun's seconds between job-status tables in its log; "
                                         "slothflow's progress display follows jobs as they change, so it "
                                         "changes nothing", 20.0, 0),
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
    "scratch": ConfigKey(str, "redun's scratch folder of its local executor; slothflow's local executors use "
                         "none, so it changes nothing"),
}
# [repos.NAME] sections (redun's named repositories of other projects).
REPO_SCHEMA: dict[str, ConfigKey] = {
    "config_dir": ConfigKey(str, "the other project's config folder (accepted; slothflow does not use it yet)"),
}
_DB_CREDENTIALS = ("slothflow reads no database credentials from its config: put the user in db_uri and the "
                   "password in PGPASSWORD or ~/.pgpass, which PostgreSQL's client reads")
# redun's keys and sections that slothflow cannot honour: each is an error saying why, never silently ignored.
REDUN_ONLY: dict[str, str] = {
    "backend.db_aws_secret_name": _DB_CREDENTIALS,
    "backend.db_username_env": _DB_CREDENTIALS,
    "backend.db_password_env": _DB_CREDENTIALS,
    "backend.max_value_size": "slothflow has no limit on value size: large values go to blob_dir",
    "backend.value_store_path": "slothflow's folder for large values is backend.blob_dir",
    "backend.value_store_min_size": "slothflow puts values over 64 KiB in blob_dir; the size is not configurable",
    "backend.db_retries": "slothflow does not retry database errors (SQLite waits backend.busy_timeout for a lock)",
    "backend.db_retries_backoff": "slothflow does not retry database errors",
    "backend.db_retries_backoff_max": "slothflow does not retry database errors",
    "scheduler.setup_scheduler": "slothflow has no setup_scheduler hook: build Scheduler(config=...) in Python",
    "scheduler.federated_configs": "slothflow has no federated tasks",
    "scheduler.boto_config": "slothflow does not configure boto; s3fs reads the usual AWS settings",
    "executors.NAME.class": "register the class with slothflow.executors.register_executor(TYPE, cls) and give "
                            "that TYPE as the section's type",
    "federated_tasks": "slothflow has no federated tasks",
}
# redun's executor types with no slothflow counterpart.
REDUN_EXECUTOR_TYPES = ("alias", "docker", "aws_batch", "aws_glue", "k8s", "gcp_batch")


def create_config_section(config_dict: dict[str, Any] | None = None) -> dict[str, Any]:
    """A configuration section (redun's helper): a plain dict of keys to values."""
    return dict(config_dict or {})


def _keep_off_redun_database(data: dict[str, Any]) -> None:
    """redun.ini's default database is redun's own (another schema): slothflow keeps its own cache next to
    it, ``slothflow.db`` in the same folder, and leaves redun's untouched."""
    backend = data.get("backend")
    if isinstance(backend, dict) and str(backend.get("db_uri", "")).strip() in _REDUN_DEFAULT_DB_URIS:
        backend["db_uri"] = f"sqlite:///{DB_FILENAME}"


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
        elif name.startswith("repos."):
            out._sections[name] = {key: _known(REPO_SCHEMA, name, key).check(f"{name}.{key}", v)
                                   for key, v in section.items()}
        elif name == "federated_tasks" or name.startswith("federated_tasks."):
            raise ConfigError(f"config section [{name}] cannot be used: {REDUN_ONLY['federated_tasks']}")
        elif name in SECTIONS:
            keys = SECTIONS[name]
            out._sections[name] = {key: _known(keys, name, key).check(f"{name}.{key}", v)
                                   for key, v in section.items()}
            if name == "scheduler" and "context_file" in out._sections[name]:
                _read_context_file(out._sections[name], config.config_dir)
            if name == "backend" and "db_uri" in out._sections[name]:
                _refuse_redun_database(out._sections[name]["db_uri"], config.config_dir)
        elif name in OPEN_SECTIONS:
            rule = OPEN_SECTIONS[name]
            out._sections[name] = {str(key): rule.check(f"{name}.{key}", v) for key, v in section.items()}
        else:
            valid = [*SECTIONS, *OPEN_SECTIONS, "executors.NAME", "repos.NAME"]
            hint = _did_you_mean(name, [*SECTIONS, *OPEN_SECTIONS])
            if name == "executors":
                hint = "; executors are configured in [executors.NAME] sections"
            raise ConfigError(f"unknown config section [{name}]{hint} (sections: {', '.join(valid)})")
    return out


def _read_context_file(scheduler: dict[str, Any], config_dir: Path | None) -> None:
    """``scheduler.context_file`` read into ``scheduler.context`` (redun allows one of the two)."""
    name = scheduler.pop("context_file")
    if "context" in scheduler:
        raise ConfigError("config scheduler.context and scheduler.context_file are both given: keep one")
    path = Path(name)
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    try:
        scheduler["context"] = read_json_object(path)
    except ValueError as exc:
        raise ConfigError(f"config scheduler.context_file: {exc}") from exc


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in a file (a context file); a ``ValueError`` saying what is wrong with it otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _refuse_redun_database(db_uri: str, config_dir: Path | None) -> None:
    """A SQLite ``db_uri`` naming a database redun made is an error: its schema is redun's, not ours."""
    if not db_uri.startswith("sqlite:///") or db_uri == "sqlite:///:memory:":
        return
    path = Path(db_uri[len("sqlite:///"):].split("?", 1)[0])
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    if not path.is_file():
        return
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'redun_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return  # not readable as SQLite here: the store reports it with its own message
    if found:
        raise ConfigError(f"config backend.db_uri = {db_uri!r} is redun's database ({path}); slothflow keeps its "
                          f"own cache and cannot share it: point db_uri at another file (e.g. sqlite:///{DB_FILENAME})")


def _known(keys: Mapping[str, ConfigKey], section: str, key: str) -> ConfigKey:
    rule = keys.get(key)
    if rule is None:
        generic = "executors.NAME." + key if section.startswith("executors.") else f"{section}.{key}"
        reason = REDUN_ONLY.get(generic)
        if reason is not None:
            raise ConfigError(f"config key {section}.{key} (from redun) cannot be used: {reason}")
        valid = sorted(keys)
        raise ConfigError(f"unknown config key {section}.{key}{_did_you_mean(key, valid)} "
                          f"(keys of [{section}]: {', '.join(valid) or 'none'})")
    return rule


def _check_executor(name: str, section: dict[str, Any], executor_types: Mapping[str, type] | None) -> dict[str, Any]:
    executor = name.split(".", 1)[1]
    if "class" in section:
        raise ConfigError(f"config key {name}.class (from redun) cannot be used: {REDUN_ONLY['executors.NAME.class']}")
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
    if cls is None and type_name in REDUN_EXECUTOR_TYPES:
        raise ConfigError(f"config {name}.type = {type_name!r} is a redun executor that slothflow does not have "
                          f"(types: {', '.join(sorted(executor_types))})")
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
    """The project folder: the one ``SLOTHFLOW_CONFIG``, ``SLOTHFLOW_PROJECT_DIR`` or ``REDUN_CONFIG`` names (in
    that order), else the nearest ``.slothflow`` or ``.redun`` folder at or above ``start`` (the working
    directory by default); in one folder ``.slothflow`` wins, so a project may move over from redun."""
    for var in CONFIG_ENV_VARS:
        env = os.environ.get(var)
        if env:
            return Path(env).absolute()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        for dirname in PROJECT_DIRNAMES:
            candidate = folder / dirname
            if candidate.is_dir():
                return candidate
    return None


def project_config_file(folder: Path) -> Path | None:
    """The configuration file in a project folder (``slothflow.toml``, ``slothflow.ini`` or ``redun.ini``)."""
    found = [folder / name for name in CONFIG_FILENAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise ConfigError(f"{folder} holds both {found[0].name} and {found[1].name}: keep one of them")
    return found[0] if found else None


def load_project_config(project_dir: Path | None = None, create: bool = True) -> Config:
    """The configuration of the current project, creating ``./.slothflow`` when there is none."""
    folder = project_dir or find_project_dir()
    if folder is None:
        if not create:
            raise ConfigError("no .slothflow (or .redun) project folder here or above: run `slothflow init`")
        folder = Path.cwd() / PROJECT_DIRNAME
        folder.mkdir(parents=True, exist_ok=True)
    config = Config(config_dir=folder)
    path = project_config_file(folder) if folder.is_dir() else None
    if path is not None:
        config.read_path(path)
        config.config_dir = folder
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
