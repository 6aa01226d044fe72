"""Bounded concurrency for `graders/run`: slow graders never take the API's shared threads.

A python grader may run for minutes and a model grader waits on a model; each run takes one
of `total` slots of a dedicated thread pool, and one project holds at most `per_project` of
them. A run over either bound is refused at once (429) rather than queued, so that one
project's burst cannot make everyone else's requests wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GraderRunLimiter:
    def __init__(self, total: int, per_project: int) -> None:
        self.total = total
        self.per_project = per_project
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=total, thread_name_prefix="grader-run")

    def _acquire(self, project_id: str) -> None:
        with self._lock:
            if self._running[project_id] >= self.per_project:
                raise Busy(f"this project already has {self.per_project} grader runs in progress")
            if sum(self._running.values()) >= self.total:
                raise Busy(f"the server is running its maximum of {self.total} grader runs")
            self._running[project_id] += 1

    def _release(self, project_id: str) -> None:
        with self._lock:
            self._running[project_id] -= 1
            if self._running[project_id] <= 0:
                del self._running[project_id]

    def running(self, project_id: str) -> int:
        with self._lock:
            return self._running[project_id]

    async def run(self, project_id: str, work: Callable[[], T]) -> T:
        """Runs `work` in a slot; raises Busy when none is free for this project.

        The slot is released when the work ends, even if the client went away before: a
        disconnect cannot free a slot whose sandbox is still running.
        """
        self._acquire(project_id)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        except BaseException:
            self._release(project_id)
            raise
        future.add_done_callback(lambda _: self._release(project_id))
        return await asyncio.shield(future)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
