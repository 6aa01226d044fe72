"""Files: store bytes first, then the row; list, fetch and delete within one project."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BindParameter, ColumnElement, bindparam, or_, select
from sqlalchemy.orm import Session

from app import ids
from app.errors import APIError, bad_request, not_found
from app.files.schemas import UPLOAD_PURPOSES
from app.jobs.states import TERMINAL_STATUSES
from app.projects import ProjectRef
from app.quotas import quota_exceeded, storage_left
from app.settings import Settings
from app.storage import Storage, TooLarge
from app.tables import File, Job, now


def create_file(
    session: Session,
    storage: Storage,
    project: ProjectRef,
    *,
    filename: str,
    purpose: str,
    chunks: Iterable[bytes],
    max_bytes: int,
    expires_after_seconds: int | None = None,
    quota_limit: int | None = None,
) -> File:
    """Stores the streamed file; `quota_limit` names the storage quota when it, not the upload
    limit, is what `max_bytes` holds to."""
    file_id = ids.new_file_id()
    storage_key = f"{project.id}/{file_id}"
    try:
        size = storage.write(storage_key, chunks, max_bytes)
    except TooLarge:
        if quota_limit is not None:
            raise quota_exceeded(quota_limit) from None
        raise file_too_large(max_bytes) from None
    if size == 0:
        storage.delete(storage_key)
        raise bad_request("The file is empty.", param="file", code="empty_file")
    created_at = now()
    row = File(
        id=file_id,
        project_id=project.id,
        filename=filename,
        purpose=purpose,
        bytes=size,
        status="processed",
        storage_key=storage_key,
        created_at=created_at,
        expires_at=created_at + expires_after_seconds if expires_after_seconds else None,
    )
    session.add(row)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(storage_key)
        raise
    return row


def file_too_large(max_bytes: int) -> APIError:
    size = f"{max_bytes // (1024 * 1024)} MB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
    return bad_request(
        f"File is too large: the limit is {size}.", param="file", code="file_too_large"
    )


def not_expired() -> ColumnElement[bool]:
    """A file past its `expires_at` is gone for its project, whether or not it is purged yet."""
    return _unexpired_at(now())


def _unexpired_at(moment: int | BindParameter[int]) -> ColumnElement[bool]:
    return or_(File.expires_at.is_(None), File.expires_at > moment)


def upload_file(
    session: Session,
    settings: Settings,
    storage: Storage,
    project: ProjectRef,
    *,
    filename: str,
    purpose: str,
    chunks: Iterable[bytes],
    expires_after_seconds: int | None = None,
) -> File:
    """A direct upload: held to the upload limit and to what is left of the project's quota."""
    left = storage_left(session, settings, project)
    max_bytes, quota_limit = settings.max_upload_bytes, None
    if left is not None and left < max_bytes:
        max_bytes, quota_limit = left, settings.max_stored_bytes_per_project
    return create_file(
        session, storage, project, filename=filename, purpose=purpose, chunks=chunks,
        max_bytes=max_bytes, expires_after_seconds=expires_after_seconds, quota_limit=quota_limit,
    )  # fmt: skip


# built once (building and keying a statement costs about as much as SQLite takes to answer
# it); the clock is a parameter, `now`
UNEXPIRED = _unexpired_at(bindparam("now"))
_FILE_OF_PROJECT = select(File).where(
    File.id == bindparam("file_id"), File.project_id == bindparam("project_id"), UNEXPIRED
)


def get_file(
    session: Session, project: ProjectRef, file_id: str, *, param: str | None = None
) -> File:
    row = session.scalar(
        _FILE_OF_PROJECT, {"file_id": file_id, "project_id": project.id, "now": now()}
    )
    if row is None:
        raise not_found("file", file_id, param=param)
    return row


def delete_file(session: Session, storage: Storage, project: ProjectRef, file_id: str) -> None:
    row = get_file(session, project, file_id)
    session.delete(row)
    session.commit()
    storage.delete(row.storage_key)


# the files.filename column's size
MAX_FILENAME_CHARS = 512


def _check_filename(filename: str) -> None:
    try:
        filename.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800"
        raise bad_request(
            "The file name is not valid UTF-8.", param="file", code="invalid_file_name"
        ) from None
    if len(filename) > MAX_FILENAME_CHARS:
        raise bad_request(
            f"The file name has {len(filename)} characters; at most {MAX_FILENAME_CHARS} "
            "are allowed.",
            param="file",
            code="invalid_file_name",
        )
    if any(ord(character) < 32 or character == "\x7f" for character in filename):
        raise bad_request(
            "The file name contains control characters.", param="file", code="invalid_file_name"
        )


def check_upload_purpose(purpose: str, filename: str) -> None:
    _check_filename(filename)
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(
            f"Invalid purpose '{purpose}'. Expected one of: {', '.join(UPLOAD_PURPOSES)}.",
            param="purpose",
        )
    if purpose == "fine-tune" and not filename.lower().endswith(".jsonl"):
        raise APIError(
            400,
            f"Invalid file format for fine-tuning: '{filename}'. Upload a .jsonl file.",
            param="file",
            code="invalid_file_format",
        )


def purge_expired(session: Session, storage: Storage) -> list[str]:
    """Deletes expired files and their bytes, except those an unfinished job still reads.

    Returns the ids purged. A job's input stays until the job ends, so an expiry never pulls
    a file from under a running (or paused, or queued) job; it goes at the next sweep after.
    """
    in_use = select(Job.training_file).where(
        Job.status.not_in([s.value for s in TERMINAL_STATUSES])
    )
    in_use_valid = select(Job.validation_file).where(
        Job.status.not_in([s.value for s in TERMINAL_STATUSES]), Job.validation_file.is_not(None)
    )
    expired = list(
        session.scalars(
            select(File).where(
                File.expires_at.is_not(None),
                File.expires_at <= now(),
                File.id.not_in(in_use),
                File.id.not_in(in_use_valid),
            )
        )
    )
    for row in expired:
        session.delete(row)
    session.commit()
    for row in expired:
        storage.delete(row.storage_key)
    return [row.id for row in expired]
