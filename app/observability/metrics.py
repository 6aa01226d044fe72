"""Prometheus metrics of the API: requests by route and status, and their latency."""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "openrft_api_requests_total",
    "HTTP requests answered by the API, by route template and status code.",
    ("method", "route", "status"),
)
LATENCY = Histogram(
    "openrft_api_request_duration_seconds",
    "Time from request to the end of the response, by route template.",
    ("method", "route"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
UNMATCHED = "unmatched"


def _route_template(scope: Scope) -> str:
    """The matched route's path template (ids stay out of the labels), with its router's prefix.

    The router leaves the matched route in the scope, but the route of an included router knows
    only its own path; the prefix is the literal part of the request path in front of it.
    """
    route = scope.get("route")
    template, pattern = getattr(route, "path", None), getattr(route, "path_regex", None)
    if template is None or pattern is None:
        return UNMATCHED
    path: str = scope["path"]
    for cut in (i for i, char in enumerate(path) if char == "/"):
        if pattern.match(path[cut:]):
            return path[:cut] + template
    return template


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = _route_template(scope)
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, with its content type: this process's, or,
    with several API processes (PROMETHEUS_MULTIPROC_DIR set), all of theirs summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
