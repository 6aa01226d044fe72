"""Wire shapes of the uploads API (`client.uploads`): an upload, its parts, the requests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.files.schemas import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS, FileObject
from app.tables import File, Upload, UploadPart

# an upload being concatenated into its file is still "pending" to its owner
WIRE_STATUS = {"completing": "pending"}


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY_SECONDS, le=MAX_EXPIRY_SECONDS)


class UploadCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int
    filename: str
    mime_type: str
    purpose: str
    # the expiry of the file the upload becomes
    expires_after: ExpiresAfter | None = None


class UploadCompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[str]
    md5: str | None = None


class UploadObject(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None

    @classmethod
    def from_row(cls, row: Upload, file: File | None = None) -> UploadObject:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=row.created_at,
            expires_at=row.expires_at,
            filename=row.filename,
            purpose=row.purpose,
            status=WIRE_STATUS.get(row.status, row.status),  # type: ignore[arg-type]
            file=FileObject.from_row(file) if file is not None else None,
        )


class UploadPartObject(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str

    @classmethod
    def from_row(cls, row: UploadPart) -> UploadPartObject:
        return cls(id=row.id, created_at=row.created_at, upload_id=row.upload_id)
