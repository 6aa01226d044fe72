"""HTTP adapter for /v1/files."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.auth import current_project, get_session, get_settings_dep, reads
from app.errors import bad_request
from app.files import reads as file_reads
from app.files import service as file_service
from app.files.schemas import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS, FileDeleted, FileObject
from app.pagination import Page
from app.projects import ProjectRef
from app.request_body import form_within
from app.settings import Settings

router = APIRouter()

CHUNK_BYTES = 1 << 20


def _storage(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.storage


def _expiry_seconds(form) -> int | None:  # type: ignore[no-untyped-def]
    anchor = form.get("expires_after[anchor]")
    seconds = form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise bad_request(
            "expires_after[anchor] must be 'created_at'.", param="expires_after.anchor"
        )
    try:
        value = int(str(seconds))
    except ValueError:
        raise bad_request(
            "expires_after[seconds] must be an integer.", param="expires_after.seconds"
        ) from None
    if not MIN_EXPIRY_SECONDS <= value <= MAX_EXPIRY_SECONDS:
        raise bad_request(
            f"expires_after[seconds] must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}.",
            param="expires_after.seconds",
        )
    return value


def _check_name_is_utf8(upload: UploadFile) -> None:
    # the form parser decodes a name that is not UTF-8 as Latin-1, silently; the part's raw
    # Content-Disposition header still holds the bytes that were sent
    disposition = dict(upload.headers.raw).get(b"content-disposition", b"")
    try:
        disposition.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(
            "The file name is not valid UTF-8.", param="file", code="invalid_file_name"
        ) from None


@router.post("/files", response_model=FileObject)
async def upload_file(
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> FileObject:
    too_large = file_service.file_too_large(settings.max_upload_bytes)
    form = await form_within(
        request, settings.max_upload_bytes, too_large, max_files=1, max_fields=16
    )
    upload = form.get("file")
    purpose = form.get("purpose")
    if not isinstance(purpose, str) or not purpose:
        raise bad_request("Missing required parameter: 'purpose'.", param="purpose")
    if not isinstance(upload, UploadFile):
        raise bad_request("Missing required parameter: 'file'.", param="file")
    _check_name_is_utf8(upload)
    filename = upload.filename or "upload"
    file_service.check_upload_purpose(purpose, filename)
    expires = _expiry_seconds(form)
    chunks = iter(lambda: upload.file.read(CHUNK_BYTES), b"")
    row = await run_in_threadpool(
        file_service.upload_file,
        session,
        settings,
        _storage(request),
        project,
        filename=filename,
        purpose=purpose,
        chunks=chunks,
        expires_after_seconds=expires,
    )
    return FileObject.from_row(row)


@router.get("/files", response_model=Page[FileObject])
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = Query(10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    project: ProjectRef = Depends(current_project),
) -> Page[FileObject]:
    rows, has_more = await file_reads.files(
        reads(request), project, purpose=purpose, limit=limit, order=order, after=after
    )
    return Page.of_rows(FileObject, rows, has_more)


@router.get("/files/{file_id}", response_model=FileObject)
async def retrieve_file(
    file_id: str, request: Request, project: ProjectRef = Depends(current_project)
) -> FileObject:
    return FileObject.from_columns(await file_reads.file(reads(request), project, file_id))


@router.get("/files/{file_id}/content")
def file_content(
    file_id: str,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> StreamingResponse:
    row = file_service.get_file(session, project, file_id)
    return StreamingResponse(
        _storage(request).iter_bytes(row.storage_key),
        media_type="application/octet-stream",
        headers={"content-length": str(row.bytes)},
    )


@router.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(
    file_id: str,
    request: Request,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
) -> FileDeleted:
    file_service.delete_file(session, _storage(request), project, file_id)
    return FileDeleted(id=file_id)
