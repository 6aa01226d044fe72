"""What the polled routes' reads need of a database: rows of plain-column statements.

`app.reads.Reads` is one; domain modules take this protocol, so they stay free of the web
framework that `app.reads` runs on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute


class RowSource(Protocol):
    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any], *, many: bool = False
    ) -> Sequence[dict[str, Any]]:
        """The rows of `statement`, each a dict of its labelled columns."""
        ...

    async def page(
        self, statement: Select[Any], parameters: Mapping[str, Any], limit: int
    ) -> tuple[Sequence[dict[str, Any]], bool]:
        """At most `limit` rows of `statement` (which takes `limit` as a parameter) and
        whether there are more."""
        ...


def labelled(
    *attributes: InstrumentedAttribute[Any], **renamed: InstrumentedAttribute[Any]
) -> list[Any]:
    """Columns labelled with their ORM attribute names, or with the names given (a wire
    shape's), so the rows need no renaming (`Job.job_metadata` is the column `metadata`)."""
    return [attribute.label(attribute.key) for attribute in attributes] + [
        attribute.label(name) for name, attribute in renamed.items()
    ]
