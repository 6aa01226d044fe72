"""Wire shapes of /v1/webhook_endpoints (the SDK's `client.webhooks`) and of the events sent.

`GET /v1/webhook_endpoints/{id}/deliveries` (the delivery log) is this service's extension; the
SDK has no method for it (`client.get(...)` reads it).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from app.tables import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from app.webhooks.signing import secret_hint

# the events this service sends: a fine-tuning job that ended (OpenAI's SDK has no paused event)
JOB_EVENT_TYPES: dict[str, str] = {
    "succeeded": "fine_tuning.job.succeeded",
    "failed": "fine_tuning.job.failed",
    "cancelled": "fine_tuning.job.cancelled",
}
EVENT_TYPES: tuple[str, ...] = tuple(JOB_EVENT_TYPES.values())


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_types: list[str]
    name: str
    url: str


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_types: list[str] | None = None
    name: str | None = None
    url: str | None = None


class WebhookRotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_old_secret_active_for_24_hours: bool = False


class WebhookTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str


class WebhookEndpointObject(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    created_at: int
    updated_at: int
    event_types: list[str]
    name: str
    url: str
    signing_secret_hint: str

    @classmethod
    def from_row(cls, row: WebhookEndpoint) -> WebhookEndpointObject:
        return cls(
            id=row.id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            event_types=list(row.event_types),
            name=row.name,
            url=row.url,
            signing_secret_hint=secret_hint(row.signing_secret),
        )


class WebhookEndpointWithSecret(WebhookEndpointObject):
    """Only the answers to create and rotate_secret carry the secret itself."""

    signing_secret: str

    @classmethod
    def from_row(cls, row: WebhookEndpoint) -> WebhookEndpointWithSecret:
        shown = WebhookEndpointObject.from_row(row).model_dump()
        return cls(**shown, signing_secret=row.signing_secret)


class WebhookEndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookEndpointTestResult(BaseModel):
    event_type: str
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    status_code: int
    success: Literal[True] = True
    webhook_endpoint_id: str


class WebhookEventTypeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[str]


def event_payload(event_id: str, event_type: str, created_at: int, job_id: str) -> str:
    """The body of a job event, serialized once: `{id, object, created_at, type, data: {id}}`."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": created_at,
            "type": event_type,
            "data": {"id": job_id},
        },
        separators=(",", ":"),
    )


class DeliveryAttemptObject(BaseModel):
    attempt: int
    created_at: int
    status_code: int | None
    error: str | None
    duration_ms: int

    @classmethod
    def from_row(cls, row: WebhookDeliveryAttempt) -> DeliveryAttemptObject:
        return cls(
            attempt=row.attempt,
            created_at=row.created_at,
            status_code=row.status_code,
            error=row.error,
            duration_ms=row.duration_ms,
        )


class DeliveryObject(BaseModel):
    """One event sent (or being sent) to one endpoint, with every attempt so far."""

    id: str
    object: Literal["webhook_endpoint.delivery"] = "webhook_endpoint.delivery"
    webhook_endpoint_id: str
    webhook_id: str
    event_id: str
    event_type: str
    # pending (a retry is due at next_attempt_at), delivered, or failed (retries gave up)
    status: str
    created_at: int
    next_attempt_at: int | None
    delivered_at: int | None
    last_status_code: int | None
    last_error: str | None
    attempts: list[DeliveryAttemptObject]

    @classmethod
    def from_row(
        cls, row: WebhookDelivery, attempts: list[WebhookDeliveryAttempt]
    ) -> DeliveryObject:
        return cls(
            id=row.id,
            webhook_endpoint_id=row.endpoint_id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            created_at=row.created_at,
            next_attempt_at=(
                int(row.next_attempt_at)
                if row.status == "pending" and row.next_attempt_at is not None
                else None
            ),
            delivered_at=row.delivered_at,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            attempts=[DeliveryAttemptObject.from_row(attempt) for attempt in attempts],
        )
