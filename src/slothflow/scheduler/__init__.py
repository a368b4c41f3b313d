"""The scheduler: evaluates expressions into calls, reuses cached results, dispatches the rest to executors."""

from slothflow.model._builtins import apply_tags, catch, catch_all, cond, throw
from slothflow.scheduler._job import Job
from slothflow.scheduler._plan import Plan, PlannedCall
from slothflow.scheduler._scheduler import RunStats, Scheduler, run

# The built-ins redun users import from ``redun.scheduler`` (cond, catch, ...) are re-exported here too.
__all__ = ["Job", "Plan", "PlannedCall", "RunStats", "Scheduler", "apply_tags", "catch", "catch_all", "cond", "run",
           "throw"]
