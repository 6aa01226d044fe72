"""Wire shapes shared by every resource: the cursor list envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


def page(items: Sequence[BaseModel | dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The `{"object": "list", "data", "has_more", "first_id", "last_id"}` envelope."""
    data = [item.model_dump() if isinstance(item, BaseModel) else item for item in items]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
