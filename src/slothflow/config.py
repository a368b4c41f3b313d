"""redun's ``redun.config`` import path: configuration objects.

``Config`` reads dicts, TOML or redun's INI (``read_dict``, ``read_string``, ``read_path``);
``create_config_section`` makes one section.
"""

from slothflow._config import Config, create_config_section
from slothflow._errors import ConfigError

__all__ = ["Config", "ConfigError", "create_config_section"]
