"""The delivery loop against a real HTTP receiver: signed, retried with backoff, never
following a redirect, re-checking the address before each attempt, giving up after the window."""

from __future__ import annotations

import random
import time

import openai
from sqlalchemy import select

from app.jobs import repository as jobs
from app.settings import Settings
from app.tables import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from app.webhooks import repository as webhooks
from app.webhooks.delivery import deliver_due, retry_delay
from app.webhooks.repository import Outcome
from tests.jobs.database import JobDatabase
from tests.webhooks.receiver import Receiver

SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")
CANCELLED = "fine_tuning.job.cancelled"


def _settings(db: JobDatabase, **changes: object) -> Settings:
    defaults = {
        "webhook_allow_private": True,
        "webhook_retry_base_seconds": 0.2,
        "webhook_timeout_seconds": 5.0,
    }
    return db.settings.model_copy(update={**defaults, **changes})


def _cancelled_job_for(db: JobDatabase, url: str) -> tuple[str, str]:
    """An endpoint at `url` and a job cancelled since; (endpoint secret, job id)."""
    with db.sessions.begin() as session:
        endpoint = webhooks.insert_endpoint(
            session, db.project.id, name="hooks", url=url, event_types=[CANCELLED]
        )
        secret = endpoint.signing_secret
    job_id = db.create_job()
    with db.sessions() as session:
        jobs.act(session, job_id, "cancel")
    return secret, job_id


def _delivery(db: JobDatabase) -> tuple[WebhookDelivery, list[WebhookDeliveryAttempt]]:
    with db.sessions() as session:
        [row] = session.scalars(select(WebhookDelivery))
        attempts = session.scalars(
            select(WebhookDeliveryAttempt).order_by(WebhookDeliveryAttempt.seq)
        ).all()
        return row, list(attempts)


