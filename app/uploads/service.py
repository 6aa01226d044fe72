"""Uploads: a file sent in parts, each streamed to storage, concatenated into a `File` at the end.

An upload is `pending` until it is completed, cancelled or expired. Completing takes it to
`completing` first (a second completion or a cancel is then refused), concatenates the named
parts through `app.files.service.create_file` (so the file is checked and stored exactly as a
direct upload is, whole or not at all), and goes back to `pending` when that fails (a wrong
md5, say), so that the caller can try again.

An upload still pending at its `expires_at` is expired and its parts removed: by the workers'
sweep (`expire_due`), and by any request that finds it past its time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app import ids
from app.errors import APIError, bad_request, not_found
from app.files.service import check_upload_purpose, create_file
from app.projects import ProjectRef
from app.quotas import quota_exceeded, storage_left
from app.settings import Settings
from app.storage import Storage, TooLarge
from app.tables import File, Upload, UploadPart, now
from app.uploads.schemas import UploadCompleteRequest, UploadCreateRequest

MIME_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")
MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
# a completion that died mid-way leaves its upload `completing`; the sweep expires it this long
# after its `expires_at`, when no completion can still be running
STUCK_COMPLETION_SECONDS = 24 * 3600


def create_upload(
    session: Session, settings: Settings, project: ProjectRef, body: UploadCreateRequest
) -> Upload:
    check_upload_purpose(body.purpose, body.filename)
    if body.bytes < 1:
        raise bad_request("'bytes' must be at least 1: the file is empty.", param="bytes")
    if body.bytes > settings.upload_max_bytes:
        raise bad_request(
            f"'bytes' is {body.bytes}; an upload holds at most {settings.upload_max_bytes} bytes.",
            param="bytes",
            code="file_too_large",
        )
    left = storage_left(session, settings, project)
    if left is not None and body.bytes > left:
        raise quota_exceeded(settings.max_stored_bytes_per_project or 0)
    if not MIME_TYPE.match(body.mime_type) or len(body.mime_type) > 255:
        raise bad_request(
            f"Invalid mime_type {body.mime_type!r}: expected a MIME type such as "
            "'application/jsonl'.",
            param="mime_type",
        )
    created_at = now()
    row = Upload(
        id=ids.new_upload_id(),
        project_id=project.id,
        filename=body.filename,
        purpose=body.purpose,
        mime_type=body.mime_type,
        bytes=body.bytes,
        status="pending",
        file_expires_after=body.expires_after.seconds if body.expires_after else None,
        created_at=created_at,
        expires_at=created_at + settings.upload_expiry_seconds,
    )
    session.add(row)
    session.commit()
    return row


def get_upload(session: Session, storage: Storage, project: ProjectRef, upload_id: str) -> Upload:
    """The project's upload, expired first if it is past its time."""
    row = session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.project_id == project.id)
    )
    if row is None:
        raise not_found("upload", upload_id)
    if row.status == "pending" and row.expires_at <= now():
        _close(session, storage, row.id, "pending", "expired")
        session.refresh(row)
    return row


def upload_file(session: Session, upload: Upload) -> File | None:
    if upload.file_id is None:
        return None
    return session.scalar(select(File).where(File.id == upload.file_id))


def add_part(
    session: Session,
    storage: Storage,
    settings: Settings,
    project: ProjectRef,
    upload_id: str,
    chunks: Iterable[bytes],
) -> UploadPart:
    """Stream one part to storage, then record it if the upload still takes it."""
    _require_pending(get_upload(session, storage, project, upload_id), "add a part to")
    session.commit()  # no transaction stays open while the part streams in
    part_id = ids.new_upload_part_id()
    storage_key = f"{project.id}/{part_id}"
    try:
        size = storage.write(storage_key, chunks, settings.upload_part_max_bytes)
    except TooLarge:
        raise bad_request(
            f"The part is too large: a part holds at most {settings.upload_part_max_bytes} bytes.",
            param="data",
            code="part_too_large",
        ) from None
    try:
        if size == 0:
            raise bad_request("The part is empty.", param="data")
        # the row lock (PostgreSQL) and the insert's write lock (SQLite) order this against a
        # completion, a cancel and other parts of the same upload
        upload = session.scalar(select(Upload).where(Upload.id == upload_id).with_for_update())
        assert upload is not None
        row = UploadPart(id=part_id, upload_id=upload_id, bytes=size, storage_key=storage_key)
        session.add(row)
        session.flush()
        session.refresh(upload)
        _require_pending(upload, "add a part to")
        stored = session.scalar(
            select(func.sum(UploadPart.bytes)).where(UploadPart.upload_id == upload_id)
        )
        if stored is not None and stored > upload.bytes:
            raise bad_request(
                f"With this part the upload's parts would hold {stored} bytes, more than the "
                f"{upload.bytes} bytes it was created with.",
                param="data",
            )
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(storage_key)
        raise
    return row


