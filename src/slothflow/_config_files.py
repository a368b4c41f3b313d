"""Reading configuration text: TOML (slothflow's own) or INI (redun's ``redun.ini``) into plain sections.

INI follows redun: section names may be dotted (``[executors.batch]``), keys are case-sensitive, and
``${name}`` is replaced by a key of the same section, else of ``[DEFAULT]``, else an environment variable
(``${section:key}`` reaches into another section; ``$$`` is a dollar sign). ``[DEFAULT]`` only supplies
values for ``${...}``: its keys are not copied into every section, so they never become unknown keys.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Mapping, MutableMapping
from typing import Any

from slothflow._errors import ConfigError

_DEFAULTS = "DEFAULT"
_NO_DEFAULT_SECTION = "\x00slothflow: no default section"


class _Interpolation(configparser.ExtendedInterpolation):
    """``${name}``: the same section first, then ``[DEFAULT]``, then the environment."""

    def before_get(self, parser: MutableMapping[str, Mapping[str, str]], section: str, option: str, value: str,
                   defaults: Mapping[str, str]) -> str:
        assert isinstance(parser, configparser.ConfigParser)
        shared = dict(parser.items(_DEFAULTS, raw=True)) if parser.has_section(_DEFAULTS) else {}
        lookup = {**os.environ, **shared, **defaults}
        return super().before_get(parser, section, option, value, lookup)


def parse_ini(text: str, source: str = "<string>") -> dict[str, dict[str, str]]:
    """The sections of an INI text, values interpolated (strings, as INI has no types)."""
    parser = configparser.ConfigParser(interpolation=_Interpolation(), default_section=_NO_DEFAULT_SECTION)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive, as in redun
    try:
        parser.read_string(text, source=source)
        return {name: {key: parser.get(name, key) for key in parser.options(name)}
                for name in parser.sections() if name != _DEFAULTS}
    except configparser.Error as exc:
        raise ConfigError(f"{source}: invalid INI configuration: {exc}") from exc


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