def _deliver_until(
    db: JobDatabase, settings: Settings, attempts: int, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while _delivery(db)[0].attempts < attempts and time.monotonic() < deadline:
        deliver_due(db.sessions, settings)
        time.sleep(0.02)
    assert _delivery(db)[0].attempts == attempts


def test_a_delivery_is_signed_so_the_sdk_unwraps_it(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    secret, job_id = _cancelled_job_for(job_database, receiver.url("/hook"))
    assert deliver_due(job_database.sessions, _settings(job_database)) == 1
    [request] = receiver.at("/hook")
    event = SDK.webhooks.unwrap(request.body, request.headers, secret=secret)
    assert (event.type, event.data.id) == (CANCELLED, job_id)
    row, [attempt] = _delivery(job_database)
    assert request.headers["webhook-id"] == row.webhook_id and event.id == row.event_id
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 200, None)
    # delivered means done: the loop finds nothing more to send
    assert deliver_due(job_database.sessions, _settings(job_database)) == 0


def test_a_500_is_retried_after_a_backoff_with_the_same_id_and_body(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    receiver.answer("/hook", 500)
    secret, _job_id = _cancelled_job_for(job_database, receiver.url("/hook"))
    settings = _settings(job_database, webhook_retry_base_seconds=1.0)
    assert deliver_due(job_database.sessions, settings) == 1
    row, _ = _delivery(job_database)
    assert (row.status, row.last_status_code, row.last_error) == ("pending", 500, "answered 500")
    # not due again at once: the first retry waits 0.5-1 s (base 1 s, equal jitter)
    assert deliver_due(job_database.sessions, settings) == 0
    _deliver_until(job_database, settings, attempts=2)
    first, second = receiver.at("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    for request in (first, second):
        SDK.webhooks.unwrap(request.body, request.headers, secret=secret)
    row, attempts = _delivery(job_database)
    assert row.status == "delivered"
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 200)]


def test_a_redirect_is_not_followed(job_database: JobDatabase, receiver: Receiver) -> None:
    receiver.answer("/hook", 307, {"location": receiver.url("/elsewhere")})
    _cancelled_job_for(job_database, receiver.url("/hook"))
    deliver_due(job_database.sessions, _settings(job_database))
    row, _ = _delivery(job_database)
    assert row.status == "pending" and row.last_status_code == 307
    assert "not followed" in (row.last_error or "")
    assert receiver.at("/elsewhere") == []


def test_the_address_is_checked_again_before_each_attempt(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    # stored while private addresses were allowed; the operator has since turned that off
    _cancelled_job_for(job_database, receiver.url("/hook"))
    deliver_due(job_database.sessions, _settings(job_database, webhook_allow_private=False))
    assert receiver.at("/hook") == []
    row, [attempt] = _delivery(job_database)
    assert row.status == "pending" and attempt.status_code is None
    assert "loopback, private or link-local" in (attempt.error or "")


def test_it_gives_up_once_the_retry_window_is_over(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    for _ in range(5):
        receiver.answer("/hook", 503)
    _cancelled_job_for(job_database, receiver.url("/hook"))
    settings = _settings(
        job_database, webhook_retry_base_seconds=0.05, webhook_retry_window_seconds=0.3
    )
    deadline = time.monotonic() + 10
    while _delivery(job_database)[0].status == "pending" and time.monotonic() < deadline:
        deliver_due(job_database.sessions, settings)
        time.sleep(0.02)
    row, attempts = _delivery(job_database)
    assert row.status == "failed" and row.next_attempt_at is None
    assert 1 <= len(attempts) < 5 and all(a.status_code == 503 for a in attempts)
    assert deliver_due(job_database.sessions, settings) == 0


def test_an_unreachable_endpoint_is_logged_and_retried(job_database: JobDatabase) -> None:
    from tests.services import free_port

    _cancelled_job_for(job_database, f"http://127.0.0.1:{free_port()}/hook")
    deliver_due(job_database.sessions, _settings(job_database))
    row, [attempt] = _delivery(job_database)
    assert row.status == "pending" and attempt.status_code is None
    assert "could not connect" in (attempt.error or "")


def test_one_attempt_is_claimed_by_one_worker(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    _cancelled_job_for(job_database, receiver.url("/hook"))
    with job_database.sessions() as session:
        [delivery_id] = webhooks.due_deliveries(session, 10)
    with job_database.sessions.begin() as session:
        first = webhooks.claim(session, delivery_id, lease_seconds=60)
    with job_database.sessions.begin() as session:
        assert webhooks.claim(session, delivery_id, lease_seconds=60) is None
        assert webhooks.due_deliveries(session, 10) == []
    assert first is not None and first.attempt == 1


def test_retry_delays_double_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(0)
    for failed in range(1, 12):
        ceiling = min(3600.0, 10.0 * 2 ** (failed - 1))
        delays = [retry_delay(failed, 10.0, 3600.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered
    # with the defaults, about a day of retries is some 30 attempts, none closer than 5 s
    total, attempts = 0.0, 0
    while total < 86400:
        attempts += 1
        total += retry_delay(attempts, 10.0, 3600.0, rng)
    assert 25 <= attempts <= 60


def test_an_endpoint_deleted_during_an_attempt_ends_it_quietly(
    job_database: JobDatabase, receiver: Receiver
) -> None:
    _cancelled_job_for(job_database, receiver.url("/hook"))
    with job_database.sessions() as session:
        [delivery_id] = webhooks.due_deliveries(session, 10)
    with job_database.sessions.begin() as session:
        claimed = webhooks.claim(session, delivery_id, lease_seconds=60)
        assert claimed is not None
    with job_database.sessions.begin() as session:
        [endpoint] = session.scalars(select(WebhookEndpoint))
        webhooks.delete_endpoint(session, endpoint)
    with job_database.sessions.begin() as session:
        outcome = Outcome(200, None, 5)
        assert not webhooks.record_attempt(session, claimed, outcome, retry_in=None)
    with job_database.sessions() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
        assert session.scalars(select(WebhookDeliveryAttempt)).all() == []
