"""HTTP adapter for /v1/webhook_endpoints (the SDK's `client.webhooks`) and
/v1/webhook_event_types; `GET /v1/webhook_endpoints/{id}/deliveries` is an extension."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep
from app.pagination import page
from app.projects import ProjectRef
from app.settings import Settings
from app.webhooks import service
from app.webhooks.schemas import (
    EVENT_TYPES,
    WebhookEndpointCreate,
    WebhookEndpointDeleted,
    WebhookEndpointObject,
    WebhookEndpointTestResult,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookEventTypeList,
    WebhookRotateSecret,
    WebhookTest,
)

router = APIRouter()


@router.post("/webhook_endpoints", response_model=WebhookEndpointWithSecret)
def create_endpoint(
    body: WebhookEndpointCreate,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> WebhookEndpointWithSecret:
    endpoint = service.create_endpoint(session, settings, project, body)
    return WebhookEndpointWithSecret.from_row(endpoint)


@router.get("/webhook_endpoints")
def list_endpoints(
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> dict:
    rows, has_more = service.list_endpoints(session, project, limit=limit, after=after)
    return page([WebhookEndpointObject.from_row(row) for row in rows], has_more)


@router.get("/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpointObject)
def retrieve_endpoint(
    endpoint_id: str,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> WebhookEndpointObject:
    return WebhookEndpointObject.from_row(service.get_endpoint(session, project, endpoint_id))


@router.post("/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpointObject)
def update_endpoint(
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> WebhookEndpointObject:
    endpoint = service.update_endpoint(session, settings, project, endpoint_id, body)
    return WebhookEndpointObject.from_row(endpoint)


@router.delete("/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpointDeleted)
def delete_endpoint(
    endpoint_id: str,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> WebhookEndpointDeleted:
    return WebhookEndpointDeleted(id=service.delete_endpoint(session, project, endpoint_id))


@router.post(
    "/webhook_endpoints/{endpoint_id}/rotate_secret", response_model=WebhookEndpointWithSecret
)
def rotate_secret(
    endpoint_id: str,
    body: WebhookRotateSecret | None = None,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> WebhookEndpointWithSecret:
    keep_old = body.keep_old_secret_active_for_24_hours if body else False
    endpoint = service.rotate_secret(session, project, endpoint_id, keep_old=keep_old)
    return WebhookEndpointWithSecret.from_row(endpoint)


@router.post("/webhook_endpoints/{endpoint_id}/test", response_model=WebhookEndpointTestResult)
def test_endpoint(
    endpoint_id: str,
    body: WebhookTest,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> WebhookEndpointTestResult:
    status_code = service.send_test(session, settings, project, endpoint_id, body.event_type)
    return WebhookEndpointTestResult(
        event_type=body.event_type, status_code=status_code, webhook_endpoint_id=endpoint_id
    )


@router.get("/webhook_endpoints/{endpoint_id}/deliveries")
def list_deliveries(
    endpoint_id: str,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> dict:
    """The endpoint's delivery log (an OpenRFT extension): newest first, with every attempt."""
    deliveries, has_more = service.list_deliveries(
        session, project, endpoint_id, limit=limit, after=after
    )
    return page(deliveries, has_more)


@router.get("/webhook_event_types", response_model=WebhookEventTypeList)
def list_event_types(_project: ProjectRef = Depends(current_project)) -> WebhookEventTypeList:
    return WebhookEventTypeList(data=list(EVENT_TYPES))
