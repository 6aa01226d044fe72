"""HTTP adapter for /v1/uploads: create, add parts, complete, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.auth import current_project, get_session, get_settings_dep
from app.errors import bad_request
from app.files.routes import CHUNK_BYTES
from app.projects import ProjectRef
from app.request_body import form_within
from app.settings import Settings
from app.storage import Storage
from app.uploads import service as upload_service
from app.uploads.schemas import (
    UploadCompleteRequest,
    UploadCreateRequest,
    UploadObject,
    UploadPartObject,
)

router = APIRouter(prefix="/uploads")


def _storage(request: Request) -> Storage:
    return request.app.state.storage


@router.post("", response_model=UploadObject)
def create_upload(
    body: UploadCreateRequest,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> UploadObject:
    return UploadObject.from_row(upload_service.create_upload(session, settings, project, body))


@router.post("/{upload_id}/parts", response_model=UploadPartObject)
async def add_part(
    upload_id: str,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> UploadPartObject:
    too_large = bad_request(
        f"The part is too large: a part holds at most {settings.upload_part_max_bytes} bytes.",
        param="data",
        code="part_too_large",
    )
    # the form parser spools the part to a temporary file, never whole in memory
    form = await form_within(
        request, settings.upload_part_max_bytes, too_large, max_files=1, max_fields=4
    )
    data = form.get("data")
    if not isinstance(data, UploadFile):
        raise bad_request("Missing required parameter: 'data' (a file field).", param="data")
    chunks = iter(lambda: data.file.read(CHUNK_BYTES), b"")
    part = await run_in_threadpool(
        upload_service.add_part, session, _storage(request), settings, project, upload_id, chunks
    )
    return UploadPartObject.from_row(part)


@router.post("/{upload_id}/complete", response_model=UploadObject)
async def complete_upload(
    upload_id: str,
    body: UploadCompleteRequest,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> UploadObject:
    upload, file = await run_in_threadpool(
        upload_service.complete_upload, session, _storage(request), project, upload_id, body
    )
    return UploadObject.from_row(upload, file)


@router.post("/{upload_id}/cancel", response_model=UploadObject)
def cancel_upload(
    upload_id: str,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> UploadObject:
    upload = upload_service.cancel_upload(session, _storage(request), project, upload_id)
    return UploadObject.from_row(upload)
