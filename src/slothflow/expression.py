"""redun's ``redun.expression`` import path: the lazy expression classes a task call builds."""

from slothflow.model._expression import (
    Expression,
    SchedulerExpression,
    SimpleExpression,
    TaskExpression,
    ValueExpression,
)

__all__ = ["Expression", "SchedulerExpression", "SimpleExpression", "TaskExpression", "ValueExpression"]
