"""Every built-in executor passes the importable conformance suite (``slothflow.testing``)."""

from __future__ import annotations

from slothflow.executors import Executor, InlineExecutor, ProcessExecutor, ThreadExecutor
from slothflow.testing import ExecutorConformance


class TestInline(ExecutorConformance):
    concurrent = False
    cancellable = False

    def make_executor(self) -> Executor:
        return InlineExecutor("inline", {})


class TestThreads(ExecutorConformance):
    def make_executor(self) -> Executor:
        return ThreadExecutor("threads", {"max_workers": 2})


class TestProcesses(ExecutorConformance):
    def make_executor(self) -> Executor:
        return ProcessExecutor("processes", {"max_workers": 2})
