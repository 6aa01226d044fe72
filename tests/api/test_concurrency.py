"""A burst of clients against a real server: no request waits out the connection pool.

FastAPI hops between threads within one request (dependencies, the route, serialising the
response); a request holding a pooled connection across a hop, while every thread waits for a
connection, used to stall the whole server for the pool's 30 s timeout and then answer 500s.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.services import LiveService

CLIENTS = 100
SECONDS = 8.0
PATHS = ("/models", "/fine_tuning/jobs", "/files")


@pytest.mark.slow
def test_a_hundred_clients_get_answers_without_stalls_or_errors(service: LiveService) -> None:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        headers = {"authorization": f"Bearer {service.api_key}"}
        with httpx.Client(base_url=service.base_url, headers=headers, timeout=60) as http:
            deadline, n = time.monotonic() + SECONDS, 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    status = http.get(PATHS[n % len(PATHS)]).status_code
                    failure = None if status == 200 else str(status)
                except httpx.HTTPError as error:
                    failure = type(error).__name__
                with lock:
                    latencies.append(time.monotonic() - started)
                    if failure:
                        failures.append(failure)
                n += 1

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # a stalled server shows as requests waiting out the 30 s pool timeout
    assert max(latencies) < 15.0, f"slowest request took {max(latencies):.1f} s"
    assert len(latencies) > CLIENTS * 2
