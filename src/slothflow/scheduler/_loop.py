"""The event loop of one run, in the caller's thread (as in dask's ``local.py``).

Work items go through a FIFO (``ready``) instead of the call stack, so expressions of any depth are evaluated
without recursion. A :class:`~slothflow.scheduler._job.Cell`'s waiters are queued here, never called in
place. Each round: drain the ready queue, answer the round's cache lookups in one batch, commit the store's
buffered writes and submit the round's jobs (never the other way round: no job starts before the results it
consumes are durable), then wait for a finished job, a retry that is due, or a timeout.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slothflow._errors import SlothflowError
from slothflow.scheduler._job import ERROR, OK, PENDING, Cell

if TYPE_CHECKING:
    from slothflow.scheduler._run import Run

FLUSH_INTERVAL = 0.5  # seconds: the most finished work a kill -9 can lose


class Loop:
    """The ready queue and the operations on cells."""

    def __init__(self) -> None:
        self.ready: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = collections.deque()

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        self.ready.append((fn, args))

    def then(self, cell: Cell, fn: Callable[[Cell], None]) -> None:
        if cell.waiters is None:
            self.ready.append((fn, (cell,)))
        else:
            cell.waiters.append(fn)

    def settle(self, cell: Cell, state: int, value: Any) -> None:
        if cell.state != PENDING:
            return
        cell.state, cell.value = state, value
        waiters, cell.waiters = cell.waiters, None
        if waiters:
            ready = self.ready
            for fn in waiters:
                ready.append((fn, (cell,)))

    def resolve(self, cell: Cell, value: Any) -> None:
        self.settle(cell, OK, value)

    def fail(self, cell: Cell, error: BaseException) -> None:
        self.settle(cell, ERROR, error)

    def forward(self, src: Cell, dst: Cell) -> None:
        self.then(src, lambda c: self.settle(dst, c.state, c.value))

    def drain(self) -> None:
        ready = self.ready
        while ready:
            fn, args = ready.popleft()
            fn(*args)


def run_until_settled(run: Run, root: Cell) -> None:
    """Drive ``run`` until ``root`` is settled or nothing more can happen."""
    loop, reuse, dispatch, store = run.loop, run.reuse, run.dispatch, run.store
    while True:
        loop.drain()
        if reuse.has_lookups():
            reuse.lookup_batch()
            continue
        if dispatch.has_submissions():
            if store.pending:
                store.flush()
            dispatch.submit_all()
        elif store.pending and time.monotonic() - store.last_flush > FLUSH_INTERVAL:
            store.flush()
        if loop.ready:
            continue
        if not dispatch.busy():
            if dispatch.has_submissions():
                continue
            dispatch.check_stuck()
            break
        dispatch.wait(FLUSH_INTERVAL)
    if root.state == PENDING and not run.dryrun:
        waiting = run.reuse.pending_jobs()
        if waiting:
            shown = ", ".join(j.describe() for j in waiting[:5]) + (", ..." if len(waiting) > 5 else "")
            raise SlothflowError(
                f"the workflow cannot finish: {len(waiting)} call(s) wait for their own result "
                f"({shown}). A task returned an expression that calls itself with the same arguments; "
                "make the recursion reach a base case."
            )
        raise SlothflowError("the scheduler stopped before the workflow's value was known (internal error)")