def complete_upload(
    session: Session,
    storage: Storage,
    project: ProjectRef,
    upload_id: str,
    body: UploadCompleteRequest,
) -> tuple[Upload, File]:
    """Concatenate the named parts, in order, into a new file; the upload then refers to it."""
    upload = get_upload(session, storage, project, upload_id)
    _require_pending(upload, "complete")
    expected_md5 = _check_md5(body.md5)
    parts = _named_parts(session, upload, body.part_ids)
    total = sum(part.bytes for part in parts)
    if total != upload.bytes:
        raise bad_request(
            f"The parts named hold {total} bytes; the upload was created with 'bytes' "
            f"{upload.bytes}.",
            param="part_ids",
        )
    if not _move(session, upload.id, "pending", "completing"):
        session.rollback()
        session.refresh(upload)
        _require_pending(upload, "complete")
        raise _changed_meanwhile(upload)
    session.commit()
    chunks = _concatenated(storage, parts, expected_md5)
    try:
        file = create_file(
            session,
            storage,
            project,
            filename=upload.filename,
            purpose=upload.purpose,
            chunks=chunks,
            max_bytes=upload.bytes,
            expires_after_seconds=upload.file_expires_after,
        )
    except BaseException:
        session.rollback()
        _move(session, upload.id, "completing", "pending")
        session.commit()
        raise
    _close(session, storage, upload.id, "completing", "completed", file_id=file.id)
    session.refresh(upload)
    return upload, file


def cancel_upload(
    session: Session, storage: Storage, project: ProjectRef, upload_id: str
) -> Upload:
    upload = get_upload(session, storage, project, upload_id)
    _require_pending(upload, "cancel")
    if not _close(session, storage, upload.id, "pending", "cancelled"):
        session.refresh(upload)
        _require_pending(upload, "cancel")
        raise _changed_meanwhile(upload)
    session.refresh(upload)
    return upload


def expire_due(
    session: Session, storage: Storage, *, at: int | None = None, limit: int = 100
) -> list[str]:
    """Expire uploads past their time and remove their parts; the ids expired."""
    moment = now() if at is None else at
    due = session.execute(
        select(Upload.id, Upload.status)
        .where(
            or_(
                and_(Upload.status == "pending", Upload.expires_at <= moment),
                and_(
                    Upload.status == "completing",
                    Upload.expires_at + STUCK_COMPLETION_SECONDS <= moment,
                ),
            )
        )
        .order_by(Upload.seq)
        .limit(limit)
    ).all()
    session.rollback()
    return [
        upload_id
        for upload_id, status in due
        if _close(session, storage, upload_id, status, "expired")
    ]


def _require_pending(upload: Upload, action: str) -> None:
    if upload.status == "pending":
        return
    state = {
        "completing": "is being completed",
        "completed": "is already completed",
        "cancelled": "was cancelled",
        "expired": "has expired",
    }.get(upload.status, f"is {upload.status}")
    raise APIError(
        400,
        f"Cannot {action} upload '{upload.id}': it {state}.",
        code="upload_not_pending",
    )


def _changed_meanwhile(upload: Upload) -> APIError:
    return APIError(
        400, f"Upload '{upload.id}' changed during this request; try again.", code="conflict"
    )


def _check_md5(md5: str | None) -> str | None:
    if md5 is None or md5 == "":
        return None
    if not MD5_HEX.match(md5):
        raise bad_request("'md5' must be 32 hexadecimal digits.", param="md5")
    return md5.lower()


def _named_parts(session: Session, upload: Upload, part_ids: list[str]) -> list[UploadPart]:
    if not part_ids:
        raise bad_request("'part_ids' must name at least one part.", param="part_ids")
    if len(set(part_ids)) != len(part_ids):
        twice = next(part_id for part_id in part_ids if part_ids.count(part_id) > 1)
        raise bad_request(f"'part_ids' names part '{twice}' more than once.", param="part_ids")
    parts = {
        part.id: part
        for part in session.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id))
    }
    for index, part_id in enumerate(part_ids):
        if part_id not in parts:
            raise bad_request(
                f"'part_ids[{index}]': upload '{upload.id}' has no part '{part_id}'.",
                param="part_ids",
            )
    return [parts[part_id] for part_id in part_ids]


def _concatenated(
    storage: Storage, parts: list[UploadPart], expected_md5: str | None
) -> Iterator[bytes]:
    """The parts' bytes in order; raises at the end when they do not have the expected md5
    (the storage then keeps nothing)."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        for chunk in storage.iter_bytes(part.storage_key):
            digest.update(chunk)
            yield chunk
    if expected_md5 is not None and digest.hexdigest() != expected_md5:
        raise bad_request(
            f"The uploaded bytes have md5 {digest.hexdigest()}, not the {expected_md5} given.",
            param="md5",
            code="md5_mismatch",
        )


def _move(session: Session, upload_id: str, from_status: str, to_status: str) -> bool:
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.status == from_status)
        .values(status=to_status)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _close(
    session: Session,
    storage: Storage,
    upload_id: str,
    from_status: str,
    to_status: str,
    file_id: str | None = None,
) -> bool:
    """Move the upload to a final status and remove its parts (rows, then stored bytes)."""
    values: dict[str, object] = {"status": to_status}
    if file_id is not None:
        values["file_id"] = file_id
    result = session.execute(
        update(Upload).where(Upload.id == upload_id, Upload.status == from_status).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    keys = list(
        session.scalars(select(UploadPart.storage_key).where(UploadPart.upload_id == upload_id))
    )
    session.execute(delete(UploadPart).where(UploadPart.upload_id == upload_id))
    session.commit()
    for key in keys:
        storage.delete(key)
    return True
