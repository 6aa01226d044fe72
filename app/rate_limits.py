"""Per-key request rate limits: a token bucket per API key, reported in OpenAI's headers.

Off unless OPENRFT_RATE_LIMIT_REQUESTS_PER_MINUTE is set. Buckets live in the API process's
memory, so with several API processes each enforces the limit on the requests it serves.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

# plenty for the keys of one installation; the least recently used bucket goes beyond it
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # until the bucket is full again (OpenAI's x-ratelimit-reset-requests)
    reset_seconds: float
    # until the next request would be allowed
    retry_after_seconds: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": format_duration(self.reset_seconds),
        }


def format_duration(seconds: float) -> str:
    """OpenAI's style: `850ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


class RequestRateLimiter:
    def __init__(self, requests_per_minute: int) -> None:
        self.capacity = float(requests_per_minute)
        self.per_second = requests_per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, seen = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - seen) * self.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return Decision(
            allowed=allowed,
            limit=int(self.capacity),
            remaining=int(tokens),
            reset_seconds=(self.capacity - tokens) / self.per_second,
            retry_after_seconds=0.0 if allowed else (1.0 - tokens) / self.per_second,
        )
