"""The reads of the file routes that clients poll (a file, the project's files): plain columns
of the wire shape, with no session and no ORM objects (`app.rows`). Writes, downloads and
the jobs that name a file read through `app.files.service`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import Select, bindparam, select

from app.errors import not_found
from app.files.service import UNEXPIRED
from app.projects import ProjectRef
from app.rows import RowSource, labelled
from app.tables import File, now

# the columns of FileObject, by its field names, and the order key
FILE_COLUMNS = labelled(
    File.seq, File.id, File.bytes, File.created_at, File.filename, File.purpose, File.status,
    File.expires_at,
)  # fmt: skip
_OF_PROJECT = (File.id == bindparam("file_id"), File.project_id == bindparam("project_id"))
_FILE = select(*FILE_COLUMNS).where(*_OF_PROJECT, UNEXPIRED)


def _pages() -> dict[tuple[str, bool, bool], Select[Any]]:
    """Every page statement, by (order, after a cursor, of one purpose)."""
    pages = {}
    for order in ("asc", "desc"):
        seq = File.seq.asc() if order == "asc" else File.seq.desc()
        past = (
            File.seq > bindparam("after_seq")
            if order == "asc"
            else File.seq < bindparam("after_seq")
        )
        for after in (False, True):
            for purpose in (False, True):
                statement = select(*FILE_COLUMNS).where(
                    File.project_id == bindparam("project_id"), UNEXPIRED
                )
                if after:
                    statement = statement.where(past)
                if purpose:
                    statement = statement.where(File.purpose == bindparam("purpose"))
                pages[order, after, purpose] = statement.order_by(seq).limit(bindparam("limit"))
    return pages


_PAGES = _pages()


async def file(
    source: RowSource, project: ProjectRef, file_id: str, *, param: str | None = None
) -> dict[str, Any]:
    """The project's unexpired file, as a row of FILE_COLUMNS; 404 when there is none."""
    parameters = {"file_id": file_id, "project_id": project.id, "now": now()}
    found = await source.rows(_FILE, parameters)
    if not found:
        raise not_found("file", file_id, param=param)
    return found[0]


async def files(
    source: RowSource, project: ProjectRef, *, purpose: str | None, limit: int,
    order: Literal["asc", "desc"], after: str | None,
) -> tuple[Sequence[dict[str, Any]], bool]:  # fmt: skip
    """A page of the project's unexpired files in `order`, after the `after` file, and
    whether there are more."""
    parameters: dict[str, Any] = {"project_id": project.id, "now": now()}
    if after:
        parameters["after_seq"] = (await file(source, project, after, param="after"))["seq"]
    if purpose:
        parameters["purpose"] = purpose
    statement = _PAGES[order, bool(after), bool(purpose)]
    return await source.page(statement, parameters, limit)
