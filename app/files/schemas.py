"""Wire shapes of the files API (reference section 1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from app.tables import File

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def from_row(cls, row: File) -> FileObject:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=row.created_at,
            filename=row.filename,
            purpose=row.purpose,
            status=row.status,
            expires_at=row.expires_at,
        )

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> FileObject:
        """From a row of `app.files.reads.FILE_COLUMNS`."""
        return cls.model_validate(row)


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
