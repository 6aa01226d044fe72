"""Webhook endpoint use cases, scoped to the caller's project."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ids
from app.errors import APIError, bad_request, not_found
from app.projects import ProjectRef
from app.settings import Settings
from app.tables import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, now
from app.webhooks import repository
from app.webhooks.addresses import UnsafeURL, check_url
from app.webhooks.delivery import send
from app.webhooks.schemas import (
    EVENT_TYPES,
    DeliveryObject,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    event_payload,
)
from app.webhooks.signing import signed_headers

MAX_NAME_LENGTH = 256


def _check_name(name: str) -> str:
    if not name.strip():
        raise bad_request("name must not be empty.", param="name")
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request(f"name must be at most {MAX_NAME_LENGTH} characters.", param="name")
    return name


def _check_event_types(event_types: list[str]) -> list[str]:
    if not event_types:
        raise bad_request("event_types must name at least one event type.", param="event_types")
    unknown = [event_type for event_type in event_types if event_type not in EVENT_TYPES]
    if unknown:
        raise bad_request(
            f"event_types: this service does not send {', '.join(map(repr, unknown))}; "
            f"it sends {', '.join(EVENT_TYPES)}.",
            param="event_types",
        )
    return list(dict.fromkeys(event_types))


def _check_url(url: str, settings: Settings) -> str:
    try:
        check_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeURL as refused:
        raise bad_request(refused.message, param="url", code="invalid_url") from None
    return url


def create_endpoint(
    session: Session, settings: Settings, project: ProjectRef, body: WebhookEndpointCreate
) -> WebhookEndpoint:
    name = _check_name(body.name)
    event_types = _check_event_types(body.event_types)
    url = _check_url(body.url, settings)
    endpoint = repository.insert_endpoint(
        session, project.id, name=name, url=url, event_types=event_types
    )
    session.commit()
    return endpoint


def get_endpoint(
    session: Session, project: ProjectRef, endpoint_id: str, *, param: str | None = None
) -> WebhookEndpoint:
    endpoint = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.project_id == project.id
        )
    ).one_or_none()
    if endpoint is None:
        raise not_found("webhook_endpoint", endpoint_id, param=param)
    return endpoint


def list_endpoints(
    session: Session, project: ProjectRef, *, limit: int, after: str | None
) -> tuple[list[WebhookEndpoint], bool]:
    """Newest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.project_id == project.id)
    if after:
        cursor = get_endpoint(session, project, after, param="after")
        query = query.where(WebhookEndpoint.seq < cursor.seq)
    rows = list(session.scalars(query.order_by(WebhookEndpoint.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def update_endpoint(
    session: Session,
    settings: Settings,
    project: ProjectRef,
    endpoint_id: str,
    body: WebhookEndpointUpdate,
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, project, endpoint_id)
    repository.update_endpoint(
        session,
        endpoint,
        name=None if body.name is None else _check_name(body.name),
        url=None if body.url is None else _check_url(body.url, settings),
        event_types=None if body.event_types is None else _check_event_types(body.event_types),
    )
    session.commit()
    return endpoint


def delete_endpoint(session: Session, project: ProjectRef, endpoint_id: str) -> str:
    endpoint = get_endpoint(session, project, endpoint_id)
    repository.delete_endpoint(session, endpoint)
    session.commit()
    return endpoint_id


def rotate_secret(
    session: Session, project: ProjectRef, endpoint_id: str, *, keep_old: bool
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, project, endpoint_id)
    repository.rotate_secret(session, endpoint, keep_old=keep_old)
    session.commit()
    return endpoint


def send_test(
    session: Session, settings: Settings, project: ProjectRef, endpoint_id: str, event_type: str
) -> int:
    """Send one sample event of `event_type` now (no retries) and log it; the endpoint's status
    code. An endpoint that gives no answer at all is a 400 saying why."""
    endpoint = get_endpoint(session, project, endpoint_id)
    if event_type not in EVENT_TYPES:
        raise bad_request(
            f"event_type: this service does not send {event_type!r}; it sends "
            f"{', '.join(EVENT_TYPES)}.",
            param="event_type",
        )
    webhook_id, event_id = ids.new_webhook_message_id(), ids.new_webhook_event_id()
    # a sample job id: no job of this project has it
    payload = event_payload(event_id, event_type, now(), ids.new_job_id())
    session.commit()  # no transaction stays open while the endpoint answers
    timestamp = int(time.time())
    headers = signed_headers(
        repository.signing_secrets(endpoint, timestamp), webhook_id, timestamp, payload
    )
    outcome = send(
        endpoint.url, payload, headers,
        allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout_seconds,
    )  # fmt: skip
    repository.record_test(session, endpoint, webhook_id, event_id, event_type, payload, outcome)
    session.commit()
    if outcome.status_code is None:
        raise APIError(
            400,
            f"The test event could not be delivered to {endpoint.url}: {outcome.error}",
            code="webhook_delivery_failed",
        )
    return outcome.status_code


def list_deliveries(
    session: Session, project: ProjectRef, endpoint_id: str, *, limit: int, after: str | None
) -> tuple[list[DeliveryObject], bool]:
    """The endpoint's delivery log, newest first, each delivery with its attempts."""
    endpoint = get_endpoint(session, project, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if after:
        cursor = session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.id == after, WebhookDelivery.endpoint_id == endpoint.id
            )
        ).one_or_none()
        if cursor is None:
            raise not_found("webhook_delivery", after, param="after")
        query = query.where(WebhookDelivery.seq < cursor.seq)
    rows = list(session.scalars(query.order_by(WebhookDelivery.seq.desc()).limit(limit + 1)))
    rows, has_more = rows[:limit], len(rows) > limit
    attempts: dict[str, list[WebhookDeliveryAttempt]] = {row.id: [] for row in rows}
    if rows:
        for attempt in session.scalars(
            select(WebhookDeliveryAttempt)
            .where(WebhookDeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookDeliveryAttempt.seq)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [DeliveryObject.from_row(row, attempts[row.id]) for row in rows], has_more
