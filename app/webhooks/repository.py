"""The only writer of webhook endpoints, deliveries (the outbox) and delivery attempts.

`enqueue_job_event` is called by the jobs repository inside the transaction that moves a job to
a final status, so an event is sent if and only if that move committed. The delivery loop then
takes due rows with a compare-and-set claim (several workers may run it): a claim raises the
row's attempt count, which fences the result write, and pushes `next_attempt_at` out by a lease,
so a worker that dies mid-delivery leaves the row to be taken again (at least once).

Functions take a session and never commit; the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import ids
from app.db import db_clock
from app.tables import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, now
from app.webhooks.schemas import JOB_EVENT_TYPES, event_payload

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# a rotated-out secret kept active signs beside the new one this long
KEEP_OLD_SECRET_SECONDS = 24 * 3600


# --- endpoints ----------------------------------------------------------------------------


def insert_endpoint(
    session: Session, project_id: str, *, name: str, url: str, event_types: list[str]
) -> WebhookEndpoint:
    created = now()
    endpoint = WebhookEndpoint(
        id=ids.new_webhook_endpoint_id(),
        project_id=project_id,
        name=name,
        url=url,
        event_types=event_types,
        signing_secret=ids.new_webhook_secret(),
        created_at=created,
        updated_at=created,
    )
    session.add(endpoint)
    return endpoint


def update_endpoint(
    session: Session,
    endpoint: WebhookEndpoint,
    *,
    name: str | None,
    url: str | None,
    event_types: list[str] | None,
) -> bool:
    """Change what is given; `updated_at` moves only when something actually changed."""
    changes = {
        key: value
        for key, value in (("name", name), ("url", url), ("event_types", event_types))
        if value is not None and value != getattr(endpoint, key)
    }
    for key, value in changes.items():
        setattr(endpoint, key, value)
    if changes:
        endpoint.updated_at = now()
    session.flush()
    return bool(changes)


def rotate_secret(session: Session, endpoint: WebhookEndpoint, *, keep_old: bool) -> None:
    """A new signing secret; the old one signs beside it for a day when `keep_old`."""
    rotated = now()
    endpoint.previous_signing_secret = endpoint.signing_secret if keep_old else None
    endpoint.previous_secret_expires_at = rotated + KEEP_OLD_SECRET_SECONDS if keep_old else None
    endpoint.signing_secret = ids.new_webhook_secret()
    endpoint.updated_at = rotated
    session.flush()


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries (pending ones are not sent any more)."""
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))


def signing_secrets(endpoint: WebhookEndpoint, at: int) -> list[str]:
    """The secrets a message is signed with at time `at`: the current one, and the previous one
    while it is kept active."""
    secrets = [endpoint.signing_secret]
    if (
        endpoint.previous_signing_secret
        and endpoint.previous_secret_expires_at is not None
        and at < endpoint.previous_secret_expires_at
    ):
        secrets.append(endpoint.previous_signing_secret)
    return secrets


# --- the outbox ---------------------------------------------------------------------------


def enqueue_job_event(session: Session, project_id: str, job_id: str, status: str) -> int:
    """One delivery per endpoint of the project subscribed to the job's final `status`, due now,
    in the caller's transaction; how many were written. One event id and one `webhook-id` for all
    of them."""
    event_type = JOB_EVENT_TYPES.get(status)
    if event_type is None:
        return 0
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.project_id == project_id)
        .order_by(WebhookEndpoint.seq)
    ).all()
    subscribed = [endpoint for endpoint in endpoints if event_type in endpoint.event_types]
    if not subscribed:
        return 0
    event_id, webhook_id, created = ids.new_webhook_event_id(), ids.new_webhook_message_id(), now()
    payload = event_payload(event_id, event_type, created, job_id)
    for endpoint in subscribed:
        session.add(
            WebhookDelivery(
                id=ids.new_webhook_delivery_id(),
                endpoint_id=endpoint.id,
                webhook_id=webhook_id,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                status=PENDING,
                attempts=0,
                created_at=created,
            )
        )
    session.flush()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .values(next_attempt_at=db_clock())
    )
    return len(subscribed)


def due_deliveries(session: Session, limit: int) -> list[str]:
    """Pending deliveries whose next attempt is due, longest waiting first."""
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= db_clock())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class Claim:
    """One attempt a worker took: what to send, where, and the fence for writing its result."""

    delivery_id: str
    attempt: int
    url: str
    webhook_id: str
    payload: str
    secrets: list[str]
    # the database clock when the attempt was taken, and the event's age then (seconds)
    clock: float
    age_seconds: float


def claim(session: Session, delivery_id: str, lease_seconds: float) -> Claim | None:
    """Take one attempt of a due delivery; None when another worker took it first."""
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if delivery is None or delivery.status != PENDING:
        return None
    attempt = delivery.attempts + 1
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.attempts == delivery.attempts,
            WebhookDelivery.next_attempt_at <= db_clock(),
        )
        .values(attempts=attempt, next_attempt_at=db_clock() + lease_seconds)
    )
    if result.rowcount != 1:
        return None
    endpoint = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id == delivery.endpoint_id)
    ).one()
    clock = float(session.scalar(select(db_clock())) or 0.0)
    return Claim(
        delivery_id=delivery.id,
        attempt=attempt,
        url=endpoint.url,
        webhook_id=delivery.webhook_id,
        payload=delivery.payload,
        secrets=signing_secrets(endpoint, now()),
        clock=clock,
        age_seconds=max(0.0, clock - delivery.created_at),
    )


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or an error before any answer."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def record_attempt(
    session: Session, claimed: Claim, outcome: Outcome, retry_in: float | None
) -> bool:
    """Log the attempt and settle the delivery: delivered, due again in `retry_in` seconds, or
    failed when `retry_in` is None. False when the attempt had lost its claim (another worker
    took the row over; the attempt is logged all the same) or the endpoint was deleted."""
    values: dict[str, object] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        values.update(status=DELIVERED, delivered_at=now(), next_attempt_at=None)
    elif retry_in is None:
        values.update(status=FAILED, next_attempt_at=None)
    else:
        values.update(next_attempt_at=db_clock() + retry_in)
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claimed.delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.attempts == claimed.attempt,
        )
        .values(**values)
    )
    still_there = result.rowcount == 1 or session.scalar(
        select(WebhookDelivery.seq).where(WebhookDelivery.id == claimed.delivery_id)
    )
    if still_there:
        session.add(
            WebhookDeliveryAttempt(
                delivery_id=claimed.delivery_id,
                attempt=claimed.attempt,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
    return result.rowcount == 1


def record_test(
    session: Session, endpoint: WebhookEndpoint, webhook_id: str, event_id: str,
    event_type: str, payload: str, outcome: Outcome,
) -> None:  # fmt: skip
    """A test message (sent once, never retried) in the endpoint's delivery log."""
    delivery = WebhookDelivery(
        id=ids.new_webhook_delivery_id(),
        endpoint_id=endpoint.id,
        webhook_id=webhook_id,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        status=DELIVERED if outcome.delivered else FAILED,
        attempts=1,
        next_attempt_at=None,
        delivered_at=now() if outcome.delivered else None,
        last_status_code=outcome.status_code,
        last_error=outcome.error,
    )
    session.add(delivery)
    session.flush()
    session.add(
        WebhookDeliveryAttempt(
            delivery_id=delivery.id,
            attempt=1,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
