"""Progress of a running workflow: a live rich panel on a terminal, plain log lines otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from slothflow.scheduler import Job, RunStats

_STYLE = {"ran": "green", "cached": "cyan", "failed": "bold red", "running": "yellow"}


class Progress:
    """Receives scheduler events (in the scheduler's thread) and shows them."""

    def __init__(self, console: Console, live: bool | None = None, slowest: int = 5) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self.slowest = slowest
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float]] = {}
        self._stats = RunStats()
        self._started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self.render)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, event: str, job: Job, stats: RunStats) -> None:
        with self._lock:
            self._stats = stats
            if event == "started":
                self._running[job.id] = (job.describe(), time.monotonic())
            else:
                self._running.pop(job.id, None)
        if not self.live_mode and event not in ("started", "waiting"):
            status = "ran" if event == "done" else event
            duration = f"{job.duration:7.2f}s" if status != "cached" else "        "
            self.console.file.write(f"[slothflow] {status:<6} {duration} {job.describe()}\n")

    def render(self) -> Any:
        with self._lock:
            stats = self._stats
            running = sorted(self._running.values(), key=lambda item: item[1])[: self.slowest]
        now = time.monotonic()
        summary = Text.assemble(
            ("jobs  ", "bold"),
            (f"ran {stats.ran}", _STYLE["ran"]), "  ",
            (f"cached {stats.cached}", _STYLE["cached"]), "  ",
            (f"running {stats.running}", _STYLE["running"]), "  ",
            (f"failed {stats.failed}", _STYLE["failed"] if stats.failed else ""), "  ",
            (f"{now - self._started:6.1f}s", "dim"),
        )
        if not running:
            return summary
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        table.add_column("slowest running", overflow="ellipsis", no_wrap=True, max_width=100)
        table.add_column("for", justify="right")
        for describe, started in running:
            table.add_row(describe, f"{now - started:.1f}s")
        return Group(summary, table)

    def summary(self, elapsed: float) -> str:
        s = self._stats
        return f"{s.ran} ran, {s.cached} cached, {s.failed} failed in {elapsed:.2f}s"
