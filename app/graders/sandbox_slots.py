"""How many python-grader sandboxes may run at once: per process, and per grader (one
`graders/run` request, or one job's grader with all its sub-graders).

A pool takes one slot of each kind, waiting in that order, then as many more as it can get
without waiting. Every holder of both kinds grades without waiting on anything else, so the
slots always come back and a waiting pool cannot deadlock another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache


class SandboxSlots:
    """At most `limit` sandboxes of one holder running at once."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._free = threading.BoundedSemaphore(self.limit)

    def acquire(self, *, blocking: bool) -> bool:
        return self._free.acquire(blocking=blocking)

    def release(self) -> None:
        self._free.release()


@lru_cache(maxsize=4)
def process_slots(limit: int) -> SandboxSlots:
    """The slots every grader of this process shares (one set per configured limit)."""
    return SandboxSlots(limit)


@contextmanager
def running_slots(wanted: int, *kinds: SandboxSlots) -> Iterator[int]:
    """Hold at least one and at most `wanted` slots of every kind; yields how many."""
    with ExitStack() as held:
        for kind in kinds:
            kind.acquire(blocking=True)
            held.callback(kind.release)
        count = 1
        while count < wanted and _take_one_more(held, kinds):
            count += 1
        yield count


def _take_one_more(held: ExitStack, kinds: tuple[SandboxSlots, ...]) -> bool:
    taken: list[SandboxSlots] = []
    for kind in kinds:
        if not kind.acquire(blocking=False):
            for other in taken:
                other.release()
            return False
        taken.append(kind)
    for kind in taken:
        held.callback(kind.release)
    return True
