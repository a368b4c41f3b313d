"""redun's ``redun.context`` import path: reading the execution context.

``get_context("a.b", default)`` is lazy (the scheduler fills it in from the context the call runs in);
``get_context_value(context, "a.b", default)`` reads a plain dict the same way.
"""

from slothflow.model._builtins import get_context
from slothflow.model._context import get_context_value, merge_contexts

__all__ = ["get_context", "get_context_value", "merge_contexts"]
