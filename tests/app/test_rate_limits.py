"""Per-key request rate limits: a token bucket per key, OpenAI's x-ratelimit-* headers, 429s."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient

from app.db import session_scope
from app.keys.service import create_key
from app.main import create_app
from app.migrate import upgrade
from app.rate_limits import RequestRateLimiter, format_duration
from app.settings import Settings


def test_bucket_refills_at_the_configured_rate() -> None:
    limiter = RequestRateLimiter(requests_per_minute=3)
    decisions = [limiter.take("k", now=100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after_seconds == pytest.approx(20.0)  # one token per 20 s
    assert limiter.take("other", now=100.0).allowed  # each key has its own bucket
    assert not limiter.take("k", now=119.0).allowed
    assert limiter.take("k", now=120.5).allowed


def test_format_duration_reads_like_openai() -> None:
    assert [format_duration(s) for s in (0.25, 1.5, 20, 360)] == ["250ms", "1.5s", "20s", "6m0s"]


@pytest.fixture
def limited_app(tmp_path: Path) -> tuple[TestClient, str, str]:
    settings = Settings(data_dir=tmp_path, rate_limit_requests_per_minute=3)
    upgrade(settings)
    with session_scope(settings) as session:
        first, second = create_key(session, "a"), create_key(session, "b")
    return TestClient(create_app(settings)), first, second


def test_over_the_limit_is_a_429_the_sdk_understands(
    limited_app: tuple[TestClient, str, str],
) -> None:
    http, first, second = limited_app
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key=first, http_client=http, max_retries=0
    )
    raw = client.files.with_raw_response.list()
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    client.models.list()
    client.files.list()
    with pytest.raises(openai.RateLimitError) as refused:
        client.files.list()
    assert refused.value.code == "rate_limit_exceeded"
    assert "limit 3 per minute" in refused.value.message
    assert refused.value.response.headers["retry-after"] == "20"
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    # another key of the installation is not held back
    other = openai.OpenAI(
        base_url="http://testserver/v1", api_key=second, http_client=http, max_retries=0
    )
    assert other.files.list().data == []


def test_no_limit_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    with session_scope(settings) as session:
        key = create_key(session, "a")
    http = TestClient(create_app(settings))
    for _ in range(5):
        response = http.get("/v1/files", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert "x-ratelimit-limit-requests" not in response.headers
