"""HTTP adapter for /v1/fine_tuning/alpha/graders: run a grader on one sample, or validate it.

Routes are plain functions, so FastAPI runs them in its threadpool: a python grader waits on
its sandbox and a model grader on the network without blocking the server.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.auth import current_project, get_settings_dep
from app.errors import bad_request
from app.graders import GraderConfig, grade, make_sample, normalize_grader, validate_grader
from app.graders.schemas import GraderRunRequest, GraderValidateRequest, GraderValidateResponse
from app.settings import Settings
from app.tables import Project

router = APIRouter(prefix="/fine_tuning/alpha/graders")


def _checked_grader(grader: Any, settings: Settings) -> dict[str, Any]:
    errors = validate_grader(grader, max_source_bytes=settings.grader_max_source_bytes)
    if errors:
        first = errors[0]
        raise bad_request(
            f"Invalid grader: {first.message}", param=first.path, code="invalid_grader"
        )
    return normalize_grader(grader)


@router.post("/run")
def run_grader(
    body: GraderRunRequest,
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> dict[str, Any]:
    grader = _checked_grader(body.grader, settings)
    config = GraderConfig.from_settings(settings)
    result = grade(grader, make_sample(body.model_sample), body.item or {}, config)
    return result.to_run_response()


@router.post("/validate", response_model=GraderValidateResponse)
def validate(
    body: GraderValidateRequest,
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> GraderValidateResponse:
    return GraderValidateResponse(grader=_checked_grader(body.grader, settings))
