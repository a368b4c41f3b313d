"""The scheduler: evaluates expressions into calls, reuses cached results, dispatches the rest to executors."""

from slothflow.scheduler._scheduler import Job, Plan, PlannedCall, RunStats, Scheduler, run

__all__ = ["Job", "Plan", "PlannedCall", "RunStats", "Scheduler", "run"]
