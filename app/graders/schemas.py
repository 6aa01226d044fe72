"""Wire shapes of the alpha graders API (reference sections 3.1 and 3.2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# `grader` stays loosely typed here: validate_grader() checks it field by field and names the
# exact JSON path of a problem, which a pydantic union of six grader types could not.


class GraderRunRequest(BaseModel):
    grader: Any
    model_sample: str
    item: dict[str, Any] | None = None


class GraderValidateRequest(BaseModel):
    grader: Any


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any]
