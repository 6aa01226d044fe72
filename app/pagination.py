"""Wire shapes shared by every resource: the cursor list envelope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item", bound=BaseModel)


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


class Page(BaseModel, Generic[Item]):
    """The same envelope as a model, for routes that declare it as their `response_model`:
    FastAPI then writes it to JSON in one pass of pydantic's core."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool
    first_id: str | None
    last_id: str | None

    @classmethod
    def of_rows(
        cls, item_type: type[Item], rows: Sequence[Mapping[str, Any]], has_more: bool
    ) -> Page[Item]:
        """A page of `item_type` from rows keyed by its field names (other keys are left
        out), validated in one pass of pydantic's core: item by item cost a third more."""
        return cls[item_type].model_validate(  # type: ignore[index,no-any-return]
            {
                "data": rows,
                "has_more": has_more,
                "first_id": rows[0]["id"] if rows else None,
                "last_id": rows[-1]["id"] if rows else None,
            }
        )
