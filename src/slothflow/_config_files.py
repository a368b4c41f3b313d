"""Reading configuration text: TOML (slothflow's own) or INI (redun's ``redun.ini``) into plain sections.

INI follows redun: section names may be dotted (``[executors.batch]``), keys are case-sensitive, and
``${name}`` is replaced by a key of the same section, else of ``[DEFAULT]``, else an environment variable
(``${section:key}`` reaches into another section; ``$$`` is a dollar sign). ``[DEFAULT]`` only supplies
values for ``${...}``: its keys are not copied into every section, so they never become unknown keys.
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from typing import Any

from slothflow._errors import ConfigError

_DEFAULTS = "DEFAULT"
_NO_DEFAULT_SECTION = "\x00slothflow: no default section"
_REFERENCE = re.compile(r"\$(\$|\{([^}]*)\})")
_MAX_DEPTH = 10


def parse_ini(text: str, source: str = "<string>") -> dict[str, dict[str, str]]:
    """The sections of an INI text, values interpolated (strings, as INI has no types)."""
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULT_SECTION)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive, as in redun
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: invalid INI configuration: {exc}") from exc
    raw = {name: dict(parser.items(name)) for name in parser.sections()}
    defaults = raw.pop(_DEFAULTS, {})
    return {name: {key: _interpolate(raw, defaults, name, key, value, source, 0) for key, value in values.items()}
            for name, values in raw.items()}


def _interpolate(raw: dict[str, dict[str, str]], defaults: dict[str, str], section: str, key: str, value: str,
                 source: str, depth: int) -> str:
    """``value`` with ``${name}`` (this section, then [DEFAULT], then the environment), ``${section:name}``
    and ``$$`` replaced, recursively."""
    if "$" not in value:
        return value
    if depth >= _MAX_DEPTH:
        raise ConfigError(f"{source}: [{section}] {key}: ${{...}} references nest more than {_MAX_DEPTH} deep "
                          "(a reference to itself?)")

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        if ":" in name:
            other, _, other_key = name.partition(":")
            values = defaults if other == _DEFAULTS else raw.get(other, {})
            if other_key in values:
                return _interpolate(raw, defaults, other, other_key, values[other_key], source, depth + 1)
            if other_key in defaults and other in raw:
                return _interpolate(raw, defaults, other, other_key, defaults[other_key], source, depth + 1)
            raise ConfigError(f"{source}: [{section}] {key} = {value!r}: no key {other_key!r} in [{other}]")
        for values in (raw.get(section, {}), defaults):
            if name in values:
                return _interpolate(raw, defaults, section, name, values[name], source, depth + 1)
        if name in os.environ:
            return os.environ[name]
        raise ConfigError(f"{source}: [{section}] {key} = {value!r}: ${{{name}}} is not a key of [{section}] or "
                          "[DEFAULT], nor an environment variable")

    return _REFERENCE.sub(replace, value)


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc


def parse_config_text(text: str, source: str = "<string>", format: str = "auto") -> dict[str, Any]:
    """``text`` as ``format`` (``toml``, ``ini``, or ``auto``: TOML if it parses as TOML, else INI)."""
    if format == "toml":
        return parse_toml(text, source)
    if format == "ini":
        return parse_ini(text, source)
    if format != "auto":
        raise ConfigError(f"unknown configuration format {format!r}: use 'toml', 'ini' or 'auto'")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as toml_error:
        try:
            return parse_ini(text, source)
        except ConfigError as ini_error:
            raise ConfigError(f"{source} is neither valid TOML ({toml_error}) nor valid INI "
                              f"({ini_error.__cause__})") from ini_error


def format_of(filename: str) -> str:
    """The format a configuration file's name says (``auto`` when it says nothing)."""
    lowered = filename.lower()
    if lowered.endswith(".toml"):
        return "toml"
    if lowered.endswith((".ini", ".cfg")):
        return "ini"
    return "auto"
