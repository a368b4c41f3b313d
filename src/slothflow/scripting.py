"""redun's ``redun.scripting`` import path: shell-script tasks and their error."""

from slothflow._errors import ScriptError
from slothflow.files._script import script

__all__ = ["ScriptError", "script"]
