"""Dry runs: a :class:`Plan` of the calls that would run, each with the reasons ``slothflow explain`` would
give, and of the calls that would be reused."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slothflow.model._value import preview

if TYPE_CHECKING:
    from slothflow.provenance.explain import Reason
    from slothflow.scheduler._job import Job
    from slothflow.store import Store


@dataclass
class PlannedCall:
    """A call in a dry-run plan: ``reason`` says why it would run (or "cached"), ``reasons`` the same as data
    (:class:`~slothflow.Reason` items, as ``slothflow explain`` gives for a job that ran)."""

    task: str
    call: str
    reason: str
    eval_hash: str
    reasons: list[Reason] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [r.kind for r in self.reasons]


@dataclass
class Plan:
    """What ``Scheduler.run(expr, dryrun=True)`` found: the calls that would run and those reused.

    ``complete`` is False when the plan stops at calls whose result is needed to know what comes next (a
    task that would run and returns further expressions): what lies beyond them cannot be known without
    running them.
    """

    complete: bool
    result: Any = None
    would_run: list[PlannedCall] = field(default_factory=list)
    reused: list[PlannedCall] = field(default_factory=list)

    def would_run_counts(self) -> dict[str, int]:
        """``{task full name: number of calls that would run}``."""
        return dict(collections.Counter(c.task for c in self.would_run))

    def reused_counts(self) -> dict[str, int]:
        """``{task full name: number of calls that would be reused}``."""
        return dict(collections.Counter(c.task for c in self.reused))

    def reasons_for(self, task: str) -> list[Reason]:
        """Every reason given for the would-run calls of one task (full name or bare name)."""
        return [r for c in self.would_run if task in (c.task, c.task.rpartition(".")[2]) for r in c.reasons]

    def add_reused(self, job: Job) -> None:
        self.reused.append(PlannedCall(job.task.fullname, job.describe(), "cached", job.eval_hash))

    def add_would_run(self, job: Job, store: Store) -> None:
        reasons = miss_reasons(job, store)
        self.would_run.append(PlannedCall(job.task.fullname, job.describe(), "; ".join(r.message for r in reasons),
                                          job.eval_hash, reasons))

    def __str__(self) -> str:
        lines = [f"would run {len(self.would_run)} call(s), reuse {len(self.reused)}"
                 + ("" if self.complete else " (more calls may follow those that run)")]
        lines += [f"  run   {c.call}: {c.reason}" for c in self.would_run]
        lines += [f"  reuse {c.call}" for c in self.reused]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Plan(complete={self.complete}, would_run={len(self.would_run)}, reused={len(self.reused)})"


def miss_reasons(job: Job, store: Store) -> list[Reason]:
    """Why a dry-run call would run: the same diff against the store that ``slothflow explain`` makes."""
    from slothflow.provenance.explain import CallFacts, Reason, ReasonKind, call_reasons

    if not job.prov:
        return [Reason(ReasonKind.CACHE_OFF, "provenance is off for this task (prov=False): never reused")]
    previews: dict[str, str] = {}
    types_: dict[str, str] = {}
    for name, h in job.arg_hashes:
        value = job.arguments.get(name)
        previews[h] = preview(value)
        types_[h] = f"{type(value).__module__}.{type(value).__qualname__}"
    task = job.task
    facts = CallFacts(
        task_name=task.fullname, task_hash=task.hash, eval_hash=job.eval_hash, arguments=dict(job.arg_hashes),
        source=task.source, manifest=task.code_manifest,
        environment=json.loads(job.environment) if job.environment else None, reason=job.reason,
        args_hash=job.args_hash or None, previews=previews, type_names=types_,
    )
    return call_reasons(store, facts)
