"""The scheduler: evaluates expressions into calls, reuses cached results, dispatches the rest to executors."""

from slothflow.scheduler._job import Job
from slothflow.scheduler._plan import Plan, PlannedCall
from slothflow.scheduler._scheduler import RunStats, Scheduler, run

__all__ = ["Job", "Plan", "PlannedCall", "RunStats", "Scheduler", "run"]
